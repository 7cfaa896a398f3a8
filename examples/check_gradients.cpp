// The five source documents' derivations as the documents write them (docs/sources.md), each run
// through xgrad::diagnose against the same network on the tape: per document, every quantity the
// derivation gives, whether it agrees, which wrong ones are mistakes of their own and which follow
// from an earlier one, and the explanations diagnose fits. Nothing here knows the documents'
// mistakes; xgrad::reference::document_diagnoses() reproduces the derivations, diagnose finds them.
// Usage: check_gradients [--dot DIR] [NAME|NUMBER]...   (default: all), e.g. check_gradients 003
//   (a number selects every run of that document: 000 and 002 are run once per mistake, and 002
//   once more with all its printed equations, cnn_sigmoid_avgpool_as_written)
//   --dot DIR   also writes DIR/<number>_<name>.dot, the tape coloured by verdict
//               (scripts/render-diagnosis renders them with Graphviz)
#include <fmt/core.h>

#include <fstream>
#include <set>

#include "xgrad/reference/backprop.hpp"
#include "xgrad/reference/documents.hpp"

#include <xtensor/xview.hpp>

namespace {

void print_vec(const std::string& name, const xgrad::Tensor<double>& v)
{
    fmt::print("  {:<10}", name);
    for (double x : v) fmt::print(" {:>24.17g}", x);
    fmt::print("\n");
}

/// The worked example's correct values with 17 digits (docs/sources.md quotes them), from the
/// reference implementation of the step.
void print_worked_example_values()
{
    using namespace xgrad;
    const auto tr = reference::worked_example_2_3_2_1_step(reference::worked_example_2_3_2_1_parameters(),
                                                           Tensor<double>{1.0, 2.0}, 1.0, 0.1);
    fmt::print("the correct values (xgrad::reference::worked_example_2_3_2_1_step), 17 digits\n");
    for (std::size_t k = 0; k < 3; ++k) {
        print_vec("z(" + std::to_string(k + 1) + ")", tr.z[k]);
        print_vec("n(" + std::to_string(k + 1) + ")", tr.n[k]);
    }
    fmt::print("  {:<10} {:>24.17g}\n  {:<10} {:>24.17g}\n", "y − ŷ", 1.0 - tr.n[2](0), "E", tr.loss);
    for (std::size_t k = 3; k-- > 0;) print_vec("δ(" + std::to_string(k + 1) + ")", tr.delta[k]);
    for (std::size_t k = 0; k < 3; ++k) {
        const auto& W = tr.after[k].W;
        for (std::size_t r = 0; r < W.shape()[0]; ++r)
            print_vec(r == 0 ? "W(" + std::to_string(k + 1) + ") after" : "", xt::eval(xt::view(W, r, xt::all())));
        print_vec("b(" + std::to_string(k + 1) + ") after", tr.after[k].b);
    }
}

}  // namespace

int main(int argc, char** argv)
{
    std::set<std::string> which;
    std::string dot_dir;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--dot" && i + 1 < argc)
            dot_dir = argv[++i];
        else if (a == "--help" || a == "-h") {
            fmt::print("usage: check_gradients [--dot DIR] [NAME|NUMBER]...\n");
            return 0;
        } else
            which.insert(a);
    }
    try {
        for (const auto& d : xgrad::reference::document_diagnoses()) {
            if (!which.empty() && !which.count(d.name) && !which.count(d.number)) continue;
            fmt::print("\n=== {} (source document {}): {} ===\n", d.name, d.number, d.title);
            const xgrad::DiagnosisReport r = d.run();
            fmt::print("{}", r.table());
            if (d.number == "003") print_worked_example_values();
            if (!dot_dir.empty()) {
                const std::string path = fmt::format("{}/{}_{}.dot", dot_dir, d.number, d.name);
                std::ofstream(path) << r.dot;
                fmt::print("tape graph: {}\n", path);
            }
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
    }
    return 0;
}

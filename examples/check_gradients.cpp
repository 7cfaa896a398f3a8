// The five source documents' derivations as the documents write them (docs/sources.md), each run
// through xgrad::diagnose against the same network on the tape: per document, every quantity the
// derivation gives, whether it agrees, which wrong ones are mistakes of their own and which follow
// from an earlier one, and the explanations diagnose fits. Nothing here knows the documents'
// mistakes; xgrad::reference::document_diagnoses() reproduces the derivations, diagnose finds them.
// Usage: check_gradients [--dot DIR] [NAME|NUMBER]...   (default: all), e.g. check_gradients 003
//   --dot DIR   also writes DIR/<number>_<name>.dot, the tape coloured by verdict
//               (scripts/render-diagnosis renders them with Graphviz)
#include <fmt/core.h>

#include <fstream>
#include <set>

#include "xgrad/reference/documents.hpp"

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

// The mlp_trace_regularizer network (source document 000, see docs/sources.md): an MLP with sigmoid hidden units and a linear output, trained on
// ½‖y − d‖² plus the discriminative regularizer ½γ(tr S_w − tr S_b) over each batch (both divided
// by the batch size). Trains once with γ = 0 and once with --gamma, reporting accuracy and the
// per-image traces tr S_w/N and tr S_b/N of the validation outputs each epoch.
#include <fmt/core.h>

#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;
using xgrad::nn::ScatterTraces;
using xgrad::nn::scatter_traces;
using xgrad::nn::trace_scatter_loss;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_trace_reg", o.data_parallel = true;
    o.epochs = 5, o.batch = 64, o.lr = 0.1, o.optimizer = "momentum";
    double gamma = 0.1;
    std::size_t hidden = 128;
    CLI::App app{"MNIST: sigmoid MLP under squared error + ½γ(tr S_w − tr S_b), with γ = 0 and γ = --gamma"};
    auto options = [&](CLI::App& a) {
        a.add_option("--gamma", gamma, "regularizer weight γ for the second run")->capture_default_str();
        a.add_option("--hidden", hidden, "hidden units")->capture_default_str();
    };
    return run_example(app, o, argc, argv, [&] {
        const Data data = load_data(o);
        const std::string base = run_dir(o);
        std::vector<std::pair<double, RunResult>> runs;
        for (double g : {0.0, gamma}) {
            nn::MLP<F> net({784, hidden, 10}, nn::Activation::sigmoid, nn::Activation::identity, o.seed);
            Task task{"mnist_trace_reg", &net, [&](Tape<F>& t, const Tensor<F>& x) { return call_model(net, t.borrow(x)); },
                      [g](const Var<F>& y, const IndexTensor& labels) {
                          const F b = F(labels.size());
                          auto mse = mse_loss(y, one_hot(y.tape(), labels, 10), Reduction::half_sum) / b;
                          return g == 0 ? mse : mse + trace_scatter_loss(y, labels, F(g)) / b;
                      },
                      [](const Tensor<F>& out, const IndexTensor& labels) -> std::vector<std::pair<std::string, double>> {
                          const ScatterTraces s = scatter_traces(out, labels);
                          const double n = double(labels.size());
                          return {{"trSw_per_image", s.within / n}, {"trSb_per_image", s.between / n}};
                      }};
            Options run = o;
            run.out_dir = base + fmt::format("/gamma-{}", g);
            if (lead_rank()) fmt::print("\n== γ = {} ==\n", g);
            auto opt = make_optimizer(run, net);
            runs.emplace_back(g, train(task, *opt, data, run));
        }
        if (!lead_rank()) return;
        fmt::print("\n{:>8} {:>10} {:>16} {:>16} {:>10}\n", "gamma", "test acc", "trSw/N (val)", "trSb/N (val)", "ratio");
        for (const auto& [g, r] : runs) {
            const auto& m = r.history.back();
            const double w = m.extra[0].second, b = m.extra[1].second;
            fmt::print("{:>8} {:>9.2f}% {:>16.4f} {:>16.4f} {:>10.3f}\n", g, 100 * m.test_acc, w, b, b / w);
        }
    }, options);
}

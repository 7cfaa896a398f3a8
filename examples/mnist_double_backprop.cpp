// Double backpropagation (Drucker & LeCun, 1992) on MNIST: a ReLU MLP trained on
//   cross-entropy + λ · mean_i ‖∂ℓ_i/∂x_i‖²,
// the input gradient taken with grad(loss, {x}, create_graph) so that the penalty is
// differentiated again by the ordinary tape.backward of the total. Trains once with λ = 0 and once
// with --lambda, and reports for each the test accuracy, the penalty on the test set and the
// accuracy under FGSM, x' = clip(x + ε·sign(∂ℓ/∂x), 0, 1) (Goodfellow et al., 2015).
//
// The penalty is per image: with the batch mean L = (1/B) Σ ℓ_i, ∂L/∂x_i = (1/B) ∂ℓ_i/∂x_i, so
// mean_i ‖∂ℓ_i/∂x_i‖² = B · ‖∂L/∂x‖², and λ does not depend on the batch size.
// --distributed: each rank takes its DistributedSampler-style share of every epoch in batches of
// --batch-size; the averaged gradient of (cross-entropy + λ·penalty) is one process's at the global
// batch (the penalty is a per-image mean too). Rank 0 alone evaluates, prints and writes.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/train.hpp"
#include "xgrad/higher_order.hpp"

using namespace xgrad;
using namespace xgrad::examples;
using clock_type = std::chrono::steady_clock;

namespace {

struct TestReport {
    double accuracy = 0;  ///< clean test accuracy
    double penalty = 0;   ///< mean over test images of ‖∂ℓ_i/∂x_i‖²
    std::vector<double> fgsm_accuracy;  ///< one per ε
};

/// Clean accuracy, input-gradient penalty and FGSM accuracy at each ε over a dataset.
TestReport attack(nn::Module<F>& net, Tape<F>& tape, const nn::Dataset& d, const std::vector<double>& eps)
{
    TestReport r;
    r.fgsm_accuracy.assign(eps.size(), 0);
    std::size_t correct = 0;
    std::vector<std::size_t> adv_correct(eps.size(), 0);
    const std::size_t n = d.size(), bs = 1000;
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    Tensor<F> xb, adv;
    IndexTensor yb;
    for (std::size_t b = 0; b < n; b += bs) {
        const std::size_t e = std::min(n, b + bs);
        nn::gather_batch(d, order, b, e, xb, yb);
        tape.clear();
        const Var<F> x = tape.variable(xb);
        const Var<F> logits = net(x);
        correct += nn::count_correct(logits.value(), yb);
        // Summed loss: ∂(Σ ℓ)/∂x_i = ∂ℓ_i/∂x_i, the per-image input gradient.
        const Tensor<F> g = grad(cross_entropy(logits, yb, Reduction::sum), {x})[0].value();
        for (F v : g) r.penalty += double(v) * double(v);
        for (std::size_t k = 0; k < eps.size(); ++k) {
            adv = xb;
            const F ek = F(eps[k]);
            F* a = adv.data();
            const F* gd = g.data();
            for (std::size_t i = 0; i < adv.size(); ++i) {
                const F s = gd[i] > 0 ? F(1) : gd[i] < 0 ? F(-1) : F(0);
                a[i] = std::clamp(a[i] + ek * s, F(0), F(1));
            }
            NoGradGuard<F> no_grad(tape);
            adv_correct[k] += nn::count_correct(net(tape.borrow(adv)).value(), yb);
        }
    }
    tape.clear();
    r.accuracy = double(correct) / double(n);
    r.penalty /= double(n);
    for (std::size_t k = 0; k < eps.size(); ++k) r.fgsm_accuracy[k] = double(adv_correct[k]) / double(n);
    return r;
}

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_double_backprop", o.data_parallel = true;
    o.epochs = 5, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    double lambda = 1.0, epsilon = 0.1;
    std::vector<std::size_t> hidden{256, 128};
    CLI::App app{"MNIST: ReLU MLP under cross-entropy + λ·‖∂ℓ/∂x‖² (double backpropagation), λ = 0 vs λ = --lambda, "
                 "with FGSM accuracy"};
    auto options = [&](CLI::App& a) {
        a.add_option("--lambda", lambda, "penalty weight λ of the second run (0: train only the unpenalized model)")
            ->check(real_in(0, 1e6, true))
            ->capture_default_str();
        a.add_option("--epsilon", epsilon, "FGSM perturbation size ε (pixels in [0, 1])")
            ->check(real_in(0, 1))
            ->capture_default_str();
        a.add_option("--hidden", hidden, "hidden layer widths")->check(int_in(1, 1 << 16))->capture_default_str();
    };
    return run_example(app, o, argc, argv, [&] {
        if (o.resume) throw std::invalid_argument("--resume: mnist_double_backprop has no checkpoints");
        if (o.threads > 0) set_num_threads(o.threads);
        const std::string base = run_dir(o);
        const Data data = load_data(o);
        std::vector<std::size_t> sizes{784};
        sizes.insert(sizes.end(), hidden.begin(), hidden.end());
        sizes.push_back(10);
        std::vector<double> lambdas{0.0};
        if (lambda > 0) lambdas.push_back(lambda);
        const std::vector<double> sweep{0.02, 0.05, 0.1, 0.2, 0.3};

        const bool lead = lead_rank();
        std::ofstream csv;
        if (lead) csv.open(base + "/metrics.csv");
        csv << "lambda,epoch,lr,train_ce,train_penalty,train_acc,test_acc,test_penalty,fgsm_acc,seconds\n";
        struct Final {
            double lambda, seconds;
            TestReport report, sweep;
        };
        std::vector<Final> finals;
        for (double lam : lambdas) {
            nn::MLP<F> net(sizes, nn::Activation::relu, nn::Activation::identity, o.seed);
            auto opt = make_optimizer(o, net);
            Replicas replicas(net, o.distributed);
            const std::string batch = replicas.world_size() > 1
                                          ? fmt::format("{} per rank x {} ranks", o.batch, replicas.world_size())
                                          : std::to_string(o.batch);
            if (lead)
                fmt::print("\n== λ = {} ==  MLP {}, {} {} lr {}, batch {}, {} epochs, FGSM ε = {}\n", lam, fmt::join(sizes, "-"),
                           o.optimizer, o.schedule, o.lr, batch, o.epochs, epsilon);
            Tape<F> tape;
            Tensor<F> xb;
            IndexTensor yb;
            double train_time = 0;
            for (int epoch = 0; epoch < o.epochs; ++epoch) {
                const auto t0 = clock_type::now();
                double lr = o.lr;
                if (o.schedule == "step") lr = nn::StepLR(o.lr, std::max(1, o.epochs / 3)).lr(epoch);
                if (o.schedule == "cosine") lr = nn::CosineLR(o.lr, o.epochs).lr(epoch);
                opt->set_lr(lr);
                const auto order = replicas.shard(nn::epoch_order(data.train.size(), o.seed, std::size_t(epoch)));
                double ce_sum = 0, pen_sum = 0;
                std::size_t correct = 0, seen = 0;
                for (std::size_t b = 0; b < order.size(); b += o.batch) {
                    const std::size_t e = std::min(order.size(), b + o.batch);
                    nn::gather_batch(data.train, order, b, e, xb, yb);
                    const F B = F(e - b);
                    opt->zero_grad();
                    tape.clear();
                    const Var<F> x = tape.variable(xb);
                    const Var<F> logits = replicas.forward(tape, x.shape(), [&] { return net(x); });
                    const Var<F> ce = cross_entropy(logits, yb);
                    double pen = 0;
                    if (lam > 0) {
                        // ∂L/∂x as a Var (create_graph): the penalty is a function of θ, differentiated below.
                        const Var<F> gx = grad(ce, {x}, GradOptions{true})[0];
                        const Var<F> penalty = sum(gx * gx) * B;
                        tape.backward(ce + penalty * F(lam));
                        pen = penalty.item();
                    } else {
                        tape.backward(ce);  // x is a variable: x.grad() = ∂L/∂x, reported only
                        for (F v : x.grad()) pen += double(v) * double(v);
                        pen *= B;
                    }
                    replicas.synchronize();
                    opt->step();
                    const double l = ce.item();
                    if (!std::isfinite(l) || !std::isfinite(pen))
                        throw std::runtime_error(fmt::format("epoch {}: the loss is not finite (cross-entropy {}, penalty {}); "
                                                             "try a smaller --lr or --lambda",
                                                             epoch + 1, l, pen));
                    ce_sum += l * B, pen_sum += pen * B, seen += e - b;
                    correct += nn::count_correct(logits.value(), yb);
                }
                std::vector<double> sums{ce_sum, pen_sum, double(seen), double(correct)};
                replicas.sum(sums);
                ce_sum = sums[0], pen_sum = sums[1], seen = std::size_t(sums[2]), correct = std::size_t(sums[3]);
                const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
                train_time += secs;
                if (!lead) continue;  // the replicas are equal: rank 0 alone evaluates and writes
                const TestReport t = attack(net, tape, data.test, {epsilon});
                fmt::print("epoch {:>2}/{}  train CE {:.4f} penalty {:.4f} acc {:.2f}%  test acc {:.2f}% penalty {:.4f}  "
                           "FGSM(ε={}) acc {:.2f}%  {:.1f}s\n",
                           epoch + 1, o.epochs, ce_sum / seen, pen_sum / seen, 100.0 * correct / seen, 100 * t.accuracy,
                           t.penalty, epsilon, 100 * t.fgsm_accuracy[0], secs);
                std::fflush(stdout);
                csv << fmt::format("{},{},{:.6g},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.3f}\n", lam, epoch + 1, lr,
                                   ce_sum / seen, pen_sum / seen, double(correct) / seen, t.accuracy, t.penalty,
                                   t.fgsm_accuracy[0], secs);
                csv.flush();
            }
            if (!lead) continue;
            const std::string dir = base + fmt::format("/lambda-{}", lam);
            std::filesystem::create_directories(dir);
            nn::save_weights(net, dir + "/model.safetensors");
            std::vector<double> eps = sweep;
            eps.push_back(epsilon);
            TestReport all = attack(net, tape, data.test, eps);
            TestReport main_report = all;
            main_report.fgsm_accuracy = {all.fgsm_accuracy.back()};
            all.fgsm_accuracy.pop_back();
            finals.push_back({lam, train_time, main_report, all});
        }

        if (!lead) return;
        fmt::print("\n{:>8} {:>10} {:>14} {:>16} {:>10}\n", "lambda", "test acc", "test penalty", fmt::format("FGSM ε={} acc", epsilon),
                   "train s");
        for (const auto& f : finals)
            fmt::print("{:>8} {:>9.2f}% {:>14.4f} {:>15.2f}% {:>10.1f}\n", f.lambda, 100 * f.report.accuracy, f.report.penalty,
                       100 * f.report.fgsm_accuracy[0], f.seconds);
        fmt::print("\nFGSM accuracy against ε (test set):\n{:>8}", "lambda");
        for (double e : sweep) fmt::print(" {:>8}", fmt::format("ε={}", e));
        fmt::print("\n");
        for (const auto& f : finals) {
            fmt::print("{:>8}", f.lambda);
            for (double a : f.sweep.fgsm_accuracy) fmt::print(" {:>7.2f}%", 100 * a);
            fmt::print("\n");
        }
        fmt::print("metrics: {}/metrics.csv  weights: {}/lambda-*/model.safetensors\n", base, base);
    }, options);
}

// The top Hessian eigenvalues of an MNIST MLP's loss while it trains. After every epoch (and at
// initialization) the Hessian of the mean cross-entropy over a fixed batch of training images,
// w.r.t. all ~235k parameters, is probed by Lanczos (full reorthogonalization) over Hessian-vector
// products; each product is reverse-over-reverse: ∂/∂θ Σ_k ⟨∂L/∂θ_k, v_k⟩ with ∂L/∂θ recorded by
// grad(create_graph). Writes <out>/spectrum.csv and <out>/spectrum.svg. With plain SGD the largest
// eigenvalue is drawn against the stability limit 2/lr (a quadratic with curvature above it makes
// gradient descent diverge).
#include <fmt/format.h>

#include <chrono>
#include <fstream>

#include "common/second_order.hpp"
#include "common/svg_plot.hpp"
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv)
{
    Options o;
    o.example = "hessian_spectrum", o.data_parallel = true;
    o.epochs = 8, o.batch = 64, o.lr = 0.1, o.optimizer = "sgd";
    std::vector<std::size_t> hidden{256, 128};
    std::size_t hessian_batch = 1000, top = 5, steps = 30;
    CLI::App app{"MNIST: the top Hessian eigenvalues of a ReLU MLP's cross-entropy, per epoch, by Lanczos over "
                 "Hessian-vector products"};
    auto options = [&](CLI::App& a) {
        a.add_option("--hidden", hidden, "hidden layer widths")->check(int_in(1, 1 << 16))->capture_default_str();
        a.add_option("--hessian-batch", hessian_batch, "training images (the first N) the Hessian is taken over")
            ->check(int_in(1, 60000))
            ->capture_default_str();
        a.add_option("--top", top, "eigenvalues to report")->check(int_in(1, 50))->capture_default_str();
        a.add_option("--lanczos-steps", steps, "Lanczos steps (Hessian-vector products) per spectrum, at least --top")
            ->check(int_in(2, 1000))
            ->capture_default_str();
    };
    return run_example(app, o, argc, argv, [&] {
        if (steps < top) throw std::invalid_argument(fmt::format("--lanczos-steps {} must be at least --top {}", steps, top));
        if (o.resume) throw std::invalid_argument("--resume: hessian_spectrum has no checkpoints");
        if (o.threads > 0) set_num_threads(o.threads);
        const std::string out = run_dir(o);
        const Data data = load_data(o);
        if (hessian_batch > data.train.size())
            throw std::invalid_argument(fmt::format("--hessian-batch {} is more than the {} training images", hessian_batch,
                                                    data.train.size()));
        const nn::Dataset hb = data.train.slice(0, hessian_batch);

        std::vector<std::size_t> sizes{784};
        sizes.insert(sizes.end(), hidden.begin(), hidden.end());
        sizes.push_back(10);
        nn::MLP<F> net(sizes, nn::Activation::relu, nn::Activation::identity, o.seed);
        auto opt = make_optimizer(o, net);
        Replicas replicas(net, o.distributed);  // --distributed: rank 0's weights everywhere
        const bool lead = replicas.rank() == 0;
        Tape<F> tape;
        const nn::BatchForward<F> forward = [&](Tape<F>& t, const Tensor<F>& x) { return net(t.borrow(x)); };
        const nn::BatchLoss<F> loss = [](const Var<F>& y, const IndexTensor& labels) { return cross_entropy(y, labels); };
        const std::string batch = replicas.world_size() > 1
                                      ? fmt::format("{} per rank x {} ranks", o.batch, replicas.world_size())
                                      : std::to_string(o.batch);
        if (lead)
            fmt::print("{}: MLP {} ({} parameters), {} {} lr {}, batch {}; Hessian over {} training images, {} Lanczos steps\n",
                       o.example, fmt::join(sizes, "-"), net.num_parameters(), o.optimizer, o.schedule, o.lr, batch,
                       hessian_batch, steps);

        struct Row {
            int epoch;
            double lr, train_loss, test_acc, batch_loss, grad_norm, seconds;
            LanczosResult spectrum;
        };
        std::vector<Row> rows;
        auto spectrum = [&](int epoch, double lr, double train_loss) {
            const auto t0 = clock_type::now();
            tape.clear();
            const Var<F> l = cross_entropy(net(tape.borrow(hb.images)), hb.labels);
            ParamHvp H(tape, l);
            const LanczosResult r = lanczos_top(std::ref(H), H.size(), top, steps, o.seed * 7919 + std::uint64_t(epoch));
            const double batch_loss = l.item(), gnorm = norm(H.gradient());
            tape.clear();
            const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
            const double acc = nn::evaluate(net, tape, data.test, forward, loss).accuracy;
            rows.push_back({epoch, lr, train_loss, acc, batch_loss, gnorm, secs, r});
            std::string ev;
            for (double e : r.eigenvalues) ev += fmt::format(" {:.4g}", e);
            fmt::print("epoch {:>2}/{}  train loss {:.4f}  test acc {:.2f}%  Hessian-batch loss {:.4f} |g| {:.3g}  top-{} "
                       "eigenvalues{}  ({} HVPs, {:.1f}s)\n",
                       epoch, o.epochs, train_loss, 100 * acc, batch_loss, gnorm, top, ev, r.steps, secs);
            std::fflush(stdout);
        };
        auto write = [&] {
            std::ofstream f(out + "/spectrum.csv");
            f << "epoch,lr,train_loss,test_acc,hessian_batch_loss,grad_norm";
            for (std::size_t i = 1; i <= top; ++i) f << ",lambda" << i;
            for (std::size_t i = 1; i <= top; ++i) f << ",residual" << i;
            f << ",hvps,spectrum_seconds\n";
            for (const auto& r : rows) {
                f << fmt::format("{},{:.6g},{:.6f},{:.6f},{:.6f},{:.6g}", r.epoch, r.lr, r.train_loss, r.test_acc,
                                 r.batch_loss, r.grad_norm);
                for (std::size_t i = 0; i < top; ++i)
                    f << "," << (i < r.spectrum.eigenvalues.size() ? fmt::format("{:.6g}", r.spectrum.eigenvalues[i]) : "");
                for (std::size_t i = 0; i < top; ++i)
                    f << "," << (i < r.spectrum.residuals.size() ? fmt::format("{:.3g}", r.spectrum.residuals[i]) : "");
                f << fmt::format(",{},{:.3f}\n", r.spectrum.steps, r.seconds);
            }
            PlotSpec p;
            p.title = fmt::format("Top-{} Hessian eigenvalues, MLP {} on MNIST ({}{} lr {})", top, fmt::join(sizes, "-"),
                                  o.optimizer, o.schedule == "none" ? "" : " " + o.schedule, o.lr);
            p.xlabel = "epoch";
            p.log_y = true;
            p.ylabel = fmt::format("eigenvalue (loss over {} images)", hessian_batch);
            for (std::size_t i = 0; i < top; ++i) {
                PlotSeries s{fmt::format("λ{}", i + 1), {}, {}};
                for (const auto& r : rows)
                    if (i < r.spectrum.eigenvalues.size()) {
                        s.x.push_back(r.epoch);
                        s.y.push_back(r.spectrum.eigenvalues[i]);
                    }
                p.series.push_back(std::move(s));
            }
            if (o.optimizer == "sgd" || o.optimizer == "momentum") {
                const double mu = o.optimizer == "momentum" ? 0.9 : 0.0;
                PlotSeries edge{o.optimizer == "sgd" ? "2/lr (GD stability limit)" : "(2+2μ)/lr (stability limit)", {}, {}, true,
                                false};
                for (const auto& r : rows) {
                    edge.x.push_back(r.epoch);
                    edge.y.push_back((2 + 2 * mu) / r.lr);
                }
                p.series.push_back(std::move(edge));
            }
            write_svg(out + "/spectrum.svg", p);
        };

        // --distributed: each rank trains on its strided share of every epoch's order, the gradients
        // averaged across ranks; the replicas stay equal, so rank 0 alone probes the Hessian and writes.
        auto distributed_epoch = [&](int epoch) {
            const auto order = replicas.shard(nn::epoch_order(data.train.size(), o.seed, std::size_t(epoch)));
            Tensor<F> x;
            IndexTensor y;
            std::vector<double> sums{0, 0};  // loss · images, images
            for (std::size_t b = 0; b < order.size(); b += o.batch) {
                const std::size_t e = std::min(order.size(), b + o.batch);
                nn::gather_batch(data.train, order, b, e, x, y);
                opt->zero_grad();
                tape.clear();
                const Var<F> l = loss(replicas.forward(tape, x.shape(), [&] { return net(tape.borrow(x)); }), y);
                tape.backward(l);
                replicas.synchronize();
                opt->step();
                sums[0] += double(l.item()) * double(e - b), sums[1] += double(e - b);
            }
            tape.clear();
            replicas.sum(sums);
            return nn::EpochStats{sums[0] / sums[1], 0.0};
        };
        if (lead) {
            spectrum(0, o.lr, nn::evaluate(net, tape, data.train.slice(0, std::min<std::size_t>(10000, data.train.size())),
                                           forward, loss)
                                  .loss);
            write();
        }
        for (int epoch = 0; epoch < o.epochs; ++epoch) {
            double lr = o.lr;
            if (o.schedule == "step") lr = nn::StepLR(o.lr, std::max(1, o.epochs / 3)).lr(epoch);
            if (o.schedule == "cosine") lr = nn::CosineLR(o.lr, o.epochs).lr(epoch);
            opt->set_lr(lr);
            const nn::EpochStats st =
                replicas.distributed()
                    ? distributed_epoch(epoch)
                    : nn::train_epoch(tape, *opt, data.train, forward, loss,
                                      nn::EpochOptions().batch_size(o.batch).seed(o.seed).epoch(std::size_t(epoch)));
            if (!lead) continue;
            spectrum(epoch + 1, lr, st.loss);
            write();
        }
        if (lead) fmt::print("spectrum: {}/spectrum.csv  plot: {}/spectrum.svg\n", out, out);
    }, options);
}

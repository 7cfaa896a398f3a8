// Truncated Newton (Newton–CG) against SGD and Adam on multinomial logistic regression for MNIST:
//   f(W, b) = mean_i cross_entropy(W·x_i + b, y_i) + ½·l2·‖W‖²,   W (10, 784), b (10), from zeros.
// Newton–CG (Byrd, Chin, Neveitt & Nocedal, 2011: full gradient, subsampled Hessian): each outer
// step takes the gradient over the whole training set, solves (H_S + μI)·d = −g approximately by a
// few conjugate-gradient iterations, where every H_S·p is a Hessian-vector product over a random
// subsample S (reverse over reverse: grad(create_graph) once per step, then one backward per
// product), and takes an Armijo backtracking step along d. SGD and Adam take mini-batch steps. All
// three get the same wall-time budget; the training objective over the whole training set is
// recorded against training time (the time spent evaluating it for SGD and Adam is not counted;
// Newton–CG computes it anyway) to <out>/loss_vs_time.csv and plotted to <out>/loss_vs_time.svg
// and <out>/suboptimality.svg. The shared --optimizer and --schedule options are not used.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "common/second_order.hpp"
#include "common/svg_plot.hpp"
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;
using clock_type = std::chrono::steady_clock;

namespace {

struct Point {
    double seconds, loss;
    std::size_t step;
};

struct Curve {
    std::string method;
    std::vector<Point> points;
    double test_accuracy = 0;
    std::size_t steps = 0, hvps = 0;
};

class Model {
public:
    explicit Model(double l2)
        : W(Tensor<F>::from_shape(Shape{10, 784})), b(Tensor<F>::from_shape(Shape{10})), l2_(F(l2))
    {
        reset();
    }
    void reset()
    {
        W.value().fill(0);
        b.value().fill(0);
        W.zero_grad();
        b.zero_grad();
    }
    std::vector<Parameter<F>*> parameters() { return {&W, &b}; }
    Var<F> logits(Tape<F>& t, const Tensor<F>& x) { return linear(t.borrow(x), t.param(W), t.param(b)); }
    /// The objective on (x, y), recorded on t (W enters twice through one leaf).
    Var<F> objective(Tape<F>& t, const Tensor<F>& x, const IndexTensor& y)
    {
        const Var<F> w = t.param(W);
        const Var<F> z = linear(t.borrow(x), w, t.param(b));
        return cross_entropy(z, y) + sum(w * w) * (l2_ / 2);
    }
    /// The objective's value without recording a backward.
    double value(Tape<F>& t, const nn::Dataset& d)
    {
        NoGradGuard<F> g(t);
        t.clear();
        const double v = objective(t, d.images, d.labels).item();
        t.clear();
        return v;
    }
    double accuracy(Tape<F>& t, const nn::Dataset& d)
    {
        NoGradGuard<F> g(t);
        t.clear();
        const double a = nn::accuracy(logits(t, d.images).value(), d.labels);
        t.clear();
        return a;
    }
    Parameter<F> W, b;

private:
    F l2_;
};

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    o.example = "newton_cg";
    o.batch = 128, o.lr = 0.5;
    double adam_lr = 3e-3, l2 = 1e-4, budget = 15, damping = 0;
    std::size_t hessian_batch = 5000, cg_iters = 10;
    CLI::App app{"MNIST multinomial logistic regression: Newton-CG (Hessian-vector products) vs SGD (--lr) vs Adam "
                 "(--adam-lr), training loss against wall time"};
    auto options = [&](CLI::App& a) {
        a.add_option("--adam-lr", adam_lr, "Adam's learning rate")->check(real_in(0, 1000))->capture_default_str();
        a.add_option("--l2", l2, "L2 weight: + ½·l2·‖W‖²")->check(real_in(0, 1e3, true))->capture_default_str();
        a.add_option("--seconds", budget, "wall-time budget of each method, in seconds")
            ->check(real_in(0, 86400))
            ->capture_default_str();
        a.add_option("--hessian-batch", hessian_batch, "training images in each Newton step's Hessian subsample")
            ->check(int_in(1, 60000))
            ->capture_default_str();
        a.add_option("--cg-iters", cg_iters, "conjugate-gradient iterations (Hessian-vector products) per Newton step")
            ->check(int_in(1, 1000))
            ->capture_default_str();
        a.add_option("--damping", damping, "μ in (H + μI)·d = −g")->check(real_in(0, 1e6, true))->capture_default_str();
    };
    return run_example(app, o, argc, argv, [&] {
        if (o.resume) throw std::invalid_argument("--resume: newton_cg has no checkpoints");
        if (o.threads > 0) set_num_threads(o.threads);
        const std::string out = run_dir(o);
        const Data data = load_data(o);
        const nn::Dataset& train = data.train;
        hessian_batch = std::min(hessian_batch, train.size());
        Model model(l2);
        Tape<F> tape;
        std::vector<Curve> curves;
        fmt::print("{}: 784→10 softmax regression, l2 {}, {} training images, {} s per method\n", o.example, l2, train.size(),
                   budget);

        // --- Newton–CG ------------------------------------------------------------------------------
        {
            model.reset();
            Curve c{"Newton-CG", {}};
            const auto params = model.parameters();
            Tensor<F> xs;
            IndexTensor ys;
            double f = model.value(tape, train);
            c.points.push_back({0, f, 0});
            double elapsed = 0;
            for (std::size_t it = 1; elapsed < budget; ++it) {
                const auto t0 = clock_type::now();
                // Full gradient.
                tape.clear();
                for (auto* p : params) p->zero_grad();
                tape.backward(model.objective(tape, train.images, train.labels));
                FlatVector g;
                for (auto* p : params) g.insert(g.end(), p->grad().begin(), p->grad().end());
                const double gnorm = norm(g);
                // Hessian subsample and CG on (H_S + μI)·d = −g, stopped at ‖r‖ ≤ min(0.5, √‖g‖)·‖g‖.
                const auto order = nn::epoch_order(train.size(), o.seed, it);
                nn::gather_batch(train, order, 0, hessian_batch, xs, ys);
                tape.clear();
                ParamHvp H(tape, model.objective(tape, xs, ys));
                FlatVector d(g.size(), 0.0), r(g.size()), p, Hp;
                for (std::size_t i = 0; i < g.size(); ++i) r[i] = -g[i];
                p = r;
                double rr = dot(r, r);
                const double tol = std::min(0.5, std::sqrt(gnorm)) * gnorm;
                std::size_t cg = 0;
                for (; cg < cg_iters && std::sqrt(rr) > tol; ++cg) {
                    Hp = H(p);
                    for (std::size_t i = 0; i < p.size(); ++i) Hp[i] += damping * p[i];
                    const double pHp = dot(p, Hp);
                    if (pHp <= 0) break;  // no positive curvature along p: keep the step so far
                    const double alpha = rr / pHp;
                    for (std::size_t i = 0; i < d.size(); ++i) d[i] += alpha * p[i], r[i] -= alpha * Hp[i];
                    const double rr_new = dot(r, r);
                    for (std::size_t i = 0; i < p.size(); ++i) p[i] = r[i] + rr_new / rr * p[i];
                    rr = rr_new;
                }
                c.hvps += H.products();
                tape.clear();
                if (cg == 0 || dot(g, d) >= 0) d = r;  // no CG step: steepest descent, −g
                // Armijo backtracking from the Newton step.
                const double slope = dot(g, d);
                double t = 1, f_new = f;
                bool accepted = false;
                for (int k = 0; k < 30; ++k, t *= 0.5) {
                    add_to_values(params, d, t);
                    f_new = model.value(tape, train);
                    if (std::isfinite(f_new) && f_new <= f + 1e-4 * t * slope) {
                        accepted = true;
                        break;
                    }
                    add_to_values(params, d, -t);
                }
                elapsed += since(t0);
                if (!accepted) {
                    fmt::print("  Newton-CG: no decrease along the step after 30 halvings (float precision); stopping at "
                               "{:.1f}s\n",
                               elapsed);
                    break;
                }
                f = f_new;
                c.points.push_back({elapsed, f, it});
                c.steps = it;
                fmt::print("  Newton-CG step {:>3}  {:6.2f}s  loss {:.6f}  |g| {:.2e}  CG iters {:>2}  step size {}\n", it,
                           elapsed, f, gnorm, cg, t);
                std::fflush(stdout);
            }
            c.test_accuracy = model.accuracy(tape, data.test);
            curves.push_back(std::move(c));
        }

        // --- SGD and Adam -----------------------------------------------------------------------------
        for (const std::string method : {"SGD", "Adam"}) {
            model.reset();
            Curve c{method, {}};
            std::unique_ptr<nn::Optimizer<F>> opt;
            if (method == "SGD")
                opt = std::make_unique<nn::SGD<F>>(model.parameters(), nn::SGDOptions(o.lr));
            else
                opt = std::make_unique<nn::Adam<F>>(model.parameters(), nn::AdamOptions(adam_lr));
            c.points.push_back({0, model.value(tape, train), 0});
            Tensor<F> xb;
            IndexTensor yb;
            double elapsed = 0, last_eval = 0;
            const double eval_every = budget / 40;
            std::size_t step = 0;
            for (std::size_t epoch = 0; elapsed < budget; ++epoch) {
                const auto order = nn::epoch_order(train.size(), o.seed, epoch);
                for (std::size_t b = 0; b < order.size() && elapsed < budget; b += o.batch) {
                    const auto t0 = clock_type::now();
                    nn::gather_batch(train, order, b, std::min(order.size(), b + o.batch), xb, yb);
                    tape.clear();
                    opt->zero_grad();
                    tape.backward(model.objective(tape, xb, yb));
                    opt->step();
                    ++step;
                    elapsed += since(t0);
                    if (elapsed - last_eval >= eval_every || elapsed >= budget) {
                        last_eval = elapsed;
                        const double f = model.value(tape, train);  // not timed
                        if (!std::isfinite(f))
                            throw std::runtime_error(fmt::format("{}: the loss is not finite after {} steps; try a smaller "
                                                                 "learning rate",
                                                                 method, step));
                        c.points.push_back({elapsed, f, step});
                    }
                }
            }
            c.steps = step;
            fmt::print("  {} : {} steps of batch {} ({:.1f} epochs) in {:.1f}s, loss {:.6f}\n", method, step, o.batch,
                       double(step * o.batch) / double(train.size()), elapsed, c.points.back().loss);
            c.test_accuracy = model.accuracy(tape, data.test);
            curves.push_back(std::move(c));
        }

        // --- Output -------------------------------------------------------------------------------------
        double best = std::numeric_limits<double>::infinity();
        for (const auto& c : curves)
            for (const auto& p : c.points) best = std::min(best, p.loss);
        {
            std::ofstream f(out + "/loss_vs_time.csv");
            f << "method,seconds,step,train_loss\n";
            for (const auto& c : curves)
                for (const auto& p : c.points) f << fmt::format("{},{:.4f},{},{:.8f}\n", c.method, p.seconds, p.step, p.loss);
        }
        PlotSpec loss_plot{fmt::format("MNIST softmax regression (l2 {}): training loss against time", l2), "seconds",
                           "training loss (50k images)", true, {}};
        PlotSpec sub_plot{"Suboptimality against time", "seconds", fmt::format("loss − {:.6f} (best seen)", best), true, {}};
        for (const auto& c : curves) {
            PlotSeries s{c.method, {}, {}}, u{c.method, {}, {}};
            for (const auto& p : c.points) {
                s.x.push_back(p.seconds), s.y.push_back(p.loss);
                u.x.push_back(p.seconds), u.y.push_back(p.loss - best);
            }
            loss_plot.series.push_back(s);
            sub_plot.series.push_back(u);
        }
        write_svg(out + "/loss_vs_time.svg", loss_plot);
        write_svg(out + "/suboptimality.svg", sub_plot);

        // Loss reached by each method at a few times (the last evaluation at or before t).
        std::vector<double> at;
        for (double t : {0.1, 0.2, 0.5, 1.0}) at.push_back(t * budget);
        fmt::print("\ntraining loss at time t (best seen {:.6f}):\n{:>10}", best, "method");
        for (double t : at) fmt::print(" {:>10}", fmt::format("{:.3g}s", t));
        fmt::print(" {:>8} {:>9}\n", "steps", "test acc");
        for (const auto& c : curves) {
            fmt::print("{:>10}", c.method);
            for (double t : at) {
                double v = c.points.front().loss;
                for (const auto& p : c.points)
                    if (p.seconds <= t + 1e-9) v = p.loss;
                fmt::print(" {:>10.5f}", v);
            }
            fmt::print(" {:>8} {:>8.2f}%\n", c.steps, 100 * c.test_accuracy);
        }
        fmt::print("Newton-CG used {} Hessian-vector products\n", curves[0].hvps);
        fmt::print("curves: {}/loss_vs_time.csv  plots: {}/loss_vs_time.svg {}/suboptimality.svg\n", out, out, out);
    }, options);
}

#include "xgrad/gradcheck.hpp"

#include <cmath>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <xtensor/xstrides.hpp>

#include "xgrad/higher_order.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"

namespace xgrad {

namespace detail {
std::vector<std::size_t> unravel(std::size_t flat, const Shape& shape)
{
    std::vector<std::size_t> idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = shape[d] ? flat % shape[d] : 0;
        flat = shape[d] ? flat / shape[d] : 0;
    }
    return idx;
}
}  // namespace detail

namespace {
using detail::unravel;
}  // namespace

std::string GradcheckReport::summary() const
{
    std::ostringstream os;
    os.precision(6);
    if (vacuous)
        os << "gradcheck REFUSED: analytic and numeric gradients are all zero, so the check tests nothing "
              "(output of '"
           << output_op << "')\n";
    else
        os << "gradcheck " << (ok ? "passed" : "FAILED") << " (output of '" << output_op << "')\n";
    for (const auto& in : inputs) {
        os << "  " << in.name << " " << shape_str(in.shape) << ": max abs error " << in.max_abs_error
           << ", max rel error " << in.max_rel_error;
        if (!in.worst_index.empty() || in.failures)
            os << ", worst at " << shape_str(in.worst_index) << " analytic " << in.worst_analytic << " numeric "
               << in.worst_numeric;
        os << (in.failures ? ", " + std::to_string(in.failures) + " elements fail" : std::string()) << "\n";
    }
    for (const auto& m : mismatches)
        os << "  mismatch: " << m.input_name << shape_str(m.index) << ": analytic " << m.analytic << " numeric "
           << m.numeric << " (error " << m.abs_error << ")\n";
    return os.str();
}

namespace detail {

Tensor<double> random_cotangent(const Shape& shape, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> unif(0.5, 1.5);
    std::bernoulli_distribution sign(0.5);
    Tensor<double> u = Tensor<double>::from_shape(shape);
    for (auto& v : u) v = sign(rng) ? unif(rng) : -unif(rng);  // |u| ≥ 0.5: no component is left unchecked
    return u;
}

GradcheckReport finite_difference_report(const std::vector<Tensor<double>*>& values,
                                         const std::vector<Tensor<double>>& analytic,
                                         const std::vector<std::string>& names, const std::function<double()>& phi,
                                         const GradcheckOptions& options)
{
    GradcheckReport report;
    bool any_nonzero = false;
    report.ok = true;
    for (std::size_t k = 0; k < values.size(); ++k) {
        GradcheckInputReport ir;
        ir.name = k < names.size() ? names[k] : "input " + std::to_string(k);
        ir.shape = values[k]->shape();
        double worst = -1;
        for (std::size_t e = 0; e < values[k]->size(); ++e) {
            double& xe = values[k]->data()[e];
            const double orig = xe;
            xe = orig + options.eps();
            const double fp = phi();
            xe = orig - options.eps();
            const double fm = phi();
            xe = orig;
            const double num = (fp - fm) / (2 * options.eps());
            const double ana = analytic[k].data()[e];
            const double err = std::abs(ana - num);
            const double rel = err / std::max(std::abs(num), options.atol());
            const bool bad = !(err <= options.atol() + options.rtol() * std::abs(num));  // NaN fails
            if (std::abs(ana) > options.atol() || std::abs(num) > options.atol()) any_nonzero = true;
            if (bad) {
                ++ir.failures;
                report.ok = false;
                if (report.mismatches.size() < options.max_mismatches())
                    report.mismatches.push_back({k, ir.name, unravel(e, ir.shape), ana, num, err});
            }
            if (err > worst || std::isnan(err)) {
                worst = std::isnan(err) ? INFINITY : err;
                ir.worst_index = unravel(e, ir.shape);
                ir.worst_analytic = ana;
                ir.worst_numeric = num;
            }
            ir.max_abs_error = std::max(ir.max_abs_error, std::isnan(err) ? INFINITY : err);
            ir.max_rel_error = std::max(ir.max_rel_error, std::isnan(rel) ? INFINITY : rel);
        }
        report.inputs.push_back(std::move(ir));
    }
    if (!any_nonzero) {
        report.vacuous = true;
        report.ok = false;
    }
    return report;
}

}  // namespace detail

GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options)
{
    Tape<double> tape;
    auto build = [&](const std::vector<Tensor<double>>& xs, bool grad) {
        tape.clear();
        std::vector<Var<double>> vars;
        vars.reserve(xs.size());
        for (const auto& x : xs) vars.push_back(grad ? tape.variable(x) : tape.constant(x));
        return std::make_pair(vars, f(vars));
    };

    // Analytic: uᵀJ from one backward sweep with seed u.
    auto built = build(inputs, true);
    const std::string output_op = built.second.op();
    const Tensor<double> u = detail::random_cotangent(built.second.shape(), options.seed());
    std::vector<Tensor<double>> analytic;
    if (built.second.requires_grad()) {
        tape.backward(built.second, u);
        for (auto& v : built.first) analytic.push_back(v.grad());
    } else {
        for (const auto& x : inputs) analytic.push_back(xt::zeros<double>(x.shape()));
    }

    // Numeric: central differences of φ(x) = Σ u ⊙ f(x).
    std::vector<Tensor<double>> xs = inputs;
    std::vector<Tensor<double>*> ptrs;
    for (auto& x : xs) ptrs.push_back(&x);
    auto phi = [&]() {
        NoGradGuard<double> ng(tape);
        auto r = build(xs, false);
        const Tensor<double>& y = r.second.value();
        if (y.shape() != u.shape())
            throw ShapeError(fmt::format("gradcheck: f's output changed shape from {} to {}", shape_str(u.shape()),
                                         shape_str(y.shape())));
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i) s += u.data()[i] * y.data()[i];
        return s;
    };
    GradcheckReport report = detail::finite_difference_report(ptrs, analytic, options.input_names(), phi, options);
    report.output_op = output_op;
    tape.clear();
    return report;
}

GradcheckReport gradgradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                              const GradcheckOptions& options)
{
    Tape<double> tape;
    auto variables = [&](const std::vector<Tensor<double>>& xs) {
        tape.clear();
        std::vector<Var<double>> vars;
        vars.reserve(xs.size());
        for (const auto& x : xs) vars.push_back(tape.variable(x));
        return vars;
    };
    std::vector<Var<double>> vars = variables(inputs);
    Var<double> y = f(vars);
    const std::string output_op = std::string("grad of ") + y.op();
    Tensor<double> u = detail::random_cotangent(y.shape(), options.seed());
    std::vector<Tensor<double>> w;
    for (std::size_t k = 0; k < inputs.size(); ++k)
        w.push_back(detail::random_cotangent(inputs[k].shape(), options.seed() + 1 + k));

    // Analytic: one recorded backward (h as a Var of x and u), one backward through it.
    std::vector<Tensor<double>> analytic;
    vars = variables(inputs);
    const Var<double> uv = tape.variable(u);
    y = f(vars);
    Var<double> h;
    if (y.requires_grad()) {
        const std::vector<Var<double>> gs = grad(y, vars, uv, GradOptions{true, true});
        for (std::size_t k = 0; k < gs.size(); ++k) {
            const Var<double> term = sum(gs[k] * tape.constant(w[k]));
            h = k == 0 ? term : h + term;
        }
    }
    if (h.valid() && h.requires_grad()) {
        tape.backward(h);
        for (const auto& v : vars) analytic.push_back(v.grad());
        analytic.push_back(uv.grad());
    } else {
        for (const auto& x : inputs) analytic.push_back(xt::zeros<double>(x.shape()));
        analytic.push_back(xt::zeros<double>(u.shape()));
    }

    // Numeric: central differences of h(x, u), each evaluation one plain backward with seed u.
    std::vector<Tensor<double>> xs = inputs;
    xs.push_back(u);
    std::vector<Tensor<double>*> ptrs;
    for (auto& x : xs) ptrs.push_back(&x);
    auto phi = [&]() {
        std::vector<Tensor<double>> in(xs.begin(), xs.end() - 1);
        std::vector<Var<double>> v = variables(in);
        const Var<double> out = f(v);
        if (out.shape() != xs.back().shape())
            throw ShapeError(fmt::format("gradgradcheck: f's output changed shape from {} to {}",
                                         shape_str(xs.back().shape()), shape_str(out.shape())));
        if (!out.requires_grad()) return 0.0;
        tape.backward(out, xs.back());
        double s = 0;
        for (std::size_t k = 0; k < v.size(); ++k) {
            const Tensor<double>& g = v[k].grad();
            for (std::size_t i = 0; i < g.size(); ++i) s += w[k].data()[i] * g.data()[i];
        }
        return s;
    };
    std::vector<std::string> names = options.input_names();
    names.resize(inputs.size());
    for (std::size_t k = 0; k < inputs.size(); ++k)
        if (names[k].empty()) names[k] = "input " + std::to_string(k);
    names.push_back("grad_output");
    GradcheckReport report = detail::finite_difference_report(ptrs, analytic, names, phi, options);
    report.output_op = output_op;
    tape.clear();
    return report;
}

}  // namespace xgrad

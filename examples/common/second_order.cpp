#include "second_order.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

#include "xgrad/higher_order.hpp"

namespace xgrad::examples {

std::vector<Var<float>> parameter_leaves(Tape<float>& tape)
{
    std::vector<Var<float>> out;
    for (std::uint32_t i = 0; i < tape.size(); ++i) {
        Var<float> v = tape.at(i);
        if (v.parameter()) out.push_back(v);
    }
    return out;
}

ParamHvp::ParamHvp(Tape<float>& tape, const Var<float>& loss) : tape_(tape)
{
    const std::vector<Var<float>> leaves = parameter_leaves(tape);
    if (leaves.empty()) throw std::logic_error("ParamHvp: the loss uses no parameters");
    for (const auto& leaf : leaves) {
        Parameter<float>* p = leaf.parameter();
        if (std::find(params_.begin(), params_.end(), p) != params_.end())
            throw std::logic_error("ParamHvp: parameter '" + p->name() + "' is on the tape twice (one forward pass per tape)");
        params_.push_back(p);
        n_ += p->size();
    }
    // allow_unused: a parameter the loss does not reach has a zero gradient and a zero Hessian block.
    grads_ = grad(loss, leaves, GradOptions{/*create_graph=*/true, /*allow_unused=*/true});
    grad_flat_.reserve(n_);
    for (const auto& g : grads_) grad_flat_.insert(grad_flat_.end(), g.value().begin(), g.value().end());
}

FlatVector ParamHvp::operator()(const FlatVector& v)
{
    if (v.size() != n_)
        throw std::invalid_argument("ParamHvp: v has " + std::to_string(v.size()) + " entries, the parameters " +
                                    std::to_string(n_));
    Var<float> s;
    bool any = false;
    std::size_t off = 0;
    for (const auto& g : grads_) {
        const std::size_t nk = g.size();
        // A gradient that is constant in θ (no recorded dependence) contributes nothing to H·v.
        if (g.requires_grad()) {
            Tensor<float> vk = Tensor<float>::from_shape(g.shape());
            std::transform(v.begin() + std::ptrdiff_t(off), v.begin() + std::ptrdiff_t(off + nk), vk.data(),
                           [](double x) { return float(x); });
            const Var<float> term = sum(g * tape_.constant(vk));
            s = any ? s + term : term;
            any = true;
        }
        off += nk;
    }
    for (auto* p : params_) p->zero_grad();
    FlatVector out(n_, 0.0);
    ++products_;
    if (!any) return out;
    tape_.backward(s);
    off = 0;
    for (auto* p : params_) {
        const Tensor<float>& gp = p->grad();
        std::copy(gp.begin(), gp.end(), out.begin() + std::ptrdiff_t(off));
        off += p->size();
    }
    return out;
}

FlatVector flatten_values(const std::vector<Parameter<float>*>& params)
{
    FlatVector out;
    for (auto* p : params) out.insert(out.end(), p->value().begin(), p->value().end());
    return out;
}

void add_to_values(const std::vector<Parameter<float>*>& params, const FlatVector& delta, double scale)
{
    std::size_t off = 0;
    for (auto* p : params) {
        float* d = p->value().data();
        for (std::size_t i = 0; i < p->size(); ++i) d[i] += float(scale * delta[off + i]);
        off += p->size();
    }
    if (off != delta.size()) throw std::invalid_argument("add_to_values: the step does not match the parameters");
}

double dot(const FlatVector& a, const FlatVector& b)
{
    return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

double norm(const FlatVector& a) { return std::sqrt(dot(a, a)); }

void symmetric_eigen(std::vector<double> a, std::size_t m, std::vector<double>& values, std::vector<double>& vectors)
{
    vectors.assign(m * m, 0.0);
    for (std::size_t i = 0; i < m; ++i) vectors[i * m + i] = 1;
    for (int sweep = 0; sweep < 100; ++sweep) {
        double off = 0, total = 0;
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < m; ++j) (i == j ? total : off) += a[i * m + j] * a[i * m + j];
        if (off <= 1e-30 * (total + off) || off == 0) break;
        for (std::size_t p = 0; p + 1 < m; ++p)
            for (std::size_t q = p + 1; q < m; ++q) {
                const double apq = a[p * m + q];
                if (apq == 0) continue;
                const double theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1 : -1) / (std::abs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (std::size_t k = 0; k < m; ++k) {  // A ← A·J
                    const double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for (std::size_t k = 0; k < m; ++k) {  // A ← Jᵀ·A
                    const double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for (std::size_t k = 0; k < m; ++k) {  // V ← V·J
                    const double vkp = vectors[k * m + p], vkq = vectors[k * m + q];
                    vectors[k * m + p] = c * vkp - s * vkq;
                    vectors[k * m + q] = s * vkp + c * vkq;
                }
            }
    }
    values.resize(m);
    for (std::size_t i = 0; i < m; ++i) values[i] = a[i * m + i];
}

LanczosResult lanczos_top(const std::function<FlatVector(const FlatVector&)>& op, std::size_t n, std::size_t k,
                          std::size_t steps, std::uint64_t seed)
{
    if (n == 0 || k == 0 || steps < k) throw std::invalid_argument("lanczos_top: need n ≥ 1 and steps ≥ k ≥ 1");
    steps = std::min(steps, n);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<FlatVector> q;
    q.emplace_back(n);
    for (auto& x : q[0]) x = normal(rng);
    {
        const double nr = norm(q[0]);
        for (auto& x : q[0]) x /= nr;
    }
    std::vector<double> alpha, beta;
    for (std::size_t j = 0; j < steps; ++j) {
        FlatVector w = op(q[j]);
        const double a = dot(w, q[j]);
        alpha.push_back(a);
        for (std::size_t i = 0; i < n; ++i) w[i] -= a * q[j][i] + (j ? beta[j - 1] * q[j - 1][i] : 0.0);
        // Full reorthogonalization, twice (Gram–Schmidt), keeps the Ritz values free of ghosts.
        for (int pass = 0; pass < 2; ++pass)
            for (const auto& qi : q) {
                const double c = dot(w, qi);
                for (std::size_t i = 0; i < n; ++i) w[i] -= c * qi[i];
            }
        const double b = norm(w);
        beta.push_back(b);
        if (j + 1 == steps || b <= 1e-10 * std::abs(a) || b == 0) break;  // done, or an invariant subspace
        for (auto& x : w) x /= b;
        q.push_back(std::move(w));
    }
    const std::size_t m = alpha.size();
    std::vector<double> t(m * m, 0.0), values, vectors;
    for (std::size_t i = 0; i < m; ++i) {
        t[i * m + i] = alpha[i];
        if (i + 1 < m) t[i * m + i + 1] = t[(i + 1) * m + i] = beta[i];
    }
    symmetric_eigen(t, m, values, vectors);
    std::vector<std::size_t> order(m);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return values[x] > values[y]; });
    LanczosResult r;
    r.steps = m;
    for (std::size_t i = 0; i < std::min(k, m); ++i) {
        r.eigenvalues.push_back(values[order[i]]);
        r.residuals.push_back(std::abs(beta[m - 1] * vectors[(m - 1) * m + order[i]]));
    }
    return r;
}

}  // namespace xgrad::examples

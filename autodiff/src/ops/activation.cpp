// Activations, softmax and log-softmax.
#include "xgrad/ops/activation.hpp"

#include <cmath>

#include "../op_util.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "kernels/activation.hpp"
#include "kernels/parallel.hpp"
#include "kernels/softmax.hpp"

namespace xgrad {

namespace {

/// An elementwise activation y = f(x) whose derivative is a function d(y) of its output (sigmoid:
/// y(1 − y), tanh: 1 − y²): both loops vectorized and split over the threads, the backward written
/// into the gradient buffer; the recorded VJP is G ⊙ d(Y) as ops (`recorded`).
template <class T, class F, class D, class Recorded>
Var<T> output_derivative_op(const char* name, const Var<T>& x, F f, D d, Recorded recorded)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    const T* in = xv.data();
    T* out = op.value().data();
    kernels::parallel_ranges(
        xv.size(), [=](std::size_t b, std::size_t e) { kernels::activation_batches(in, out, b, e, f); }, kernels::exp_cost);
    return op.finish(
        [d](BackwardContext<T>& c) {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx) return;
            const T* g = c.grad().data();
            const T* y = c.value().data();
            T* o = dx.data();
            const bool acc = dx.accumulate;
            kernels::parallel_ranges(c.grad().size(),
                                     [=](std::size_t b, std::size_t e) { kernels::scale_by_batches(g, y, o, b, e, acc, d); });
        },
        [recorded](GraphBackwardContext<T>& c) { c.accumulate(0, recorded(c.grad(), c.value())); });
}

}  // namespace

/// Y = 1/(1 + e^−X), any shape; dX = G ⊙ Y ⊙ (1 − Y).
template <class T>
Var<T> sigmoid(const Var<T>& x)
{
    return output_derivative_op("sigmoid", x, kernels::Sigmoid{}, kernels::SigmoidSlope{},
                                [](const Var<T>& g, const Var<T>& y) { return g * (y * (T(1) - y)); });
}

/// Y = tanh(X), any shape; dX = G ⊙ (1 − Y²).
template <class T>
Var<T> tanh(const Var<T>& x)
{
    return output_derivative_op("tanh", x, kernels::Tanh{}, kernels::TanhSlope{},
                                [](const Var<T>& g, const Var<T>& y) { return g * (T(1) - y * y); });
}

namespace {

/// Φ(X) = ½(1 + erf(X/√2)), the standard normal CDF, as an op: the exact GELU's recorded VJP
/// differentiates it.                                dX = G ⊙ φ(X),  φ(x) = e^(−x²/2)/√(2π)
template <class T>
Var<T> normal_cdf(const Var<T>& x)
{
    auto op = begin_op("normal_cdf", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    xt::noalias(op.value()) = T(0.5) * (T(1) + xt::erf(xv * T(M_SQRT1_2)));
    return op.finish_both([](auto& c) {
        const auto& v = c.input(0);
        c.accumulate(0, c.grad() * exp(v * v * T(-0.5)) * T(0.5 * M_2_SQRTPI * M_SQRT1_2));
    });
}

/// out = G ⊙ [X > 0] (acc false: out may hold garbage) or out += G ⊙ [X > 0], n elements.
template <class T>
void relu_mask(const T* g, const T* x, T* out, std::size_t n, bool acc)
{
    kernels::parallel_ranges(n, [=](std::size_t b, std::size_t e) { kernels::relu_mask_range(g, x, out, b, e, acc); });
}

}  // namespace

namespace detail {

/// dX of relu as an op (relu's recorded VJP): Y = G ⊙ [X > 0], G and X of one shape.
/// dG = relu_backward(GY, X) (the same mask); dX = 0 (the mask is piecewise constant in X).
template <class T>
Var<T> relu_backward(const Var<T>& g, const Var<T>& x)
{
    auto op = begin_op("relu_backward", {g, x});
    if (g.shape() != x.shape())
        throw ShapeError("relu_backward: gradient " + shape_str(g.shape()) + " vs input " + shape_str(x.shape()));
    op.value().resize(x.shape());
    relu_mask(g.value().data(), x.value().data(), op.value().data(), op.value().size(), false);
    return op.finish_both([](auto& c) {
        if (!c.needs(0)) return;  // X gets nothing: its gradient is 0 wherever it exists
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, relu_backward(c.grad(), c.input(1)));
        } else {
            const InputGrad<T> dg = c.input_grad(0);
            relu_mask(c.grad().data(), c.input(1).data(), dg.data(), c.grad().size(), dg.accumulate);
        }
    });
}

template Var<float> relu_backward(const Var<float>&, const Var<float>&);
template Var<double> relu_backward(const Var<double>&, const Var<double>&);

}  // namespace detail

template <class T>
Var<T> softplus(const Var<T>& x)
{
    auto op = begin_op("softplus", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    xt::noalias(op.value()) = xt::maximum(xv, T(0)) + xt::log1p(xt::exp(-xt::abs(xv)));
    return op.finish_both([](auto& c) {
        const auto& v = c.input(0);
        c.accumulate(0, c.grad() * (T(1) / (T(1) + exp(-v))));  // dL/dX = G ⊙ σ(X)
    });
}

template <class T>
Var<T> silu(const Var<T>& x)
{
    auto op = begin_op("silu", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    xt::noalias(op.value()) = xv / (T(1) + xt::exp(-xv));
    return op.finish_both([](auto& c) {
        const auto& v = c.input(0);
        const auto s = T(1) / (T(1) + exp(-v));
        c.accumulate(0, c.grad() * s * (T(1) + v * (T(1) - s)));  // dL/dX = G ⊙ σ(1 + X(1 − σ))
    });
}

template <class T>
Var<T> gelu(const Var<T>& x, const std::string& approximate)
{
    if (approximate != "none" && approximate != "tanh")
        throw std::invalid_argument("gelu: approximate must be \"none\" or \"tanh\", got \"" + approximate + "\"");
    const Tensor<T>& xv = x.value();
    static constexpr T k = T(0.7978845608028654);  // √(2/π)
    static constexpr T a = T(0.044715);
    if (approximate == "tanh") {
        auto op = begin_op("gelu_tanh", {x});
        op.value().resize(xv.shape());
        xt::noalias(op.value()) = T(0.5) * xv * (T(1) + xt::tanh(k * (xv + a * xv * xv * xv)));
        return op.finish_both([](auto& c) {
            const auto& v = c.input(0);
            const auto t = tanh(k * (v + a * v * v * v));
            // dL/dX = G ⊙ (½(1 + t) + ½X(1 − t²)·k(1 + 3aX²))
            c.accumulate(0, c.grad() * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3) * a * v * v)));
        });
    }
    auto op = begin_op("gelu", {x});
    op.value().resize(xv.shape());
    op.saved().resize(xv.shape());  // Φ(X): erf is the costly part, the backward reuses it
    xt::noalias(op.saved()) = T(0.5) * (T(1) + xt::erf(xv * T(M_SQRT1_2)));
    xt::noalias(op.value()) = xv * op.saved();
    static constexpr T inv_sqrt_2pi = T(0.3989422804014327);  // 1/√(2π)
    return op.finish(
        [](BackwardContext<T>& c) {  // dL/dX = G ⊙ (Φ(X) + X φ(X))
            const auto& v = c.input(0);
            c.accumulate(0, c.grad() * (c.saved() + v * xt::exp(v * v * T(-0.5)) * inv_sqrt_2pi));
        },
        [](GraphBackwardContext<T>& c) {
            const Var<T> v = c.input(0);
            c.accumulate(0, c.grad() * (normal_cdf(v) + v * exp(v * v * T(-0.5)) * inv_sqrt_2pi));
        });
}

template <class T>
Var<T> leaky_relu(const Var<T>& x, typename std::common_type<T>::type negative_slope)
{
    auto op = begin_op("leaky_relu", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    op.saved().resize(xv.shape());
    xt::noalias(op.saved()) = xt::where(xv > T(0), T(1), negative_slope);  // dL/dX = G ⊙ (X > 0 ? 1 : slope)
    xt::noalias(op.value()) = xv * op.saved();
    auto [bw, bw_graph] = detail::masked_backward<T>(false);
    return op.finish(bw, bw_graph);
}

template <class T>
Var<T> elu(const Var<T>& x, typename std::common_type<T>::type alpha)
{
    auto op = begin_op("elu", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    op.saved().resize(xv.shape());
    xt::noalias(op.saved()) = xt::where(xv > T(0), T(1), T(0));
    xt::noalias(op.value()) = xt::where(xv > T(0), xv, alpha * xt::expm1(xv));
    return op.finish(
        [alpha](BackwardContext<T>& c) {  // dL/dX = G ⊙ (X > 0 ? 1 : Y + α)
            c.accumulate(0, c.grad() * (c.saved() + (T(1) - c.saved()) * (c.value() + alpha)));
        },
        [alpha](GraphBackwardContext<T>& c) {
            const Var<T> m = c.constant(c.saved());
            c.accumulate(0, c.grad() * (m + (T(1) - m) * (c.value() + alpha)));
        });
}

template <class T>
Var<T> relu(const Var<T>& x)
{
    auto op = begin_op("relu", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    const T* in = xv.data();
    T* out = op.value().data();
    kernels::parallel_ranges(xv.size(), [=](std::size_t b, std::size_t e) { kernels::relu_range(in, out, b, e); });
    return op.finish(
        [](BackwardContext<T>& c) {  // dL/dX = G ⊙ [X > 0]
            const InputGrad<T> dx = c.input_grad(0);
            if (dx) relu_mask(c.grad().data(), c.input(0).data(), dx.data(), c.grad().size(), dx.accumulate);
        },
        [](GraphBackwardContext<T>& c) { c.accumulate(0, detail::relu_backward(c.grad(), c.input(0))); });
}

template <class T>
Var<T> add_relu(const Var<T>& a, const Var<T>& b)
{
    if (a.shape() != b.shape()) return relu(a + b);  // broadcasting: the two ops
    auto op = begin_op("add_relu", {a, b});
    op.value().resize(a.shape());
    const T* pa = a.value().data();
    const T* pb = b.value().data();
    T* out = op.value().data();
    kernels::parallel_ranges(op.value().size(), [=](std::size_t lo, std::size_t hi) { kernels::add_relu_range(pa, pb, out, lo, hi); });
    return op.finish(
        [](BackwardContext<T>& c) {  // dL/dA = dL/dB = G ⊙ [Y > 0]; one Var given twice gets both in turn
            const T* g = c.grad().data();
            const T* y = c.value().data();
            const std::size_t n = c.grad().size();
            if (const InputGrad<T> da = c.input_grad(0)) relu_mask(g, y, da.data(), n, da.accumulate);
            if (const InputGrad<T> db = c.input_grad(1)) relu_mask(g, y, db.data(), n, db.accumulate);
        },
        [](GraphBackwardContext<T>& c) {
            const Var<T> g = detail::relu_backward(c.grad(), c.value());
            c.accumulate(0, g);
            c.accumulate(1, g);
        });
}

namespace {

/// softmax and log_softmax: a kernel along one axis forward, its adjoint backward (BackwardContext),
/// and the VJP as ops, recorded(c, axis) (GraphBackwardContext).
template <class T, class Forward, class Backward, class Recorded>
Var<T> along_axis(const char* name, const Var<T>& x, int axis, Forward forward, Backward backward, Recorded recorded)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    const std::size_t ax = detail::normalize_axis(name, axis, xv.shape());
    const detail::AxisSplit s = detail::split_at(xv.shape(), ax);
    op.value().resize(xv.shape());
    forward(xv.data(), op.value().data(), s);
    const int a = static_cast<int>(ax);
    return op.finish(
        [s, backward](BackwardContext<T>& c) {
            const InputGrad<T> gx = c.input_grad(0);
            backward(c.value().data(), c.grad().data(), gx, s);
        },
        [a, recorded](GraphBackwardContext<T>& c) { c.accumulate(0, recorded(c, a)); });
}

}  // namespace

template <class T>
Var<T> softmax(const Var<T>& x, int axis)
{
    return along_axis(
        "softmax", x, axis,
        [](const T* xp, T* y, const detail::AxisSplit& s) { kernels::softmax(xp, y, s.outer, s.n, s.inner); },
        [](const T* y, const T* g, const InputGrad<T>& gx, const detail::AxisSplit& s) {
            // dL/dX = Y ⊙ (G − Σ_axis G ⊙ Y)
            kernels::softmax_backward(y, g, gx.data(), s.outer, s.n, s.inner, gx.accumulate);
        },
        [](GraphBackwardContext<T>& c, int a) {
            const Var<T> y = c.value();
            return y * (c.grad() - sum(c.grad() * y, {a}, true));
        });
}

template <class T>
Var<T> log_softmax(const Var<T>& x, int axis)
{
    return along_axis(
        "log_softmax", x, axis,
        [](const T* xp, T* y, const detail::AxisSplit& s) { kernels::log_softmax(xp, y, s.outer, s.n, s.inner); },
        [](const T* y, const T* g, const InputGrad<T>& gx, const detail::AxisSplit& s) {
            // dL/dX = G − softmax(X) ⊙ Σ_axis G, softmax(X) = exp(Y)
            kernels::log_softmax_backward(y, g, gx.data(), s.outer, s.n, s.inner, gx.accumulate);
        },
        [](GraphBackwardContext<T>& c, int a) { return c.grad() - exp(c.value()) * sum(c.grad(), {a}, true); });
}

#define XGRAD_INSTANTIATE(T)                          \
    template Var<T> sigmoid(const Var<T>&);           \
    template Var<T> tanh(const Var<T>&);              \
    template Var<T> relu(const Var<T>&);              \
    template Var<T> add_relu(const Var<T>&, const Var<T>&); \
    template Var<T> softplus(const Var<T>&);          \
    template Var<T> silu(const Var<T>&);              \
    template Var<T> gelu(const Var<T>&, const std::string&); \
    template Var<T> leaky_relu(const Var<T>&, T);     \
    template Var<T> elu(const Var<T>&, T);            \
    template Var<T> softmax(const Var<T>&, int);      \
    template Var<T> log_softmax(const Var<T>&, int);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

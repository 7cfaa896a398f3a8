// Elementwise ops: forward and backward of each in one function.
#include "xgrad/ops/elementwise.hpp"

#include "../op_util.hpp"

namespace xgrad {

namespace {

/// One VJP closure serves both sweeps (finish_both); two are the tensor and the recorded one.
template <class T, class... Backward>
Var<T> finish(OpBuilder<T>& op, Backward... bw)
{
    if constexpr (sizeof...(Backward) == 1)
        return op.finish_both(bw...);
    else
        return op.finish(bw...);
}

/// Records a binary broadcasting op whose forward is `f(a, b)` (an xtensor expression).
template <class T, class Forward, class... Backward>
Var<T> binary(const char* name, const Var<T>& a, const Var<T>& b, Forward f, Backward... bw)
{
    auto op = begin_op(name, {a, b});
    const Tensor<T>& av = a.value();
    const Tensor<T>& bv = b.value();
    const Shape shape = detail::broadcast_shape(name, av.shape(), bv.shape());
    Tensor<T>& out = op.value();
    out.resize(shape);
    xt::noalias(out) = f(av, bv);
    return finish(op, bw...);
}

/// maximum and minimum: C = pick(A, B) with the mask of A's share kept for backward.
template <class T, class Less>
Var<T> extremum(const char* name, const Var<T>& a, const Var<T>& b, Less a_wins)
{
    auto op = begin_op(name, {a, b});
    const Tensor<T>& av = a.value();
    const Tensor<T>& bv = b.value();
    const Shape shape = detail::broadcast_shape(name, av.shape(), bv.shape());
    op.value().resize(shape);
    op.saved().resize(shape);
    xt::noalias(op.saved()) = xt::where(a_wins(av, bv), T(1), xt::where(xt::equal(av, bv), T(0.5), T(0)));
    xt::noalias(op.value()) = xt::where(a_wins(av, bv) || xt::equal(av, bv), av, bv);
    auto [bw, bw_graph] = detail::masked_backward<T>(true);
    return op.finish(bw, bw_graph);
}


/// Records a unary op whose forward is `f(x)`.
template <class T, class Forward, class... Backward>
Var<T> unary(const char* name, const Var<T>& x, Forward f, Backward... bw)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    Tensor<T>& out = op.value();
    out.resize(xv.shape());
    xt::noalias(out) = f(xv);
    return finish(op, bw...);
}

}  // namespace

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b)
{
    return binary(
        "add", a, b, [](const auto& x, const auto& y) { return x + y; },
        [](auto& c) {
            c.accumulate(0, c.grad());  // dL/dA = G
            c.accumulate(1, c.grad());  // dL/dB = G
        });
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b)
{
    return binary(
        "sub", a, b, [](const auto& x, const auto& y) { return x - y; },
        [](auto& c) {
            c.accumulate(0, c.grad());   // dL/dA = G
            c.accumulate(1, -c.grad());  // dL/dB = −G
        });
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b)
{
    return binary(
        "mul", a, b, [](const auto& x, const auto& y) { return x * y; },
        [](auto& c) {
            if (c.needs(0)) c.accumulate(0, c.grad() * c.input(1));  // dL/dA = G ⊙ B
            if (c.needs(1)) c.accumulate(1, c.grad() * c.input(0));  // dL/dB = G ⊙ A
        });
}

template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b)
{
    return binary(
        "div", a, b, [](const auto& x, const auto& y) { return x / y; },
        [](auto& c) {
            const auto& bv = c.input(1);
            if (c.needs(0)) c.accumulate(0, c.grad() / bv);  // dL/dA = G / B
            if (c.needs(1)) c.accumulate(1, -c.grad() * c.value() / bv);  // dL/dB = −G ⊙ A/B² = −G ⊙ C / B
        });
}

template <class T>
Var<T> neg(const Var<T>& x)
{
    return unary(
        "neg", x, [](const auto& v) { return -v; },
        [](auto& c) { c.accumulate(0, -c.grad()); });  // dL/dX = −G
}

template <class T>
Var<T> add_scalar(const Var<T>& x, T s)
{
    return unary(
        "add_scalar", x, [s](const auto& v) { return v + s; },
        [](auto& c) { c.accumulate(0, c.grad()); });  // dL/dX = G
}

template <class T>
Var<T> mul_scalar(const Var<T>& x, T s)
{
    return unary(
        "mul_scalar", x, [s](const auto& v) { return v * s; },
        [s](auto& c) { c.accumulate(0, c.grad() * s); });  // dL/dX = s·G
}

template <class T>
Var<T> div_scalar(const Var<T>& x, T s)
{
    return unary(
        "div_scalar", x, [s](const auto& v) { return v / s; },
        [s](auto& c) { c.accumulate(0, c.grad() / s); });  // dL/dX = G / s
}

template <class T>
Var<T> rsub_scalar(T s, const Var<T>& x)
{
    return unary(
        "rsub_scalar", x, [s](const auto& v) { return s - v; },
        [](auto& c) { c.accumulate(0, -c.grad()); });  // dL/dX = −G
}

template <class T>
Var<T> rdiv_scalar(T s, const Var<T>& x)
{
    return unary(
        "rdiv_scalar", x, [s](const auto& v) { return s / v; },
        [](auto& c) {
            c.accumulate(0, -c.grad() * c.value() / c.input(0));  // dL/dX = −s·G/X² = −G ⊙ Y / X
        });
}

template <class T>
Var<T> pow(const Var<T>& x, typename std::common_type<T>::type p)
{
    return unary(
        "pow", x, [p](const auto& v) { return xt::pow(v, p); },
        [p](auto& c) {
            c.accumulate(0, c.grad() * p * pow(c.input(0), p - T(1)));  // dL/dX = p·X^(p−1) ⊙ G (xt::pow or xgrad::pow)
        });
}

template <class T>
Var<T> square(const Var<T>& x)
{
    return unary(
        "square", x, [](const auto& v) { return v * v; },
        [](auto& c) { c.accumulate(0, T(2) * c.input(0) * c.grad()); });  // dL/dX = 2X ⊙ G
}

template <class T>
Var<T> exp(const Var<T>& x)
{
    return unary(
        "exp", x, [](const auto& v) { return xt::exp(v); },
        [](auto& c) { c.accumulate(0, c.grad() * c.value()); });  // dL/dX = G ⊙ Y
}

template <class T>
Var<T> log(const Var<T>& x)
{
    return unary(
        "log", x, [](const auto& v) { return xt::log(v); },
        [](auto& c) { c.accumulate(0, c.grad() / c.input(0)); });  // dL/dX = G / X
}

template <class T>
Var<T> sqrt(const Var<T>& x)
{
    return unary(
        "sqrt", x, [](const auto& v) { return xt::sqrt(v); },
        [](auto& c) { c.accumulate(0, c.grad() / (T(2) * c.value())); });  // dL/dX = G / (2Y)
}

template <class T>
Var<T> abs(const Var<T>& x)
{
    return unary(
        "abs", x, [](const auto& v) { return xt::abs(v); },
        [](BackwardContext<T>& c) { c.accumulate(0, xt::sign(c.input(0)) * c.grad()); },  // dL/dX = sign(X) ⊙ G
        [](GraphBackwardContext<T>& c) { c.accumulate(0, c.constant(xt::sign(c.input(0).value())) * c.grad()); });
}

template <class T>
Var<T> sin(const Var<T>& x)
{
    return unary(
        "sin", x, [](const auto& v) { return xt::sin(v); },
        [](auto& c) { c.accumulate(0, c.grad() * cos(c.input(0))); });  // dL/dX = G ⊙ cos X
}

template <class T>
Var<T> cos(const Var<T>& x)
{
    return unary(
        "cos", x, [](const auto& v) { return xt::cos(v); },
        [](auto& c) { c.accumulate(0, -c.grad() * sin(c.input(0))); });  // dL/dX = −G ⊙ sin X
}

template <class T>
Var<T> log1p(const Var<T>& x)
{
    return unary(
        "log1p", x, [](const auto& v) { return xt::log1p(v); },
        [](auto& c) { c.accumulate(0, c.grad() / (c.input(0) + T(1))); });  // dL/dX = G / (1 + X)
}

template <class T>
Var<T> expm1(const Var<T>& x)
{
    return unary(
        "expm1", x, [](const auto& v) { return xt::expm1(v); },
        [](auto& c) { c.accumulate(0, c.grad() * (c.value() + T(1))); });  // dL/dX = G ⊙ (Y + 1)
}

template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b)
{
    return extremum("maximum", a, b, [](const auto& u, const auto& v) { return u > v; });
}

template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b)
{
    return extremum("minimum", a, b, [](const auto& u, const auto& v) { return u < v; });
}

template <class T>
Var<T> clamp(const Var<T>& x, typename std::common_type<T>::type lo, typename std::common_type<T>::type hi)
{
    if (!(lo <= hi))
        throw std::invalid_argument(fmt::format("clamp: needs lo <= hi, got lo = {}, hi = {}", lo, hi));
    auto op = begin_op("clamp", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    op.saved().resize(xv.shape());
    xt::noalias(op.value()) = xt::clip(xv, lo, hi);
    xt::noalias(op.saved()) = xt::where(xv >= lo && xv <= hi, T(1), T(0));  // dL/dX = G ⊙ [lo ≤ X ≤ hi]
    auto [bw, bw_graph] = detail::masked_backward<T>(false);
    return op.finish(bw, bw_graph);
}

template <class T>
Var<T> where(const Var<T>& cond, const Var<T>& a, const Var<T>& b)
{
    auto op = begin_op("where", {a, b, cond});
    const Tensor<T>& cv = cond.value();
    const Tensor<T>& av = a.value();
    const Tensor<T>& bv = b.value();
    const Shape shape = detail::broadcast_shape("where", detail::broadcast_shape("where", cv.shape(), av.shape()), bv.shape());
    op.value().resize(shape);
    op.saved().resize(shape);
    // saved = [cond ≠ 0] over the output: dA = G ⊙ saved, dB = G ⊙ (1 − saved); cond (input 2) gets none
    xt::noalias(op.saved()) = xt::broadcast(xt::where(xt::not_equal(cv, T(0)), T(1), T(0)), shape);
    // a select, not saved·A + (1 − saved)·B: a −inf fill in B must not turn A's entries into NaN
    xt::noalias(op.value()) = xt::where(xt::not_equal(op.saved(), T(0)), xt::broadcast(av, shape), xt::broadcast(bv, shape));
    auto [bw, bw_graph] = detail::masked_backward<T>(true);
    return op.finish(bw, bw_graph);
}

#define XGRAD_INSTANTIATE(T)                                   \
    template Var<T> add(const Var<T>&, const Var<T>&);         \
    template Var<T> sub(const Var<T>&, const Var<T>&);         \
    template Var<T> mul(const Var<T>&, const Var<T>&);         \
    template Var<T> div(const Var<T>&, const Var<T>&);         \
    template Var<T> neg(const Var<T>&);                        \
    template Var<T> add_scalar(const Var<T>&, T);              \
    template Var<T> mul_scalar(const Var<T>&, T);              \
    template Var<T> div_scalar(const Var<T>&, T);              \
    template Var<T> rsub_scalar(T, const Var<T>&);             \
    template Var<T> rdiv_scalar(T, const Var<T>&);             \
    template Var<T> pow(const Var<T>&, T);                     \
    template Var<T> square(const Var<T>&);                     \
    template Var<T> exp(const Var<T>&);                        \
    template Var<T> log(const Var<T>&);                        \
    template Var<T> sqrt(const Var<T>&);                       \
    template Var<T> abs(const Var<T>&);                        \
    template Var<T> sin(const Var<T>&);                        \
    template Var<T> cos(const Var<T>&);                        \
    template Var<T> log1p(const Var<T>&);                      \
    template Var<T> expm1(const Var<T>&);                      \
    template Var<T> maximum(const Var<T>&, const Var<T>&);     \
    template Var<T> minimum(const Var<T>&, const Var<T>&);     \
    template Var<T> clamp(const Var<T>&, T, T);                \
    template Var<T> where(const Var<T>&, const Var<T>&, const Var<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

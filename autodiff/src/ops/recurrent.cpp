#include "xgrad/ops/recurrent.hpp"

#include <fmt/format.h>

#include <array>

#include <xtensor/xadapt.hpp>

#include "../op_util.hpp"
#include "xgrad/op.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {
/// A row block of n values as a 1-D xtensor expression (vectorized by xsimd).
template <class P>
auto span(P* p, std::size_t n)
{
    return xt::adapt(p, n, xt::no_ownership(), std::array<std::size_t, 1>{n});
}

/// ShapeError naming the op unless gx, gh are (B, gates·H) and state is (B, H).
template <class T>
std::size_t check_cell(const char* op, std::size_t gates, const Var<T>& gx, const Var<T>& gh, const Var<T>& state)
{
    const Shape &a = gx.shape(), &b = gh.shape(), &s = state.shape();
    if (a.size() != 2 || a != b || s.size() != 2 || s[0] != a[0] || a[1] != gates * s[1])
        throw ShapeError(fmt::format("{}: expected gx and gh (B, {}·H) and the state (B, H), got gx {}, gh {}, state {}", op,
                                     gates, shape_str(a), shape_str(b), shape_str(s)));
    return s[1];
}

/// One row of the LSTM cell: s = [i f g o tanh(c')] (5H) and c' (H) from gx, gh (4H) and c (H).
template <class T>
void lstm_gates(const T* a, const T* b, const T* c, std::size_t h, T* s, T* cn)
{
    xt::noalias(span(s, 2 * h)) = T(1) / (T(1) + xt::exp(-(span(a, 2 * h) + span(b, 2 * h))));
    auto g = span(s + 2 * h, h);
    xt::noalias(g) = xt::tanh(span(a + 2 * h, h) + span(b + 2 * h, h));
    xt::noalias(span(s + 3 * h, h)) = T(1) / (T(1) + xt::exp(-(span(a + 3 * h, h) + span(b + 3 * h, h))));
    auto c2 = span(cn, h);
    xt::noalias(c2) = span(s + h, h) * span(c, h) + span(s, h) * g;
    xt::noalias(span(s + 4 * h, h)) = xt::tanh(c2);
}

/// One row of the GRU cell: s = [r z n] (3H) from gx, gh (3H).
template <class T>
void gru_gates(const T* a, const T* b, std::size_t h, T* s)
{
    xt::noalias(span(s, 2 * h)) = T(1) / (T(1) + xt::exp(-(span(a, 2 * h) + span(b, 2 * h))));
    xt::noalias(span(s + 2 * h, h)) = xt::tanh(span(a + 2 * h, h) + span(s, h) * span(b + 2 * h, h));
}

/// Writes e into a gradient buffer at offset (assign or add, as the buffer says; nothing if none).
/// The InputGrads are opened once per backward: a second input_grad(k) would report "accumulate".
template <class T, class E>
void put(const InputGrad<T>& g, std::size_t offset, E&& e)
{
    if (!g) return;
    auto d = span(g.data() + offset, e.size());
    if (g.accumulate)
        xt::noalias(d) += std::forward<E>(e);
    else
        xt::noalias(d) = std::forward<E>(e);
}
}  // namespace

template <class T>
Var<T> lstm_cell(const Var<T>& gx, const Var<T>& gh, const Var<T>& c)
{
    auto op = begin_op("lstm_cell", {gx, gh, c});
    const std::size_t h = check_cell("lstm_cell", 4, gx, gh, c), rows = c.shape()[0];
    op.value().resize(Shape{2, rows, h});
    // Nothing saved: the backward recomputes the gates from gx, gh and c, which the tape keeps anyway
    // (a saved copy of them was the largest per-step allocation of a recurrent layer).
    thread_local Tensor<T> act;  // one row's i f g o tanh(c'), each H wide; reused
    act.resize(Shape{5 * h});
    for (std::size_t r = 0; r < rows; ++r) {
        lstm_gates(gx.value().data() + r * 4 * h, gh.value().data() + r * 4 * h, c.value().data() + r * h, h,
                   act.data(), op.value().data() + (rows + r) * h);
        xt::noalias(span(op.value().data() + r * h, h)) = span(act.data() + 3 * h, h) * span(act.data() + 4 * h, h);
    }
    return op.finish_both([h, rows](auto& ctx) {
        if constexpr (is_graph_backward_v<decltype(ctx)>) {
            const auto H = std::ptrdiff_t(h);
            const Var<T> a = ctx.input(0) + ctx.input(1), cc = ctx.input(2), G = ctx.grad();
            const Var<T> i = sigmoid(slice(a, 1, 0, H)), f = sigmoid(slice(a, 1, H, 2 * H));
            const Var<T> g = tanh(slice(a, 1, 2 * H, 3 * H)), o = sigmoid(slice(a, 1, 3 * H, 4 * H));
            const Var<T> th = tanh(f * cc + i * g);
            const Var<T> gh = select(G, 0, 0);
            const Var<T> dcn = select(G, 0, 1) + gh * o * (T(1) - th * th);
            const Var<T> da = concatenate({dcn * g * i * (T(1) - i), dcn * cc * f * (T(1) - f), dcn * i * (T(1) - g * g),
                                           gh * th * o * (T(1) - o)},
                                          1);
            ctx.accumulate(0, da);
            ctx.accumulate(1, da);
            ctx.accumulate(2, dcn * f);
        } else {
            const T* G = ctx.grad().data();
            const InputGrad<T> d[3] = {ctx.input_grad(0), ctx.input_grad(1), ctx.input_grad(2)};
            thread_local Tensor<T> act, cn;  // one row's gates and c', recomputed; reused
            act.resize(Shape{5 * h});
            cn.resize(Shape{h});
            for (std::size_t r = 0; r < rows; ++r) {
                const T* s = act.data();
                lstm_gates(ctx.input(0).data() + r * 4 * h, ctx.input(1).data() + r * 4 * h,
                           ctx.input(2).data() + r * h, h, act.data(), cn.data());
                const auto i = span(s, h), f = span(s + h, h), g = span(s + 2 * h, h), o = span(s + 3 * h, h),
                           th = span(s + 4 * h, h);
                const auto gh = span(G + r * h, h);
                thread_local Tensor<T> dcn;  // dL/dc', reused
                dcn.resize(Shape{h});
                xt::noalias(dcn) = span(G + (rows + r) * h, h) + gh * o * (T(1) - th * th);
                const auto cp = span(ctx.input(2).data() + r * h, h);
                const std::size_t at = r * 4 * h;
                for (std::size_t k = 0; k < 2; ++k) {
                    put(d[k], at, dcn * g * i * (T(1) - i));
                    put(d[k], at + h, dcn * cp * f * (T(1) - f));
                    put(d[k], at + 2 * h, dcn * i * (T(1) - g * g));
                    put(d[k], at + 3 * h, gh * th * o * (T(1) - o));
                }
                put(d[2], r * h, dcn * f);
            }
        }
    });
}

template <class T>
Var<T> gru_cell(const Var<T>& gx, const Var<T>& gh, const Var<T>& hp)
{
    auto op = begin_op("gru_cell", {gx, gh, hp});
    const std::size_t h = check_cell("gru_cell", 3, gx, gh, hp), rows = hp.shape()[0];
    op.value().resize(Shape{rows, h});
    thread_local Tensor<T> act;  // one row's r z n, each H wide; nothing saved (as lstm_cell)
    act.resize(Shape{3 * h});
    for (std::size_t r = 0; r < rows; ++r) {
        const T* s = act.data();
        gru_gates(gx.value().data() + r * 3 * h, gh.value().data() + r * 3 * h, h, act.data());
        const auto z = span(s + h, h), n = span(s + 2 * h, h);
        xt::noalias(span(op.value().data() + r * h, h)) = n + z * (span(hp.value().data() + r * h, h) - n);
    }
    return op.finish_both([h, rows](auto& ctx) {
        if constexpr (is_graph_backward_v<decltype(ctx)>) {
            const auto H = std::ptrdiff_t(h);
            const Var<T> gx = ctx.input(0), gh = ctx.input(1), hv = ctx.input(2), G = ctx.grad();
            const Var<T> r = sigmoid(slice(gx, 1, 0, H) + slice(gh, 1, 0, H));
            const Var<T> z = sigmoid(slice(gx, 1, H, 2 * H) + slice(gh, 1, H, 2 * H));
            const Var<T> ghn = slice(gh, 1, 2 * H, 3 * H);
            const Var<T> n = tanh(slice(gx, 1, 2 * H, 3 * H) + r * ghn);
            const Var<T> dn = G * (T(1) - z) * (T(1) - n * n);
            const Var<T> dr = dn * ghn * r * (T(1) - r), dz = G * (hv - n) * z * (T(1) - z);
            ctx.accumulate(0, concatenate({dr, dz, dn}, 1));
            ctx.accumulate(1, concatenate({dr, dz, dn * r}, 1));
            ctx.accumulate(2, G * z);
        } else {
            const T* G = ctx.grad().data();
            thread_local Tensor<T> dn, dr, dz, act;  // reused
            for (Tensor<T>* t : {&dn, &dr, &dz}) t->resize(Shape{h});
            act.resize(Shape{3 * h});
            const InputGrad<T> d[3] = {ctx.input_grad(0), ctx.input_grad(1), ctx.input_grad(2)};
            for (std::size_t row = 0; row < rows; ++row) {
                const T* s = act.data();
                gru_gates(ctx.input(0).data() + row * 3 * h, ctx.input(1).data() + row * 3 * h, h, act.data());
                const auto r = span(s, h), z = span(s + h, h), n = span(s + 2 * h, h);
                const auto g = span(G + row * h, h);
                const auto ghn = span(ctx.input(1).data() + row * 3 * h + 2 * h, h);
                const auto hv = span(ctx.input(2).data() + row * h, h);
                xt::noalias(dn) = g * (T(1) - z) * (T(1) - n * n);
                xt::noalias(dr) = dn * ghn * r * (T(1) - r);
                xt::noalias(dz) = g * (hv - n) * z * (T(1) - z);
                const std::size_t at = row * 3 * h;
                for (std::size_t k = 0; k < 2; ++k) {
                    put(d[k], at, dr);
                    put(d[k], at + h, dz);
                }
                put(d[0], at + 2 * h, dn);
                put(d[1], at + 2 * h, dn * r);
                put(d[2], row * h, g * z);
            }
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                   \
    template Var<T> lstm_cell(const Var<T>&, const Var<T>&, const Var<T>&); \
    template Var<T> gru_cell(const Var<T>&, const Var<T>&, const Var<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

// The discriminative trace regularizer, written on the public op-author API (xgrad/op.hpp) as any
// user's op would be.
#include "xgrad/nn/losses.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "xgrad/op.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

namespace {

/// Labels are class identities, not sizes: they are renumbered 0..K−1 (K = number of distinct
/// labels, in increasing label order), so memory is O(B·D) whatever the label values. Labels must
/// lie in [0, 2^24), the range of the engine's label-taking ops (cross_entropy's classes).
constexpr Index label_limit = Index(1) << 24;

std::size_t compact_classes(const char* op, const Shape& ys, const IndexTensor& labels, std::vector<std::uint32_t>& ids)
{
    if (ys.size() != 2 || labels.dimension() != 1 || labels.shape()[0] != ys[0])
        throw ShapeError(fmt::format("{}: outputs {} and labels {}: needs outputs (B,D) and labels (B)", op, shape_str(ys),
                                     shape_str(labels.shape())));
    const std::size_t B = labels.size();
    if (Index(B) >= label_limit)
        throw ShapeError(fmt::format("{}: outputs {}: at most 2^24 rows", op, shape_str(ys)));
    thread_local std::vector<std::pair<Index, std::uint32_t>> order;
    order.resize(B);
    for (std::size_t i = 0; i < B; ++i) {
        if (labels(i) < 0 || labels(i) >= label_limit)
            throw std::out_of_range(fmt::format("{}: label {} at position {} is outside [0,{})", op, labels(i), i,
                                                label_limit));
        order[i] = {labels(i), std::uint32_t(i)};
    }
    std::sort(order.begin(), order.end());
    ids.resize(B);
    std::size_t K = 0;
    for (std::size_t j = 0; j < B; ++j) {
        if (j > 0 && order[j].first != order[j - 1].first) ++K;
        ids[order[j].second] = std::uint32_t(K);
    }
    return B ? K + 1 : 0;
}

/// Class counts, class means (K,D) and batch mean (D) of the rows of y, for class ids `id(i)`.
template <class T, class Id>
void class_means(const Tensor<T>& y, Id id, std::size_t K, std::vector<std::size_t>& count, std::vector<double>& mc,
                 std::vector<double>& m)
{
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    count.assign(K, 0);
    mc.assign(K * D, 0.0);
    m.assign(D, 0.0);
    for (std::size_t i = 0; i < B; ++i) {
        const std::size_t c = id(i);
        ++count[c];
        for (std::size_t d = 0; d < D; ++d) {
            mc[c * D + d] += double(y(i, d));
            m[d] += double(y(i, d));
        }
    }
    for (std::size_t c = 0; c < K; ++c)
        if (count[c])
            for (std::size_t d = 0; d < D; ++d) mc[c * D + d] /= double(count[c]);
    for (std::size_t d = 0; d < D; ++d) m[d] /= B ? double(B) : 1.0;
}

/// Scratch reused across calls (one set per thread): no allocation once sizes are stable.
struct ScatterScratch {
    std::vector<std::uint32_t> ids;
    std::vector<std::size_t> count;
    std::vector<double> mc, m;
};
ScatterScratch& scatter_scratch()
{
    thread_local ScatterScratch s;
    return s;
}

/// The VJP γ·g·(y_i − 2 m_c(i) + m) recorded as ops on y (for grad(..., create_graph)), so that
/// its dependence on y through the class means is differentiated too. With W (K,B,1) the constant
/// averaging weights W[c,i] = [c(i) = c] / n_c:
///   m_c = Σ_i W[c,i]·y_i     (mul, broadcast (K,B,1)·(1,B,D), sum over axis 1) → (K,D)
///   m_c(i) = gather(m_c, 0, c(i) repeated over D)                                  → (B,D)
///   m = mean(y, axis 0)                                                             → (1,D)
/// each op with a recorded VJP of its own, so the result is differentiable to any order.
template <class T>
Var<T> recorded_vjp(const GraphBackwardContext<T>& c, std::size_t K, double gamma)
{
    const Var<T> y = c.input(0);
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    const std::vector<std::size_t>& id = c.saved_index();
    std::vector<std::size_t> count(K, 0);
    for (std::size_t i = 0; i < B; ++i) ++count[id[i]];
    Tensor<T> w = Tensor<T>::from_shape(Shape{K, B, 1});
    w.fill(T(0));
    for (std::size_t i = 0; i < B; ++i) w(id[i], i, 0) = T(1) / T(count[id[i]]);
    IndexTensor rows = IndexTensor::from_shape({B, D});
    for (std::size_t i = 0; i < B; ++i)
        for (std::size_t j = 0; j < D; ++j) rows(i, j) = Index(id[i]);
    const Var<T> class_mean = sum(c.constant(std::move(w)) * reshape(y, {1, std::ptrdiff_t(B), std::ptrdiff_t(D)}), {1});
    const Var<T> row_mean = gather(class_mean, 0, rows);
    return (y - T(2) * row_mean + mean(y, {0}, true)) * (c.grad() * T(gamma));
}

}  // namespace

template <class T>
ScatterTraces scatter_traces(const Tensor<T>& y, const IndexTensor& labels)
{
    ScatterScratch& s = scatter_scratch();
    const std::size_t K = compact_classes("scatter_traces", y.shape(), labels, s.ids);
    class_means(y, [&](std::size_t i) { return std::size_t(s.ids[i]); }, K, s.count, s.mc, s.m);
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    ScatterTraces t;
    for (std::size_t i = 0; i < B; ++i) {  // tr S_w = Σ_i ‖y_i − m_c(i)‖²
        const std::size_t c = s.ids[i];
        for (std::size_t d = 0; d < D; ++d) {
            const double e = double(y(i, d)) - s.mc[c * D + d];
            t.within += e * e;
        }
    }
    for (std::size_t c = 0; c < K; ++c)  // tr S_b = Σ_c n_c ‖m_c − m‖²
        for (std::size_t d = 0; d < D; ++d) {
            const double e = s.mc[c * D + d] - s.m[d];
            t.between += double(s.count[c]) * e * e;
        }
    return t;
}

template <class T>
Var<T> trace_scatter_loss(const Var<T>& y, const IndexTensor& labels, double gamma)
{
    auto op = begin_op("trace_scatter_loss", {y});
    ScatterScratch& s = scatter_scratch();
    const std::size_t K = compact_classes("trace_scatter_loss", y.shape(), labels, s.ids);
    const ScatterTraces tr = scatter_traces(y.value(), labels);
    op.value().resize(Shape{});
    *op.value().data() = T(0.5 * gamma * (tr.within - tr.between));
    // The class ids stay with the node for backward (a buffer reused from step to step).
    op.saved_index().assign(s.ids.begin(), s.ids.end());
    return op.finish_both([K, gamma](auto& c) {
        // dR/dy_i = γ (y_i − 2 m_c(i) + m) · g
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, recorded_vjp(c, K, gamma));
        } else {
            const Tensor<T>& yv = c.input(0);
            const std::size_t* id = c.saved_index().data();
            ScatterScratch& sc = scatter_scratch();
            class_means(yv, [id](std::size_t i) { return id[i]; }, K, sc.count, sc.mc, sc.m);
            const std::size_t B = yv.shape()[0], D = yv.shape()[1];
            const double k = gamma * double(*c.grad().data());
            const InputGrad<T> dy = c.input_grad(0);
            T* d = dy.data();
            for (std::size_t i = 0; i < B; ++i) {
                const std::size_t cl = id[i];
                for (std::size_t j = 0; j < D; ++j) {
                    const T v = T(k * (double(yv(i, j)) - 2 * sc.mc[cl * D + j] + sc.m[j]));
                    d[i * D + j] = dy.accumulate ? d[i * D + j] + v : v;
                }
            }
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                       \
    template Var<T> trace_scatter_loss(const Var<T>&, const IndexTensor&, double); \
    template ScatterTraces scatter_traces(const Tensor<T>&, const IndexTensor&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn

// Fused losses: cross-entropy, NLL, squared error, the discriminative trace regularizer.
#include "xgrad/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <stdexcept>

#include "../op_util.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {

template <class T>
T reduction_factor(Reduction r, std::size_t n)
{
    switch (r) {
        case Reduction::mean: return n ? T(1) / T(n) : T(0);
        case Reduction::half_sum: return T(0.5);
        default: return T(1);
    }
}

/// half_sum (½Σ) is a squared-error convention; for a log-likelihood it would silently mean sum.
void check_reduction(const char* op, Reduction r)
{
    if (r == Reduction::half_sum)
        throw std::invalid_argument(fmt::format("{}: Reduction::half_sum is for squared error (mse_loss); "
                                                "use Reduction::mean or Reduction::sum",
                                                op));
}

void check_labels(const char* op, const Shape& scores, const IndexTensor& labels)
{
    if (scores.size() != 2 || labels.dimension() != 1 || labels.shape()[0] != scores[0])
        throw ShapeError(std::string(op) + ": scores " + shape_str(scores) + " and labels " + shape_str(labels.shape()) +
                         ": needs scores (B,C) and labels (B)");
    // Labels travel through backward as T (the node's saved buffer): exact below 2^24 in float.
    if (scores[1] > (std::size_t(1) << 24))
        throw ShapeError(std::string(op) + ": scores " + shape_str(scores) + ": at most 2^24 classes");
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels(i) < 0 || std::size_t(labels(i)) >= scores[1])
            throw std::out_of_range(std::string(op) + ": label " + std::to_string(labels(i)) + " at position " +
                                    std::to_string(i) + " is outside [0," + std::to_string(scores[1]) + ")");
}

}  // namespace

template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexTensor& labels, Reduction reduction)
{
    check_reduction("cross_entropy", reduction);
    const Tensor<T>& z = logits.value();
    check_labels("cross_entropy", z.shape(), labels);
    const std::size_t B = z.shape()[0], C = z.shape()[1];
    const T f = reduction_factor<T>(reduction, B);
    auto op = detail::tape_of(logits).begin_op("cross_entropy", {logits});
    op.value().resize(Shape{});
    // The labels go into the node's saved buffer (as T: exact below 2^24 classes) rather than a
    // captured copy, so a training step allocates nothing for them.
    Tensor<T>& saved = op.saved();
    saved.resize(Shape{B});
    for (std::size_t b = 0; b < B; ++b) saved(b) = T(labels(b));
    double total = 0;
    for (std::size_t b = 0; b < B; ++b) {
        const T* row = z.data() + b * C;
        T m = row[0];
        for (std::size_t c = 1; c < C; ++c) m = std::max(m, row[c]);
        T s = 0;
        for (std::size_t c = 0; c < C; ++c) s += std::exp(row[c] - m);
        total += double(m + std::log(s) - row[labels(b)]);  // logΣexp − z_y
    }
    *op.value().data() = T(total) * f;
    return op.finish([f](BackwardContext<T>& c) {
        // dL/dZ = (softmax(Z) − onehot(y)) · g · f, softmax recomputed from Z (nothing stored)
        const Tensor<T>& z = c.input(0);
        const T* labels = c.saved().data();
        const std::size_t B = z.shape()[0], C = z.shape()[1];
        const T g = *c.grad().data() * f;
        bool fresh;
        T* d = c.grad_buffer(0, fresh).data();
        for (std::size_t b = 0; b < B; ++b) {
            const T* row = z.data() + b * C;
            T* drow = d + b * C;
            T m = row[0];
            for (std::size_t k = 1; k < C; ++k) m = std::max(m, row[k]);
            T s = 0;
            for (std::size_t k = 0; k < C; ++k) s += std::exp(row[k] - m);
            const T r = g / s;
            for (std::size_t k = 0; k < C; ++k) {
                const T v = std::exp(row[k] - m) * r - (T(k) == labels[b] ? g : T(0));
                drow[k] = fresh ? v : drow[k] + v;
            }
        }
    });
}

template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const IndexTensor& labels, Reduction reduction)
{
    check_reduction("nll_loss", reduction);
    check_labels("nll_loss", log_probs.shape(), labels);
    const T f = reduction_factor<T>(reduction, labels.size());
    return sum(pick(log_probs, labels)) * (-f);  // dlogp[b, y_b] = −g·f
}

template <class T>
Var<T> mse_loss(const Var<T>& y, const Var<T>& target, Reduction reduction)
{
    Tape<T>& tape = detail::tape_of(y);
    tape.validate("mse_loss", {y, target});
    const Tensor<T>& yv = y.value();
    const Tensor<T>& dv = target.value();
    if (yv.shape() != dv.shape())
        throw ShapeError("mse_loss: prediction " + shape_str(yv.shape()) + " and target " + shape_str(dv.shape()) +
                         " must have the same shape");
    const T f = reduction_factor<T>(reduction, yv.size());
    auto op = tape.begin_op("mse_loss", {y, target});
    op.value().resize(Shape{});
    T s = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) {
        const T e = yv.data()[i] - dv.data()[i];
        s += e * e;
    }
    *op.value().data() = s * f;
    return op.finish([f](BackwardContext<T>& c) {
        const T k = T(2) * f * *c.grad().data();
        if (c.needs(0)) c.accumulate(0, k * (c.input(0) - c.input(1)));  // dL/dY = 2f·g·(Y − D)
        if (c.needs(1)) c.accumulate(1, k * (c.input(1) - c.input(0)));  // dL/dD = −dL/dY
    });
}

namespace {

/// Labels are class identities, not sizes: they are renumbered 0..K−1 (K = number of distinct
/// labels, in increasing label order), so memory is O(B·D) whatever the label values. Labels must
/// lie in [0, 2^24), the range every label-taking op can store exactly as a float.
constexpr Index label_limit = Index(1) << 24;

std::size_t compact_classes(const char* op, const Shape& ys, const IndexTensor& labels, std::vector<std::uint32_t>& ids)
{
    if (ys.size() != 2 || labels.dimension() != 1 || labels.shape()[0] != ys[0])
        throw ShapeError(std::string(op) + ": outputs " + shape_str(ys) + " and labels " + shape_str(labels.shape()) +
                         ": needs outputs (B,D) and labels (B)");
    const std::size_t B = labels.size();
    if (Index(B) >= label_limit)
        throw ShapeError(std::string(op) + ": outputs " + shape_str(ys) + ": at most 2^24 rows");
    thread_local std::vector<std::pair<Index, std::uint32_t>> order;
    order.resize(B);
    for (std::size_t i = 0; i < B; ++i) {
        if (labels(i) < 0 || labels(i) >= label_limit)
            throw std::out_of_range(std::string(op) + ": label " + std::to_string(labels(i)) + " at position " +
                                    std::to_string(i) + " is outside [0," + std::to_string(label_limit) + ")");
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
Var<T> trace_scatter_loss(const Var<T>& y, const IndexTensor& labels, T gamma)
{
    Tape<T>& tape = detail::tape_of(y);
    tape.validate("trace_scatter_loss", {y});
    ScatterScratch& s = scatter_scratch();
    const std::size_t K = compact_classes("trace_scatter_loss", y.shape(), labels, s.ids);
    auto op = tape.begin_op("trace_scatter_loss", {y});
    const ScatterTraces tr = scatter_traces(y.value(), labels);
    op.value().resize(Shape{});
    *op.value().data() = T(0.5 * double(gamma) * (tr.within - tr.between));
    // The class ids (exact in T: below 2^24) stay with the node for backward.
    Tensor<T>& ids = op.saved();
    ids.resize(Shape{labels.size()});
    for (std::size_t i = 0; i < labels.size(); ++i) ids(i) = T(s.ids[i]);
    return op.finish([K, gamma](BackwardContext<T>& c) {
        // dR/dy_i = γ (y_i − 2 m_c(i) + m) · g
        const Tensor<T>& yv = c.input(0);
        const T* id = c.saved().data();
        ScatterScratch& sc = scatter_scratch();
        class_means(yv, [id](std::size_t i) { return std::size_t(id[i]); }, K, sc.count, sc.mc, sc.m);
        const std::size_t B = yv.shape()[0], D = yv.shape()[1];
        const double k = double(gamma) * double(*c.grad().data());
        bool fresh;
        T* d = c.grad_buffer(0, fresh).data();
        for (std::size_t i = 0; i < B; ++i) {
            const auto cl = std::size_t(id[i]);
            for (std::size_t j = 0; j < D; ++j) {
                const T v = T(k * (double(yv(i, j)) - 2 * sc.mc[cl * D + j] + sc.m[j]));
                d[i * D + j] = fresh ? v : d[i * D + j] + v;
            }
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                          \
    template Var<T> cross_entropy(const Var<T>&, const IndexTensor&, Reduction);      \
    template Var<T> nll_loss(const Var<T>&, const IndexTensor&, Reduction);           \
    template Var<T> mse_loss(const Var<T>&, const Var<T>&, Reduction);                \
    template Var<T> trace_scatter_loss(const Var<T>&, const IndexTensor&, T);         \
    template ScatterTraces scatter_traces(const Tensor<T>&, const IndexTensor&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

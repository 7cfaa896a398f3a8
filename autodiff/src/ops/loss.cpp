// Fused losses: cross-entropy, NLL, squared error, the discriminative trace regularizer.
#include "xgrad/ops/loss.hpp"

#include <cmath>
#include <vector>

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

void check_labels(const char* op, const Shape& scores, const IndexTensor& labels)
{
    if (scores.size() != 2 || labels.dimension() != 1 || labels.shape()[0] != scores[0])
        throw ShapeError(std::string(op) + ": scores " + shape_str(scores) + " and labels " + shape_str(labels.shape()) +
                         ": needs scores (B,C) and labels (B)");
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels(i) < 0 || std::size_t(labels(i)) >= scores[1])
            throw std::out_of_range(std::string(op) + ": label " + std::to_string(labels(i)) + " at position " +
                                    std::to_string(i) + " is outside [0," + std::to_string(scores[1]) + ")");
}

}  // namespace

template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexTensor& labels, Reduction reduction)
{
    const Tensor<T>& z = logits.value();
    check_labels("cross_entropy", z.shape(), labels);
    const std::size_t B = z.shape()[0], C = z.shape()[1];
    const T f = reduction == Reduction::half_sum ? T(1) : reduction_factor<T>(reduction, B);
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
    check_labels("nll_loss", log_probs.shape(), labels);
    const T f = reduction == Reduction::half_sum ? T(1) : reduction_factor<T>(reduction, labels.size());
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

/// Class counts, class means (K,D) and batch mean (D) of the rows of y.
template <class T>
void class_means(const Tensor<T>& y, const IndexTensor& labels, std::size_t K, std::vector<std::size_t>& count,
                 std::vector<double>& mc, std::vector<double>& m)
{
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    count.assign(K, 0);
    mc.assign(K * D, 0.0);
    m.assign(D, 0.0);
    for (std::size_t i = 0; i < B; ++i) {
        const auto c = std::size_t(labels(i));
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

std::size_t num_classes(const char* op, const Shape& ys, const IndexTensor& labels)
{
    if (ys.size() != 2 || labels.dimension() != 1 || labels.shape()[0] != ys[0])
        throw ShapeError(std::string(op) + ": outputs " + shape_str(ys) + " and labels " + shape_str(labels.shape()) +
                         ": needs outputs (B,D) and labels (B)");
    Index k = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (labels(i) < 0)
            throw std::out_of_range(std::string(op) + ": negative label " + std::to_string(labels(i)) +
                                    " at position " + std::to_string(i));
        k = std::max(k, labels(i) + 1);
    }
    return std::size_t(k);
}

}  // namespace

template <class T>
ScatterTraces scatter_traces(const Tensor<T>& y, const IndexTensor& labels)
{
    const std::size_t K = num_classes("scatter_traces", y.shape(), labels);
    std::vector<std::size_t> count;
    std::vector<double> mc, m;
    class_means(y, labels, K, count, mc, m);
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    ScatterTraces t;
    for (std::size_t i = 0; i < B; ++i) {  // tr S_w = Σ_i ‖y_i − m_c(i)‖²
        const auto c = std::size_t(labels(i));
        for (std::size_t d = 0; d < D; ++d) {
            const double e = double(y(i, d)) - mc[c * D + d];
            t.within += e * e;
        }
    }
    for (std::size_t c = 0; c < K; ++c)  // tr S_b = Σ_c n_c ‖m_c − m‖²
        for (std::size_t d = 0; d < D; ++d) {
            const double e = mc[c * D + d] - m[d];
            t.between += double(count[c]) * e * e;
        }
    return t;
}

template <class T>
Var<T> trace_scatter_loss(const Var<T>& y, const IndexTensor& labels, T gamma)
{
    num_classes("trace_scatter_loss", y.shape(), labels);  // validates before recording
    auto op = detail::tape_of(y).begin_op("trace_scatter_loss", {y});
    const ScatterTraces tr = scatter_traces(y.value(), labels);
    op.value().resize(Shape{});
    *op.value().data() = T(0.5 * double(gamma) * (tr.within - tr.between));
    return op.finish([labels, gamma](BackwardContext<T>& c) {
        // dR/dy_i = γ (y_i − 2 m_c(i) + m) · g
        const Tensor<T>& yv = c.input(0);
        const std::size_t K = num_classes("trace_scatter_loss", yv.shape(), labels);
        std::vector<std::size_t> count;
        std::vector<double> mc, m;
        class_means(yv, labels, K, count, mc, m);
        const std::size_t B = yv.shape()[0], D = yv.shape()[1];
        const double k = double(gamma) * double(*c.grad().data());
        bool fresh;
        T* d = c.grad_buffer(0, fresh).data();
        for (std::size_t i = 0; i < B; ++i) {
            const auto cl = std::size_t(labels(i));
            for (std::size_t j = 0; j < D; ++j) {
                const T v = T(k * (double(yv(i, j)) - 2 * mc[cl * D + j] + m[j]));
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

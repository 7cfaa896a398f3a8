// Fused losses: cross-entropy, NLL, squared error.
#include "xgrad/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <stdexcept>

#include "../op_util.hpp"
#include "kernels/softmax.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
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
        throw ShapeError(fmt::format("{}: scores {} and labels {}: needs scores (B,C) and labels (B)", op,
                                     shape_str(scores), shape_str(labels.shape())));
    // Labels travel through backward as T (the node's saved buffer): exact below 2^24 in float.
    if (scores[1] > (std::size_t(1) << 24))
        throw ShapeError(fmt::format("{}: scores {}: at most 2^24 classes", op, shape_str(scores)));
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels(i) < 0 || std::size_t(labels(i)) >= scores[1])
            throw std::out_of_range(
                fmt::format("{}: label {} at position {} is outside [0,{})", op, labels(i), i, scores[1]));
}

}  // namespace

template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexTensor& labels, Reduction reduction)
{
    auto op = begin_op("cross_entropy", {logits});
    check_reduction("cross_entropy", reduction);
    const Tensor<T>& z = logits.value();
    check_labels("cross_entropy", z.shape(), labels);
    const std::size_t B = z.shape()[0], C = z.shape()[1];
    const T f = reduction_factor<T>(reduction, B);
    op.value().resize(Shape{});
    // The labels go into the node's saved buffer (as T: exact below 2^24 classes) rather than a
    // captured copy, so a training step allocates nothing for them.
    Tensor<T>& saved = op.saved();
    saved.resize(Shape{B});
    for (std::size_t b = 0; b < B; ++b) saved(b) = T(labels(b));
    double total = 0;
    for (std::size_t b = 0; b < B; ++b) {
        const T* row = z.data() + b * C;
        total += double(kernels::log_sum_exp(row, C) - row[labels(b)]);  // logΣexp − z_y
    }
    *op.value().data() = T(total) * f;
    return op.finish_both([f](auto& c) {
        // dL/dZ = (softmax(Z) − onehot(y)) · g · f, softmax recomputed from Z (nothing stored);
        // recorded: the same with the ops softmax, sub and mul, onehot(y) a constant
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> z = c.input(0);
            const std::size_t B = z.shape()[0], C = z.shape()[1];
            Tensor<T> onehot = Tensor<T>::from_shape(Shape{B, C});
            onehot.fill(T(0));
            for (std::size_t b = 0; b < B; ++b) onehot(b, std::size_t(c.saved()(b))) = T(1);
            c.accumulate(0, (softmax(z, 1) - c.constant(std::move(onehot))) * (c.grad() * f));
        } else {
            const Tensor<T>& z = c.input(0);
            const T* labels = c.saved().data();
            const std::size_t B = z.shape()[0], C = z.shape()[1];
            const T g = *c.grad().data() * f;
            const InputGrad<T> dz = c.input_grad(0);
            T* d = dz.data();
            kernels::softmax(z.data(), d, B, C, 1, g, dz.accumulate);
            for (std::size_t b = 0; b < B; ++b) d[b * C + std::size_t(labels[b])] -= g;
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
    auto op = begin_op("mse_loss", {y, target});
    const Tensor<T>& yv = y.value();
    const Tensor<T>& dv = target.value();
    if (yv.shape() != dv.shape())
        throw ShapeError(fmt::format("mse_loss: prediction {} and target {} must have the same shape",
                                     shape_str(yv.shape()), shape_str(dv.shape())));
    const T f = reduction_factor<T>(reduction, yv.size());
    op.value().resize(Shape{});
    T s = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) {
        const T e = yv.data()[i] - dv.data()[i];
        s += e * e;
    }
    *op.value().data() = s * f;
    return op.finish_both([f](auto& c) {
        // dL/dY = 2f·g·(Y − D), dL/dD = −dL/dY (recorded: the same with the ops sub and mul)
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> dy = (c.input(0) - c.input(1)) * (c.grad() * (T(2) * f));
            if (c.needs(0)) c.accumulate(0, dy);
            if (c.needs(1)) c.accumulate(1, -dy);
        } else {
            const T k = T(2) * f * *c.grad().data();
            if (c.needs(0)) c.accumulate(0, k * (c.input(0) - c.input(1)));
            if (c.needs(1)) c.accumulate(1, k * (c.input(1) - c.input(0)));
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                          \
    template Var<T> cross_entropy(const Var<T>&, const IndexTensor&, Reduction);      \
    template Var<T> nll_loss(const Var<T>&, const IndexTensor&, Reduction);           \
    template Var<T> mse_loss(const Var<T>&, const Var<T>&, Reduction);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

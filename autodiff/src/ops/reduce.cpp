// Reductions: sum, mean, max.
#include "xgrad/ops/reduce.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <limits>

#include "../op_util.hpp"
#include "kernels/reduce.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {

/// Σ (scaled) over all elements.   dX = scale · g broadcast
template <class T>
Var<T> reduce_all(const char* name, const Var<T>& x, T scale)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(Shape{});
    // 16 independent partial sums: vectorizes, and rounds better than one running sum.
    const T* p = xv.data();
    const std::size_t n = xv.size(), blocks = n / 16;
    T part[16] = {};
    for (std::size_t b = 0; b < blocks; ++b)
        for (std::size_t j = 0; j < 16; ++j) part[j] += p[b * 16 + j];
    T acc = 0;
    for (std::size_t i = blocks * 16; i < n; ++i) acc += p[i];
    for (T v : part) acc += v;
    *op.value().data() = acc * scale;
    return op.finish_both([scale](auto& c) {  // dL/dX = scale · g, every element
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, broadcast_to(c.grad() * scale, c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            const T g = *c.grad().data() * scale;
            if (dx.accumulate)
                *dx.buffer += g;
            else
                std::fill(dx.buffer->begin(), dx.buffer->end(), g);
        }
    });
}

/// Σ (scaled) over a set of axes.  dX = scale · G broadcast back over the axes
template <class T>
Var<T> reduce_axes(const char* name, const Var<T>& x, const std::vector<int>& axes, bool keepdims, bool mean)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    Shape ax;  // a small inline vector: no allocation per call for up to 4 axes
    for (int a : axes) ax.push_back(detail::normalize_axis(name, a, in));
    std::sort(ax.begin(), ax.end());
    const auto dup = std::adjacent_find(ax.begin(), ax.end());
    if (dup != ax.end())
        throw ShapeError(
            fmt::format("{}: axes {} name axis {} twice for shape {}", name, shape_str(axes), *dup, shape_str(in)));
    Shape kshape = in;  // keepdims shape
    std::size_t count = 1;
    for (std::size_t a : ax) {
        count *= in[a];
        kshape[a] = 1;
    }
    Shape oshape;
    for (std::size_t i = 0; i < in.size(); ++i)
        if (keepdims || !std::binary_search(ax.begin(), ax.end(), i)) oshape.push_back(kshape[i]);
    const T scale = mean ? T(1) / T(count) : T(1);

    Tensor<T>& out = op.value();
    out.resize(kshape);
    // Reduce with the same mapping that undoes broadcasting: out (as kshape) = Σ over the axes.
    kernels::sum_to(xv.data(), xv.shape(), kshape, out.data(), false, name);
    out.reshape(oshape);
    if (mean) out *= scale;
    return op.finish_both([kshape, scale](auto& c) {  // dL/dX = scale · G (broadcast)
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const std::vector<std::ptrdiff_t> ks(kshape.begin(), kshape.end());
            c.accumulate(0, broadcast_to(reshape(c.grad(), ks) * scale, c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            kernels::broadcast_to(c.grad().data(), kshape, dx.data(), c.input(0).shape(), scale, dx.accumulate);
        }
    });
}

}  // namespace

template <class T>
Var<T> sum(const Var<T>& x)
{
    return reduce_all("sum", x, T(1));
}

template <class T>
Var<T> sum(const Var<T>& x, const std::vector<int>& axes, bool keepdims)
{
    return reduce_axes("sum", x, axes, keepdims, false);
}

template <class T>
Var<T> mean(const Var<T>& x)
{
    return reduce_all("mean", x, T(1) / T(x.size()));
}

template <class T>
Var<T> mean(const Var<T>& x, const std::vector<int>& axes, bool keepdims)
{
    return reduce_axes("mean", x, axes, keepdims, true);
}

template <class T>
Var<T> max(const Var<T>& x, int axis, bool keepdims)
{
    auto op = begin_op("max", {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const std::size_t ax = detail::normalize_axis("max", axis, in);
    if (in[ax] == 0)
        throw ShapeError(fmt::format("max: cannot take the max over an empty axis of shape {}", shape_str(in)));
    const detail::AxisSplit s = detail::split_at(in, ax);
    Shape oshape;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (i != ax)
            oshape.push_back(in[i]);
        else if (keepdims)
            oshape.push_back(1);
    }
    Tensor<T>& out = op.value();
    out.resize(oshape);
    std::vector<std::size_t>& arg = op.saved_index();  // kept with the node: no allocation per step
    arg.resize(s.outer * s.inner);
    const T* p = xv.data();
    T* q = out.data();
    for (std::size_t o = 0; o < s.outer; ++o)
        for (std::size_t i = 0; i < s.inner; ++i) {
            const T* xp = p + o * s.n * s.inner + i;
            std::size_t best = 0;
            for (std::size_t j = 1; j < s.n; ++j)
                if (xp[j * s.inner] > xp[best * s.inner] || std::isnan(xp[j * s.inner])) best = j;
            arg[o * s.inner + i] = best;
            q[o * s.inner + i] = xp[best * s.inner];
        }
    return op.finish_both([s](auto& c) {
        // dL/dX = G at the first maximum of each line, 0 elsewhere
        if constexpr (is_graph_backward_v<decltype(c)>) {
            std::vector<std::size_t> pos(s.outer * s.inner);
            for (std::size_t o = 0; o < s.outer; ++o)
                for (std::size_t i = 0; i < s.inner; ++i)
                    pos[o * s.inner + i] = o * s.n * s.inner + c.saved_index()[o * s.inner + i] * s.inner + i;
            c.accumulate(0, detail::scatter_add_flat(c.grad(), pos, c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            const std::size_t* arg = c.saved_index().data();
            const T* g = c.grad().data();
            T* d = dx.data();
            for (std::size_t o = 0; o < s.outer; ++o)
                for (std::size_t i = 0; i < s.inner; ++i)
                    d[o * s.n * s.inner + arg[o * s.inner + i] * s.inner + i] += g[o * s.inner + i];
        }
    });
}

template <class T>
Var<T> sum_to(const Var<T>& x, const Shape& shape)
{
    auto op = begin_op("sum_to", {x});
    const Tensor<T>& xv = x.value();
    if (detail::broadcast_shape("sum_to", shape, xv.shape()) != xv.shape())
        throw ShapeError(fmt::format("sum_to: {} cannot be summed to {} (it does not broadcast back)",
                                     shape_str(xv.shape()), shape_str(shape)));
    Tensor<T>& out = op.value();
    out.resize(shape);
    kernels::sum_to(xv.data(), xv.shape(), shape, out.data(), false, "sum_to");
    return op.finish(
        [](BackwardContext<T>& c) {
            const InputGrad<T> dx = c.input_grad(0);
            kernels::broadcast_to(c.grad().data(), c.grad().shape(), dx.data(), c.input(0).shape(), T(1), dx.accumulate);
        },
        [](GraphBackwardContext<T>& c) { c.accumulate(0, broadcast_to(c.grad(), c.input(0).shape())); });
}

template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape)
{
    auto op = begin_op("broadcast_to", {x});
    const Tensor<T>& xv = x.value();
    if (detail::broadcast_shape("broadcast_to", xv.shape(), shape) != shape)
        throw ShapeError(fmt::format("broadcast_to: {} cannot be broadcast to {}", shape_str(xv.shape()), shape_str(shape)));
    Tensor<T>& out = op.value();
    out.resize(shape);
    kernels::broadcast_to(xv.data(), xv.shape(), out.data(), shape, T(1), false);
    // accumulate() sums the broadcast axes back (kernels::sum_to, or the op sum_to when recorded)
    return op.finish_both([](auto& c) { c.accumulate(0, c.grad()); });
}

namespace {

/// The axes normalized and checked (each once), and the shape the reduction keeps (1 on the axes).
std::vector<std::size_t> checked_axes(const char* name, const std::vector<int>& axes, const Shape& in, Shape& kept,
                                      std::size_t& count)
{
    std::vector<std::size_t> ax;
    for (int a : axes) ax.push_back(detail::normalize_axis(name, a, in));
    std::vector<std::size_t> sorted = ax;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        throw ShapeError(fmt::format("{}: axes {} name an axis twice for shape {}", name, shape_str(axes), shape_str(in)));
    kept = in;
    count = 1;
    for (std::size_t a : ax) {
        count *= in[a];
        kept[a] = 1;
    }
    return ax;
}

}  // namespace

template <class T>
Var<T> logsumexp(const Var<T>& x, const std::vector<int>& axes, bool keepdims)
{
    const Tensor<T>& xv = x.value();
    Shape kept;
    std::size_t n = 0;
    const std::vector<std::size_t> ax = checked_axes("logsumexp", axes, xv.shape(), kept, n);
    if (n == 0) throw ShapeError(fmt::format("logsumexp: axes {} of {} are empty", shape_str(axes), shape_str(xv.shape())));
    // m only shifts the exponentials: the value and every derivative are independent of it, so it
    // enters as a constant. Infinite maxima (all −inf, or +inf) are shifted by 0 instead.
    const Tensor<T> m = xt::amax(xv, ax, xt::keep_dims | xt::evaluation_strategy::immediate);
    Var<T> mv = x.tape().constant(Tensor<T>(xt::where(xt::isfinite(m), m, T(0))));
    Var<T> y = log(sum(exp(x - mv), axes, true)) + mv;
    if (keepdims) return y;
    std::vector<std::ptrdiff_t> out;
    for (std::size_t i = 0; i < kept.size(); ++i)
        if (std::find(ax.begin(), ax.end(), i) == ax.end()) out.push_back(std::ptrdiff_t(kept[i]));
    return reshape(y, out);
}

template <class T>
Var<T> var(const Var<T>& x, const std::vector<int>& axes, int correction, bool keepdims)
{
    Shape kept;
    std::size_t n = 0;
    checked_axes("var", axes, x.shape(), kept, n);
    if (double(n) - double(correction) <= 0)
        throw std::invalid_argument(fmt::format("var: {} elements over axes {} of {} leave no degrees of freedom with "
                                                "correction {}", n, shape_str(axes), shape_str(x.shape()), correction));
    const Var<T> d = x - mean(x, axes, true);
    return sum(square(d), axes, keepdims) / T(double(n) - double(correction));
}

template <class T>
Var<T> std(const Var<T>& x, const std::vector<int>& axes, int correction, bool keepdims)
{
    return sqrt(var(x, axes, correction, keepdims));
}

#define XGRAD_INSTANTIATE(T)                                                   \
    template Var<T> sum_to(const Var<T>&, const Shape&);                       \
    template Var<T> broadcast_to(const Var<T>&, const Shape&);                 \
    template Var<T> sum(const Var<T>&);                                        \
    template Var<T> sum(const Var<T>&, const std::vector<int>&, bool);         \
    template Var<T> mean(const Var<T>&);                                       \
    template Var<T> mean(const Var<T>&, const std::vector<int>&, bool);        \
    template Var<T> max(const Var<T>&, int, bool);                             \
    template Var<T> logsumexp(const Var<T>&, const std::vector<int>&, bool);   \
    template Var<T> var(const Var<T>&, const std::vector<int>&, int, bool);    \
    template Var<T> std(const Var<T>&, const std::vector<int>&, int, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

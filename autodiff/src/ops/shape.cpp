// Shape ops: reshape, unsqueeze, squeeze, expand, pad, stack, permute, slice, concatenate, gather, one_hot.
#include "xgrad/ops/shape.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/core.h>
#include <xtensor/xmanipulation.hpp>

#include "../op_util.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reduce.hpp"

namespace xgrad {

namespace {

/// VJP of the index ops (gather, pick): dL/dX = G scatter-added at the flat offsets the forward
/// kept in saved_index(); recorded as detail::scatter_add_flat (whose own VJP is take_flat).
template <class T>
struct ScatterAddBackward {
    template <class C>
    void operator()(C& c) const
    {
        if constexpr (is_graph_backward_v<C>) {
            c.accumulate(0, detail::scatter_add_flat(c.grad(), c.saved_index(), c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            const std::vector<std::size_t>& src = c.saved_index();
            const T* g = c.grad().data();
            T* d = dx.data();
            for (std::size_t e = 0; e < src.size(); ++e) d[src[e]] += g[e];
        }
    }
};

/// The data of x under a checked new shape (reshape, flatten).   dL/dX = reshape(G, X.shape)
/// (recorded: the op reshape, whose own VJP is again a reshape)
template <class T>
Var<T> finish_reshape(OpBuilder<T>& op, const Tensor<T>& xv, const Shape& out)
{
    op.value().resize(out);
    const T* in = xv.data();
    T* o = op.value().data();
    // split over the threads from parallel_threshold() elements (a CNN's flatten: 74k floats)
    kernels::parallel_ranges(xv.size(), [=](std::size_t b, std::size_t e) { std::copy(in + b, in + e, o + b); });
    return op.finish_both([](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Shape& xs = c.input(0).shape();
            c.accumulate(0, reshape(c.grad(), std::vector<std::ptrdiff_t>(xs.begin(), xs.end())));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx) return;
            const T* g = c.grad().data();
            T* d = dx.data();
            const bool acc = dx.accumulate;
            kernels::parallel_ranges(c.grad().size(), [=](std::size_t b, std::size_t e) {
                if (acc)
                    for (std::size_t i = b; i < e; ++i) d[i] += g[i];
                else
                    std::copy(g + b, g + e, d + b);
            });
        }
    });
}

}  // namespace

namespace {
/// reshape's body over a plain list of dimensions (the error messages copy it into a vector).
template <class T>
Var<T> reshape_to(const Var<T>& x, const std::ptrdiff_t* dims, std::size_t n)
{
    auto op = begin_op("reshape", {x});
    struct Dims {  // what the loop and the messages read
        const std::ptrdiff_t* p;
        std::size_t n;
        std::size_t size() const { return n; }
        std::ptrdiff_t operator[](std::size_t i) const { return p[i]; }
    } shape{dims, n};
    const auto shown = [&] { return shape_str(std::vector<std::ptrdiff_t>(dims, dims + n)); };
    const Tensor<T>& xv = x.value();
    Shape out(shape.size());
    std::ptrdiff_t infer = -1;
    std::size_t known = 1, nonzero = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            if (infer >= 0)
                throw ShapeError(fmt::format("reshape: {} to {}: more than one -1", shape_str(xv.shape()), shown()));
            infer = std::ptrdiff_t(i);
        } else if (shape[i] < 0) {
            throw ShapeError(fmt::format("reshape: {} to {}: negative dimension {}", shape_str(xv.shape()),
                                         shown(), shape[i]));
        } else {
            out[i] = std::size_t(shape[i]);
            overflow |= __builtin_mul_overflow(known, out[i], &known);
            // Strides multiply the non-zero dimensions even when one is 0 (an empty tensor).
            if (out[i] != 0) overflow |= __builtin_mul_overflow(nonzero, out[i], &nonzero);
        }
    }
    // xtensor's strides are signed: the non-zero product must also fit a ptrdiff_t.
    overflow |= nonzero > std::size_t(std::numeric_limits<std::ptrdiff_t>::max());
    if (overflow)
        throw ShapeError(fmt::format("reshape: {} to {}: the new shape's element count overflows", shape_str(xv.shape()),
                                     shown()));
    if (infer >= 0 && known == 0 && xv.size() == 0)  // as NumPy: 0 · anything fits, the -1 could be any size
        throw ShapeError(fmt::format("reshape: {} to {}: the -1 is ambiguous next to a 0 dimension",
                                     shape_str(xv.shape()), shown()));
    if (infer >= 0) out[std::size_t(infer)] = known ? xv.size() / known : 0;
    if (shape_size(out) != xv.size() || (infer >= 0 && (known == 0 || xv.size() % known)))
        throw ShapeError(fmt::format("reshape: {} to {}: {} elements do not fit", shape_str(xv.shape()), shown(),
                                     xv.size()));
    return finish_reshape(op, xv, out);
}
}  // namespace

template <class T>
Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape)
{
    return reshape_to(x, shape.data(), shape.size());
}

template <class T>
Var<T> reshape(const Var<T>& x, std::initializer_list<std::ptrdiff_t> shape)
{
    return reshape_to(x, shape.begin(), shape.size());
}

template <class T>
Var<T> flatten(const Var<T>& x, int start_dim)
{
    auto op = begin_op("flatten", {x});
    const Shape& s = x.shape();
    if (s.empty()) return finish_reshape(op, x.value(), Shape{1});
    const std::size_t st = detail::normalize_axis("flatten", start_dim, s);
    Shape out(s.begin(), s.begin() + std::ptrdiff_t(st));  // inline storage up to rank 4: no allocation
    out.push_back(shape_size(Shape(s.begin() + std::ptrdiff_t(st), s.end())));
    return finish_reshape(op, x.value(), out);
}

template <class T>
Var<T> unsqueeze(const Var<T>& x, int dim)
{
    auto op = begin_op("unsqueeze", {x});
    const Shape& in = x.shape();
    const int nd = static_cast<int>(in.size());
    if (dim < -nd - 1 || dim > nd)
        throw ShapeError(fmt::format("unsqueeze: dim {} is out of range for shape {} (expects [{}, {}])", dim,
                                     shape_str(in), -nd - 1, nd));
    const std::size_t at = static_cast<std::size_t>(dim < 0 ? dim + nd + 1 : dim);
    Shape out(in.size() + 1);  // inline storage up to rank 4: no allocation
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = i < at ? in[i] : i == at ? 1 : in[i - 1];
    return finish_reshape(op, x.value(), out);
}

template <class T>
Var<T> squeeze(const Var<T>& x, int dim)
{
    auto op = begin_op("squeeze", {x});
    const Shape& in = x.shape();
    const std::size_t at = detail::normalize_axis("squeeze", dim, in);
    if (in[at] != 1)
        throw ShapeError(fmt::format("squeeze: axis {} of shape {} has size {}, not 1", at, shape_str(in), in[at]));
    Shape out(in.size() - 1);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = in[i < at ? i : i + 1];
    return finish_reshape(op, x.value(), out);
}

template <class T>
Var<T> expand(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape)
{
    auto op = begin_op("expand", {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const auto fail = [&](const std::string& why) {
        return ShapeError(fmt::format("expand: {} to {}: {}", shape_str(in), shape_str(shape), why));
    };
    if (shape.size() < in.size())
        throw fail(fmt::format("the new shape has {} dimensions, fewer than the input's {}", shape.size(), in.size()));
    const std::size_t lead = shape.size() - in.size();  // new leading axes
    Shape out(shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) {
        const std::ptrdiff_t s = shape[i];
        if (i < lead) {
            if (s < 0) throw fail(fmt::format("size {} for the new leading axis {} (-1 only keeps an existing size)", s, i));
            out[i] = std::size_t(s);
            continue;
        }
        const std::size_t d = in[i - lead];
        if (s == -1) {
            out[i] = d;
        } else if (s < 0) {
            throw fail(fmt::format("negative size {} at axis {}", s, i));
        } else if (std::size_t(s) != d && d != 1) {
            throw fail(fmt::format("axis {} has size {}: only a size-1 axis expands (to {})", i, d, s));
        } else {
            out[i] = std::size_t(s);
        }
    }
    std::size_t total = 0;
    if (!checked_shape_size(out, total)) throw fail("the result has more elements than size_t can count");
    op.value().resize(out);
    kernels::broadcast_to(xv.data(), in, op.value().data(), out, T(1), false);
    // dL/dX = G summed back over the expanded axes: accumulate's sum_to (the op sum_to when recorded)
    return op.finish_both([](auto& c) { c.accumulate(0, c.grad()); });
}

template <class T>
Var<T> pad(const Var<T>& x, const std::vector<std::ptrdiff_t>& pads, typename std::common_type<T>::type value)
{
    auto op = begin_op("pad", {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const std::size_t nd = in.size();
    if (pads.size() % 2)
        throw std::invalid_argument(
            fmt::format("pad: pads {} must be (left, right) pairs, got {} entries", shape_str(pads), pads.size()));
    if (pads.size() > 2 * nd)
        throw ShapeError(fmt::format("pad: pads {} name {} axes, input {} has {}", shape_str(pads), pads.size() / 2,
                                     shape_str(in), nd));
    // pads run from the last axis backwards: axis d takes pads[2(nd-1-d)], pads[2(nd-1-d)+1]
    const auto side = [&](std::size_t d, std::size_t s) -> std::ptrdiff_t {
        const std::size_t p = 2 * (nd - 1 - d) + s;
        return p < pads.size() ? pads[p] : 0;
    };
    Shape out(nd), first(nd), count(nd);  // per axis: the output size, the first input index kept, how many
    std::size_t m = 1;
    for (std::size_t d = 0; d < nd; ++d) {
        const auto n = std::ptrdiff_t(in[d]), lo = side(d, 0), size = n + lo + side(d, 1);
        if (size < 0)
            throw ShapeError(fmt::format("pad: pads {} on {} leave axis {} a negative size {}", shape_str(pads),
                                         shape_str(in), d, size));
        out[d] = std::size_t(size);
        const std::ptrdiff_t b = std::max<std::ptrdiff_t>(0, -lo), e = std::min(n, size - lo);
        first[d] = std::size_t(b);
        count[d] = e > b ? std::size_t(e - b) : 0;
        m *= count[d];
    }
    std::size_t total = 0;
    if (!checked_shape_size(out, total))
        throw ShapeError(fmt::format("pad: pads {} on {}: the result has more elements than size_t can count",
                                     shape_str(pads), shape_str(in)));
    op.value().resize(out);
    T* q = op.value().data();
    std::fill(q, q + op.value().size(), T(value));
    // saved_index = [output offsets | input offsets] of the m input elements that land in Y
    std::vector<std::size_t>& at = op.saved_index();
    at.resize(2 * m);
    Shape ctr(nd, 0);  // odometer over the kept block
    for (std::size_t e = 0; e < m; ++e) {
        std::size_t ip = 0, opos = 0;
        for (std::size_t d = 0; d < nd; ++d) {
            const std::size_t i = first[d] + ctr[d];
            ip = ip * in[d] + i;
            opos = opos * out[d] + std::size_t(std::ptrdiff_t(i) + side(d, 0));
        }
        at[e] = opos;
        at[m + e] = ip;
        q[opos] = xv.data()[ip];
        for (std::size_t d = nd; d-- > 0;) {
            if (++ctr[d] < count[d]) break;
            ctr[d] = 0;
        }
    }
    const bool whole = m == xv.size();  // nothing cropped: the input offsets are 0, 1, …, m−1
    return op.finish_both([m, whole](auto& c) {
        // dL/dX = G at the positions X landed in (recorded: take_flat of G, scattered back when cropped)
        const std::vector<std::size_t>& at = c.saved_index();
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const std::vector<std::size_t> opos(at.begin(), at.begin() + std::ptrdiff_t(m));
            if (whole) {
                c.accumulate(0, detail::take_flat(c.grad(), opos, c.input(0).shape()));
            } else {
                const std::vector<std::size_t> ipos(at.begin() + std::ptrdiff_t(m), at.end());
                c.accumulate(0, detail::scatter_add_flat(detail::take_flat(c.grad(), opos, Shape{m}), ipos,
                                                         c.input(0).shape()));
            }
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            const T* g = c.grad().data();
            T* d = dx.data();
            for (std::size_t e = 0; e < m; ++e) d[at[m + e]] += g[at[e]];
        }
    });
}

template <class T>
Var<T> stack(const std::vector<Var<T>>& xs, int axis)
{
    if (xs.empty()) throw ShapeError("stack: no inputs");
    const Shape& first = xs[0].shape();
    for (std::size_t k = 1; k < xs.size(); ++k)
        if (xs[k].shape() != first)
            throw ShapeError(fmt::format("stack: {} and {} (input {}) differ: stacked inputs need one shape",
                                         shape_str(first), shape_str(xs[k].shape()), k));
    const int nd = static_cast<int>(first.size());
    if (axis < -nd - 1 || axis > nd)
        throw ShapeError(fmt::format("stack: axis {} is out of range for inputs of shape {} (expects [{}, {}])", axis,
                                     shape_str(first), -nd - 1, nd));
    thread_local std::vector<Var<T>> parts;  // reused: no allocation once the count is stable
    parts.clear();
    for (const Var<T>& x : xs) parts.push_back(unsqueeze(x, axis));
    Var<T> y = concatenate(parts, axis);  // axis counts in the output rank, as unsqueeze's
    parts.clear();
    return y;
}

namespace {
/// dst = src with its axes permuted (dst axis i is src axis perm[i]), or dst += that (add). When the
/// last axis stays last, whole rows are copied (the attention layers' head splits); else xtensor's
/// strided transpose.
template <class T>
void permute_into(const Tensor<T>& src, const Shape& perm, Tensor<T>& dst, bool add)
{
    const Shape& in = src.shape();
    const std::size_t nd = in.size();
    if (nd < 2 || perm[nd - 1] != nd - 1) {
        if (add)
            xt::noalias(dst) += xt::transpose(src, perm);
        else
            xt::noalias(dst) = xt::transpose(src, perm);
        return;
    }
    const std::size_t row = in[nd - 1];
    Shape stride(nd), count(nd - 1, 0);  // src strides; the output row's multi-index
    stride[nd - 1] = 1;
    for (std::size_t k = nd - 1; k-- > 0;) stride[k] = stride[k + 1] * in[k + 1];
    const std::size_t rows = row == 0 ? 0 : src.size() / row;
    const T* s = src.data();
    T* d = dst.data();
    std::size_t offset = 0;  // src offset of the current output row
    for (std::size_t r = 0; r < rows; ++r, d += row) {
        if (add)
            for (std::size_t j = 0; j < row; ++j) d[j] += s[offset + j];
        else
            std::copy_n(s + offset, row, d);
        for (std::size_t i = nd - 1; i-- > 0;) {  // next output row: odometer over output axes
            offset += stride[perm[i]];
            if (++count[i] < in[perm[i]]) break;
            offset -= count[i] * stride[perm[i]];
            count[i] = 0;
        }
    }
}

template <class T>
Var<T> permute_to(const Var<T>& x, const Shape& perm)
{
    auto op = begin_op("permute", {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const Shape& p = perm;
    Shape inverse(perm.size(), in.size());  // inline storage up to rank 4: no allocation
    bool ok = perm.size() == in.size();
    for (std::size_t i = 0; ok && i < perm.size(); ++i) {
        ok = perm[i] < in.size() && inverse[perm[i]] == in.size();
        if (ok) inverse[perm[i]] = i;
    }
    if (!ok) throw ShapeError(fmt::format("permute: {} is not a permutation of the axes of {}", shape_str(perm), shape_str(in)));
    Shape out(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = in[perm[i]];
    op.value().resize(out);
    permute_into(xv, p, op.value(), false);
    return op.finish_both([inverse](auto& c) {  // dL/dX = permute(G, perm⁻¹)
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, permute_to(c.grad(), inverse));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (dx) permute_into(c.grad(), inverse, *dx.buffer, dx.accumulate);
        }
    });
}
}  // namespace

template <class T>
Var<T> permute(const Var<T>& x, const std::vector<std::size_t>& perm)
{
    return permute_to(x, Shape(perm.begin(), perm.end()));
}

template <class T>
Var<T> permute(const Var<T>& x, std::initializer_list<std::size_t> perm)
{
    return permute_to(x, Shape(perm.begin(), perm.end()));
}

template <class T>
Var<T> transpose(const Var<T>& x)
{
    const std::size_t nd = x.dim();
    if (nd < 2) throw ShapeError(fmt::format("transpose: needs at least 2 dimensions, got {}", shape_str(x.shape())));
    Shape perm(nd);
    std::iota(perm.begin(), perm.end(), 0);
    std::swap(perm[nd - 1], perm[nd - 2]);
    return permute_to(x, perm);
}

namespace {
/// slice, and select (drop_axis: the one sliced row without its axis); one backward for both.
template <class T>
Var<T> slice_impl(const char* name, const Var<T>& x, int axis, std::ptrdiff_t start, std::ptrdiff_t stop,
                  std::ptrdiff_t step, bool drop_axis)
{
    auto op = begin_op(name, {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const std::size_t ax = detail::normalize_axis(name, axis, in);
    const auto n = std::ptrdiff_t(in[ax]);
    const std::ptrdiff_t user_start = start, user_stop = stop;  // the message shows what was asked
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    if (step < 1 || start < 0 || stop > n || start > stop)
        throw ShapeError(fmt::format("slice: [{}:{}:{}] is out of range for axis {} of shape {}", user_start, user_stop,
                                     step, ax, shape_str(in)));
    const std::ptrdiff_t span = stop - start;  // in [0, n]: ceil(span / step) without overflow
    const std::size_t len = span == 0 ? 0 : std::size_t((span - 1) / step + 1);
    const detail::AxisSplit s = detail::split_at(in, ax);
    Shape out = in;
    out[ax] = len;
    if (drop_axis) out.erase(out.begin() + std::ptrdiff_t(ax));
    op.value().resize(out);
    const T* p = xv.data();
    T* q = op.value().data();
    for (std::size_t o = 0; o < s.outer; ++o)
        for (std::size_t j = 0; j < len; ++j)
            std::copy_n(p + (o * s.n + std::size_t(start) + j * std::size_t(step)) * s.inner, s.inner,
                        q + (o * len + j) * s.inner);
    return op.finish_both([s, len, start, step](auto& c) {
        // dL/dX = G at the sliced positions, 0 elsewhere (recorded: scatter_add_flat of G at those
        // flat positions, whose VJP take_flat is this slice again)
        const auto at = [&](std::size_t o, std::size_t j) {  // flat offset in X of row j of block o
            return (o * s.n + std::size_t(start) + j * std::size_t(step)) * s.inner;
        };
        if constexpr (is_graph_backward_v<decltype(c)>) {
            std::vector<std::size_t> pos(s.outer * len * s.inner);
            for (std::size_t o = 0; o < s.outer; ++o)
                for (std::size_t j = 0; j < len; ++j)
                    for (std::size_t i = 0; i < s.inner; ++i) pos[(o * len + j) * s.inner + i] = at(o, j) + i;
            c.accumulate(0, detail::scatter_add_flat(c.grad(), pos, c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            const T* g = c.grad().data();
            T* d = dx.data();
            for (std::size_t o = 0; o < s.outer; ++o)
                for (std::size_t j = 0; j < len; ++j) {
                    T* dp = d + at(o, j);
                    const T* gp = g + (o * len + j) * s.inner;
                    for (std::size_t i = 0; i < s.inner; ++i) dp[i] += gp[i];
                }
        }
    });
}
}  // namespace

template <class T>
Var<T> slice(const Var<T>& x, int axis, std::ptrdiff_t start, std::ptrdiff_t stop, std::ptrdiff_t step)
{
    return slice_impl("slice", x, axis, start, stop, step, false);
}

template <class T>
Var<T> select(const Var<T>& x, int axis, std::ptrdiff_t index)
{
    const std::size_t ax = detail::normalize_axis("select", axis, x.shape());
    const auto n = std::ptrdiff_t(x.shape()[ax]);
    const std::ptrdiff_t i = index < 0 ? index + n : index;
    if (i < 0 || i >= n)
        throw ShapeError(fmt::format("select: index {} is out of range for axis {} of shape {}", index, ax, shape_str(x.shape())));
    return slice_impl("select", x, axis, i, i + 1, 1, true);
}

template <class T>
Var<T> concatenate(const std::vector<Var<T>>& xs, int axis)
{
    if (xs.empty()) throw ShapeError("concatenate: no inputs");
    OpBuilder<T> op("concatenate", xs.data(), xs.size());
    const Shape& first = xs[0].shape();
    const std::size_t ax = detail::normalize_axis("concatenate", axis, first);
    std::vector<std::size_t>& lens = op.saved_index();  // each input's length along the axis
    lens.clear();
    Shape out = first;
    out[ax] = 0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
        const Shape& sk = xs[k].shape();
        bool ok = sk.size() == first.size();
        for (std::size_t i = 0; ok && i < sk.size(); ++i) ok = (i == ax) || sk[i] == first[i];
        if (!ok)
            throw ShapeError(fmt::format("concatenate: {} and {} (input {}) differ outside axis {}", shape_str(first),
                                         shape_str(sk), k, ax));
        lens.push_back(sk[ax]);
        out[ax] += sk[ax];
    }
    const detail::AxisSplit s = detail::split_at(out, ax);
    op.value().resize(out);
    T* q = op.value().data();
    std::size_t offset = 0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
        const T* p = xs[k].value().data();
        const std::size_t chunk = lens[k] * s.inner;
        for (std::size_t o = 0; o < s.outer; ++o)
            std::copy_n(p + o * chunk, chunk, q + (o * s.n + offset) * s.inner);
        offset += lens[k];
    }
    const int a = static_cast<int>(ax);
    return op.finish_both([s, a](auto& c) {
        // dL/dXₖ = the slice of G that Xₖ filled (recorded: the op slice along the axis)
        const std::vector<std::size_t>& lens = c.saved_index();
        std::size_t offset = 0;
        for (std::size_t k = 0; k < lens.size(); ++k) {
            if constexpr (is_graph_backward_v<decltype(c)>) {
                if (c.needs(k))
                    c.accumulate(k, slice(c.grad(), a, std::ptrdiff_t(offset), std::ptrdiff_t(offset + lens[k])));
            } else {
                const T* g = c.grad().data();
                const std::size_t chunk = lens[k] * s.inner;
                if (const InputGrad<T> dx = c.input_grad(k)) {
                    T* d = dx.data();
                    for (std::size_t o = 0; o < s.outer; ++o) {
                        const T* gp = g + (o * s.n + offset) * s.inner;
                        T* dp = d + o * chunk;
                        for (std::size_t i = 0; i < chunk; ++i) dp[i] = dx.accumulate ? dp[i] + gp[i] : gp[i];
                    }
                }
            }
            offset += lens[k];
        }
    });
}

template <class T>
Var<T> gather(const Var<T>& x, int axis, const IndexTensor& index)
{
    auto op = begin_op("gather", {x});
    const Tensor<T>& xv = x.value();
    const Shape& in = xv.shape();
    const std::size_t ax = detail::normalize_axis("gather", axis, in);
    bool ok = index.dimension() == in.size();
    for (std::size_t i = 0; ok && i < in.size(); ++i) ok = (i == ax) || index.shape()[i] == in[i];
    if (!ok)
        throw ShapeError(fmt::format("gather: input {} and index {}: the index needs the input's rank and its shape "
                                     "outside axis {}", shape_str(in), shape_str(index.shape()), ax));
    const detail::AxisSplit s = detail::split_at(in, ax);
    const std::size_t k = index.shape()[ax];
    // Flat source offset of every output element, checked once here and kept for backward.
    std::vector<std::size_t>& src = op.saved_index();
    src.resize(index.size());
    const Index* ip = index.data();
    for (std::size_t o = 0; o < s.outer; ++o)
        for (std::size_t j = 0; j < k; ++j)
            for (std::size_t i = 0; i < s.inner; ++i) {
                const std::size_t at = (o * k + j) * s.inner + i;
                const Index v = ip[at];
                if (v < 0 || std::size_t(v) >= s.n)
                    throw std::out_of_range(fmt::format("gather: index {} at flat position {} is outside [0,{}) for "
                                                        "axis {} of shape {}", v, at, s.n, ax, shape_str(in)));
                src[at] = (o * s.n + std::size_t(v)) * s.inner + i;
            }
    op.value().resize(index.shape());
    T* q = op.value().data();
    const T* p = xv.data();
    for (std::size_t e = 0; e < src.size(); ++e) q[e] = p[src[e]];
    return op.finish_both(ScatterAddBackward<T>{});
}

template <class T>
Var<T> pick(const Var<T>& x, const IndexTensor& labels)
{
    auto op = begin_op("pick", {x});
    if (x.dim() != 2 || labels.dimension() != 1 || labels.shape()[0] != x.shape()[0])
        throw ShapeError(fmt::format("pick: scores {} and labels {}: needs scores (B,C) and labels (B)", shape_str(x.shape()),
                                     shape_str(labels.shape())));
    const std::size_t C = x.shape()[1];
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels(i) < 0 || std::size_t(labels(i)) >= C)
            throw std::out_of_range(fmt::format("pick: label {} at position {} is outside [0,{})", labels(i), i, C));
    std::vector<std::size_t>& src = op.saved_index();  // flat offset of each picked element
    src.resize(labels.size());
    op.value().resize(Shape{labels.size()});
    for (std::size_t i = 0; i < labels.size(); ++i) {
        src[i] = i * C + std::size_t(labels(i));
        op.value()(i) = x.value().data()[src[i]];
    }
    return op.finish_both(ScatterAddBackward<T>{});
}

template <class T>
Var<T> one_hot(Tape<T>& tape, const IndexTensor& labels, std::size_t num_classes)
{
    if (labels.dimension() != 1)
        throw ShapeError(fmt::format("one_hot: labels {} must be 1-D", shape_str(labels.shape())));
    std::size_t total = 0;
    if (!checked_shape_size(Shape{labels.size(), num_classes}, total))
        throw ShapeError(fmt::format("one_hot: ({},{}) has more elements than size_t can count", labels.size(), num_classes));
    for (std::size_t i = 0; i < labels.size(); ++i)  // all checked before the (B,C) allocation
        if (labels(i) < 0 || std::size_t(labels(i)) >= num_classes)
            throw std::out_of_range(fmt::format("one_hot: label {} at position {} is outside [0,{})", labels(i), i,
                                                num_classes));
    thread_local Tensor<T> t;  // reused: a training step allocates nothing here once shapes are stable
    t.resize(Shape{labels.size(), num_classes});
    std::fill(t.begin(), t.end(), T(0));
    for (std::size_t i = 0; i < labels.size(); ++i) t(i, std::size_t(labels(i))) = T(1);
    return tape.constant(t);
}

#define XGRAD_INSTANTIATE(T)                                                                          \
    template Var<T> reshape(const Var<T>&, const std::vector<std::ptrdiff_t>&);                       \
    template Var<T> reshape(const Var<T>&, std::initializer_list<std::ptrdiff_t>);                    \
    template Var<T> flatten(const Var<T>&, int);                                                      \
    template Var<T> unsqueeze(const Var<T>&, int);                                                    \
    template Var<T> squeeze(const Var<T>&, int);                                                      \
    template Var<T> expand(const Var<T>&, const std::vector<std::ptrdiff_t>&);                        \
    template Var<T> pad(const Var<T>&, const std::vector<std::ptrdiff_t>&, T);                        \
    template Var<T> stack(const std::vector<Var<T>>&, int);                                           \
    template Var<T> permute(const Var<T>&, const std::vector<std::size_t>&);                          \
    template Var<T> permute(const Var<T>&, std::initializer_list<std::size_t>);                          \
    template Var<T> transpose(const Var<T>&);                                                         \
    template Var<T> slice(const Var<T>&, int, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t);        \
    template Var<T> select(const Var<T>&, int, std::ptrdiff_t);                                        \
    template Var<T> concatenate(const std::vector<Var<T>>&, int);                                     \
    template Var<T> gather(const Var<T>&, int, const IndexTensor&);                                   \
    template Var<T> pick(const Var<T>&, const IndexTensor&);                                          \
    template Var<T> one_hot(Tape<T>&, const IndexTensor&, std::size_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

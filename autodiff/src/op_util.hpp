#pragma once
// Internal helpers shared by the op families.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "xgrad/errors.hpp"
#include "xgrad/op.hpp"

namespace xgrad::detail {

/// Axis in [-ndim, ndim) → [0, ndim); ShapeError naming the op otherwise.
inline std::size_t normalize_axis(const char* op, int axis, const Shape& shape)
{
    const int nd = static_cast<int>(shape.size());
    if (axis < -nd || axis >= nd)
        throw ShapeError(fmt::format("{}: axis {} is out of range for shape {}", op, axis, shape_str(shape)));
    return static_cast<std::size_t>(axis < 0 ? axis + nd : axis);
}

/// NumPy broadcast of two shapes; ShapeError naming the op and both shapes if they do not fit.
inline Shape broadcast_shape(const char* op, const Shape& a, const Shape& b)
{
    const std::size_t nd = std::max(a.size(), b.size());
    Shape out(nd);
    for (std::size_t i = 0; i < nd; ++i) {
        const std::size_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
        const std::size_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
        if (da != db && da != 1 && db != 1)
            throw ShapeError(fmt::format("{}: {} and {} cannot be broadcast: dimensions {} and {} differ at axis {} of the result",
                                         op, shape_str(a), shape_str(b), da, db, i));
        out[i] = std::max(da, db);
        if (da == 0 || db == 0) out[i] = 0;
    }
    return out;
}

/// (outer, n, inner) split of a shape around `axis`, so axis ops are loops over contiguous memory.
struct AxisSplit {
    std::size_t outer = 1, n = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& s, std::size_t axis)
{
    AxisSplit r;
    for (std::size_t i = 0; i < axis; ++i) r.outer *= s[i];
    r.n = s[axis];
    for (std::size_t i = axis + 1; i < s.size(); ++i) r.inner *= s[i];
    return r;
}

/// Y (shape `shape`) with Y.flat[i] = X.flat[index[i]]; VJP: scatter_add_flat. Both record their own
/// copy of `index`, so they are each other's VJP to any order (max, pooling, gather, pick use them
/// in the recorded sweep).
template <class T>
Var<T> take_flat(const Var<T>& x, const std::vector<std::size_t>& index, const Shape& shape);
/// Y = zeros(shape) with Y.flat[index[i]] += G.flat[i]; VJP: take_flat.
template <class T>
Var<T> scatter_add_flat(const Var<T>& g, const std::vector<std::size_t>& index, const Shape& shape);

/// G ⊙ [X > 0] as an op: relu's recorded VJP (activation.cpp), also the fused activation + pooling
/// op's. Its VJP in G is itself; in X, 0.
template <class T>
Var<T> relu_backward(const Var<T>& g, const Var<T>& x);

/// A contiguous view of a tensor's data with another shape (no copy).
template <class T, class S>
auto view_as(const Tensor<T>& t, const S& shape)
{
    return xt::adapt(t.data(), t.size(), xt::no_ownership(), shape);
}

/// A backward that multiplies G by the mask the forward kept in saved() (1 where the input
/// passes the gradient, 0 where not; ½ at ties) for input 0, and by 1 − mask for input 1.
template <class T>
auto masked_backward(bool two_inputs)
{
    return std::make_pair(
        [two_inputs](BackwardContext<T>& c) {
            if (c.needs(0)) c.accumulate(0, c.grad() * c.saved());
            if (two_inputs && c.needs(1)) c.accumulate(1, c.grad() * (T(1) - c.saved()));
        },
        [two_inputs](GraphBackwardContext<T>& c) {
            const Var<T> m = c.constant(c.saved());
            if (c.needs(0)) c.accumulate(0, c.grad() * m);
            if (two_inputs && c.needs(1)) c.accumulate(1, c.grad() * (T(1) - m));
        });
}

}  // namespace xgrad::detail

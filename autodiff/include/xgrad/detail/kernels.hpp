#pragma once
// Detail: the convolution and pooling kernels behind the conv2d / *_pool2d ops, also used by
// hand-written backprop (benchmarks, xgrad::manual) so both run the same arithmetic.
// Raw contiguous row-major (NCHW) buffers; every "fresh" flag says the output holds garbage and
// must be assigned rather than accumulated into.
#include <cstddef>

#include "xgrad/ops/conv.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::detail {

struct ConvGeom {
    std::size_t n, c, h, w, o, kh, kw, s, p, oh, ow;
    std::size_t k() const { return c * kh * kw; }  // rows of the im2col matrix
    std::size_t l() const { return n * oh * ow; }  // its columns
};

/// Checks shapes (ShapeError naming conv2d and both shapes) and computes the output geometry.
ConvGeom conv_geometry(const Shape& x, const Shape& w, const Shape* bias, Conv2dOptions options);

/// y (N,O,OH,OW) = conv(x, w) + b (b may be null). `cols`, if not null, receives the im2col matrix
/// (g.k() × g.l() values) so the backward pass can reuse it.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, const ConvGeom& g, T* y, T* cols = nullptr);

/// Given gy = dL/dy: dx (if non-null), dw (if non-null), db (if non-null); each assigned when its
/// fresh flag is set, accumulated otherwise. `cols`: the forward's im2col matrix, or null to rebuild it.
template <class T>
void conv2d_backward(const T* x, const T* w, const T* gy, const ConvGeom& g, T* dx, bool dx_fresh, T* dw, bool dw_fresh,
                     T* db, bool db_fresh, const T* cols = nullptr);

struct PoolGeom {
    std::size_t planes, h, w, k, s, oh, ow;
};
PoolGeom pool_geometry(const char* op, const Shape& x, std::size_t kernel, std::size_t stride);

template <class T>
void avg_pool2d_forward(const T* x, const PoolGeom& g, T* y);
/// dx += scatter of gy / k² (dx must be initialised).
template <class T>
void avg_pool2d_backward_add(const T* gy, const PoolGeom& g, T* dx);

}  // namespace xgrad::detail

#pragma once
// Kernels: 2-D convolution (NCHW) by im2col over the whole batch and one GEMM forward, two
// backward. Raw contiguous row-major buffers; no Var, no tape. The conv2d op (double, and float when
// the build has no oneDNN: float otherwise runs on conv_dnnl.hpp) and the hand-written backprop of
// xgrad::reference call these functions.
#include <cstddef>

#include "xgrad/tensor.hpp"

namespace xgrad::kernels {

struct ConvGeom {
    std::size_t n, c, h, w, o, kh, kw, s, p, oh, ow;
    std::size_t k() const { return c * kh * kw; }  // rows of the im2col matrix
    std::size_t l() const { return n * oh * ow; }  // its columns
};

/// Checks shapes (ShapeError naming conv2d and both shapes) and computes the output geometry.
ConvGeom conv_geometry(const Shape& x, const Shape& w, const Shape* bias, std::size_t stride, std::size_t padding);

/// cols (g.k() × g.l()) = x's im2col matrix: cols[(c·KH + p)·KW + q][(n·OH + i)·OW + j] =
/// x[n, c, i·s − pad + p, j·s − pad + q] (0 outside), the matrix conv2d_forward_cols and the
/// `cols` argument of conv2d_backward take. At stride 1 through the row kernels of
/// conv2d_backward_rows (for the recorded VJPs; conv2d_forward keeps its own loop).
template <class T>
void im2col(const T* x, const ConvGeom& g, T* cols);

/// y (N,O,OH,OW) = conv(x, w) + b (b may be null). `cols`, if not null, receives the im2col matrix
/// (g.k() × g.l() values) so the backward pass can reuse it.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, const ConvGeom& g, T* y, T* cols = nullptr);
/// The same from an im2col matrix already built (cols, g.k() × g.l(): a forward's, kept).
template <class T>
void conv2d_forward_cols(const T* cols, const T* w, const T* b, const ConvGeom& g, T* y);

/// Gradients of y = conv(x, w) + b given gy = dL/dy, each output optional (null: not wanted).
/// Every `*_acc` flag: true adds into the buffer, false overwrites it (the buffer may hold garbage).
/// `cols`: the forward's im2col matrix, or null to rebuild it.
template <class T>
void conv2d_backward(const T* x, const T* w, const T* gy, const ConvGeom& g, T* dx, bool dx_acc, T* dw, bool dw_acc,
                     T* db, bool db_acc, const T* cols = nullptr);

/// conv2d_backward without db, for the recorded VJPs (conv2d_input_grad, conv2d_weight_grad):
/// the same sums, but at stride 1 the rows of G's transpose, of the im2col matrix and of col2im
/// move in SIMD batches, not through one memmove/memset call per row (LeNet's rows are 10 values).
/// conv2d's first-order backward keeps conv2d_backward.
template <class T>
void conv2d_backward_rows(const T* x, const T* w, const T* gy, const ConvGeom& g, T* dx, bool dx_acc, T* dw,
                          bool dw_acc, const T* cols = nullptr);

}  // namespace xgrad::kernels

#pragma once
// Kernels: float 2-D convolution (NCHW or NHWC input, OIHW weight) on oneDNN's convolution primitives
// (direct JIT kernels, not im2col + GEMM). Raw contiguous buffers; no Var, no tape. Primitives,
// their layout reorders and the scratchpad are cached per thread by shape and options, so after
// the first call with a shape nothing is created and nothing is allocated by xgrad.
// Available only when XGRAD_USE_DNNL is defined (dnnl_conv_available() says so at run time too).
#include <cstddef>

namespace xgrad::kernels {

struct DnnlConvShape {
    std::size_t n, c, h, w;       // input (N, C, H, W)
    std::size_t o, kh, kw;        // weight (O, C/groups, KH, KW)
    std::size_t stride, padding;  // both spatial dims
    std::size_t dilation = 1, groups = 1;
    /// x (N,H,W,C) and y (N,OH,OW,O) instead of NCHW (the weight stays OIHW): the primitives then
    /// work in that layout themselves, with no reorder of either.
    bool channels_last = false;
    std::size_t oh() const { return (h + 2 * padding - dilation * (kh - 1) - 1) / stride + 1; }
    std::size_t ow() const { return (w + 2 * padding - dilation * (kw - 1) - 1) / stride + 1; }
};

/// Whether this build has the oneDNN convolution (XGRAD_USE_DNNL) and it is not turned off by
/// the environment variable XGRAD_DNNL_CONV=0 (read once; for comparing the two paths).
bool dnnl_conv_available();

/// y (N,O,OH,OW) = conv(x, w) + b (b may be null). Shapes must be valid (the caller checks them).
void dnnl_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y);

/// Gradients given gy = dL/dy (N,O,OH,OW); each output optional (null: not wanted). Every `*_acc`
/// flag: true adds into the buffer, false overwrites it (it may hold garbage). dx may be the same
/// buffer as dw (conv2d(x, x)) only with both flags true.
void dnnl_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                          bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc);

/// x kept from the forward for the weight gradient. The primitives work in their own blocked layout
/// (nChw16c here), so the forward reorders x into it, and the weight gradient did so again. The
/// number of floats x takes in the forward's layout, 0 when the forward reads x as it is (then there
/// is nothing to keep). A channels-last strided 1 × 1 convolution keeps its samples of x instead
/// (the pixels it reads, gathered once for both passes):
std::size_t dnnl_conv2d_kept_input_size(const DnnlConvShape& s, bool bias);
/// The forward, reordering x into x_kept (dnnl_conv2d_kept_input_size floats; null: nowhere)
/// instead of a scratch buffer, and the backward, reading x from there when its weight-gradient
/// primitive wants that layout (then x itself is not read). x_kept must hold what this forward,
/// with the same x and shape, wrote into it.
void dnnl_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                         float* x_kept);
void dnnl_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                          bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, const float* x_kept);

}  // namespace xgrad::kernels

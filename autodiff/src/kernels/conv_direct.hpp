#pragma once
// Kernels: float 2-D convolution (NCHW, OIHW, stride 1) computed directly in SIMD registers, for
// the convolutions oneDNN's primitives serve badly: few input channels (LeNet's first layer has
// one), where oneDNN's kernels fill 1 of their 16-channel blocks. Each image's channels are copied
// into zero-padded planes of row length Wp = W + 2·pad, so every tap (a, q) of the kernel is one
// flat offset a·Wp + q and a row of outputs is a contiguous run of vectors (the Wp − OW columns
// past each row are computed and dropped). Raw contiguous buffers; no Var, no tape. Scratch is per
// thread and kept, so once a shape has run nothing is allocated.
#include <cstddef>

#include "kernels/conv_dnnl.hpp"

namespace xgrad::kernels {

/// Which passes of a convolution the direct kernels serve. Only stride 1, no dilation, one group,
/// at most 3 input channels; then the input gradient always (oneDNN's takes 4–14× as long on one
/// channel), the forward and the weight gradient only for kernels of 25 taps or more (5×5: 1.0–2.4×
/// faster; on 3×3 kernels oneDNN's are faster). Measured with `bench_parallel conv`
/// (docs/performance.md). The environment variable XGRAD_DIRECT_CONV=0 turns them off (read once;
/// for comparing the paths).
struct DirectConvPasses {
    bool forward = false, input_grad = false, weight_grad = false;
};
DirectConvPasses direct_conv_passes(const DnnlConvShape& s);

/// y (N,O,OH,OW) = conv(x, w) + b (b may be null). Shapes must be valid, stride 1, dilation 1, one
/// group (any channel counts: direct_conv_passes says where these kernels are the faster ones).
void direct_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y);

/// Gradients given gy (N,O,OH,OW), as dnnl_conv2d_backward: each output optional (null: not
/// wanted), every `*_acc` flag true adds into the buffer, false overwrites it. The sums over the
/// batch run in image order whatever the thread count, so 1 and 2 threads give the same bits.
void direct_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc);

}  // namespace xgrad::kernels

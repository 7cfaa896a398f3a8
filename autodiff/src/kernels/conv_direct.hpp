#pragma once
// Kernels: float 2-D convolution (NCHW, OIHW, stride 1) computed directly in SIMD registers, for
// the convolutions oneDNN's primitives serve badly: few input channels (LeNet's layers have 1 and
// 6), where oneDNN's kernels fill 1 or 6 of their 16-channel blocks. Two ways to fill the vectors:
//  - flat planes: each image's channels are copied into zero-padded planes of row length
//    Wp = W + 2·pad, so every tap (a, q) of the kernel is one flat offset a·Wp + q and a row of
//    outputs is a contiguous run of vectors (the Wp − OW columns past each row are computed and
//    dropped). Forward, and the gradients for 1–3 input channels.
//  - channel lanes: the vector runs over the output channels (weight gradient) or the input
//    channels (input gradient, scattered from the output positions), so only positions that exist
//    are summed. The gradients of LeNet's second layer.
// Raw contiguous buffers; no Var, no tape. Scratch is per thread and kept, so once a shape has run
// nothing is allocated. Sums over the batch run in image order: 1 and 2 threads give the same bits.
#include <cstddef>

#include "kernels/conv_dnnl.hpp"
#include "kernels/isa.hpp"

namespace xgrad::kernels {

/// Which passes of a convolution the direct kernels serve, where they were measured faster than
/// oneDNN's primitives (`bench_parallel conv`, docs/performance.md). Only stride 1, no dilation, one
/// group. Input gradient: at most 8 input channels (oneDNN's takes 4–14× as long on one channel,
/// 1.5× on LeNet's second layer). Forward: at most 3 input channels and kernels of 25 taps or more
/// (5×5; on 3×3 oneDNN's is faster). Weight gradient: at most 8 input channels, 8 or more output
/// channels and C·KH·KW ≥ 100 (LeNet's second layer), or at most 3 input channels, fewer than 8
/// output channels and 25 taps or more (LeNet's first). The environment variable
/// XGRAD_DIRECT_CONV=0 turns them off (read once; for comparing the paths).
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

// The functions above run the widest instruction set the CPU has (kernels/isa.hpp: widest_isa()).
/// Whether AVX-512 computes the input gradient with dX's rows in its lanes (4–8 input channels),
/// where AVX2 puts the channels in its lanes: 6 channels fill 6 of AVX2's 8 lanes but only 6 of
/// AVX-512's 16, while a 14-wide row fills 14 (docs/performance.md, "Input gradient by rows").
bool input_grad_by_rows_shape(const DnnlConvShape& s);
/// The same on one instruction set, which must be supported (for tests and measurements).
void direct_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                           DirectIsa isa);
void direct_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, DirectIsa isa);

/// Per-thread scratch of the kernels, kept between calls (no allocation once a shape has run). In
/// conv_direct.cpp, so that the instruction-set files instantiate no std::vector of their own.
enum class DirectScratch { image_a, image_b, partials, weights };
float* direct_scratch(DirectScratch slot, std::size_t n);
std::size_t* direct_offsets(std::size_t n);

/// The float convolution as the conv2d op runs it: the direct kernels for the passes
/// direct_conv_passes gives, oneDNN's primitives for the rest (needs dnnl_conv_available()). Same
/// arguments and flags as dnnl_conv2d_forward / dnnl_conv2d_backward; dx and dw may share a buffer
/// only with both flags true.
void float_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y);
void float_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                           bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc);
/// The same keeping x for the weight gradient where oneDNN's forward reorders it
/// (dnnl_conv2d_kept_input_size: a channels-last strided 1 × 1 keeps its samples of x; 0 when the
/// forward runs on the direct kernels or reads x as it is).
std::size_t float_conv2d_kept_input_size(const DnnlConvShape& s, bool bias);
void float_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                          float* x_kept);
void float_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                           bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, const float* x_kept);

}  // namespace xgrad::kernels

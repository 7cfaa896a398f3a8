#pragma once
// 2-D convolution (NCHW) by im2col + one GEMM over the whole batch.
#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// The options of a 2-D convolution, as torch::nn::Conv2dOptions, with chainable setters:
/// Conv2dOptions(in, out, k).stride(s).padding(p).bias(false) builds the layer nn::Conv2d;
/// the op conv2d takes its geometry from W and reads stride, padding, dilation and groups:
/// conv2d(x, w, Conv2dOptions().stride(2).padding(1)).
class Conv2dOptions {
public:
    /// Channels and kernel 0 (for the op, which reads them from W), stride 1, padding 0, bias.
    Conv2dOptions() = default;
    /// A layer's options: in_channels → out_channels with a kernel_size × kernel_size kernel.
    Conv2dOptions(std::size_t in_channels, std::size_t out_channels, std::size_t kernel_size)
        : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size)
    {
    }
    /// Input channels C of a layer.
    XGRAD_ARG(std::size_t, in_channels) = 0;
    /// Output channels O of a layer.
    XGRAD_ARG(std::size_t, out_channels) = 0;
    /// The side of a layer's square kernel.
    XGRAD_ARG(std::size_t, kernel_size) = 0;
    /// The step between windows.
    XGRAD_ARG(std::size_t, stride) = 1;
    /// Zeros added on every side.
    XGRAD_ARG(std::size_t, padding) = 0;
    /// The spacing between kernel taps (1: adjacent).
    XGRAD_ARG(std::size_t, dilation) = 1;
    /// Channel groups: input and output channels split into `groups` blocks, block i of the output
    /// seeing only block i of the input; W is (O, C/groups, KH, KW). groups = C is a depthwise conv.
    XGRAD_ARG(std::size_t, groups) = 1;
    /// Whether a layer has a bias.
    XGRAD_ARG(bool, bias) = true;
    /// Channels-last data (Keras's data_format "channels_last", not PyTorch's strided memory
    /// format): X (N,H,W,C) and Y (N,OH,OW,O); W stays (O,C/groups,KH,KW), so state dicts are
    /// PyTorch's. Float runs oneDNN's NHWC kernels with no reorder of X, Y or their gradients;
    /// double (and builds without oneDNN) the NCHW convolution between two permutes.
    XGRAD_ARG(bool, channels_last) = false;
};

/// Y[n,o,i,j] = b[o] + Σ_{c,p,q} W[o,c,p,q] · X[n, c, i·s − pad + p, j·s − pad + q]
/// X (N,C,H,W), W (O,C,KH,KW), b (O) or none → Y (N,O,OH,OW), OH = ⌊(H + 2·pad − KH)/s⌋ + 1.
/// With cols = im2col(X) (C·KH·KW, N·OH·OW) and G as (O, N·OH·OW):
///   dW = G·colsᵀ,  dX = col2im(Wᵀ·G),  db = Σ_{n,i,j} G.
/// With channels_last: X (N,H,W,C) → Y (N,OH,OW,O), the same values as
/// permute(conv2d(permute(X, {0,3,1,2}), W, b), {0,2,3,1}) and the same VJPs permuted likewise.
/// Differentiable to any order: the recorded VJPs are the internal ops conv2d_input_grad(G, W)
/// (the transposed convolution) and conv2d_weight_grad(X, G), whose own VJPs are conv2d and each
/// other, and sum over (N,OH,OW) for the bias.
///
/// With dilation d > 1 or groups > 1 (W (O, C/groups, KH, KW)): the taps of W are spaced d apart
/// (W scattered into a zero kernel of side d·(K−1)+1, VJP: the taps gathered back), and output
/// block i = conv2d(X[:, block i of C], W[block i of O]) joined along the channels. Composed of
/// recorded ops, so differentiable to any order; slower than the dense path (one GEMM per group,
/// and the dilated kernel's zeros are multiplied), and it allocates its index list per call.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, Conv2dOptions options = {});
/// Without bias.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, Conv2dOptions options = {});

}  // namespace xgrad

#pragma once
// 2-D convolution (NCHW) by im2col + one GEMM over the whole batch.
#include "xgrad/tape.hpp"

namespace xgrad {

/// The options of a 2-D convolution, as torch::nn::Conv2dOptions, with chainable setters:
/// Conv2dOptions(in, out, k).stride(s).padding(p).bias(false) builds the layer nn::Conv2d;
/// the op conv2d takes its geometry from W and reads only stride and padding:
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
    std::size_t in_channels() const { return in_channels_; }
    /// Sets the input channels.
    Conv2dOptions& in_channels(std::size_t v) { in_channels_ = v; return *this; }
    /// Output channels O of a layer.
    std::size_t out_channels() const { return out_channels_; }
    /// Sets the output channels.
    Conv2dOptions& out_channels(std::size_t v) { out_channels_ = v; return *this; }
    /// The side of a layer's square kernel.
    std::size_t kernel_size() const { return kernel_size_; }
    /// Sets the kernel side.
    Conv2dOptions& kernel_size(std::size_t v) { kernel_size_ = v; return *this; }
    /// The step between windows (default 1).
    std::size_t stride() const { return stride_; }
    /// Sets the stride.
    Conv2dOptions& stride(std::size_t v) { stride_ = v; return *this; }
    /// Zeros added on every side (default 0).
    std::size_t padding() const { return padding_; }
    /// Sets the padding.
    Conv2dOptions& padding(std::size_t v) { padding_ = v; return *this; }
    /// Whether a layer has a bias (default true).
    bool bias() const { return bias_; }
    /// Sets whether a layer has a bias.
    Conv2dOptions& bias(bool v) { bias_ = v; return *this; }

private:
    std::size_t in_channels_ = 0, out_channels_ = 0, kernel_size_ = 0;
    std::size_t stride_ = 1, padding_ = 0;
    bool bias_ = true;
};

/// Y[n,o,i,j] = b[o] + Σ_{c,p,q} W[o,c,p,q] · X[n, c, i·s − pad + p, j·s − pad + q]
/// X (N,C,H,W), W (O,C,KH,KW), b (O) or none → Y (N,O,OH,OW), OH = ⌊(H + 2·pad − KH)/s⌋ + 1.
/// With cols = im2col(X) (C·KH·KW, N·OH·OW) and G as (O, N·OH·OW):
///   dW = G·colsᵀ,  dX = col2im(Wᵀ·G),  db = Σ_{n,i,j} G.
/// Differentiable to any order: the recorded VJPs are the internal ops conv2d_input_grad(G, W)
/// (the transposed convolution) and conv2d_weight_grad(X, G), whose own VJPs are conv2d and each
/// other, and sum over (N,OH,OW) for the bias.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, Conv2dOptions options = {});
/// Without bias.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, Conv2dOptions options = {});

}  // namespace xgrad

#pragma once
// Normalization layers, as torch::nn: BatchNorm1d, BatchNorm2d, LayerNorm.
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/nn/module.hpp"
#include "xgrad/options.hpp"

namespace xgrad::nn {

/// BatchNorm1d/2d's options, as torch::nn::BatchNormOptions:
/// BatchNormOptions(64).eps(1e-5).momentum(0.1).affine(true).track_running_stats(true).
class BatchNormOptions {
public:
    /// C, the channels (axis 1 of the input).
    BatchNormOptions(std::size_t num_features) : num_features_(num_features) {}  // NOLINT: implicit as PyTorch's
    XGRAD_ARG(std::size_t, num_features);
    /// Added to the variance under the square root.
    XGRAD_ARG(double, eps) = 1e-5;
    /// running ← (1 − momentum)·running + momentum·batch; std::nullopt: the cumulative average
    /// (momentum = 1/num_batches_tracked), as PyTorch's momentum=None.
    XGRAD_ARG(std::optional<double>, momentum) = 0.1;
    /// Learnable γ ("weight", ones) and β ("bias", zeros) of shape (C).
    XGRAD_ARG(bool, affine) = true;
    /// Keep running_mean, running_var and num_batches_tracked (buffers) and use them in eval mode;
    /// false: batch statistics in both modes, and no buffers.
    XGRAD_ARG(bool, track_running_stats) = true;
    /// Channels-last input, the channel the last axis ((N,H,W,C) for BatchNorm2d, the layout of
    /// conv2d's channels_last): batch_norm's channels_last option.
    /// Not a PyTorch option (its channels_last is a memory format of NCHW-shaped tensors); the
    /// state dict is the same.
    XGRAD_ARG(bool, channels_last) = false;
};

/// The per-dimension names of torch::nn (one options class serves both).
using BatchNorm1dOptions = BatchNormOptions;
using BatchNorm2dOptions = BatchNormOptions;

/// What BatchNorm1d and BatchNorm2d share (PyTorch's BatchNormImplBase). Train mode (or without
/// running statistics): y = batch_norm(x, weight, bias, eps) with the batch's statistics per
/// channel, and (tracking) running_mean and running_var are moved towards the batch mean and the
/// UNBIASED batch variance (× M/(M − 1), M values per channel) with `momentum`, num_batches_tracked
/// counts the batches. Eval mode with running statistics: the affine map
/// y = (x − running_mean)·(weight·s) + bias, s = 1/√(running_var + eps), per channel.
/// State dict as PyTorch: weight, bias, running_mean, running_var, num_batches_tracked. PyTorch
/// stores num_batches_tracked as int64; here it is a 0-d tensor of T (F32 files: exact up to 2^24
/// batches), the dtype xgrad's weight files hold; PyTorch's files with an I64 counter load.
template <class T>
class BatchNormBase : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    /// relu(forward(x)) with the running statistics updated the same way; in train mode (or without
    /// running statistics) one op (batch_norm's relu option), one pass fewer each way than the two.
    Var<T> forward_relu(const Var<T>& x);
    /// relu(forward(x) + residual) (a residual block's end), residual of x's shape; in train mode with
    /// the affine map one op (batch_norm's relu and residual options), one pass fewer each way than
    /// forward and add_relu.
    Var<T> forward_add_relu(const Var<T>& x, const Var<T>& residual);
    std::string describe() const override { return std::string(name_) + "(" + std::to_string(options_.num_features()) + ")"; }
    /// γ and β; null without affine.
    Parameter<T>* weight() { return weight_; }
    Parameter<T>* bias() { return bias_; }
    /// The buffers; null without track_running_stats.
    Tensor<T>* running_mean() { return running_mean_; }
    Tensor<T>* running_var() { return running_var_; }
    Tensor<T>* num_batches_tracked() { return num_batches_tracked_; }
    /// running_mean ← 0, running_var ← 1, num_batches_tracked ← 0.
    void reset_running_stats();
    const BatchNormOptions& options() const { return options_; }

protected:
    /// num_features 0, a negative or non-finite eps or a momentum outside [0, 1] throw std::invalid_argument.
    BatchNormBase(const char* name, const BatchNormOptions& options);
    /// ShapeError naming the layer and x's shape unless x's rank suits the layer.
    virtual void check_rank(const Var<T>& x) const = 0;
    const char* name_;

private:
    Var<T> forward_impl(const Var<T>& x, bool relu, const Var<T>* residual = nullptr);
    BatchNormOptions options_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
    Tensor<T>* running_mean_ = nullptr;
    Tensor<T>* running_var_ = nullptr;
    Tensor<T>* num_batches_tracked_ = nullptr;
    Tensor<T> batch_mean_, batch_var_, scale_;  // reused from step to step
    std::vector<std::ptrdiff_t> channel_shape_;   // (1,C,1,…) for eval mode, reused
};

/// Batch norm over (N,C) or (N,C,L) input, as torch::nn::BatchNorm1d.
template <class T>
class BatchNorm1d : public BatchNormBase<T> {
public:
    explicit BatchNorm1d(const BatchNormOptions& options) : BatchNormBase<T>("BatchNorm1d", options) {}

protected:
    void check_rank(const Var<T>& x) const override;
};

/// Batch norm over (N,C,H,W) input, as torch::nn::BatchNorm2d.
template <class T>
class BatchNorm2d : public BatchNormBase<T> {
public:
    explicit BatchNorm2d(const BatchNormOptions& options) : BatchNormBase<T>("BatchNorm2d", options) {}

protected:
    void check_rank(const Var<T>& x) const override;
};

/// LayerNorm's options, as torch::nn::LayerNormOptions: LayerNormOptions({64}).eps(1e-5).elementwise_affine(true).
class LayerNormOptions {
public:
    /// The trailing axes normalized over.
    LayerNormOptions(std::vector<std::size_t> normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT
    XGRAD_ARG(std::vector<std::size_t>, normalized_shape);
    /// Added to the variance under the square root.
    XGRAD_ARG(double, eps) = 1e-5;
    /// Learnable γ ("weight", ones) and β ("bias", zeros) of normalized_shape.
    XGRAD_ARG(bool, elementwise_affine) = true;
};

/// y = layer_norm(x, normalized_shape, weight, bias, eps), the same in train and eval mode, as
/// torch::nn::LayerNorm; state dict weight, bias. An empty normalized_shape or a negative or
/// non-finite eps throws std::invalid_argument; input not ending with normalized_shape, ShapeError.
template <class T>
class LayerNorm : public Module<T> {
public:
    explicit LayerNorm(const LayerNormOptions& options);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    /// γ and β; null without elementwise_affine.
    Parameter<T>* weight() { return weight_; }
    Parameter<T>* bias() { return bias_; }
    const LayerNormOptions& options() const { return options_; }

private:
    LayerNormOptions options_;
    Shape shape_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
};

extern template class BatchNormBase<float>;
extern template class BatchNormBase<double>;
extern template class BatchNorm1d<float>;
extern template class BatchNorm1d<double>;
extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;
extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace xgrad::nn

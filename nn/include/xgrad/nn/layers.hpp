#pragma once
// Layers. Linear weights are stored (out, in) as in PyTorch; the forward reads W through the GEMM's
// transpose flag (no copy).
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>
#include <optional>
#include <stdexcept>

#include "xgrad/nn/activation.hpp"
#include "xgrad/nn/init.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/options.hpp"

namespace xgrad::nn {

/// An (H, W) pair of sizes.
using SizeArray2 = std::array<std::size_t, 2>;

/// y = x·Wᵀ + b, x (B, in), W (out, in) as in PyTorch (state dict "weight", "bias"), b (out).
/// Default init: PyTorch's U(±1/√in).
template <class T>
class Linear : public Module<T> {
public:
    /// Without a seed the weights come from init::next_seed() (see init::manual_seed).
    Linear(std::size_t in, std::size_t out, bool bias = true, std::optional<std::uint64_t> seed = std::nullopt);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override
    {
        return "Linear(" + std::to_string(in_) + "→" + std::to_string(out_) + ")";
    }
    Parameter<T>& weight() { return *weight_; }
    Parameter<T>* bias() { return bias_; }
    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }

private:
    std::size_t in_, out_;
    Parameter<T>* weight_;
    Parameter<T>* bias_ = nullptr;
};

/// The convolution's options (xgrad::Conv2dOptions), under the name torch::nn uses.
using xgrad::Conv2dOptions;

/// NCHW convolution (NHWC with Conv2dOptions::channels_last), W (O, C/groups, K, K), b (O), as torch::nn::Conv2d:
/// Conv2d<float>(Conv2dOptions(1, 6, 5).padding(2)), Conv2d<float>(Conv2dOptions(32, 32, 3).groups(32))
/// (depthwise). Default init: PyTorch's U(±1/√(C/groups·K·K)). Zero channels, kernel, stride,
/// dilation or groups, and channels not divisible by groups, throw std::invalid_argument.
template <class T>
class Conv2d : public Module<T> {
public:
    /// Without a seed the weights come from init::next_seed() (see init::manual_seed).
    explicit Conv2d(const Conv2dOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override
    {
        return "Conv2d(" + std::to_string(options_.in_channels()) + "→" + std::to_string(options_.out_channels()) +
               ", " + std::to_string(options_.kernel_size()) + "x" + std::to_string(options_.kernel_size()) + ")";
    }
    Parameter<T>& weight() { return *weight_; }
    Parameter<T>* bias() { return bias_; }
    /// The options the layer was built with.
    const Conv2dOptions& options() const { return options_; }

private:
    Conv2dOptions options_;
    Parameter<T>* weight_;
    Parameter<T>* bias_ = nullptr;
};

/// A module from a user's function of one Var. The library's activations and pooling are classes
/// of their own (ReLU, MaxPool2d, ...); Lambda is for functions they do not cover.
template <class T>
class Lambda : public Module<T> {
public:
    /// std::invalid_argument if f is empty.
    Lambda(std::string name, std::function<Var<T>(const Var<T>&)> f);
    Var<T> forward(const Var<T>& x) override { return f_(x); }
    std::string describe() const override { return name_; }
    /// The name given at construction.
    const std::string& name() const { return name_; }

private:
    std::string name_;
    std::function<Var<T>(const Var<T>&)> f_;
};

/// relu(x) = max(x, 0), elementwise.
template <class T>
class ReLU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "ReLU"; }
};

/// sigmoid(x) = 1 / (1 + e⁻ˣ), elementwise.
template <class T>
class Sigmoid : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Sigmoid"; }
};

/// tanh(x), elementwise.
template <class T>
class Tanh : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Tanh"; }
};

/// Softmax along `dim` (negative counts from the end), as torch::nn::Softmax(dim).
template <class T>
class Softmax : public Module<T> {
public:
    explicit Softmax(int dim = -1) : dim_(dim) {}
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Softmax"; }
    /// The axis the softmax normalizes over.
    int dim() const { return dim_; }

private:
    int dim_;
};

/// log(softmax(x)) along `dim`, computed stably, as torch::nn::LogSoftmax(dim).
template <class T>
class LogSoftmax : public Module<T> {
public:
    explicit LogSoftmax(int dim = -1) : dim_(dim) {}
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "LogSoftmax"; }
    /// The axis the softmax normalizes over.
    int dim() const { return dim_; }

private:
    int dim_;
};

/// Flattens dimensions start_dim.. into one: (N, C, H, W) → (N, C·H·W) for start_dim 1.
template <class T>
class Flatten : public Module<T> {
public:
    explicit Flatten(int start_dim = 1) : start_dim_(start_dim) {}
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Flatten"; }
    /// The first dimension that is flattened.
    int start_dim() const { return start_dim_; }

private:
    int start_dim_;
};

/// Max pooling over kernel_size × kernel_size windows of NCHW input; stride 0 means stride =
/// kernel_size. A kernel_size of 0 throws std::invalid_argument.
template <class T>
class MaxPool2d : public Module<T> {
public:
    explicit MaxPool2d(std::size_t kernel_size, std::size_t stride = 0);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "MaxPool2d"; }
    /// The window's side.
    std::size_t kernel_size() const { return kernel_size_; }
    /// The step between windows (kernel_size when constructed with 0).
    std::size_t stride() const { return stride_; }

private:
    std::size_t kernel_size_, stride_;
};

/// Average pooling over kernel_size × kernel_size windows of NCHW input; stride 0 means stride =
/// kernel_size. A kernel_size of 0 throws std::invalid_argument.
template <class T>
class AvgPool2d : public Module<T> {
public:
    explicit AvgPool2d(std::size_t kernel_size, std::size_t stride = 0);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "AvgPool2d"; }
    /// The window's side.
    std::size_t kernel_size() const { return kernel_size_; }
    /// The step between windows (kernel_size when constructed with 0).
    std::size_t stride() const { return stride_; }

private:
    std::size_t kernel_size_, stride_;
};

/// x unchanged, as torch::nn::Identity (a placeholder layer).
template <class T>
class Identity : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return x; }
    std::string describe() const override { return "Identity"; }
};

/// Embedding's options, as torch::nn::EmbeddingOptions(num_embeddings, embedding_dim).padding_idx(0).
class EmbeddingOptions {
public:
    EmbeddingOptions(std::size_t num_embeddings, std::size_t embedding_dim)
        : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim)
    {
    }
    /// Rows of the table (the vocabulary).
    XGRAD_ARG(std::size_t, num_embeddings);
    /// Columns of the table.
    XGRAD_ARG(std::size_t, embedding_dim);
    /// A row that is zero at init and gets no gradient (negative counts from the end, as PyTorch).
    XGRAD_ARG(std::optional<std::int64_t>, padding_idx);
};

/// A lookup table W (num_embeddings, embedding_dim) (state dict "weight", init N(0, 1) with the
/// padding row zeroed, as torch::nn::Embedding): forward(tape, indices) = W[indices] of shape
/// indices.shape ++ (embedding_dim) (the op embedding; backward adds into the used rows only).
/// forward(Var) takes the indices as a Var of whole numbers, so the layer fits in a Sequential.
template <class T>
class Embedding : public Module<T> {
public:
    /// Without a seed the weights come from init::next_seed(). Zero sizes or a padding_idx outside
    /// [−num_embeddings, num_embeddings) throw std::invalid_argument.
    explicit Embedding(const EmbeddingOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    Var<T> forward(Tape<T>& tape, const IndexTensor& indices);
    /// indices as whole numbers in a Var (a constant); a value that is not a whole number throws std::invalid_argument.
    Var<T> forward(const Var<T>& indices) override;
    std::string describe() const override
    {
        return "Embedding(" + std::to_string(options_.num_embeddings()) + ", " +
               std::to_string(options_.embedding_dim()) + ")";
    }
    Parameter<T>& weight() { return *weight_; }
    const EmbeddingOptions& options() const { return options_; }

private:
    EmbeddingOptions options_;
    Parameter<T>* weight_;
    IndexTensor indices_;  // forward(Var)'s conversion, reused
};

/// GELU's options, as torch::nn::GELUOptions: approximate "none" (x·Φ(x)) or "tanh".
class GELUOptions {
public:
    XGRAD_ARG(std::string, approximate) = "none";
};

/// gelu(x) = x·Φ(x), or PyTorch's tanh approximation, elementwise (the op xgrad::gelu), as
/// torch::nn::GELU(GELUOptions().approximate("tanh")). Another approximate throws std::invalid_argument.
template <class T>
class GELU : public Module<T> {
public:
    explicit GELU(GELUOptions options = {});
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "GELU"; }
    const GELUOptions& options() const { return options_; }

private:
    GELUOptions options_;
};

/// silu(x) = x·σ(x), elementwise, as torch::nn::SiLU.
template <class T>
class SiLU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "SiLU"; }
};

/// LeakyReLU's options, as torch::nn::LeakyReLUOptions.
class LeakyReLUOptions {
public:
    /// The slope for x <= 0 (finite).
    XGRAD_ARG(double, negative_slope) = 0.01;
};

/// x for x > 0, negative_slope·x otherwise, as torch::nn::LeakyReLU. A non-finite slope throws
/// std::invalid_argument.
template <class T>
class LeakyReLU : public Module<T> {
public:
    explicit LeakyReLU(LeakyReLUOptions options = {});
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "LeakyReLU"; }
    const LeakyReLUOptions& options() const { return options_; }

private:
    LeakyReLUOptions options_;
};

/// ELU's options, as torch::nn::ELUOptions.
class ELUOptions {
public:
    /// α in α(eˣ − 1) for x <= 0 (finite).
    XGRAD_ARG(double, alpha) = 1.0;
};

/// x for x > 0, α(eˣ − 1) otherwise, as torch::nn::ELU. A non-finite alpha throws std::invalid_argument.
template <class T>
class ELU : public Module<T> {
public:
    explicit ELU(ELUOptions options = {});
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "ELU"; }
    const ELUOptions& options() const { return options_; }

private:
    ELUOptions options_;
};

/// Softplus's options, as torch::nn::SoftplusOptions.
class SoftplusOptions {
public:
    /// β (finite, > 0).
    XGRAD_ARG(double, beta) = 1.0;
    /// Where β·x > threshold the output is x itself (not NaN).
    XGRAD_ARG(double, threshold) = 20.0;
};

/// softplus(x) = ln(1 + e^{βx})/β, and x where βx > threshold, as torch::nn::Softplus (the op
/// xgrad::softplus, which is β = 1 without threshold, on βx; the linear part through xgrad::where, so
/// its gradient there is exactly 1 as PyTorch's). β <= 0 or non-finite, or a NaN threshold, throws
/// std::invalid_argument.
template <class T>
class Softplus : public Module<T> {
public:
    explicit Softplus(SoftplusOptions options = {});
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Softplus"; }
    const SoftplusOptions& options() const { return options_; }

private:
    SoftplusOptions options_;
    Tensor<T> mask_;  // [βx > threshold], reused from step to step
};

/// AdaptiveAvgPool2d's options, as torch::nn::AdaptiveAvgPool2dOptions: the output's (H, W).
class AdaptiveAvgPool2dOptions {
public:
    /// A square output, size × size.
    AdaptiveAvgPool2dOptions(std::size_t size) : output_size_{size, size} {}  // NOLINT: as torch's
    /// An (H, W) output: AdaptiveAvgPool2dOptions({2, 3}).
    AdaptiveAvgPool2dOptions(std::array<std::size_t, 2> size) : output_size_(size) {}  // NOLINT
    XGRAD_ARG(SizeArray2, output_size);
};

/// Average pooling of NCHW input to a fixed (oh, ow) output, as torch::nn::AdaptiveAvgPool2d: output
/// cell (i, j) is the mean of rows ⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉ − 1 and columns ⌊j·W/ow⌋ .. ⌈(j+1)·W/ow⌉ − 1.
/// Output 1×1 is global average pooling. Composed of recorded ops (a mean per axis, over a reshape when
/// the size divides, over slices otherwise), so it differentiates to any order. A zero output size
/// throws std::invalid_argument; input that is not 4-D, or has H or W zero, throws ShapeError.
template <class T>
class AdaptiveAvgPool2d : public Module<T> {
public:
    explicit AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions options);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    const AdaptiveAvgPool2dOptions& options() const { return options_; }

private:
    Var<T> pool_axis(const Var<T>& x, int axis, std::size_t out);
    AdaptiveAvgPool2dOptions options_;
    // reused from step to step, so that a forward allocates nothing once shapes are stable
    std::vector<int> axes_;
    std::vector<std::ptrdiff_t> split_;
    std::vector<Var<T>> bins_;
};

namespace detail {
/// Throws std::out_of_range: "<who>: layer index <i> is out of range (<n> layers)".
[[noreturn]] void throw_layer_index(const char* who, std::size_t i, std::size_t n);
/// Throws std::invalid_argument: "<who>: layer <i> is <actual>, not a <wanted>".
[[noreturn]] void throw_layer_type(const char* who, std::size_t i, const std::string& actual, const char* wanted);
}  // namespace detail

/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by
/// 1/(1−p); identity in eval mode.
template <class T>
class Dropout : public Module<T> {
public:
    /// Without a seed the masks come from init::next_seed() (see init::manual_seed).
    explicit Dropout(double p = 0.5, std::optional<std::uint64_t> seed = std::nullopt);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Dropout"; }

private:
    double p_;
    std::mt19937_64 rng_;
    Tensor<T> mask_;
};

/// Inverted dropout: x ⊙ M, M_i = 1/(1 − p) with probability 1 − p and 0 otherwise, drawn from `rng`
/// into `mask` (kept by the caller, reused from step to step). What Dropout, the recurrent layers
/// (between layers) and MultiheadAttention (on the probabilities) apply in training mode.
template <class T>
Var<T> dropout(const Var<T>& x, double p, std::mt19937_64& rng, Tensor<T>& mask);

/// Modules applied in order; children are named "0", "1", ...
template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;
    template <class M>
    Sequential& add(std::unique_ptr<M> m)
    {
        return add_module(std::unique_ptr<Module<T>>(std::move(m)));
    }
    /// Constructs a layer in place: net.emplace<Linear<float>>(784, 256).
    template <class M, class... Args>
    M& emplace(Args&&... args)
    {
        auto m = std::make_unique<M>(std::forward<Args>(args)...);
        M& ref = *m;
        add_module(std::move(m));
        return ref;
    }
    /// Records each layer under a tape scope "<index>:<layer>", so messages and check_nodes say
    /// which layer an op belongs to.
    Var<T> forward(const Var<T>& x) override;
    /// From now on, runs every BatchNorm1d/BatchNorm2d layer that a ReLU layer directly follows
    /// through BatchNormBase::forward_relu, recorded under the batch norm's scope: in train mode one
    /// op, so the ReLU's output and its gradient are never made (one pass over the activation fewer
    /// each way); the same values, gradients and running statistics, bit for bit. As torch.ao.quantization.fuse_modules with
    /// [bn, relu], but the layers, their names and the state dict stay as they are. Returns the
    /// number of pairs; layers added later are fused by another call. Nested containers are not
    /// searched.
    std::size_t fuse_batch_norm_relu();
    /// From now on, runs every ReLU, Sigmoid or Tanh layer that an AvgPool2d layer directly follows
    /// as one op, activation_avg_pool2d, recorded under the activation's scope: the activation's
    /// output and its gradient are never stored (one pass over the activation fewer each way); the
    /// same values and gradients, bit for bit. Layers, names and state dict stay as they are.
    /// Returns the number of pairs. A layer already in a pair fused by either call stays in it (a
    /// [BatchNorm2d, ReLU, AvgPool2d] fused both ways runs its first pair fused). Nested containers
    /// are not searched.
    std::size_t fuse_activation_pool();
    std::string describe() const override { return "Sequential"; }
    std::size_t size() const { return layers_.size(); }
    /// Layer i; std::out_of_range for i >= size().
    Module<T>& operator[](std::size_t i)
    {
        if (i >= layers_.size()) detail::throw_layer_index("Sequential", i, layers_.size());
        return *layers_[i];
    }
    /// Layer i as the layer type it is: net.at<Linear<float>>(0).weight(). std::out_of_range for
    /// i >= size(); std::invalid_argument naming the layer (describe()) if layer i is not an M.
    template <class M>
    M& at(std::size_t i)
    {
        Module<T>& m = (*this)[i];
        if (auto* p = dynamic_cast<M*>(&m)) return *p;
        detail::throw_layer_type("Sequential::at", i, m.describe(), typeid(M).name());
    }

private:
    Sequential& add_module(std::unique_ptr<Module<T>> m);
    std::vector<Module<T>*> layers_;
    std::vector<std::string> scopes_;
    /// How layer i runs with layer i + 1 as one op.
    enum class Fusion : unsigned char { none, batch_norm_relu, relu_avg_pool, sigmoid_avg_pool, tanh_avg_pool };
    /// Marks every pair (i, i + 1), both layers in no pair yet, for which match(typeid of layer i,
    /// of layer i + 1) gives a Fusion other than none; returns the number of pairs of match's kinds.
    template <class Match>
    std::size_t fuse_pairs(Match match);
    std::vector<Fusion> fused_;
};

/// Fully connected network: sizes {784, 256, 10} → Linear(784,256), act, Linear(256,10), out_act.
template <class T>
class MLP : public Sequential<T> {
public:
    MLP(const std::vector<std::size_t>& sizes, Activation hidden = Activation::relu,
        Activation output = Activation::identity, std::optional<std::uint64_t> seed = std::nullopt);
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class Conv2d<float>;
extern template class Conv2d<double>;
extern template class Lambda<float>;
extern template class Lambda<double>;
extern template class ReLU<float>;
extern template class ReLU<double>;
extern template class Sigmoid<float>;
extern template class Sigmoid<double>;
extern template class Tanh<float>;
extern template class Tanh<double>;
extern template class Softmax<float>;
extern template class Softmax<double>;
extern template class LogSoftmax<float>;
extern template class LogSoftmax<double>;
extern template class Flatten<float>;
extern template class Flatten<double>;
extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;
extern template class AvgPool2d<float>;
extern template class AvgPool2d<double>;
extern template class Embedding<float>;
extern template class Embedding<double>;
extern template class Identity<float>;
extern template class Identity<double>;
extern template class GELU<float>;
extern template class GELU<double>;
extern template class SiLU<float>;
extern template class SiLU<double>;
extern template class LeakyReLU<float>;
extern template class LeakyReLU<double>;
extern template class ELU<float>;
extern template class ELU<double>;
extern template class Softplus<float>;
extern template class Softplus<double>;
extern template class AdaptiveAvgPool2d<float>;
extern template class AdaptiveAvgPool2d<double>;
extern template class Dropout<float>;
extern template class Dropout<double>;
extern template class Sequential<float>;
extern template class Sequential<double>;
extern template class MLP<float>;
extern template class MLP<double>;

}  // namespace xgrad::nn

#include "xgrad/nn/layers.hpp"

#include <fmt/format.h>

#include <cxxabi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <typeinfo>

#include <xtensor/xview.hpp>

#include "xgrad/nn/norm.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

namespace {
template <class T>
Tensor<T> initialized(const Shape& shape, std::size_t fan_in, init::Rng& rng)
{
    Tensor<T> t = Tensor<T>::from_shape(shape);
    init::torch_default(t, fan_in, rng);
    return t;
}

/// A pooling layer's stride (kernel_size when 0); std::invalid_argument naming the layer for a zero kernel.
std::size_t pool_stride(const char* layer, std::size_t kernel_size, std::size_t stride)
{
    if (kernel_size == 0)
        throw std::invalid_argument(fmt::format("{}: kernel size must be at least 1, got 0", layer));
    return stride ? stride : kernel_size;
}
}  // namespace

template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, bool bias, std::optional<std::uint64_t> seed) : in_(in), out_(out)
{
    if (in == 0 || out == 0)
        throw std::invalid_argument(fmt::format("Linear({}→{}): in_features and out_features must be at least 1", in, out));
    init::Rng rng(init::seed_or_next(seed));
    // The values are drawn in (in, out) order, as before the weight was stored (out, in), so a seed
    // gives the same network (and every result stays as it was); stored transposed, as PyTorch does.
    const Tensor<T> drawn = initialized<T>(Shape{in, out}, in, rng);
    Tensor<T> w = Tensor<T>::from_shape({out, in});
    for (std::size_t i = 0; i < in; ++i)
        for (std::size_t o = 0; o < out; ++o) w(o, i) = drawn(i, o);
    weight_ = &this->register_parameter("weight", std::move(w));
    if (bias) bias_ = &this->register_parameter("bias", initialized<T>(Shape{out}, in, rng));
}

template <class T>
Var<T> Linear<T>::forward(const Var<T>& x)
{
    if (x.dim() != 2 || x.shape()[1] != in_)
        throw ShapeError(fmt::format("Linear({}→{}): expected input (B,{}), got {}", in_, out_, in_, shape_str(x.shape())));
    Tape<T>& t = x.tape();
    return bias_ ? linear(x, t.param(*weight_), t.param(*bias_)) : linear(x, t.param(*weight_));
}

template <class T>
Conv2d<T>::Conv2d(const Conv2dOptions& options, std::optional<std::uint64_t> seed) : options_(options)
{
    auto zero = [&](const char* field) {
        return std::invalid_argument(fmt::format("{}: {} must be at least 1, got 0", describe(), field));
    };
    const std::size_t in = options.in_channels(), out = options.out_channels(), k = options.kernel_size();
    if (in == 0) throw zero("in_channels");
    if (out == 0) throw zero("out_channels");
    if (k == 0) throw zero("kernel_size");
    if (options.stride() == 0) throw zero("stride");
    if (options.dilation() == 0) throw zero("dilation");
    const std::size_t groups = options.groups();
    if (groups == 0) throw zero("groups");
    if (in % groups != 0 || out % groups != 0)
        throw std::invalid_argument(fmt::format("{}: in_channels {} and out_channels {} must be divisible by groups {}",
                                                describe(), in, out, groups));
    init::Rng rng(init::seed_or_next(seed));
    // W (out, in/groups, k, k) as torch::nn::Conv2d; each output sees in/groups channels
    const std::size_t fan_in = in / groups * k * k;
    weight_ = &this->register_parameter("weight", initialized<T>(Shape{out, in / groups, k, k}, fan_in, rng));
    if (options.bias()) bias_ = &this->register_parameter("bias", initialized<T>(Shape{out}, fan_in, rng));
}

template <class T>
Var<T> Conv2d<T>::forward(const Var<T>& x)
{
    const std::size_t in = options_.in_channels();
    if (options_.channels_last()) {
        if (x.dim() != 4 || x.shape()[3] != in)
            throw ShapeError(fmt::format("Conv2d({}→{}, channels_last): expected input (N,H,W,{}), got {}", in,
                                         options_.out_channels(), in, shape_str(x.shape())));
    } else if (x.dim() != 4 || x.shape()[1] != in) {
        throw ShapeError(fmt::format("Conv2d({}→{}): expected input (N,{},H,W), got {}", in, options_.out_channels(),
                                     in, shape_str(x.shape())));
    }
    Tape<T>& t = x.tape();
    return bias_ ? conv2d(x, t.param(*weight_), t.param(*bias_), options_) : conv2d(x, t.param(*weight_), options_);
}

template <class T>
Lambda<T>::Lambda(std::string name, std::function<Var<T>(const Var<T>&)> f) : name_(std::move(name)), f_(std::move(f))
{
    if (!f_) throw std::invalid_argument(fmt::format("Lambda '{}': the function is empty", name_));
}

template <class T>
Var<T> ReLU<T>::forward(const Var<T>& x)
{
    return relu(x);
}

template <class T>
Var<T> Sigmoid<T>::forward(const Var<T>& x)
{
    return sigmoid(x);
}

template <class T>
Var<T> Tanh<T>::forward(const Var<T>& x)
{
    return tanh(x);
}

template <class T>
Var<T> Softmax<T>::forward(const Var<T>& x)
{
    return softmax(x, dim_);
}

template <class T>
Var<T> LogSoftmax<T>::forward(const Var<T>& x)
{
    return log_softmax(x, dim_);
}

template <class T>
Var<T> Flatten<T>::forward(const Var<T>& x)
{
    return flatten(x, start_dim_);
}

template <class T>
MaxPool2d<T>::MaxPool2d(std::size_t kernel_size, std::size_t stride)
    : kernel_size_(kernel_size), stride_(pool_stride("MaxPool2d", kernel_size, stride))
{
}

template <class T>
Var<T> MaxPool2d<T>::forward(const Var<T>& x)
{
    return max_pool2d(x, kernel_size_, stride_);
}

template <class T>
AvgPool2d<T>::AvgPool2d(std::size_t kernel_size, std::size_t stride)
    : kernel_size_(kernel_size), stride_(pool_stride("AvgPool2d", kernel_size, stride))
{
}

template <class T>
Var<T> AvgPool2d<T>::forward(const Var<T>& x)
{
    return avg_pool2d(x, kernel_size_, stride_);
}

template <class T>
GELU<T>::GELU(GELUOptions options) : options_(std::move(options))
{
    if (options_.approximate() != "none" && options_.approximate() != "tanh")
        throw std::invalid_argument(
            fmt::format("GELU: approximate must be \"none\" or \"tanh\", got \"{}\"", options_.approximate()));
}

template <class T>
Var<T> GELU<T>::forward(const Var<T>& x)
{
    return gelu(x, options_.approximate());
}

template <class T>
Var<T> SiLU<T>::forward(const Var<T>& x)
{
    return silu(x);
}

namespace {
void check_finite(const char* layer, const char* option, double v)
{
    if (!std::isfinite(v)) throw std::invalid_argument(fmt::format("{}: {} must be finite, got {:g}", layer, option, v));
}
}  // namespace

template <class T>
LeakyReLU<T>::LeakyReLU(LeakyReLUOptions options) : options_(options)
{
    check_finite("LeakyReLU", "negative_slope", options.negative_slope());
}

template <class T>
Var<T> LeakyReLU<T>::forward(const Var<T>& x)
{
    return leaky_relu(x, T(options_.negative_slope()));
}

template <class T>
ELU<T>::ELU(ELUOptions options) : options_(options)
{
    check_finite("ELU", "alpha", options.alpha());
}

template <class T>
Var<T> ELU<T>::forward(const Var<T>& x)
{
    return elu(x, T(options_.alpha()));
}

template <class T>
Softplus<T>::Softplus(SoftplusOptions options) : options_(options)
{
    if (!(std::isfinite(options.beta()) && options.beta() > 0))
        throw std::invalid_argument(fmt::format("Softplus: beta must be a finite number > 0, got {:g}", options.beta()));
    if (std::isnan(options.threshold())) throw std::invalid_argument("Softplus: threshold must not be NaN");
}

template <class T>
Var<T> Softplus<T>::forward(const Var<T>& x)
{
    const T beta = T(options_.beta()), threshold = T(options_.threshold());
    const Var<T> s = beta == T(1) ? softplus(x) : div_scalar(softplus(mul_scalar(x, beta)), beta);
    mask_.resize(x.shape());
    bool linear = false;
    auto xi = x.value().begin();
    for (auto& m : mask_) {
        m = beta * *xi++ > threshold ? T(1) : T(0);
        linear = linear || m != T(0);
    }
    // PyTorch returns x itself where βx > threshold; elsewhere (and when no element is past it) the log.
    return linear ? where(x.tape().constant(mask_), x, s) : s;
}

/// Adaptive mean along one axis of an NCHW Var: bins [⌊i·in/out⌋, ⌈(i+1)·in/out⌉).
template <class T>
Var<T> AdaptiveAvgPool2d<T>::pool_axis(const Var<T>& x, int axis, std::size_t out)
{
    const Shape& s = x.shape();
    const std::size_t in = s[std::size_t(axis)];
    if (out == in) return x;
    axes_.assign(1, axis);
    if (out == 1) return mean(x, axes_, true);
    if (in % out == 0) {  // equal bins: one reshape and one mean
        split_.assign(s.begin(), s.end());
        split_[std::size_t(axis)] = std::ptrdiff_t(out);
        split_.insert(split_.begin() + axis + 1, std::ptrdiff_t(in / out));
        axes_[0] = axis + 1;
        return mean(reshape(x, split_), axes_);
    }
    bins_.clear();
    for (std::size_t i = 0; i < out; ++i) {
        const std::size_t start = i * in / out, end = ((i + 1) * in + out - 1) / out;
        bins_.push_back(mean(slice(x, axis, std::ptrdiff_t(start), std::ptrdiff_t(end)), axes_, true));
    }
    Var<T> y = concatenate(bins_, axis);
    bins_.clear();  // holds no Var past the call (their tape may go first)
    return y;
}

template <class T>
AdaptiveAvgPool2d<T>::AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions options) : options_(options)
{
    const auto& o = options.output_size();
    if (o[0] == 0 || o[1] == 0)
        throw std::invalid_argument(
            fmt::format("AdaptiveAvgPool2d: output_size must be at least 1, got ({}, {})", o[0], o[1]));
}

template <class T>
std::string AdaptiveAvgPool2d<T>::describe() const
{
    return fmt::format("AdaptiveAvgPool2d({}x{})", options_.output_size()[0], options_.output_size()[1]);
}

template <class T>
Var<T> AdaptiveAvgPool2d<T>::forward(const Var<T>& x)
{
    const auto& o = options_.output_size();
    if (x.dim() != 4 || x.shape()[2] == 0 || x.shape()[3] == 0)
        throw ShapeError(fmt::format("AdaptiveAvgPool2d({}x{}): expected input (N,C,H,W) with H, W >= 1, got {}", o[0],
                                     o[1], shape_str(x.shape())));
    if (o[0] == 1 && o[1] == 1) {  // global average pooling
        axes_.assign({2, 3});
        return mean(x, axes_, true);
    }
    return pool_axis(pool_axis(x, 2, o[0]), 3, o[1]);
}

namespace detail {

void throw_layer_index(const char* who, std::size_t i, std::size_t n)
{
    throw std::out_of_range(fmt::format("{}: layer index {} is out of range ({} layers)", who, i, n));
}

void throw_layer_type(const char* who, std::size_t i, const std::string& actual, const char* wanted)
{
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(wanted, nullptr, nullptr, &status), std::free);
    throw std::invalid_argument(
        fmt::format("{}: layer {} is {}, not a {}", who, i, actual, status == 0 && name ? name.get() : wanted));
}

}  // namespace detail

template <class T>
Dropout<T>::Dropout(double p, std::optional<std::uint64_t> seed) : p_(p), rng_(init::seed_or_next(seed))
{
    if (!(p >= 0 && p < 1)) throw std::invalid_argument(fmt::format("Dropout: p must be in [0, 1), got {:g}", p));
}

template <class T>
Var<T> Dropout<T>::forward(const Var<T>& x)
{
    if (!this->is_training() || p_ == 0) return x;
    return dropout(x, p_, rng_, mask_);
}

template <class T>
Var<T> dropout(const Var<T>& x, double p, std::mt19937_64& rng, Tensor<T>& mask)
{
    mask.resize(x.shape());
    std::bernoulli_distribution keep(1 - p);
    const T scale = T(1 / (1 - p));
    for (auto& m : mask) m = keep(rng) ? scale : T(0);
    return x * x.tape().constant(mask);
}

template Var<float> dropout(const Var<float>&, double, std::mt19937_64&, Tensor<float>&);
template Var<double> dropout(const Var<double>&, double, std::mt19937_64&, Tensor<double>&);

template <class T>
Sequential<T>& Sequential<T>::add_module(std::unique_ptr<Module<T>> m)
{
    if (!m) throw std::invalid_argument(fmt::format("Sequential: layer {} is a null module", layers_.size()));
    layers_.push_back(m.get());
    fused_.push_back(Fusion::none);
    scopes_.push_back(std::to_string(layers_.size() - 1) + ":" + m->describe());
    this->register_module(std::to_string(layers_.size() - 1), std::move(m));
    return *this;
}

template <class T>
Var<T> Sequential<T>::forward(const Var<T>& x)
{
    Var<T> y = x;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        ScopeGuard<T> scope(y.tape(), scopes_[i]);
        const Fusion f = fused_[i];
        if (f == Fusion::none) {
            y = layers_[i]->forward(y);
            continue;
        }
        if (f == Fusion::batch_norm_relu) {
            y = static_cast<BatchNormBase<T>*>(layers_[i])->forward_relu(y);
        } else {
            const auto* pool = static_cast<const AvgPool2d<T>*>(layers_[i + 1]);
            const Activation act = f == Fusion::relu_avg_pool      ? Activation::relu
                                   : f == Fusion::sigmoid_avg_pool ? Activation::sigmoid
                                                                   : Activation::tanh;
            y = activation_avg_pool2d(y, act, pool->kernel_size(), pool->stride());
        }
        ++i;  // layer i + 1, done
    }
    return y;
}

template <class T>
template <class Match>
std::size_t Sequential<T>::fuse_pairs(Match match)
{
    std::size_t pairs = 0;
    for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
        if (fused_[i] == Fusion::none) {
            const bool taken = fused_[i + 1] != Fusion::none || (i > 0 && fused_[i - 1] != Fusion::none);
            if (taken) continue;
            fused_[i] = match(typeid(*layers_[i]), typeid(*layers_[i + 1]));
            if (fused_[i] == Fusion::none) continue;
        } else if (match(typeid(*layers_[i]), typeid(*layers_[i + 1])) != fused_[i]) {
            ++i;  // a pair of the other kind
            continue;
        }
        ++pairs;
        ++i;
    }
    return pairs;
}

// Exactly these types: a subclass may have its own forward.
template <class T>
std::size_t Sequential<T>::fuse_batch_norm_relu()
{
    return fuse_pairs([](const std::type_info& a, const std::type_info& b) {
        const bool bn = a == typeid(BatchNorm1d<T>) || a == typeid(BatchNorm2d<T>);
        return bn && b == typeid(ReLU<T>) ? Fusion::batch_norm_relu : Fusion::none;
    });
}

template <class T>
std::size_t Sequential<T>::fuse_activation_pool()
{
    return fuse_pairs([](const std::type_info& a, const std::type_info& b) {
        if (b != typeid(AvgPool2d<T>)) return Fusion::none;
        if (a == typeid(ReLU<T>)) return Fusion::relu_avg_pool;
        if (a == typeid(Sigmoid<T>)) return Fusion::sigmoid_avg_pool;
        if (a == typeid(Tanh<T>)) return Fusion::tanh_avg_pool;
        return Fusion::none;
    });
}

namespace {
template <class T>
std::unique_ptr<Module<T>> activation(Activation a)
{
    switch (a) {
        case Activation::sigmoid: return std::make_unique<Sigmoid<T>>();
        case Activation::tanh: return std::make_unique<Tanh<T>>();
        case Activation::relu: return std::make_unique<ReLU<T>>();
        default: return nullptr;
    }
}
}  // namespace

template <class T>
MLP<T>::MLP(const std::vector<std::size_t>& sizes, Activation hidden, Activation output,
            std::optional<std::uint64_t> seed)
{
    if (sizes.size() < 2)
        throw std::invalid_argument(
            fmt::format("MLP: sizes {}: needs at least an input and an output size", shape_str(sizes)));
    for (std::size_t s : sizes)
        if (s == 0)
            throw std::invalid_argument(fmt::format("MLP: sizes {}: every size must be at least 1", shape_str(sizes)));
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
        this->template emplace<Linear<T>>(sizes[i], sizes[i + 1], true,
                                          seed ? std::optional<std::uint64_t>(*seed + i) : std::nullopt);
        auto act = activation<T>(i + 2 < sizes.size() ? hidden : output);
        if (act) this->add(std::move(act));
    }
}

template class Linear<float>;
template class Linear<double>;
template class Conv2d<float>;
template class Conv2d<double>;
template class Lambda<float>;
template class Lambda<double>;
template class ReLU<float>;
template class ReLU<double>;
template class Sigmoid<float>;
template class Sigmoid<double>;
template class Tanh<float>;
template class Tanh<double>;
template class Softmax<float>;
template class Softmax<double>;
template class LogSoftmax<float>;
template class LogSoftmax<double>;
template class Flatten<float>;
template class Flatten<double>;
template class MaxPool2d<float>;
template class MaxPool2d<double>;
template class AvgPool2d<float>;
template class AvgPool2d<double>;
template class GELU<float>;
template class GELU<double>;
template class SiLU<float>;
template class SiLU<double>;
template class LeakyReLU<float>;
template class LeakyReLU<double>;
template class ELU<float>;
template class ELU<double>;
template class Softplus<float>;
template class Softplus<double>;
template <class T>
Embedding<T>::Embedding(const EmbeddingOptions& options, std::optional<std::uint64_t> seed) : options_(options)
{
    const std::size_t n = options.num_embeddings(), d = options.embedding_dim();
    if (n == 0 || d == 0)
        throw std::invalid_argument(fmt::format("Embedding: num_embeddings and embedding_dim must be at least 1, got {}, {}", n, d));
    std::optional<std::int64_t> pad = options.padding_idx();
    if (pad && (*pad < -std::int64_t(n) || *pad >= std::int64_t(n)))
        throw std::invalid_argument(fmt::format("Embedding: padding_idx {} is outside [-{}, {})", *pad, n, n));
    if (pad && *pad < 0) options_.padding_idx(*pad + std::int64_t(n));
    Tensor<T> w = Tensor<T>::from_shape({n, d});
    init::Rng rng(init::seed_or_next(seed));
    init::normal(w, 0.0, 1.0, rng);
    if (options_.padding_idx()) xt::view(w, std::size_t(*options_.padding_idx()), xt::all()) = T(0);
    weight_ = &this->register_parameter("weight", std::move(w));
}

template <class T>
Var<T> Embedding<T>::forward(Tape<T>& tape, const IndexTensor& indices)
{
    return embedding(tape.param(*weight_), indices, options_.padding_idx());
}

template <class T>
Var<T> Embedding<T>::forward(const Var<T>& indices)
{
    const Tensor<T>& v = indices.value();
    indices_.resize(v.shape());
    for (std::size_t i = 0; i < v.size(); ++i) {
        const T x = v.data()[i];
        if (!(x == std::floor(x)) || x < T(0) || x >= T(options_.num_embeddings()))
            throw std::invalid_argument(fmt::format("{}: index {} at position {} is not a whole number in [0, {})",
                                                    describe(), double(x), i, options_.num_embeddings()));
        indices_.data()[i] = Index(x);
    }
    return forward(indices.tape(), indices_);
}

template class Embedding<float>;
template class Embedding<double>;
template class Identity<float>;
template class Identity<double>;
template class AdaptiveAvgPool2d<float>;
template class AdaptiveAvgPool2d<double>;
template class Dropout<float>;
template class Dropout<double>;
template class Sequential<float>;
template class Sequential<double>;
template class MLP<float>;
template class MLP<double>;

}  // namespace xgrad::nn

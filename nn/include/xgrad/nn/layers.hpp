#pragma once
// Layers. Linear weights are stored (out, in) as in PyTorch; the forward reads W through the GEMM's
// transpose flag (no copy).
#include <functional>
#include <optional>
#include <stdexcept>

#include "xgrad/nn/init.hpp"
#include "xgrad/nn/module.hpp"

namespace xgrad::nn {

/// y = x·Wᵀ + b, x (B, in), W (out, in) as in PyTorch (state dict "weight", "bias"), b (out).
/// Default init: PyTorch's U(±1/√in).
template <class T>
class Linear : public Module<T> {
public:
    Linear(std::size_t in, std::size_t out, bool bias = true, std::uint64_t seed = 0);
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

struct Conv2dSpec {
    std::size_t in_channels, out_channels, kernel_size, stride = 1, padding = 0;
    bool bias = true;
};

/// NCHW convolution, W (O, C, K, K), b (O). Default init: PyTorch's U(±1/√(C·K·K)).
template <class T>
class Conv2d : public Module<T> {
public:
    explicit Conv2d(const Conv2dSpec& spec, std::uint64_t seed = 0);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override
    {
        return "Conv2d(" + std::to_string(spec_.in_channels) + "→" + std::to_string(spec_.out_channels) + ", " +
               std::to_string(spec_.kernel_size) + "x" + std::to_string(spec_.kernel_size) + ")";
    }
    Parameter<T>& weight() { return *weight_; }
    Parameter<T>* bias() { return bias_; }

private:
    Conv2dSpec spec_;
    Parameter<T>* weight_;
    Parameter<T>* bias_ = nullptr;
};

/// A module from a function of one Var (activations, pooling, flatten).
template <class T>
class Lambda : public Module<T> {
public:
    Lambda(std::string name, std::function<Var<T>(const Var<T>&)> f) : name_(std::move(name)), f_(std::move(f))
    {
        if (!f_) throw std::invalid_argument("Lambda '" + name_ + "': the function is empty");
    }
    Var<T> forward(const Var<T>& x) override { return f_(x); }
    std::string describe() const override { return name_; }
    const std::string& name() const { return name_; }

private:
    std::string name_;
    std::function<Var<T>(const Var<T>&)> f_;
};

template <class T> std::unique_ptr<Module<T>> Sigmoid() { return std::make_unique<Lambda<T>>("Sigmoid", [](const Var<T>& x) { return sigmoid(x); }); }
template <class T> std::unique_ptr<Module<T>> Tanh() { return std::make_unique<Lambda<T>>("Tanh", [](const Var<T>& x) { return tanh(x); }); }
template <class T> std::unique_ptr<Module<T>> ReLU() { return std::make_unique<Lambda<T>>("ReLU", [](const Var<T>& x) { return relu(x); }); }
template <class T> std::unique_ptr<Module<T>> Softmax(int axis = -1) { return std::make_unique<Lambda<T>>("Softmax", [axis](const Var<T>& x) { return softmax(x, axis); }); }
template <class T> std::unique_ptr<Module<T>> LogSoftmax(int axis = -1) { return std::make_unique<Lambda<T>>("LogSoftmax", [axis](const Var<T>& x) { return log_softmax(x, axis); }); }
template <class T> std::unique_ptr<Module<T>> Flatten(int start_dim = 1) { return std::make_unique<Lambda<T>>("Flatten", [start_dim](const Var<T>& x) { return flatten(x, start_dim); }); }
/// Pooling layers; stride 0 means stride = k. A kernel of 0 throws std::invalid_argument.
template <class T> std::unique_ptr<Module<T>> MaxPool2d(std::size_t k, std::size_t stride = 0)
{
    if (k == 0) throw std::invalid_argument("MaxPool2d: kernel size must be at least 1, got 0");
    return std::make_unique<Lambda<T>>("MaxPool2d", [k, stride](const Var<T>& x) { return max_pool2d(x, k, stride); });
}
template <class T> std::unique_ptr<Module<T>> AvgPool2d(std::size_t k, std::size_t stride = 0)
{
    if (k == 0) throw std::invalid_argument("AvgPool2d: kernel size must be at least 1, got 0");
    return std::make_unique<Lambda<T>>("AvgPool2d", [k, stride](const Var<T>& x) { return avg_pool2d(x, k, stride); });
}

/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by
/// 1/(1−p); identity in eval mode.
template <class T>
class Dropout : public Module<T> {
public:
    explicit Dropout(double p = 0.5, std::uint64_t seed = 0);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Dropout"; }

private:
    double p_;
    std::mt19937_64 rng_;
    Tensor<T> mask_;
};

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
    std::string describe() const override { return "Sequential"; }
    std::size_t size() const { return layers_.size(); }
    /// Layer i; std::out_of_range for i >= size().
    Module<T>& operator[](std::size_t i)
    {
        if (i >= layers_.size())
            throw std::out_of_range("Sequential: layer index " + std::to_string(i) + " is out of range (" +
                                    std::to_string(layers_.size()) + " layers)");
        return *layers_[i];
    }

private:
    Sequential& add_module(std::unique_ptr<Module<T>> m);
    std::vector<Module<T>*> layers_;
    std::vector<std::string> scopes_;
};

enum class Activation { identity, sigmoid, tanh, relu };

/// Fully connected network: sizes {784, 256, 10} → Linear(784,256), act, Linear(256,10), out_act.
template <class T>
class MLP : public Sequential<T> {
public:
    MLP(const std::vector<std::size_t>& sizes, Activation hidden = Activation::relu,
        Activation output = Activation::identity, std::uint64_t seed = 0);
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class Conv2d<float>;
extern template class Conv2d<double>;
extern template class Dropout<float>;
extern template class Dropout<double>;
extern template class Sequential<float>;
extern template class Sequential<double>;
extern template class MLP<float>;
extern template class MLP<double>;

}  // namespace xgrad::nn

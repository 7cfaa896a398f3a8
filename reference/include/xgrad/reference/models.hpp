#pragma once
// Models shared by the examples and benchmarks.
#include <memory>

#include "xgrad/nn.hpp"

namespace xgrad::reference {

/// The mnist_softmax_sgd network (source document 004, see docs/sources.md):
/// y = softmax(tanh(x + b0)·W1 + b1); b0, b1 zero, W1 ~ U(±√(6/(784+10))) (Xavier).
template <class T>
struct MnistSoftmaxSgd : nn::Module<T> {
    Parameter<T>& b0 = this->register_parameter("b0", xt::zeros<T>({784}));
    Parameter<T>& w1 = this->register_parameter("w1", Tensor<T>::from_shape({784, 10}));
    Parameter<T>& b1 = this->register_parameter("b1", xt::zeros<T>({10}));
    explicit MnistSoftmaxSgd(std::uint64_t seed)
    {
        nn::init::Rng rng(seed);
        nn::init::xavier_uniform(w1.value(), 784, 10, rng);
    }
    Var<T> forward(const Var<T>& x) override
    {
        Tape<T>& t = x.tape();
        return softmax(matmul(tanh(x + t.param(b0)), t.param(w1)) + t.param(b1), 1);
    }
};

/// LeNet-5 style: conv 5×5 (1→6, pad 2) → ReLU → pool 2 → conv 5×5 (6→16) → ReLU → pool 2 →
/// 400 → 120 → 84 → 10. `max_pool` picks max pooling (examples) or average pooling (benchmark).
template <class T>
std::unique_ptr<nn::Sequential<T>> lenet(std::uint64_t seed, bool max_pool)
{
    auto net = std::make_unique<nn::Sequential<T>>();
    auto pool = [&] {
        if (max_pool)
            net->template emplace<nn::MaxPool2d<T>>(2);
        else
            net->template emplace<nn::AvgPool2d<T>>(2);
    };
    net->template emplace<nn::Conv2d<T>>(nn::Conv2dOptions(1, 6, 5).padding(2), seed);
    net->template emplace<nn::ReLU<T>>();
    pool();
    net->template emplace<nn::Conv2d<T>>(nn::Conv2dOptions(6, 16, 5), seed + 1);
    net->template emplace<nn::ReLU<T>>();
    pool();
    net->template emplace<nn::Flatten<T>>();
    net->template emplace<nn::Linear<T>>(400, 120, true, seed + 2);
    net->template emplace<nn::ReLU<T>>();
    net->template emplace<nn::Linear<T>>(120, 84, true, seed + 3);
    net->template emplace<nn::ReLU<T>>();
    net->template emplace<nn::Linear<T>>(84, 10, true, seed + 4);
    return net;
}

}  // namespace xgrad::reference

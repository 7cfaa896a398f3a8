#pragma once
// Models shared by the examples and benchmarks.
#include <memory>
#include <vector>

#include "xgrad/nn.hpp"
#include "xgrad/nn/blocks.hpp"
#include "xgrad/nn/norm.hpp"

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
/// 400 → 120 → 84 → 10. `max_pool` picks max pooling (examples) or average pooling (benchmark),
/// where each ReLU and its pooling run as one op (Sequential::fuse_activation_pool).
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
    net->fuse_activation_pool();
    return net;
}

/// Source document 002's CNN with 8 filters and 10 classes (the cnn_sigmoid_avgpool benchmark):
/// conv 5×5 (1→8) → sigmoid → 2×2 average pooling → 1152 → 10. The sigmoid and its pooling run as
/// one op (Sequential::fuse_activation_pool). Seeds: the convolution `seed`, the dense layer seed + 1.
template <class T>
std::unique_ptr<nn::Sequential<T>> cnn_sigmoid_avgpool(std::uint64_t seed)
{
    auto net = std::make_unique<nn::Sequential<T>>();
    net->template emplace<nn::Conv2d<T>>(nn::Conv2dOptions(1, 8, 5), seed);
    net->template emplace<nn::Sigmoid<T>>();
    net->template emplace<nn::AvgPool2d<T>>(2);
    net->template emplace<nn::Flatten<T>>();
    net->template emplace<nn::Linear<T>>(8 * 12 * 12, 10, true, seed + 1);
    net->fuse_activation_pool();
    return net;
}

/// A small ResNet for 28×28 digits: conv 3×3 (1→16) → BatchNorm2d → ReLU → BasicBlock(16→16) →
/// BasicBlock(16→32, stride 2) → BasicBlock(32→64, stride 2) → global average pooling → Linear
/// (64→10). 77,754 parameters; the mnist_resnet example and the resnet_b64 benchmark. The stem's
/// BatchNorm2d and ReLU run as one op (Sequential::fuse_batch_norm_relu), as the blocks' do.
/// channels_last: input (N,28,28,1) (for one channel the same values as (N,1,28,28), reshaped), every
/// activation NHWC, the pooling a mean over (H,W) (a Lambda in the AdaptiveAvgPool2d's place). The
/// same parameters under the same names, and the same function of them.
template <class T>
std::unique_ptr<nn::Sequential<T>> mnist_resnet(std::uint64_t seed, bool channels_last = false)
{
    const bool cl = channels_last;
    auto net = std::make_unique<nn::Sequential<T>>();
    net->template emplace<nn::Conv2d<T>>(nn::Conv2dOptions(1, 16, 3).padding(1).bias(false).channels_last(cl), seed);
    net->template emplace<nn::BatchNorm2d<T>>(nn::BatchNorm2dOptions(16).channels_last(cl));
    net->template emplace<nn::ReLU<T>>();
    net->template emplace<nn::BasicBlock<T>>(16, 16, 1, seed + 10, cl);
    net->template emplace<nn::BasicBlock<T>>(16, 32, 2, seed + 20, cl);
    net->template emplace<nn::BasicBlock<T>>(32, 64, 2, seed + 30, cl);
    if (cl)
        net->template emplace<nn::Lambda<T>>("GlobalAvgPool(channels_last)",
                                             [axes = std::vector<int>{1, 2}](const Var<T>& x) { return mean(x, axes); });
    else
        net->template emplace<nn::AdaptiveAvgPool2d<T>>(nn::AdaptiveAvgPool2dOptions(1));
    net->template emplace<nn::Flatten<T>>();
    net->template emplace<nn::Linear<T>>(64, 10, true, seed + 40);
    net->fuse_batch_norm_relu();
    return net;
}

/// An MLP of the transformer era: 784 → 256 → LayerNorm → GELU → Dropout(p) → 128 → LayerNorm →
/// GELU → Dropout(p) → 10. The mnist_layernorm_mlp example and the layernorm_mlp benchmark (p = 0).
template <class T>
std::unique_ptr<nn::Sequential<T>> layernorm_mlp(std::uint64_t seed, double dropout)
{
    auto net = std::make_unique<nn::Sequential<T>>();
    std::uint64_t k = 0;
    for (auto [in, out] : {std::pair<std::size_t, std::size_t>{784, 256}, {256, 128}}) {
        net->template emplace<nn::Linear<T>>(in, out, true, seed + k++);
        net->template emplace<nn::LayerNorm<T>>(nn::LayerNormOptions({out}));
        net->template emplace<nn::GELU<T>>();
        if (dropout > 0) net->template emplace<nn::Dropout<T>>(dropout, seed + 100 + k);
    }
    net->template emplace<nn::Linear<T>>(128, 10, true, seed + k);
    return net;
}

}  // namespace xgrad::reference

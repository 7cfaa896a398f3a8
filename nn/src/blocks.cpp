#include "xgrad/nn/blocks.hpp"

#include <fmt/format.h>

#include <memory>
#include <stdexcept>

#include "xgrad/ops/activation.hpp"

namespace xgrad::nn {

template <class T>
BasicBlock<T>::BasicBlock(std::size_t in_planes, std::size_t planes, std::size_t stride, std::optional<std::uint64_t> seed,
                          bool channels_last)
    : in_(in_planes), out_(planes), stride_(stride), channels_last_(channels_last)
{
    if (in_planes == 0 || planes == 0 || stride == 0)
        throw std::invalid_argument(fmt::format("BasicBlock: in_planes, planes and stride must be at least 1, got {}, {}, {}",
                                                in_planes, planes, stride));
    // one seed per convolution, drawn in registration order, so a seeded block is reproducible
    auto next = [&](std::uint64_t k) -> std::optional<std::uint64_t> {
        if (seed) return *seed + k;
        return std::nullopt;
    };
    conv1_ = &this->register_module(
        "conv1", std::make_unique<Conv2d<T>>(Conv2dOptions(in_planes, planes, 3).stride(stride).padding(1).bias(false).channels_last(channels_last), next(0)));
    bn1_ = &this->register_module("bn1", std::make_unique<BatchNorm2d<T>>(BatchNormOptions(planes).channels_last(channels_last)));
    conv2_ = &this->register_module(
        "conv2", std::make_unique<Conv2d<T>>(Conv2dOptions(planes, planes, 3).padding(1).bias(false).channels_last(channels_last), next(1)));
    bn2_ = &this->register_module("bn2", std::make_unique<BatchNorm2d<T>>(BatchNormOptions(planes).channels_last(channels_last)));
    if (stride != 1 || in_planes != planes) {
        auto ds = std::make_unique<Sequential<T>>();
        ds->template emplace<Conv2d<T>>(Conv2dOptions(in_planes, planes, 1).stride(stride).bias(false).channels_last(channels_last), next(2));
        ds->template emplace<BatchNorm2d<T>>(BatchNormOptions(planes).channels_last(channels_last));
        downsample_ = &this->register_module("downsample", std::move(ds));
    }
}

template <class T>
Var<T> BasicBlock<T>::forward(const Var<T>& x)
{
    // relu(bn1(·)) and relu(bn2(·) + shortcut) as one op each: fewer passes each way. The shortcut
    // first: in the backward, conv1's input gradient is then written into x's and the shortcut's
    // added (a strided 1 × 1 convolution's to a quarter of it), not the other way round.
    const Var<T> shortcut = downsample_ ? downsample_->forward(x) : x;
    const Var<T> h = bn1_->forward_relu(conv1_->forward(x));
    const Var<T> y = conv2_->forward(h);
    return bn2_->forward_add_relu(y, shortcut);
}

template class BasicBlock<float>;
template class BasicBlock<double>;

}  // namespace xgrad::nn

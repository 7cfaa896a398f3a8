#pragma once
// Blocks of modern networks built from the layers: the residual block of ResNet.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/norm.hpp"

namespace xgrad::nn {

/// ResNet's BasicBlock (He et al. 2016; torchvision.models.resnet.BasicBlock):
///   y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
/// conv1 3×3 (in → out, stride), conv2 3×3 (out → out), both without bias (the batch norm has
/// one); shortcut(x) = x, or downsample = Sequential(conv 1×1 stride, BatchNorm2d) when the stride
/// is not 1 or the channels change. State dict as torchvision's: conv1.weight, bn1.*, conv2.weight,
/// bn2.*, downsample.0.weight, downsample.1.*. Zero channels or stride throw std::invalid_argument.
/// channels_last: input and output (N,H,W,C), every convolution and batch norm channels-last (the
/// same weights, the same state dict).
template <class T>
class BasicBlock : public Module<T> {
public:
    /// Without a seed the convolutions' weights come from init::next_seed().
    BasicBlock(std::size_t in_planes, std::size_t planes, std::size_t stride = 1,
               std::optional<std::uint64_t> seed = std::nullopt, bool channels_last = false);
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override
    {
        return "BasicBlock(" + std::to_string(in_) + "→" + std::to_string(out_) + ", stride " + std::to_string(stride_) +
               (channels_last_ ? ", channels_last)" : ")");
    }
    /// The 1×1 conv + batch norm of the shortcut, or null when the shortcut is the identity.
    Sequential<T>* downsample() { return downsample_; }

private:
    std::size_t in_, out_, stride_;
    bool channels_last_;
    Conv2d<T>* conv1_;
    BatchNorm2d<T>* bn1_;
    Conv2d<T>* conv2_;
    BatchNorm2d<T>* bn2_;
    Sequential<T>* downsample_ = nullptr;
};

extern template class BasicBlock<float>;
extern template class BasicBlock<double>;

}  // namespace xgrad::nn

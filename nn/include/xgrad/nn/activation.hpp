#pragma once
// The activation a layer applies after its affine map: nn::MLP's hidden and output activations and
// the layers of xgrad::reference's hand-derived backprop.

#include "xgrad/ops/activation.hpp"

namespace xgrad::nn {

/// h(a) = a, 1/(1 + e⁻ᵃ), tanh(a) or max(a, 0), elementwise (xgrad::Activation).
using xgrad::Activation;

}  // namespace xgrad::nn

#pragma once
// The elementwise activations a layer or a fused op can apply, named once for every layer of the
// library (the raw-buffer kernels included).

namespace xgrad {

/// h(a) = a, 1/(1 + e⁻ᵃ), tanh(a) or max(a, 0), elementwise: what nn::MLP's layers and the fused
/// activation + pooling op (activation_avg_pool2d) apply.
enum class Activation { identity, sigmoid, tanh, relu };

}  // namespace xgrad

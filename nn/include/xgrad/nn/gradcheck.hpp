#pragma once
// gradcheck for modules: the tape's gradients of every parameter (and of the input) against
// central finite differences, in float64.
#include "xgrad/gradcheck.hpp"
#include "xgrad/nn/module.hpp"

namespace xgrad::nn {

/// Checks uᵀ·∂module(x)/∂θ for every named parameter θ and uᵀ·∂module(x)/∂x, u a random cotangent.
/// Inputs in the report are named by parameter ("0.weight", ...) and "input".
GradcheckReport gradcheck_module(Module<double>& module, const Tensor<double>& x, const GradcheckOptions& options = {});

/// Same for a scalar loss of the module's output: loss(module(x)).
GradcheckReport gradcheck_module(Module<double>& module, const Tensor<double>& x,
                                 const std::function<Var<double>(const Var<double>&)>& loss,
                                 const GradcheckOptions& options = {});

}  // namespace xgrad::nn

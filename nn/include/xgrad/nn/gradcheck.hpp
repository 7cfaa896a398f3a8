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

/// A float module, checked in double (finite differences in float32 are too coarse to check
/// anything): `twin` is the same architecture built for double, e.g. MLP<double> for an MLP<float>
/// (a module cannot be cloned into another scalar type generically). The float module's parameters
/// are copied into the twin (matched by name and shape; std::invalid_argument naming the first
/// parameter that differs) and the twin is checked at x; the float module is not changed.
GradcheckReport gradcheck_module(Module<float>& module, Module<double>& twin, const Tensor<float>& x,
                                 const std::function<Var<double>(const Var<double>&)>& loss = nullptr,
                                 const GradcheckOptions& options = {});

}  // namespace xgrad::nn

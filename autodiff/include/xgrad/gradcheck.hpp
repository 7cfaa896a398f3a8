#pragma once
// Finite-difference gradient checking, public API (like torch.autograd.gradcheck).
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// gradcheck's options, set by name and chained as in PyTorch's C++ frontend:
/// GradcheckOptions().eps(1e-6).atol(1e-8).input_names({"x", "w"}); `eps()` reads the value back.
class GradcheckOptions {
    /// Central-difference step.
    XGRAD_ARG(double, eps) = 1e-6;
    /// Pass if |analytic − numeric| ≤ atol + rtol·|numeric|.
    XGRAD_ARG(double, atol) = 1e-8;
    /// Relative tolerance.
    XGRAD_ARG(double, rtol) = 1e-6;
    /// Seed of the random cotangent.
    XGRAD_ARG(std::uint64_t, seed) = 0x5eed;
    /// Names of the inputs for the report, one per input ("input k" otherwise).
    XGRAD_ARG(std::vector<std::string>, input_names);
    /// How many failing elements the report lists.
    XGRAD_ARG(std::size_t, max_mismatches) = 10;
};

/// One element where the tape and finite differences disagree.
struct GradcheckMismatch {
    std::size_t input = 0;
    std::string input_name;
    std::vector<std::size_t> index;  ///< element of the input
    double analytic = 0, numeric = 0, abs_error = 0;
};

struct GradcheckInputReport {
    std::string name;
    Shape shape;
    double max_abs_error = 0;
    double max_rel_error = 0;            ///< |a − n| / max(|n|, atol)
    std::vector<std::size_t> worst_index;
    double worst_analytic = 0, worst_numeric = 0;
    std::size_t failures = 0;
};

struct GradcheckReport {
    bool ok = false;
    /// Analytic and numeric gradients were all zero: the check tests nothing, so it is refused.
    bool vacuous = false;
    std::string output_op;                 ///< op that produced f's output
    std::vector<GradcheckInputReport> inputs;
    std::vector<GradcheckMismatch> mismatches;
    /// Readable multi-line account: verdict, one line per input, then the first mismatches.
    std::string summary() const;
};

namespace detail {
/// The comparison behind every gradcheck: perturbs each element of each tensor in `values` in place
/// (restoring it), evaluates phi() = uᵀf at x ± eps, and compares with `analytic`.
GradcheckReport finite_difference_report(const std::vector<Tensor<double>*>& values,
                                         const std::vector<Tensor<double>>& analytic,
                                         const std::vector<std::string>& names, const std::function<double()>& phi,
                                         const GradcheckOptions& options);
/// Multi-index of flat element `flat` in a row-major tensor of `shape`.
std::vector<std::size_t> unravel(std::size_t flat, const Shape& shape);
/// A random cotangent with entries of magnitude in [0.5, 1.5] and random sign.
Tensor<double> random_cotangent(const Shape& shape, std::uint64_t seed);
}  // namespace detail

/// f maps Vars (on a tape that gradcheck owns) to an output Var of any shape.
using GradcheckFn = std::function<Var<double>(const std::vector<Var<double>>&)>;

/// Compares the tape's vector-Jacobian product uᵀJ (u a random cotangent of the output's shape)
/// with central finite differences of uᵀf(x), for every element of every input, in float64.
GradcheckReport gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                          const GradcheckOptions& options = {});

/// Second derivatives, like torch.autograd.gradgradcheck: with a random cotangent u of f's output
/// and random weights w_k of each input's shape, h(x, u) = Σ_k w_k · (uᵀ ∂f/∂x_k) is computed by
/// grad(..., create_graph) and differentiated by the tape with respect to every input and to u
/// (reported as "grad_output"); finite differences of h, each evaluation a first-order backward,
/// are the reference. Same report as gradcheck; output_op reads "grad of '<op>'".
GradcheckReport gradgradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                              const GradcheckOptions& options = {});

}  // namespace xgrad

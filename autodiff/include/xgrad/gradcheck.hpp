#pragma once
// Finite-difference gradient checking, public API (like torch.autograd.gradcheck).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

struct GradcheckOptions {
    double eps = 1e-6;    ///< central-difference step
    double atol = 1e-8;   ///< pass if |analytic − numeric| ≤ atol + rtol·|numeric|
    double rtol = 1e-6;
    std::uint64_t seed = 0x5eed;               ///< for the random cotangent
    std::vector<std::string> input_names;      ///< optional, one per input ("input k" otherwise)
    std::size_t max_mismatches = 10;           ///< how many failing elements the report lists
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

}  // namespace xgrad

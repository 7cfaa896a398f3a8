#pragma once
// Node-level gradient checking: every recorded op's backward, on its own, against finite differences.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// check_nodes' options, set by name and chained: NodeCheckOptions().eps(1e-7).max_elements(50).
class NodeCheckOptions {
    /// Central-difference step.
    XGRAD_ARG(double, eps) = 1e-6;
    /// Pass if |analytic − numeric| ≤ atol + rtol·|numeric|.
    XGRAD_ARG(double, atol) = 1e-8;
    /// Relative tolerance.
    XGRAD_ARG(double, rtol) = 1e-6;
    /// Elements checked per input; larger inputs are checked on a seeded random sample.
    XGRAD_ARG(std::size_t, max_elements) = 24;
    /// Seed of the sample and of the random cotangents.
    XGRAD_ARG(std::uint64_t, seed) = 1;
};

/// One op on the tape whose vector-Jacobian product disagrees with finite differences.
struct NodeFailure {
    std::uint32_t position = 0;         ///< index on the tape
    std::string op;                     ///< op name
    std::string scope;                  ///< where it was created (ScopeGuard names), may be empty
    std::vector<Shape> input_shapes;
    Shape output_shape;
    std::size_t input = 0;              ///< which input's gradient is wrong
    std::vector<std::size_t> index;     ///< the element of that input
    double analytic = 0, numeric = 0;
};

struct NodeCheckReport {
    std::size_t nodes_checked = 0;
    std::size_t elements_checked = 0;
    std::vector<NodeFailure> failures;  ///< in tape order: front() is the first failing node
    bool ok() const { return failures.empty(); }
    std::string summary() const;
};

/// Records the graph with `build` (which must be deterministic: it is replayed once per checked
/// element), then checks each node that has a backward closure: its VJP with a random cotangent
/// against central differences in which only that node's input is perturbed.
NodeCheckReport check_nodes(const std::function<Var<double>(Tape<double>&)>& build, const NodeCheckOptions& options = {});

}  // namespace xgrad

#pragma once
// Node-level gradient checking: every recorded op's backward, on its own, against finite differences.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

struct NodeCheckOptions {
    double eps = 1e-6;
    double atol = 1e-8;
    double rtol = 1e-6;
    std::size_t max_elements = 24;  ///< per input; larger inputs are checked on a seeded random sample
    std::uint64_t seed = 1;
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

#pragma once
// Hand-derived vs automatic gradients: a per-parameter comparison that explains disagreements.
#include <string>
#include <utility>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

using NamedTensors = std::vector<std::pair<std::string, Tensor<double>>>;

/// compare_gradients' options, set by name and chained: CompareOptions().rtol(1e-8).batch_size(32).
class CompareOptions {
    /// Pass if max|hand − automatic| ≤ atol + rtol · max|automatic|.
    XGRAD_ARG(double, rtol) = 1e-10;
    /// Absolute tolerance.
    XGRAD_ARG(double, atol) = 1e-14;
    /// The batch size, if known (0: unknown): lets the diagnosis recognise sum-vs-mean mistakes
    /// (factor B or 1/B).
    XGRAD_ARG(std::size_t, batch_size) = 0;
};

struct GradientComparison {
    std::string name;
    Shape shape;                 ///< automatic gradient's shape
    Shape hand_shape;
    double max_abs_error = 0;    ///< max |hand − automatic|
    double max_rel_error = 0;    ///< max_abs_error / max |automatic|
    std::vector<std::size_t> worst_index;
    double worst_automatic = 0, worst_hand = 0;
    bool pass = false;
    /// Empty when the gradients agree; otherwise what the mistake most likely is, e.g.
    /// "constant factor 2: hand = 2 × automatic (a ½ dropped from ½‖y − t‖²?)".
    std::string diagnosis;
};

struct ComparisonReport {
    std::vector<GradientComparison> entries;
    bool all_pass() const;
    /// A fixed-width table (name, shape, max abs/rel error, worst element, verdict) and, below it,
    /// one diagnosis line per failing parameter.
    std::string table() const;
};

/// Compares hand-derived gradients with automatic ones, matched by name. `terms` optionally gives
/// the automatic gradient of each named term of the loss separately (term name → per-parameter
/// gradients), so a hand gradient that omits a term is recognised.
ComparisonReport compare_gradients(const NamedTensors& automatic, const NamedTensors& hand,
                                   const CompareOptions& options = {},
                                   const std::vector<std::pair<std::string, NamedTensors>>& terms = {});

/// The same, starting from the tape: the loss is the sum of `loss_terms`; the automatic gradient of
/// each term with respect to every Var in `wrt` (variables or parameters) is computed by one
/// backward sweep per term (parameter gradients are restored afterwards).
ComparisonReport compare_gradients(Tape<double>& tape, const std::vector<std::pair<std::string, Var<double>>>& loss_terms,
                                   const std::vector<std::pair<std::string, Var<double>>>& wrt, const NamedTensors& hand,
                                   const CompareOptions& options = {});

/// Only the diagnosis: what relation, if any, holds between a hand gradient and the automatic one.
std::string diagnose_gradient(const Tensor<double>& automatic, const Tensor<double>& hand, const CompareOptions& options = {},
                              const std::vector<std::pair<std::string, Tensor<double>>>& term_gradients = {});

}  // namespace xgrad

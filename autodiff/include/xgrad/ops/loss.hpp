#pragma once
// Loss ops, fused (one node each) for speed and numerical stability.
#include "xgrad/tape.hpp"

namespace xgrad {

enum class Reduction {
    mean,      ///< Σ / (number of terms)
    sum,       ///< Σ
    half_sum,  ///< ½ Σ  (the convention of the backprop notes: dE/dy = y − d)
};

/// Softmax cross-entropy from logits Z (B,C) and integer labels (B):
/// ℓ_b = logΣ_c exp Z[b,c] − Z[b,y_b], reduced (mean: /B).   dZ = (softmax(Z) − onehot(y)) · g / B
/// Reduction::half_sum throws std::invalid_argument (it is a squared-error convention).
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexTensor& labels, Reduction reduction = Reduction::mean);

/// Negative log-likelihood from log-probabilities (B,C): −Σ_b logp[b, y_b] (/B for mean).
/// dlogp[b, y_b] = −g (/B). Reduction::half_sum throws std::invalid_argument.
template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const IndexTensor& labels, Reduction reduction = Reduction::mean);

/// Squared error between Y and D (same shape): Σ (Y − D)² with the reduction's factor
/// (half_sum: ½, sum: 1, mean: 1/N).     dY = 2·factor·(Y − D)·g,  dD = −dY
template <class T>
Var<T> mse_loss(const Var<T>& y, const Var<T>& target, Reduction reduction = Reduction::mean);

}  // namespace xgrad

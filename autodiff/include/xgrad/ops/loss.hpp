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

/// Discriminative trace regularizer R = ½γ (tr S_w − tr S_b) over the rows y_i of Y (B,D) with
/// class labels (B):  S_w = Σ_c Σ_{i∈c} (y_i − m_c)(y_i − m_c)ᵀ,  S_b = Σ_c n_c (m_c − m)(m_c − m)ᵀ,
/// m_c the class means in the batch, m the batch mean; absent classes contribute nothing.
/// Labels are any integers in [0, 2^24) (std::out_of_range otherwise); only the classes present
/// in the batch take memory.
/// Using tr S_w = Σ‖y_i‖² − Σ_c n_c‖m_c‖² and tr S_b = Σ_c n_c‖m_c‖² − B‖m‖²:
///   dR/dy_i = γ (y_i − 2 m_{c(i)} + m)       (these sum to zero over i)
template <class T>
Var<T> trace_scatter_loss(const Var<T>& y, const IndexTensor& labels, T gamma);

/// The two traces, for monitoring (no tape): tr S_w and tr S_b of the rows of y (B,D).
struct ScatterTraces {
    double within = 0;   ///< tr S_w
    double between = 0;  ///< tr S_b
};
template <class T>
ScatterTraces scatter_traces(const Tensor<T>& y, const IndexTensor& labels);

}  // namespace xgrad

#pragma once
// Losses for nn users: the engine's fused loss ops (xgrad/ops/loss.hpp) under xgrad::nn, and the
// discriminative trace regularizer (written on the op-author API, xgrad/op.hpp).
#include "xgrad/ops/loss.hpp"

namespace xgrad::nn {

using xgrad::cross_entropy;
using xgrad::mse_loss;
using xgrad::nll_loss;
using xgrad::Reduction;

/// Discriminative trace regularizer R = ½γ (tr S_w − tr S_b) over the rows y_i of Y (B,D) with
/// class labels (B):  S_w = Σ_c Σ_{i∈c} (y_i − m_c)(y_i − m_c)ᵀ,  S_b = Σ_c n_c (m_c − m)(m_c − m)ᵀ,
/// m_c the class means in the batch, m the batch mean; absent classes contribute nothing.
/// Labels are any integers in [0, 2^24) (std::out_of_range otherwise); only the classes present
/// in the batch take memory.
/// Using tr S_w = Σ‖y_i‖² − Σ_c n_c‖m_c‖² and tr S_b = Σ_c n_c‖m_c‖² − B‖m‖²:
///   dR/dy_i = γ (y_i − 2 m_{c(i)} + m)       (these sum to zero over i)
template <class T>
Var<T> trace_scatter_loss(const Var<T>& y, const IndexTensor& labels, double gamma);

/// The two traces, for monitoring (no tape): tr S_w and tr S_b of the rows of y (B,D).
struct ScatterTraces {
    double within = 0;   ///< tr S_w
    double between = 0;  ///< tr S_b
};
template <class T>
ScatterTraces scatter_traces(const Tensor<T>& y, const IndexTensor& labels);

}  // namespace xgrad::nn

#pragma once
// Normalization: batch norm (training mode: batch statistics) and layer norm, each one fused kernel
// forward and backward, after torch::nn::functional::batch_norm / layer_norm. Their recorded VJPs
// (second order) are compositions of mean, sum, square, pow and the elementwise ops.
#include "xgrad/tape.hpp"

namespace xgrad {

/// Batch norm, training mode: X (N,C,*) (rank ≥ 2) normalized per channel c over its M = N·Π* values,
/// Y = γ_c·X̂ + β_c, X̂ = (X − μ_c)/√(σ²_c + eps), μ_c and σ²_c the mean and the biased variance; γ, β (C).
///   dX = γ_c/(M·√(σ²_c + eps))·(M·G − ΣG − X̂·Σ(G⊙X̂)),  dγ_c = Σ G⊙X̂,  dβ_c = Σ G  (Σ over channel c's M values)
/// batch_mean and batch_var, when not null, receive μ and the biased σ² (C) (for running statistics).
/// ShapeError naming the op and the shapes for X of rank < 2 or γ, β not (C); std::invalid_argument
/// for M < 2 (as PyTorch: more than one value per channel) or eps negative or not finite.
template <class T>
Var<T> batch_norm(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, double eps = 1e-5,
                  Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);
/// Without the affine map: Y = X̂.   dX = 1/(M·√(σ²_c + eps))·(M·G − ΣG − X̂·Σ(G⊙X̂))
template <class T>
Var<T> batch_norm(const Var<T>& x, double eps = 1e-5, Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);

/// relu(batch_norm(...)) as one op, one pass fewer each way: Y = max(γ_c·X̂ + β_c, 0). With
/// G' = G ⊙ [Y > 0] (relu's mask, read where batch norm's backward reads G), every gradient is
/// batch_norm's with G' for G: the same values and gradients as the two ops, bit for bit. The same
/// errors, naming batch_norm_relu.
template <class T>
Var<T> batch_norm_relu(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, double eps = 1e-5,
                       Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);
/// Without the affine map: Y = max(X̂, 0).
template <class T>
Var<T> batch_norm_relu(const Var<T>& x, double eps = 1e-5, Tensor<T>* batch_mean = nullptr,
                       Tensor<T>* batch_var = nullptr);

/// batch_norm and batch_norm_relu of channels-last data: X (N,*,C), the channel the LAST axis (an
/// NHWC activation, conv2d's channels_last output), normalized per channel over its M = N·Π* values;
/// the same formulas, errors and statistics. Each image's rows of C values are summed into C
/// partial sums at once (in double); the result equals the NCHW op's on the permuted input up to
/// rounding (the sums' order differs), and does not depend on the thread count.
template <class T>
Var<T> batch_norm_channels_last(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, double eps = 1e-5,
                                Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);
template <class T>
Var<T> batch_norm_channels_last(const Var<T>& x, double eps = 1e-5, Tensor<T>* batch_mean = nullptr,
                                Tensor<T>* batch_var = nullptr);
template <class T>
Var<T> batch_norm_relu_channels_last(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, double eps = 1e-5,
                                     Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);
template <class T>
Var<T> batch_norm_relu_channels_last(const Var<T>& x, double eps = 1e-5, Tensor<T>* batch_mean = nullptr,
                                     Tensor<T>* batch_var = nullptr);

/// relu(batch_norm(x, weight, bias) + residual) as one op (a residual block's end): one pass fewer
/// each way than batch_norm followed by add_relu, and the same values and gradients, bit for bit.
/// With G' = G ⊙ [Y > 0]: d residual = G', and batch_norm's gradients with G' for G. The residual
/// has x's shape (ShapeError naming the op and both shapes otherwise); batch_norm's other errors.
template <class T>
Var<T> batch_norm_add_relu(const Var<T>& x, const Var<T>& residual, const Var<T>& weight, const Var<T>& bias,
                           double eps = 1e-5, Tensor<T>* batch_mean = nullptr, Tensor<T>* batch_var = nullptr);
/// The same for channels-last x (N,*,C) (batch_norm_channels_last's layout).
template <class T>
Var<T> batch_norm_add_relu_channels_last(const Var<T>& x, const Var<T>& residual, const Var<T>& weight,
                                         const Var<T>& bias, double eps = 1e-5, Tensor<T>* batch_mean = nullptr,
                                         Tensor<T>* batch_var = nullptr);

/// Layer norm: X (*, normalized_shape) normalized over its last k = normalized_shape.size() axes
/// (M = Π normalized_shape values per row), Y = γ⊙X̂ + β, X̂ = (X − μ)/√(σ² + eps) with the row's mean
/// and biased variance; γ, β of normalized_shape. With Ĝ = G⊙γ (Σ over the row's M values):
///   dX = 1/(M·√(σ² + eps))·(M·Ĝ − ΣĜ − X̂·Σ(Ĝ⊙X̂)),  dγ = Σ_rows G⊙X̂,  dβ = Σ_rows G
/// ShapeError naming the op and the shapes if X's trailing axes are not normalized_shape or γ, β
/// are not of that shape; std::invalid_argument for an empty normalized_shape or eps negative or not finite.
template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, const Var<T>& weight, const Var<T>& bias,
                  double eps = 1e-5);
/// Without the affine map: Y = X̂.   dX = 1/(M·√(σ² + eps))·(M·G − ΣG − X̂·Σ(G⊙X̂))
template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, double eps = 1e-5);

}  // namespace xgrad

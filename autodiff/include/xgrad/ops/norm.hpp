#pragma once
// Normalization: batch norm (training mode: batch statistics) and layer norm, each one fused kernel
// forward and backward, after torch::nn::functional::batch_norm / layer_norm. Their recorded VJPs
// (second order) are compositions of mean, sum, square, pow and the elementwise ops.
#include <optional>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// The options of batch_norm, after torch::nn::functional::BatchNormFuncOptions (weight, bias,
/// eps), with what xgrad adds: the channel's axis, a ReLU and a residual sum fused into the op, and
/// where the batch statistics go. batch_norm(x, BatchNormFuncOptions<float>().weight(w).bias(b).relu(true)).
template <class T>
class BatchNormFuncOptions {
    using Out = Tensor<T>*;  // (XGRAD_ARG's getter returns const Out&: the pointer const, not the tensor)
    /// γ (C), the affine map's scale; given with bias, or neither (Y = X̂, no affine map).
    XGRAD_ARG(std::optional<Var<T>>, weight);
    /// β (C), the affine map's shift.
    XGRAD_ARG(std::optional<Var<T>>, bias);
    /// Added to the variance under the square root; finite and non-negative.
    XGRAD_ARG(double, eps) = 1e-5;
    /// X (N,*,C), the channel the LAST axis (an NHWC activation, conv2d's channels_last output),
    /// instead of X (N,C,*). Each image's rows of C values are summed into C partial sums at once;
    /// the result equals the NCHW op's on the permuted input up to rounding (the sums' order differs).
    XGRAD_ARG(bool, channels_last) = false;
    /// Y = max(·, 0) in the same op, one pass fewer each way: with G' = G ⊙ [Y > 0] (relu's mask,
    /// read where batch norm's backward reads G), every gradient is batch norm's with G' for G, so
    /// the values and gradients are relu(batch_norm(...))'s, bit for bit.
    XGRAD_ARG(bool, relu) = false;
    /// A residual of x's shape added before the ReLU (a residual block's end): Y = max(γ_c·X̂ + β_c +
    /// S, 0), d residual = G'. Needs relu and the affine map. Bit for bit add_relu(batch_norm(...), S).
    XGRAD_ARG(std::optional<Var<T>>, residual);
    /// When not null, receives μ (C) (for running statistics).
    XGRAD_ARG(Out, batch_mean) = nullptr;
    /// When not null, receives the biased σ² (C).
    XGRAD_ARG(Out, batch_var) = nullptr;

public:
    BatchNormFuncOptions() = default;
};

/// Batch norm, training mode: X (N,C,*) (rank ≥ 2; (N,*,C) with channels_last) normalized per
/// channel c over its M = N·Π* values, Y = γ_c·X̂ + β_c, X̂ = (X − μ_c)/√(σ²_c + eps), μ_c and σ²_c
/// the mean and the biased variance; γ, β (C).
///   dX = γ_c/(M·√(σ²_c + eps))·(M·G − ΣG − X̂·Σ(G⊙X̂)),  dγ_c = Σ G⊙X̂,  dβ_c = Σ G  (Σ over channel c's M values)
/// Without the affine map γ_c = 1, β_c = 0. With relu or a residual, G' = G ⊙ [Y > 0] for G above
/// (see the options). The statistics are summed per image and added in image order: the same bits
/// on any thread count. The op is recorded as batch_norm, batch_norm_relu or batch_norm_add_relu
/// (with "_channels_last" for that layout), and its errors name it: ShapeError naming the shapes
/// for X of rank < 2, γ, β not (C) or a residual not of x's shape; std::invalid_argument for M < 2
/// (as PyTorch: more than one value per channel), eps negative or not finite, weight without bias
/// or bias without weight, a residual without relu or without the affine map.
template <class T>
Var<T> batch_norm(const Var<T>& x, const BatchNormFuncOptions<T>& options = {});

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

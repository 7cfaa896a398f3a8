#pragma once
// Attention, as torch::nn: scaled dot-product attention, MultiheadAttention, TransformerEncoderLayer.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/nn/norm.hpp"
#include "xgrad/options.hpp"

namespace xgrad::nn {

/// softmax(Q·Kᵀ/√E + M)·V, as torch.nn.functional.scaled_dot_product_attention: Q (…, L, E),
/// K (…, S, E), V (…, S, Ev) with the same leading axes → (…, L, Ev). M is `attn_mask`, added to the
/// scores (−∞ removes a key; it broadcasts to (…, L, S)), and with is_causal the keys j > i of query i
/// are removed as well. Composed of recorded ops (matmul_t, softmax), so it differentiates to any order.
/// With P = softmax(S), S = Q·Kᵀ/√E + M and G = dY:
///   dV = Pᵀ·G,  dP = G·Vᵀ,  dS = P ⊙ (dP − Σ_j dP ⊙ P),  dQ = dS·K/√E,  dK = dSᵀ·Q/√E
/// probabilities, when not null, receives P (…, L, S) as a Var (for attention maps). A query whose
/// keys are all removed yields NaN, as PyTorch. ShapeError naming the shapes for mismatched inputs.
template <class T>
Var<T> scaled_dot_product_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v,
                                    const Tensor<T>* attn_mask = nullptr, bool is_causal = false,
                                    Var<T>* probabilities = nullptr);

/// The (n, n) additive causal mask: 0 on and below the diagonal, −∞ above it, as
/// torch.nn.Transformer.generate_square_subsequent_mask. n = 0 throws std::invalid_argument.
template <class T>
Tensor<T> generate_square_subsequent_mask(std::size_t n);

/// MultiheadAttention's options, as torch::nn::MultiheadAttentionOptions(embed_dim, num_heads).
class MultiheadAttentionOptions {
public:
    MultiheadAttentionOptions(std::size_t embed_dim, std::size_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
    /// E, the model's width; a multiple of num_heads.
    XGRAD_ARG(std::size_t, embed_dim);
    XGRAD_ARG(std::size_t, num_heads);
    /// Dropout on the attention probabilities, in training mode.
    XGRAD_ARG(double, dropout) = 0.0;
    /// in_proj_bias and out_proj.bias.
    XGRAD_ARG(bool, bias) = true;
    /// Input and output (B, L, E) instead of (L, B, E) (PyTorch's Python batch_first).
    XGRAD_ARG(bool, batch_first) = false;
};

/// Multi-head attention, as torch::nn::MultiheadAttention (query, key and value of one width E):
/// [Q K V] = [q k v]·in_proj_weightᵀ + in_proj_bias (in_proj_weight (3E, E), Xavier-uniform;
/// in_proj_bias zeros), split into num_heads heads of width E/h, scaled_dot_product_attention per
/// head, heads joined, then out_proj (Linear(E, E), its bias zeros). State dict as PyTorch:
/// in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias.
template <class T>
class MultiheadAttention : public Module<T> {
public:
    /// Zero sizes, embed_dim not a multiple of num_heads or a dropout outside [0, 1) throw
    /// std::invalid_argument. Without a seed the weights come from init::next_seed().
    explicit MultiheadAttention(const MultiheadAttentionOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    /// (attn_output, attn_weights), as PyTorch: query (L, B, E), key and value (S, B, E) ((B, ·, E)
    /// batch_first) → output of query's shape, weights (B, L, S) averaged over the heads (need_weights;
    /// else an empty Var), after dropout in training mode as PyTorch's. attn_mask (L, S) is additive (see generate_square_subsequent_mask);
    /// is_causal masks key j > i of query i. ShapeError naming the layer and the shapes.
    std::tuple<Var<T>, Var<T>> forward(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                                       const Tensor<T>* attn_mask = nullptr, bool need_weights = true,
                                       bool is_causal = false);
    /// Self-attention forward(x, x, x) without a mask; the output alone.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    const MultiheadAttentionOptions& options() const { return options_; }

private:
    MultiheadAttentionOptions options_;
    Parameter<T>* in_proj_weight_;
    Parameter<T>* in_proj_bias_ = nullptr;
    Linear<T>* out_proj_;
    std::mt19937_64 rng_;                       // dropout masks
    Tensor<T> causal_, combined_, dropout_mask_;  // reused from call to call
};

/// TransformerEncoderLayer's options, as torch::nn::TransformerEncoderLayerOptions(d_model, nhead)
/// plus Python's norm_first and batch_first.
class TransformerEncoderLayerOptions {
public:
    TransformerEncoderLayerOptions(std::size_t d_model, std::size_t nhead) : d_model_(d_model), nhead_(nhead) {}
    XGRAD_ARG(std::size_t, d_model);
    XGRAD_ARG(std::size_t, nhead);
    /// Width of the feed-forward network's hidden layer.
    XGRAD_ARG(std::size_t, dim_feedforward) = 2048;
    /// On the attention probabilities, in the feed-forward network and on both residual branches.
    XGRAD_ARG(double, dropout) = 0.1;
    /// The feed-forward network's activation: "relu" or "gelu" (exact).
    XGRAD_ARG(std::string, activation) = "relu";
    XGRAD_ARG(double, layer_norm_eps) = 1e-5;
    /// (B, L, E) instead of (L, B, E).
    XGRAD_ARG(bool, batch_first) = false;
    /// Pre-LayerNorm (x + attn(norm1(x)), then x + ff(norm2(x))) instead of PyTorch's default
    /// post-LayerNorm (norm1(x + attn(x)), then norm2(x + ff(x))).
    XGRAD_ARG(bool, norm_first) = false;
};

/// A transformer block, as torch::nn::TransformerEncoderLayer: self-attention and a feed-forward
/// network linear2(dropout(activation(linear1(x)))), each on a residual branch with LayerNorm
/// (pre- or post-, see norm_first). State dict as PyTorch: self_attn.{in_proj_weight, in_proj_bias,
/// out_proj.weight, out_proj.bias}, linear1.{weight, bias}, linear2.{weight, bias}, norm1.{weight,
/// bias}, norm2.{weight, bias}. The pre-LayerNorm GELU block of GPT-style models is
/// TransformerEncoderLayerOptions(E, h).norm_first(true).activation("gelu") with is_causal.
template <class T>
class TransformerEncoderLayer : public Module<T> {
public:
    /// An activation other than "relu"/"gelu" throws std::invalid_argument, as do MultiheadAttention's
    /// checks. Without a seed the weights come from init::next_seed().
    explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    /// src (L, B, E) ((B, L, E) batch_first) → the same shape (else ShapeError naming the layer and
    /// the shape). src_mask (L, L) additive; is_causal masks the future (a language model's block).
    Var<T> forward(const Var<T>& src, const Tensor<T>* src_mask, bool is_causal = false);
    Var<T> forward(const Var<T>& src) override { return forward(src, nullptr, false); }
    std::string describe() const override;
    const TransformerEncoderLayerOptions& options() const { return options_; }

private:
    Var<T> feed_forward(const Var<T>& x);
    TransformerEncoderLayerOptions options_;
    MultiheadAttention<T>* self_attn_;
    Linear<T>* linear1_;
    Dropout<T>* dropout_;
    Linear<T>* linear2_;
    LayerNorm<T>* norm1_;
    LayerNorm<T>* norm2_;
    Dropout<T>* dropout1_;
    Dropout<T>* dropout2_;
};

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;
extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;

}  // namespace xgrad::nn

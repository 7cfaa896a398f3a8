#pragma once
// Recurrent layers, as torch::nn: LSTM and GRU, unrolled on the tape over the time steps.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "xgrad/nn/module.hpp"
#include "xgrad/options.hpp"

namespace xgrad::nn {

/// LSTM's and GRU's options, as torch::nn::LSTMOptions / GRUOptions:
/// LSTMOptions(64, 256).num_layers(2).batch_first(true).dropout(0.1).
class RNNOptionsBase {
public:
    RNNOptionsBase(std::size_t input_size, std::size_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    /// Features of the input, I.
    XGRAD_ARG(std::size_t, input_size);
    /// Features of the hidden state, H.
    XGRAD_ARG(std::size_t, hidden_size);
    /// Stacked layers; layer l > 0 reads layer l − 1's output.
    XGRAD_ARG(std::size_t, num_layers) = 1;
    /// The biases b_ih and b_hh of every layer (two, as PyTorch, so weights move both ways).
    XGRAD_ARG(bool, bias) = true;
    /// Input and output (B, L, ·) instead of (L, B, ·). The states are (num_layers, B, H) either way.
    XGRAD_ARG(bool, batch_first) = false;
    /// Dropout on each layer's output except the last's, in training mode.
    XGRAD_ARG(double, dropout) = 0.0;
};
using LSTMOptions = RNNOptionsBase;
using GRUOptions = RNNOptionsBase;

/// What LSTM and GRU share: options, checks, parameters weight_ih_l{k} (G·H, I_k), weight_hh_l{k}
/// (G·H, H), bias_ih_l{k}, bias_hh_l{k} (G·H) for k = 0 … num_layers − 1 in that order (PyTorch's
/// state-dict names and order; G = 4 gates for the LSTM, 3 for the GRU), all initialized
/// U(−1/√H, 1/√H) as PyTorch. Per layer, the input part of every gate over the whole sequence is one
/// GEMM, X (L·B, I_k)·W_ihᵀ + b_ih, and the hidden part one GEMM per step, h (B, H)·W_hhᵀ + b_hh.
template <class T>
class RNNBase : public Module<T> {
public:
    const RNNOptionsBase& options() const { return options_; }
    std::string describe() const override;

protected:
    /// Zero sizes, a dropout outside [0, 1) throw std::invalid_argument.
    RNNBase(const char* name, std::size_t gates, const RNNOptionsBase& options, std::optional<std::uint64_t> seed);
    /// ShapeError naming the layer and the shapes unless x is (L, B, I) ((B, L, I) batch_first) with
    /// L, B ≥ 1, and a given state is (num_layers, B, H).
    void check_input(const Var<T>& x) const;
    void check_state(const Var<T>& x, const Var<T>& state, const char* what) const;
    /// x as (L, B, I) (permuted if batch_first), and back.
    Var<T> time_major(const Var<T>& x) const;
    Var<T> user_layout(const Var<T>& y) const;
    /// Layer k's input part for every step: time-major rows (L·B, I_k) → (L·B, G·H).
    Var<T> input_gates(std::size_t k, const Var<T>& x);
    /// Layer k's W_hh and b_hh (an invalid Var without bias) on `tape`, once per layer, not per step.
    std::pair<Var<T>, Var<T>> hidden_weights(std::size_t k, Tape<T>& tape);
    /// One step's hidden part: h (B, H) → (B, G·H) with hidden_weights' pair.
    static Var<T> hidden_gates(const Var<T>& h, const std::pair<Var<T>, Var<T>>& w);
    /// Layer k's output, rows (L·B, H), with inter-layer dropout applied when k is not the last layer.
    Var<T> between_layers(std::size_t k, const Var<T>& y);
    /// Zeros (num_layers, B, H) on x's tape (copied from zeros_, kept: no allocation per call).
    Var<T> zero_state(const Var<T>& x);

    const char* name_;
    std::size_t gates_;
    RNNOptionsBase options_;
    std::vector<Parameter<T>*> w_ih_, w_hh_, b_ih_, b_hh_;  // per layer; b_* null without bias
    std::mt19937_64 rng_;                                  // inter-layer dropout masks
    Tensor<T> mask_;
    Tensor<T> zeros_;                        // zero_state's source
    std::vector<Var<T>> outs_, h_n_, c_n_;  // forward's per-step outputs and final states, reused
};

/// Long short-term memory, as torch::nn::LSTM. Per layer and step, with gates in PyTorch's order
/// (input, forget, cell, output) as the row blocks of W_ih, W_hh:
///   i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(W_if x + b_if + W_hf h + b_hf)
///   g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
///   c' = f ⊙ c + i ⊙ g   h' = o ⊙ tanh(c')
/// Recorded per step as the hidden GEMM and one fused lstm_cell node (xgrad/ops/recurrent.hpp),
/// differentiable to any order.
template <class T>
class LSTM : public RNNBase<T> {
public:
    /// Without a seed the weights come from init::next_seed().
    explicit LSTM(const LSTMOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    /// (output, (h_n, c_n)), as PyTorch: output (L, B, H) ((B, L, H) batch_first), the last layer's
    /// h at every step; h_n, c_n (num_layers, B, H), every layer's state after the last step.
    /// hx = (h_0, c_0), each (num_layers, B, H); zeros when absent. For truncated backpropagation
    /// through time, pass the previous chunk's states as constants (tape.constant(h_n.value())).
    std::tuple<Var<T>, std::tuple<Var<T>, Var<T>>> forward(const Var<T>& x, const std::optional<std::tuple<Var<T>, Var<T>>>& hx);
    /// The output alone, with zero initial states (so an LSTM fits in a Sequential).
    Var<T> forward(const Var<T>& x) override { return std::get<0>(forward(x, std::nullopt)); }
};

/// Gated recurrent unit, as torch::nn::GRU. Per layer and step, gates in PyTorch's order (reset,
/// update, new):
///   r = σ(W_ir x + b_ir + W_hr h + b_hr)   z = σ(W_iz x + b_iz + W_hz h + b_hz)
///   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))   h' = (1 − z) ⊙ n + z ⊙ h
/// Recorded per step as the hidden GEMM and one fused gru_cell node.
template <class T>
class GRU : public RNNBase<T> {
public:
    /// Without a seed the weights come from init::next_seed().
    explicit GRU(const GRUOptions& options, std::optional<std::uint64_t> seed = std::nullopt);
    /// (output, h_n), as PyTorch: output (L, B, H) ((B, L, H) batch_first), h_n (num_layers, B, H).
    /// hx = h_0 (num_layers, B, H); zeros when absent.
    std::tuple<Var<T>, Var<T>> forward(const Var<T>& x, const std::optional<Var<T>>& hx);
    /// The output alone, with a zero initial state.
    Var<T> forward(const Var<T>& x) override { return std::get<0>(forward(x, std::nullopt)); }
};

extern template class RNNBase<float>;
extern template class RNNBase<double>;
extern template class LSTM<float>;
extern template class LSTM<double>;
extern template class GRU<float>;
extern template class GRU<double>;

}  // namespace xgrad::nn

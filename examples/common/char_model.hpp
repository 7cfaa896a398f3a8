#pragma once
// The character-level language models of examples/char_lm and their training pieces (a truncated
// BPTT step, validation bits per character, sampling), here so that tests can train a tiny one.
#include <cstdint>
#include <string>

#include "text.hpp"
#include "train.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/nn/attention.hpp"
#include "xgrad/nn/rnn.hpp"

namespace xgrad::examples {

struct CharModelOptions {
    std::string kind = "lstm";  ///< lstm | gru | transformer
    std::size_t vocab = 0;      ///< V
    std::size_t embed = 64;     ///< E, the token embedding's width (the transformer's d_model)
    std::size_t hidden = 256;   ///< H of the LSTM/GRU
    std::size_t layers = 2;     ///< recurrent layers or transformer blocks
    std::size_t heads = 4;      ///< transformer: attention heads
    std::size_t context = 128;  ///< transformer: the longest input (positions of the learned positional embedding)
    double dropout = 0.0;       ///< between recurrent layers; in the transformer blocks
    std::uint64_t seed = 1;
};

/// Embedding(V, E) → LSTM/GRU (batch_first, `layers` × H) → Linear(H, V), or Embedding(V, E) + a
/// learned positional Embedding(context, E) → `layers` pre-LayerNorm GELU TransformerEncoderLayers
/// (causal, feed-forward 4E) → LayerNorm(E) → Linear(E, V).
class CharModel : public nn::Module<F> {
public:
    /// The recurrent states carried between chunks, as plain tensors (detached): (layers, B, H);
    /// c for the LSTM only. Empty: zeros.
    struct State {
        Tensor<F> h, c;
        bool empty() const { return h.dimension() == 0; }  // a default xarray is 0-d with one element
        void reset() { h = Tensor<F>(), c = Tensor<F>(); }
    };

    /// An unknown kind, a zero size or (transformer) E not a multiple of heads throw std::invalid_argument.
    explicit CharModel(const CharModelOptions& options);
    /// Logits (B·L, V) for the inputs x (B, L), rows in x's row-major order. state (recurrent models,
    /// may be null): the initial states, replaced by the final ones. The transformer needs L ≤ context.
    Var<F> forward(Tape<F>& tape, const IndexTensor& x, State* state = nullptr);
    /// x: the ids (B, L) as whole numbers in a Var; zero initial states.
    Var<F> forward(const Var<F>& x) override;
    std::string describe() const override { return "CharModel(" + options_.kind + ")"; }
    const CharModelOptions& options() const { return options_; }
    bool recurrent() const { return options_.kind != "transformer"; }

private:
    CharModelOptions options_;
    nn::Embedding<F>* embedding_;
    nn::LSTM<F>* lstm_ = nullptr;
    nn::GRU<F>* gru_ = nullptr;
    nn::Embedding<F>* positions_ = nullptr;
    std::vector<nn::TransformerEncoderLayer<F>*> blocks_;
    nn::LayerNorm<F>* norm_ = nullptr;
    nn::Linear<F>* head_;
    IndexTensor pos_ids_;
};

/// One truncated-BPTT step on the chunk (x (B, L), y (B·L)): mean cross-entropy, backward, gradient
/// clipping to total norm `clip` (0: none), optimizer step; state carried in and out detached.
/// Returns the loss (nats per character). With `replicas` (--distributed), the forward goes through
/// them and the gradients are averaged across ranks before clipping.
double train_chunk(CharModel& model, nn::Optimizer<F>& opt, Tape<F>& tape, const IndexTensor& x, const IndexTensor& y,
                   CharModel::State& state, double clip, Replicas* replicas = nullptr);

/// Mean cross-entropy in bits per character over every target of the streams, in chunks of `len`
/// (recurrent models carry their state from chunk to chunk; the transformer sees each chunk alone),
/// in evaluation mode without recording backward closures.
double evaluate_bits_per_char(CharModel& model, Tape<F>& tape, const TokenStreams& streams, std::size_t len);

/// `count` characters sampled after `prompt` at `temperature` (softmax(logits / temperature)) with a
/// generator seeded by `seed`; the prompt's characters unknown to the vocabulary read as the
/// unknown symbol. The transformer sees the last `context` characters.
std::u32string sample_text(CharModel& model, const Vocabulary& vocab, const std::u32string& prompt, std::size_t count,
                           double temperature, std::uint64_t seed);

}  // namespace xgrad::examples

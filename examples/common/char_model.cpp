#include "char_model.hpp"

#include <cmath>
#include <random>
#include <stdexcept>

namespace xgrad::examples {

CharModel::CharModel(const CharModelOptions& o) : options_(o)
{
    if (o.kind != "lstm" && o.kind != "gru" && o.kind != "transformer")
        throw std::invalid_argument("CharModel: unknown kind '" + o.kind + "' (lstm, gru or transformer)");
    if (o.vocab == 0 || o.embed == 0 || o.hidden == 0 || o.layers == 0 || o.heads == 0 || o.context == 0)
        throw std::invalid_argument("CharModel: zero size in the options");
    std::uint64_t seed = o.seed * 1000;  // one seed per layer, from the model's
    embedding_ = &register_module("embedding", std::make_unique<nn::Embedding<F>>(nn::EmbeddingOptions(o.vocab, o.embed), seed++));
    std::size_t width = o.hidden;
    if (o.kind == "lstm") {
        lstm_ = &register_module("rnn", std::make_unique<nn::LSTM<F>>(
                                            nn::LSTMOptions(o.embed, o.hidden).num_layers(o.layers).batch_first(true).dropout(o.dropout),
                                            seed++));
    } else if (o.kind == "gru") {
        gru_ = &register_module("rnn", std::make_unique<nn::GRU<F>>(
                                           nn::GRUOptions(o.embed, o.hidden).num_layers(o.layers).batch_first(true).dropout(o.dropout),
                                           seed++));
    } else {
        if (o.embed % o.heads != 0)
            throw std::invalid_argument("CharModel: the width " + std::to_string(o.embed) + " is not a multiple of " +
                                        std::to_string(o.heads) + " heads");
        width = o.embed;
        positions_ = &register_module("positions", std::make_unique<nn::Embedding<F>>(nn::EmbeddingOptions(o.context, o.embed), seed++));
        for (std::size_t i = 0; i < o.layers; ++i)
            blocks_.push_back(&register_module(
                "block" + std::to_string(i),
                std::make_unique<nn::TransformerEncoderLayer<F>>(nn::TransformerEncoderLayerOptions(o.embed, o.heads)
                                                                     .dim_feedforward(4 * o.embed)
                                                                     .dropout(o.dropout)
                                                                     .activation("gelu")
                                                                     .norm_first(true)
                                                                     .batch_first(true),
                                                                 seed++)));
        norm_ = &register_module("norm", std::make_unique<nn::LayerNorm<F>>(nn::LayerNormOptions({o.embed})));
    }
    head_ = &register_module("head", std::make_unique<nn::Linear<F>>(width, o.vocab, true, seed++));
}

Var<F> CharModel::forward(Tape<F>& tape, const IndexTensor& x, State* state)
{
    if (x.dimension() != 2 || x.shape()[0] == 0 || x.shape()[1] == 0)
        throw std::invalid_argument("CharModel: the inputs must be (B, L) with B, L ≥ 1");
    const auto B = std::ptrdiff_t(x.shape()[0]), L = std::ptrdiff_t(x.shape()[1]);
    Var<F> e = embedding_->forward(tape, x);  // (B, L, E)
    Var<F> y;
    if (lstm_) {
        std::optional<std::tuple<Var<F>, Var<F>>> hx;
        if (state && !state->empty()) hx.emplace(tape.constant(state->h), tape.constant(state->c));
        auto [out, hc] = lstm_->forward(e, hx);
        if (state) state->h = std::get<0>(hc).value(), state->c = std::get<1>(hc).value();  // detached copies
        y = out;
    } else if (gru_) {
        std::optional<Var<F>> hx;
        if (state && !state->empty()) hx.emplace(tape.constant(state->h));
        auto [out, h] = gru_->forward(e, hx);
        if (state) state->h = h.value();
        y = out;
    } else {
        if (std::size_t(L) > options_.context)
            throw std::invalid_argument("CharModel: " + std::to_string(L) + " characters exceed the transformer's context of " +
                                        std::to_string(options_.context));
        pos_ids_.resize({std::size_t(L)});
        for (std::ptrdiff_t i = 0; i < L; ++i) pos_ids_(i) = i;
        y = e + positions_->forward(tape, pos_ids_);  // (L, E) broadcast over B
        for (auto* b : blocks_) y = b->forward(y, nullptr, true);
        y = norm_->forward(y);
    }
    return head_->forward(reshape(y, {B * L, -1}));
}

Var<F> CharModel::forward(const Var<F>& x)
{
    const Tensor<F>& v = x.value();
    IndexTensor ids = IndexTensor::from_shape(v.shape());
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v.data()[i] != std::floor(v.data()[i]))
            throw std::invalid_argument("CharModel: the inputs must be whole numbers");
        ids.data()[i] = Index(v.data()[i]);
    }
    return forward(x.tape(), ids, nullptr);
}

double train_chunk(CharModel& model, nn::Optimizer<F>& opt, Tape<F>& tape, const IndexTensor& x, const IndexTensor& y,
                   CharModel::State& state, double clip, Replicas* replicas)
{
    opt.zero_grad();
    const auto run = [&] { return model.forward(tape, x, &state); };
    const Var<F> loss = cross_entropy(replicas ? replicas->forward(tape, x.shape(), run) : run(), y);
    const double value = loss.value()();
    tape.backward(loss);
    if (replicas) replicas->synchronize();
    if (clip > 0) nn::utils::clip_grad_norm_(model.parameters(), clip);
    opt.step();
    tape.clear();
    return value;
}

double evaluate_bits_per_char(CharModel& model, Tape<F>& tape, const TokenStreams& streams, std::size_t len)
{
    const bool was_training = model.is_training();
    model.eval();
    NoGradGuard<F> no_grad(tape);
    CharModel::State state;
    IndexTensor x, y;
    double nats = 0;
    std::size_t count = 0;
    for (std::size_t t = 0; t + 1 < streams.length(); t += len) {
        streams.chunk(t, len, x, y);
        const double mean = cross_entropy(model.forward(tape, x, &state), y).value()();
        nats += mean * double(y.size());
        count += y.size();
        tape.clear();
    }
    model.train(was_training);
    return nats / double(count) / std::log(2.0);
}

std::u32string sample_text(CharModel& model, const Vocabulary& vocab, const std::u32string& prompt, std::size_t count,
                           double temperature, std::uint64_t seed)
{
    if (!(temperature > 0)) throw std::invalid_argument("sample_text: the temperature must be > 0");
    const bool was_training = model.is_training();
    model.eval();
    Tape<F> tape;
    NoGradGuard<F> no_grad(tape);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<Index> ids = vocab.encode(prompt.empty() ? std::u32string(U"\n") : prompt);
    const std::size_t prompt_len = ids.size();
    CharModel::State state;
    std::vector<Index> feed = ids;  // what the recurrent model has not read yet
    std::vector<double> p(vocab.size());
    for (std::size_t n = 0; n < count; ++n) {
        if (!model.recurrent()) {  // the transformer rereads its window
            const std::size_t w = std::min(ids.size(), model.options().context);
            feed.assign(ids.end() - std::ptrdiff_t(w), ids.end());
        }
        IndexTensor x = IndexTensor::from_shape({1, feed.size()});
        std::copy(feed.begin(), feed.end(), x.data());
        const Tensor<F>& logits = model.forward(tape, x, &state).value();  // (len, V)
        const std::size_t last = (feed.size() - 1) * vocab.size();
        double top = -INFINITY, total = 0;
        for (std::size_t v = 0; v < p.size(); ++v) top = std::max(top, double(logits.data()[last + v]));
        for (std::size_t v = 0; v < p.size(); ++v) p[v] = std::exp((double(logits.data()[last + v]) - top) / temperature);
        p[Vocabulary::unknown] = 0;  // never emit the unknown symbol
        for (double q : p) total += q;
        double u = uniform(rng) * total;
        Index next = Index(p.size()) - 1;
        for (std::size_t v = 0; v < p.size(); ++v)
            if ((u -= p[v]) < 0) {
                next = Index(v);
                break;
            }
        tape.clear();
        ids.push_back(next);
        feed.assign(1, next);
    }
    model.train(was_training);
    return vocab.decode(std::vector<Index>(ids.begin() + std::ptrdiff_t(prompt_len), ids.end()));
}

}  // namespace xgrad::examples

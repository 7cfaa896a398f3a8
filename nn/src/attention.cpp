#include "xgrad/nn/attention.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "xgrad/nn/init.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

namespace {
std::ptrdiff_t sp(std::size_t n) { return std::ptrdiff_t(n); }

/// Fills `mask` (l, s) with 0 where key j ≤ query i and −∞ above (reused when already that shape).
template <class T>
void fill_causal(Tensor<T>& mask, std::size_t l, std::size_t s)
{
    if (mask.dimension() == 2 && mask.shape()[0] == l && mask.shape()[1] == s) return;
    mask.resize({l, s});
    for (std::size_t i = 0; i < l; ++i)
        for (std::size_t j = 0; j < s; ++j) mask(i, j) = j <= i ? T(0) : -std::numeric_limits<T>::infinity();
}

/// The attention proper, softmax(Q·Kᵀ/√E + mask)·V, with dropout on the probabilities (p > 0).
template <class T>
Var<T> attend(const Var<T>& q, const Var<T>& k, const Var<T>& v, const Tensor<T>* mask, Var<T>* probabilities,
              double p = 0, std::mt19937_64* rng = nullptr, Tensor<T>* dropout_mask = nullptr)
{
    const Shape& qs = q.shape();
    const std::size_t r = qs.size();
    const T scale = T(1 / std::sqrt(double(qs.back())));
    // Leading axes as one batch axis: batched GEMMs reading K transposed and scaling by 1/√E (no
    // copy of Kᵀ, no scaled copy of the scores). A mask over leading axes keeps them.
    if (r > 3 && mask && mask->dimension() > 2) {
        Var<T> scores = matmul(q, transpose(k)) * scale + q.tape().constant(*mask);
        Var<T> prob = softmax(scores, -1);
        if (p > 0) prob = dropout(prob, p, *rng, *dropout_mask);
        if (probabilities) *probabilities = prob;  // after dropout, as PyTorch returns them
        return matmul(prob, v);
    }
    std::size_t n = 1;
    for (std::size_t i = 0; i + 2 < r; ++i) n *= qs[i];
    auto batch = [&](const Var<T>& x) {
        const Shape& s = x.shape();
        return r > 3 ? reshape(x, {sp(n), sp(s[r - 2]), sp(s[r - 1])}) : x;
    };
    Var<T> scores = matmul_t(batch(q), batch(k), false, true, scale);
    if (mask) scores = scores + q.tape().constant(*mask);
    Var<T> prob = softmax(scores, -1);
    if (p > 0) prob = dropout(prob, p, *rng, *dropout_mask);
    const Var<T> y = matmul_t(prob, batch(v), false, false);
    if (r <= 3) {
        if (probabilities) *probabilities = prob;  // after dropout, as PyTorch returns them
        return y;
    }
    thread_local std::vector<std::ptrdiff_t> lead;  // reused: no allocation per call
    lead.assign(qs.begin(), qs.end() - 1);
    if (probabilities) {
        lead.push_back(sp(prob.shape().back()));
        *probabilities = reshape(prob, lead);
        lead.pop_back();
    }
    lead.push_back(sp(v.shape().back()));
    return reshape(y, lead);
}

/// mask + causal into `combined` when both are given; whichever is given otherwise.
template <class T>
const Tensor<T>* merged_mask(const Tensor<T>* mask, bool is_causal, std::size_t l, std::size_t s, Tensor<T>& causal,
                             Tensor<T>& combined)
{
    if (!is_causal) return mask;
    fill_causal(causal, l, s);
    if (!mask) return &causal;
    combined = causal + *mask;  // broadcast as the scores would
    return &combined;
}
}  // namespace

template <class T>
Var<T> scaled_dot_product_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v, const Tensor<T>* attn_mask,
                                    bool is_causal, Var<T>* probabilities)
{
    const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
    const bool ok = qs.size() >= 2 && ks.size() == qs.size() && vs.size() == qs.size() && qs.back() == ks.back() &&
                    ks[ks.size() - 2] == vs[vs.size() - 2] && std::equal(qs.begin(), qs.end() - 2, ks.begin()) &&
                    std::equal(qs.begin(), qs.end() - 2, vs.begin());
    if (!ok)
        throw ShapeError(fmt::format("scaled_dot_product_attention: expected Q (…, L, E), K (…, S, E), V (…, S, Ev) "
                                     "with the same leading axes, got Q {}, K {}, V {}",
                                     shape_str(qs), shape_str(ks), shape_str(vs)));
    const std::size_t l = qs[qs.size() - 2], s = ks[ks.size() - 2];
    Tensor<T> causal, combined;
    if (attn_mask) {
        const Shape& ms = attn_mask->shape();
        bool fits = ms.size() <= qs.size();
        const Shape want = [&] { Shape w(qs.begin(), qs.end() - 1); w.back() = l; w.push_back(s); return w; }();
        for (std::size_t i = 0; fits && i < ms.size(); ++i) {
            const std::size_t d = want[want.size() - ms.size() + i];
            fits = ms[i] == d || ms[i] == 1;
        }
        if (!fits)
            throw ShapeError(fmt::format("scaled_dot_product_attention: attn_mask {} does not broadcast to the scores {}",
                                         shape_str(ms), shape_str(want)));
    }
    return attend(q, k, v, merged_mask(attn_mask, is_causal, l, s, causal, combined), probabilities);
}

template <class T>
Tensor<T> generate_square_subsequent_mask(std::size_t n)
{
    if (n == 0) throw std::invalid_argument("generate_square_subsequent_mask: n must be at least 1");
    Tensor<T> m;
    fill_causal(m, n, n);
    return m;
}

template <class T>
MultiheadAttention<T>::MultiheadAttention(const MultiheadAttentionOptions& options, std::optional<std::uint64_t> seed)
    : options_(options)
{
    const std::size_t e = options_.embed_dim(), h = options_.num_heads();
    if (e == 0 || h == 0 || e % h != 0)
        throw std::invalid_argument(fmt::format("MultiheadAttention: embed_dim ({}) must be a positive multiple of num_heads ({})", e, h));
    if (!(options_.dropout() >= 0 && options_.dropout() < 1))
        throw std::invalid_argument(fmt::format("MultiheadAttention: dropout must be in [0, 1), got {}", options_.dropout()));
    init::Rng rng(init::seed_or_next(seed));
    Tensor<T> w = Tensor<T>::from_shape({3 * e, e});
    init::xavier_uniform(w, e, 3 * e, rng);
    in_proj_weight_ = &this->register_parameter("in_proj_weight", std::move(w));
    if (options_.bias()) {
        Tensor<T> b = Tensor<T>::from_shape({3 * e});
        b.fill(T(0));
        in_proj_bias_ = &this->register_parameter("in_proj_bias", std::move(b));
    }
    out_proj_ = &this->register_module("out_proj", std::make_unique<Linear<T>>(e, e, options_.bias(), rng()));
    if (out_proj_->bias()) out_proj_->bias()->value().fill(T(0));
    rng_.seed(rng());
}

template <class T>
std::string MultiheadAttention<T>::describe() const
{
    return fmt::format("MultiheadAttention(embed_dim={}, num_heads={})", options_.embed_dim(), options_.num_heads());
}

template <class T>
std::tuple<Var<T>, Var<T>> MultiheadAttention<T>::forward(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                                                          const Tensor<T>* attn_mask, bool need_weights, bool is_causal)
{
    const std::size_t e = options_.embed_dim(), heads = options_.num_heads(), d = e / heads;
    const bool bf = options_.batch_first();
    auto bad = [&](const std::string& why) {
        return ShapeError(fmt::format("{}: {}; got query {}, key {}, value {}", describe(), why, shape_str(query.shape()),
                                      shape_str(key.shape()), shape_str(value.shape())));
    };
    for (const Var<T>* x : {&query, &key, &value})
        if (x->dim() != 3 || x->shape()[2] != e || x->shape()[0] == 0 || x->shape()[1] == 0)
            throw bad(fmt::format("expected {} inputs with E = {}", bf ? "(B, L, E)" : "(L, B, E)", e));
    if (key.shape() != value.shape() || key.shape()[bf ? 0 : 1] != query.shape()[bf ? 0 : 1])
        throw bad("key and value must have one shape and the query's batch size");
    // Heads in the user's layout, no time-major copy: rows of (n, B, E) or (B, n, E) are projected as
    // they lie, split into (…, h, d) and permuted to (B, h, n, d), the batched GEMMs' layout.
    const std::size_t l = query.shape()[bf ? 1 : 0], b = query.shape()[bf ? 0 : 1], s = key.shape()[bf ? 1 : 0];
    if (attn_mask && attn_mask->shape() != Shape{l, s})
        throw ShapeError(fmt::format("{}: attn_mask must be (L, S) = ({}, {}), got {}", describe(), l, s, shape_str(attn_mask->shape())));

    Tape<T>& tape = query.tape();
    const Var<T> w = tape.param(*in_proj_weight_);
    const Var<T> bias = in_proj_bias_ ? tape.param(*in_proj_bias_) : Var<T>();
    const auto H = sp(heads), D = sp(d), E = sp(e), B = sp(b);
    auto project = [&](const Var<T>& x, const Var<T>& wp, const Var<T>& bp) {
        const Var<T> x2 = reshape(x, {sp(x.shape()[0] * x.shape()[1]), E});
        return bp.valid() ? linear(x2, wp, bp) : linear(x2, wp);
    };
    auto heads_of = [&](const Var<T>& y, std::size_t n) {  // (n·B or B·n, E) → (B, h, n, d)
        return bf ? permute(reshape(y, {B, sp(n), H, D}), {0, 2, 1, 3}) : permute(reshape(y, {sp(n), B, H, D}), {1, 2, 0, 3});
    };
    // Q, K, V each from its row block of in_proj_weight: slicing the (E, E) weight blocks is cheaper
    // than slicing the (n·B, 3E) product's columns (and, backward, scattering into them).
    auto part = [&](const Var<T>& t, std::ptrdiff_t i) { return slice(t, 0, i * E, (i + 1) * E); };
    const Var<T> none;
    Var<T> q, k, v;
    if (&query.tape() == &key.tape() && &key.tape() == &value.tape() && query.index() == key.index() && key.index() == value.index()) {
        const Var<T> x2 = reshape(query, {sp(l * b), E});  // self-attention: the rows once
        auto proj = [&](std::ptrdiff_t i) {
            return heads_of(bias.valid() ? linear(x2, part(w, i), part(bias, i)) : linear(x2, part(w, i)), l);
        };
        q = proj(0), k = proj(1), v = proj(2);
    } else {
        q = heads_of(project(query, part(w, 0), bias.valid() ? part(bias, 0) : none), l);
        k = heads_of(project(key, part(w, 1), bias.valid() ? part(bias, 1) : none), s);
        v = heads_of(project(value, part(w, 2), bias.valid() ? part(bias, 2) : none), s);
    }
    Var<T> prob;
    const double p = this->is_training() ? options_.dropout() : 0.0;
    const Tensor<T>* m = merged_mask(attn_mask, is_causal, l, s, causal_, combined_);
    const Var<T> o = attend(q, k, v, m, need_weights ? &prob : nullptr, p, &rng_, &dropout_mask_);  // (B, h, L, d)
    const Var<T> joined = bf ? permute(o, {0, 2, 1, 3}) : permute(o, {2, 0, 1, 3});  // (B, L, h, d) or (L, B, h, d)
    const Var<T> out = out_proj_->forward(reshape(joined, {sp(l * b), E}));
    Var<T> weights;
    if (need_weights) weights = mean(prob, std::vector<int>{1});
    return {reshape(out, {bf ? B : sp(l), bf ? sp(l) : B, E}), weights};
}

template <class T>
Var<T> MultiheadAttention<T>::forward(const Var<T>& x)
{
    return std::get<0>(forward(x, x, x, nullptr, false, false));
}

template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(const TransformerEncoderLayerOptions& options, std::optional<std::uint64_t> seed)
    : options_(options)
{
    const auto& o = options_;
    if (o.activation() != "relu" && o.activation() != "gelu")
        throw std::invalid_argument(fmt::format("TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"{}\"", o.activation()));
    if (o.dim_feedforward() == 0) throw std::invalid_argument("TransformerEncoderLayer: dim_feedforward must be at least 1");
    init::Rng rng(init::seed_or_next(seed));
    const std::size_t e = o.d_model();
    self_attn_ = &this->register_module(
        "self_attn", std::make_unique<MultiheadAttention<T>>(
                         MultiheadAttentionOptions(e, o.nhead()).dropout(o.dropout()).batch_first(o.batch_first()), rng()));
    linear1_ = &this->register_module("linear1", std::make_unique<Linear<T>>(e, o.dim_feedforward(), true, rng()));
    dropout_ = &this->register_module("dropout", std::make_unique<Dropout<T>>(o.dropout(), rng()));
    linear2_ = &this->register_module("linear2", std::make_unique<Linear<T>>(o.dim_feedforward(), e, true, rng()));
    const auto norm = LayerNormOptions({e}).eps(o.layer_norm_eps());
    norm1_ = &this->register_module("norm1", std::make_unique<LayerNorm<T>>(norm));
    norm2_ = &this->register_module("norm2", std::make_unique<LayerNorm<T>>(norm));
    dropout1_ = &this->register_module("dropout1", std::make_unique<Dropout<T>>(o.dropout(), rng()));
    dropout2_ = &this->register_module("dropout2", std::make_unique<Dropout<T>>(o.dropout(), rng()));
}

template <class T>
std::string TransformerEncoderLayer<T>::describe() const
{
    return fmt::format("TransformerEncoderLayer(d_model={}, nhead={}, dim_feedforward={}{})", options_.d_model(),
                       options_.nhead(), options_.dim_feedforward(), options_.norm_first() ? ", norm_first=True" : "");
}

template <class T>
Var<T> TransformerEncoderLayer<T>::feed_forward(const Var<T>& x)
{
    const Shape& s = x.shape();
    const Var<T> h = linear1_->forward(reshape(x, {-1, sp(s[2])}));
    const Var<T> a = options_.activation() == "gelu" ? gelu(h) : relu(h);
    const Var<T> y = linear2_->forward(dropout_->forward(a));
    return reshape(y, {sp(s[0]), sp(s[1]), sp(s[2])});
}

template <class T>
Var<T> TransformerEncoderLayer<T>::forward(const Var<T>& src, const Tensor<T>* src_mask, bool is_causal)
{
    const std::size_t e = options_.d_model();
    if (src.dim() != 3 || src.shape()[2] != e || src.shape()[0] == 0 || src.shape()[1] == 0)
        throw ShapeError(fmt::format("{}: expected src {} with E = {}, got {}", describe(),
                                     options_.batch_first() ? "(B, L, E)" : "(L, B, E)", e, shape_str(src.shape())));
    auto sa = [&](const Var<T>& x) { return std::get<0>(self_attn_->forward(x, x, x, src_mask, false, is_causal)); };
    Var<T> x = src;
    if (options_.norm_first()) {
        x = x + dropout1_->forward(sa(norm1_->forward(x)));
        x = x + dropout2_->forward(feed_forward(norm2_->forward(x)));
    } else {
        x = norm1_->forward(x + dropout1_->forward(sa(x)));
        x = norm2_->forward(x + dropout2_->forward(feed_forward(x)));
    }
    return x;
}

#define XGRAD_INSTANTIATE(T)                                                                                        \
    template Var<T> scaled_dot_product_attention(const Var<T>&, const Var<T>&, const Var<T>&, const Tensor<T>*, bool, \
                                                 Var<T>*);                                                           \
    template Tensor<T> generate_square_subsequent_mask<T>(std::size_t);                                            \
    template class MultiheadAttention<T>;                                                                           \
    template class TransformerEncoderLayer<T>;
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn

#include "xgrad/nn/rnn.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "xgrad/nn/init.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/recurrent.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

namespace {
std::ptrdiff_t sp(std::size_t n) { return std::ptrdiff_t(n); }
}  // namespace

template <class T>
RNNBase<T>::RNNBase(const char* name, std::size_t gates, const RNNOptionsBase& options, std::optional<std::uint64_t> seed)
    : name_(name), gates_(gates), options_(options)
{
    const auto& o = options_;
    if (o.input_size() == 0 || o.hidden_size() == 0 || o.num_layers() == 0)
        throw std::invalid_argument(fmt::format("{}: input_size, hidden_size and num_layers must be at least 1, got {}, {}, {}",
                                                name_, o.input_size(), o.hidden_size(), o.num_layers()));
    if (!(o.dropout() >= 0 && o.dropout() < 1))
        throw std::invalid_argument(fmt::format("{}: dropout must be in [0, 1), got {}", name_, o.dropout()));
    init::Rng rng(init::seed_or_next(seed));
    const std::size_t h = o.hidden_size(), gh = gates_ * h;
    const double bound = 1.0 / std::sqrt(double(h));
    auto make = [&](const std::string& pname, Shape shape) {
        Tensor<T> t = Tensor<T>::from_shape(shape);
        init::uniform(t, -bound, bound, rng);
        return &this->register_parameter(pname, std::move(t));
    };
    for (std::size_t k = 0; k < o.num_layers(); ++k) {
        const std::string l = "_l" + std::to_string(k);
        w_ih_.push_back(make("weight_ih" + l, Shape{gh, k == 0 ? o.input_size() : h}));
        w_hh_.push_back(make("weight_hh" + l, Shape{gh, h}));
        b_ih_.push_back(o.bias() ? make("bias_ih" + l, Shape{gh}) : nullptr);
        b_hh_.push_back(o.bias() ? make("bias_hh" + l, Shape{gh}) : nullptr);
    }
    rng_.seed(rng());
}

template <class T>
std::string RNNBase<T>::describe() const
{
    std::string s = fmt::format("{}({}, {}", name_, options_.input_size(), options_.hidden_size());
    if (options_.num_layers() != 1) s += fmt::format(", num_layers={}", options_.num_layers());
    if (!options_.bias()) s += ", bias=False";
    if (options_.batch_first()) s += ", batch_first=True";
    if (options_.dropout() != 0) s += fmt::format(", dropout={}", options_.dropout());
    return s + ")";
}

template <class T>
void RNNBase<T>::check_input(const Var<T>& x) const
{
    const Shape& s = x.shape();
    if (s.size() != 3 || s[2] != options_.input_size() || s[0] == 0 || s[1] == 0)
        throw ShapeError(fmt::format("{}: expected input {} with I = {} and L, B ≥ 1, got {}", describe(),
                                     options_.batch_first() ? "(B, L, I)" : "(L, B, I)", options_.input_size(), shape_str(s)));
}

template <class T>
void RNNBase<T>::check_state(const Var<T>& x, const Var<T>& state, const char* what) const
{
    const std::size_t b = x.shape()[options_.batch_first() ? 0 : 1];
    const Shape want{options_.num_layers(), b, options_.hidden_size()};
    if (state.shape() != want)
        throw ShapeError(fmt::format("{}: {} must be (num_layers, B, H) = {} for input {}, got {}", describe(), what,
                                     shape_str(want), shape_str(x.shape()), shape_str(state.shape())));
    if (&state.tape() != &x.tape())
        throw std::invalid_argument(fmt::format("{}: {} is on another tape than the input", describe(), what));
}

template <class T>
Var<T> RNNBase<T>::time_major(const Var<T>& x) const
{
    return options_.batch_first() ? permute(x, {1, 0, 2}) : x;
}

template <class T>
Var<T> RNNBase<T>::user_layout(const Var<T>& y) const
{
    return options_.batch_first() ? permute(y, {1, 0, 2}) : y;
}

template <class T>
Var<T> RNNBase<T>::input_gates(std::size_t k, const Var<T>& x)
{
    Tape<T>& t = x.tape();
    return b_ih_[k] ? linear(x, t.param(*w_ih_[k]), t.param(*b_ih_[k])) : linear(x, t.param(*w_ih_[k]));
}

template <class T>
std::pair<Var<T>, Var<T>> RNNBase<T>::hidden_weights(std::size_t k, Tape<T>& tape)
{
    return {tape.param(*w_hh_[k]), b_hh_[k] ? tape.param(*b_hh_[k]) : Var<T>()};
}

template <class T>
Var<T> RNNBase<T>::hidden_gates(const Var<T>& h, const std::pair<Var<T>, Var<T>>& w)
{
    return w.second.valid() ? linear(h, w.first, w.second) : linear(h, w.first);
}

template <class T>
Var<T> RNNBase<T>::between_layers(std::size_t k, const Var<T>& y)
{
    const double p = options_.dropout();
    if (k + 1 == options_.num_layers() || !this->is_training() || p == 0) return y;
    return dropout(y, p, rng_, mask_);
}

template <class T>
Var<T> RNNBase<T>::zero_state(const Var<T>& x)
{
    const std::size_t b = x.shape()[options_.batch_first() ? 0 : 1];
    const Shape want{options_.num_layers(), b, options_.hidden_size()};
    if (zeros_.shape() != want) {
        zeros_.resize(want);
        zeros_.fill(T(0));
    }
    return x.tape().constant(zeros_);
}

template <class T>
LSTM<T>::LSTM(const LSTMOptions& options, std::optional<std::uint64_t> seed) : RNNBase<T>("LSTM", 4, options, seed)
{
}

template <class T>
std::tuple<Var<T>, std::tuple<Var<T>, Var<T>>> LSTM<T>::forward(const Var<T>& x, const std::optional<std::tuple<Var<T>, Var<T>>>& hx)
{
    this->check_input(x);
    if (hx) {
        this->check_state(x, std::get<0>(*hx), "h_0");
        this->check_state(x, std::get<1>(*hx), "c_0");
    }
    const Var<T> h0 = hx ? std::get<0>(*hx) : this->zero_state(x);
    const Var<T> c0 = hx ? std::get<1>(*hx) : this->zero_state(x);
    // Time-major rows (L·B, ·) from here on: step t is the row block [t·B, (t + 1)·B), and the layers'
    // outputs are joined along the rows, so no (L, B, ·) copies of the gates or outputs are made.
    Var<T> in = this->time_major(x);
    const std::size_t steps = in.shape()[0], b = in.shape()[1];
    in = reshape(in, {sp(steps * b), sp(in.shape()[2])});
    auto rows = [b](std::size_t t) { return std::pair{sp(t * b), sp((t + 1) * b)}; };
    std::vector<Var<T>>&h_n = this->h_n_, &c_n = this->c_n_, &outs = this->outs_;
    h_n.clear(), c_n.clear(), outs.resize(steps);
    for (std::size_t k = 0; k < this->options_.num_layers(); ++k) {
        const Var<T> xg = this->input_gates(k, in);
        const auto w = this->hidden_weights(k, x.tape());
        Var<T> h = select(h0, 0, sp(k)), c = select(c0, 0, sp(k));
        for (std::size_t t = 0; t < steps; ++t) {
            const Var<T> hc = lstm_cell(slice(xg, 0, rows(t).first, rows(t).second), this->hidden_gates(h, w), c);
            h = select(hc, 0, 0);
            c = select(hc, 0, 1);
            outs[t] = h;
        }
        h_n.push_back(h);
        c_n.push_back(c);
        in = this->between_layers(k, concatenate(outs, 0));
    }
    const Var<T> out = this->user_layout(reshape(in, {sp(steps), sp(b), -1}));
    std::tuple<Var<T>, std::tuple<Var<T>, Var<T>>> y{out, {stack(h_n, 0), stack(c_n, 0)}};
    h_n.clear(), c_n.clear(), outs.clear();  // capacity kept; no handles to this tape left behind
    return y;
}

template <class T>
GRU<T>::GRU(const GRUOptions& options, std::optional<std::uint64_t> seed) : RNNBase<T>("GRU", 3, options, seed)
{
}

template <class T>
std::tuple<Var<T>, Var<T>> GRU<T>::forward(const Var<T>& x, const std::optional<Var<T>>& hx)
{
    this->check_input(x);
    if (hx) this->check_state(x, *hx, "h_0");
    const Var<T> h0 = hx ? *hx : this->zero_state(x);
    // Time-major rows (L·B, ·) from here on: step t is the row block [t·B, (t + 1)·B), and the layers'
    // outputs are joined along the rows, so no (L, B, ·) copies of the gates or outputs are made.
    Var<T> in = this->time_major(x);
    const std::size_t steps = in.shape()[0], b = in.shape()[1];
    in = reshape(in, {sp(steps * b), sp(in.shape()[2])});
    auto rows = [b](std::size_t t) { return std::pair{sp(t * b), sp((t + 1) * b)}; };
    std::vector<Var<T>>&h_n = this->h_n_, &outs = this->outs_;
    h_n.clear(), outs.resize(steps);
    for (std::size_t k = 0; k < this->options_.num_layers(); ++k) {
        const Var<T> xg = this->input_gates(k, in);
        const auto w = this->hidden_weights(k, x.tape());
        Var<T> h = select(h0, 0, sp(k));
        for (std::size_t t = 0; t < steps; ++t) {
            h = gru_cell(slice(xg, 0, rows(t).first, rows(t).second), this->hidden_gates(h, w), h);
            outs[t] = h;
        }
        h_n.push_back(h);
        in = this->between_layers(k, concatenate(outs, 0));
    }
    std::tuple<Var<T>, Var<T>> y{this->user_layout(reshape(in, {sp(steps), sp(b), -1})), stack(h_n, 0)};
    h_n.clear(), outs.clear();  // capacity kept; no handles to this tape left behind
    return y;
}

template class RNNBase<float>;
template class RNNBase<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;

}  // namespace xgrad::nn

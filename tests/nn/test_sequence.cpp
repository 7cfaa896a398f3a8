// Sequence models: LSTM and GRU backpropagation through time written out by hand (gate derivatives,
// the cell-state recurrence, two layers, non-zero initial states) and scaled dot-product attention's
// backward by hand (softmax Jacobian, causal and additive masks), against the tape in float64 to
// 1e-12 of each tensor's largest entry; MultiheadAttention by hand (forward); MultiheadAttention and
// TransformerEncoderLayer through gradcheck, LSTM, GRU and attention through gradgradcheck; layouts,
// shapes, state-dict names, causality, dropout and the errors.
#define BOOST_TEST_MODULE nn_sequence
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <xtensor/xview.hpp>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"
#include "xgrad/nn/attention.hpp"
#include "xgrad/nn/gradcheck.hpp"
#include "xgrad/nn/rnn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::test::expect_gradcheck;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Tens = Tensor<double>;

namespace {

const double inf = std::numeric_limits<double>::infinity();

/// max |a − b| / max |b|: the error relative to the tensor's scale.
double rel_err(const Tens& a, const Tens& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        err = std::max(err, std::abs(a.data()[i] - b.data()[i]));
        scale = std::max(scale, std::abs(b.data()[i]));
    }
    return scale > 0 ? err / scale : err;
}

double sigmoid(double a) { return 1 / (1 + std::exp(-a)); }

Tens zeros(const Shape& s)
{
    Tens t = Tens::from_shape(s);
    t.fill(0);
    return t;
}

/// One layer's weights (read from the module by name) and their gradients.
struct LayerParams {
    Tens w_ih, w_hh, b_ih, b_hh;
    bool bias = true;
};

std::vector<LayerParams> read_params(Module<double>& m, std::size_t layers, bool bias)
{
    std::vector<LayerParams> p(layers);
    for (std::size_t k = 0; k < layers; ++k) {
        const std::string s = std::to_string(k);
        p[k].w_ih = m.parameter("weight_ih_l" + s).value();
        p[k].w_hh = m.parameter("weight_hh_l" + s).value();
        p[k].bias = bias;
        if (bias) {
            p[k].b_ih = m.parameter("bias_ih_l" + s).value();
            p[k].b_hh = m.parameter("bias_hh_l" + s).value();
        }
    }
    return p;
}

/// The hand computation's results: forward outputs, input and state gradients, parameter gradients.
struct HandRnn {
    Tens out, h_n, c_n, dx, dh0, dc0;
    std::vector<LayerParams> grads;
};

/// Σ_j w(r, j) v[j] (+ b(r)) for every row r: w (R, J), v J contiguous values.
std::vector<double> affine(const Tens& w, const double* v, const Tens* b)
{
    const std::size_t rows = w.shape()[0], cols = w.shape()[1];
    std::vector<double> a(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        double s = b ? (*b)(r) : 0.0;
        for (std::size_t j = 0; j < cols; ++j) s += w(r, j) * v[j];
        a[r] = s;
    }
    return a;
}

/// LSTM by hand, time-major x (L, B, I), states (layers, B, H). Loss Σ R ⊙ out + Σ Rh ⊙ h_n + Σ Rc ⊙ c_n.
/// Backward per layer from the last step: dh_t = dy_t + dh from step t+1,
/// dc_t = dh_t ⊙ o ⊙ (1 − tanh² c_t) + dc_{t+1} ⊙ f_{t+1}, gates' pre-activation derivatives
/// di = dc ⊙ g ⊙ i(1 − i), df = dc ⊙ c_{t−1} ⊙ f(1 − f), dg = dc ⊙ i ⊙ (1 − g²), do = dh ⊙ tanh c ⊙ o(1 − o).
HandRnn hand_lstm(const std::vector<LayerParams>& p, const Tens& x, const Tens& h0, const Tens& c0, const Tens& R,
                  const Tens& Rh, const Tens& Rc)
{
    const std::size_t layers = p.size(), L = x.shape()[0], B = x.shape()[1], H = h0.shape()[2];
    std::vector<Tens> in{x}, gates, cs;  // gates (L, B, 4H) after the activations
    HandRnn r;
    r.h_n = zeros({layers, B, H});
    r.c_n = zeros({layers, B, H});
    for (std::size_t k = 0; k < layers; ++k) {
        const LayerParams& w = p[k];
        const Tens& inp = in[k];
        Tens g = zeros({L, B, 4 * H}), c = zeros({L, B, H}), h = zeros({L, B, H});
        for (std::size_t t = 0; t < L; ++t)
            for (std::size_t b = 0; b < B; ++b) {
                const double* hp = t ? &h(t - 1, b, 0) : &h0(k, b, 0);
                const double* cp = t ? &c(t - 1, b, 0) : &c0(k, b, 0);
                auto ai = affine(w.w_ih, &inp(t, b, 0), w.bias ? &w.b_ih : nullptr);
                auto ah = affine(w.w_hh, hp, w.bias ? &w.b_hh : nullptr);
                for (std::size_t q = 0; q < 4 * H; ++q) {
                    const double a = ai[q] + ah[q];
                    g(t, b, q) = q / H == 2 ? std::tanh(a) : sigmoid(a);
                }
                for (std::size_t u = 0; u < H; ++u) {
                    const double ig = g(t, b, u), fg = g(t, b, H + u), gg = g(t, b, 2 * H + u), og = g(t, b, 3 * H + u);
                    c(t, b, u) = fg * cp[u] + ig * gg;
                    h(t, b, u) = og * std::tanh(c(t, b, u));
                }
            }
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) {
                r.h_n(k, b, u) = h(L - 1, b, u);
                r.c_n(k, b, u) = c(L - 1, b, u);
            }
        gates.push_back(g);
        cs.push_back(c);
        in.push_back(h);
    }
    r.out = in[layers];
    r.grads.resize(layers);
    r.dh0 = zeros({layers, B, H});
    r.dc0 = zeros({layers, B, H});
    Tens dy = R;
    for (std::size_t k = layers; k-- > 0;) {
        const LayerParams& w = p[k];
        LayerParams& d = r.grads[k];
        const Tens &inp = in[k], &g = gates[k], &c = cs[k], &h = in[k + 1];
        const std::size_t I = inp.shape()[2];
        d.w_ih = zeros(w.w_ih.shape());
        d.w_hh = zeros(w.w_hh.shape());
        d.b_ih = zeros({4 * H});
        d.b_hh = zeros({4 * H});
        Tens din = zeros({L, B, I}), dh_next = zeros({B, H}), dc_next = zeros({B, H});
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) {
                dh_next(b, u) = Rh(k, b, u);
                dc_next(b, u) = Rc(k, b, u);
            }
        for (std::size_t t = L; t-- > 0;)
            for (std::size_t b = 0; b < B; ++b) {
                std::vector<double> da(4 * H);
                for (std::size_t u = 0; u < H; ++u) {
                    const double ig = g(t, b, u), fg = g(t, b, H + u), gg = g(t, b, 2 * H + u), og = g(t, b, 3 * H + u);
                    const double cp = t ? c(t - 1, b, u) : c0(k, b, u), tc = std::tanh(c(t, b, u));
                    const double dh = dy(t, b, u) + dh_next(b, u);
                    const double dc = dh * og * (1 - tc * tc) + dc_next(b, u);
                    da[u] = dc * gg * ig * (1 - ig);
                    da[H + u] = dc * cp * fg * (1 - fg);
                    da[2 * H + u] = dc * ig * (1 - gg * gg);
                    da[3 * H + u] = dh * tc * og * (1 - og);
                    dc_next(b, u) = dc * fg;
                }
                for (std::size_t q = 0; q < 4 * H; ++q) {
                    for (std::size_t j = 0; j < I; ++j) d.w_ih(q, j) += da[q] * inp(t, b, j);
                    for (std::size_t j = 0; j < H; ++j) d.w_hh(q, j) += da[q] * (t ? h(t - 1, b, j) : h0(k, b, j));
                    d.b_ih(q) += da[q];
                    d.b_hh(q) += da[q];
                }
                for (std::size_t j = 0; j < I; ++j)
                    for (std::size_t q = 0; q < 4 * H; ++q) din(t, b, j) += w.w_ih(q, j) * da[q];
                for (std::size_t j = 0; j < H; ++j) {
                    double s = 0;
                    for (std::size_t q = 0; q < 4 * H; ++q) s += w.w_hh(q, j) * da[q];
                    dh_next(b, j) = s;
                }
            }
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) {
                r.dh0(k, b, u) = dh_next(b, u);
                r.dc0(k, b, u) = dc_next(b, u);
            }
        dy = din;
    }
    r.dx = dy;
    return r;
}

/// GRU by hand (gates r, z, n): a_i = W_ih x + b_ih, a_h = W_hh h + b_hh,
/// r = σ(a_i^r + a_h^r), z = σ(a_i^z + a_h^z), n = tanh(a_i^n + r ⊙ a_h^n), h' = (1 − z) ⊙ n + z ⊙ h.
/// Backward: dn = dh' ⊙ (1 − z), dz = dh' ⊙ (h − n), da^n = dn ⊙ (1 − n²), dr = da^n ⊙ a_h^n;
/// da_i = (dr ⊙ r(1 − r), dz ⊙ z(1 − z), da^n), da_h = (same, same, da^n ⊙ r); dh = dh' ⊙ z + W_hhᵀ da_h.
/// Loss Σ R ⊙ out + Σ Rh ⊙ h_n.
HandRnn hand_gru(const std::vector<LayerParams>& p, const Tens& x, const Tens& h0, const Tens& R, const Tens& Rh)
{
    const std::size_t layers = p.size(), L = x.shape()[0], B = x.shape()[1], H = h0.shape()[2];
    std::vector<Tens> in{x}, gates, hn_part;  // gates (L, B, 3H): r, z, n; hn_part (L, B, H): a_h^n
    HandRnn r;
    r.h_n = zeros({layers, B, H});
    for (std::size_t k = 0; k < layers; ++k) {
        const LayerParams& w = p[k];
        const Tens& inp = in[k];
        Tens g = zeros({L, B, 3 * H}), hpn = zeros({L, B, H}), h = zeros({L, B, H});
        for (std::size_t t = 0; t < L; ++t)
            for (std::size_t b = 0; b < B; ++b) {
                const double* hp = t ? &h(t - 1, b, 0) : &h0(k, b, 0);
                auto ai = affine(w.w_ih, &inp(t, b, 0), w.bias ? &w.b_ih : nullptr);
                auto ah = affine(w.w_hh, hp, w.bias ? &w.b_hh : nullptr);
                for (std::size_t u = 0; u < H; ++u) {
                    const double rg = sigmoid(ai[u] + ah[u]), zg = sigmoid(ai[H + u] + ah[H + u]);
                    const double ng = std::tanh(ai[2 * H + u] + rg * ah[2 * H + u]);
                    g(t, b, u) = rg;
                    g(t, b, H + u) = zg;
                    g(t, b, 2 * H + u) = ng;
                    hpn(t, b, u) = ah[2 * H + u];
                    h(t, b, u) = (1 - zg) * ng + zg * hp[u];
                }
            }
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) r.h_n(k, b, u) = h(L - 1, b, u);
        gates.push_back(g);
        hn_part.push_back(hpn);
        in.push_back(h);
    }
    r.out = in[layers];
    r.grads.resize(layers);
    r.dh0 = zeros({layers, B, H});
    Tens dy = R;
    for (std::size_t k = layers; k-- > 0;) {
        const LayerParams& w = p[k];
        LayerParams& d = r.grads[k];
        const Tens &inp = in[k], &g = gates[k], &hpn = hn_part[k], &h = in[k + 1];
        const std::size_t I = inp.shape()[2];
        d.w_ih = zeros(w.w_ih.shape());
        d.w_hh = zeros(w.w_hh.shape());
        d.b_ih = zeros({3 * H});
        d.b_hh = zeros({3 * H});
        Tens din = zeros({L, B, I}), dh_next = zeros({B, H});
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) dh_next(b, u) = Rh(k, b, u);
        for (std::size_t t = L; t-- > 0;)
            for (std::size_t b = 0; b < B; ++b) {
                std::vector<double> dai(3 * H), dah(3 * H), hp(H), dh_direct(H);
                for (std::size_t u = 0; u < H; ++u) hp[u] = t ? h(t - 1, b, u) : h0(k, b, u);
                for (std::size_t u = 0; u < H; ++u) {
                    const double rg = g(t, b, u), zg = g(t, b, H + u), ng = g(t, b, 2 * H + u);
                    const double dh = dy(t, b, u) + dh_next(b, u);
                    const double dn = dh * (1 - zg), dz = dh * (hp[u] - ng);
                    const double dan = dn * (1 - ng * ng), dr = dan * hpn(t, b, u);
                    dai[u] = dah[u] = dr * rg * (1 - rg);
                    dai[H + u] = dah[H + u] = dz * zg * (1 - zg);
                    dai[2 * H + u] = dan;
                    dah[2 * H + u] = dan * rg;
                    dh_direct[u] = dh * zg;
                }
                for (std::size_t q = 0; q < 3 * H; ++q) {
                    for (std::size_t j = 0; j < I; ++j) d.w_ih(q, j) += dai[q] * inp(t, b, j);
                    for (std::size_t j = 0; j < H; ++j) d.w_hh(q, j) += dah[q] * hp[j];
                    d.b_ih(q) += dai[q];
                    d.b_hh(q) += dah[q];
                }
                for (std::size_t j = 0; j < I; ++j)
                    for (std::size_t q = 0; q < 3 * H; ++q) din(t, b, j) += w.w_ih(q, j) * dai[q];
                for (std::size_t j = 0; j < H; ++j) {
                    double s = dh_direct[j];
                    for (std::size_t q = 0; q < 3 * H; ++q) s += w.w_hh(q, j) * dah[q];
                    dh_next(b, j) = s;
                }
            }
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t u = 0; u < H; ++u) r.dh0(k, b, u) = dh_next(b, u);
        dy = din;
    }
    r.dx = dy;
    return r;
}

/// Compares the module's parameter gradients with the hand's, layer by layer.
void check_param_grads(Module<double>& m, const std::vector<LayerParams>& hand, bool bias, double tol = 1e-12)
{
    for (std::size_t k = 0; k < hand.size(); ++k) {
        const std::string s = std::to_string(k);
        BOOST_TEST_CONTEXT("layer " << k)
        {
            BOOST_TEST(rel_err(m.parameter("weight_ih_l" + s).grad(), hand[k].w_ih) < tol);
            BOOST_TEST(rel_err(m.parameter("weight_hh_l" + s).grad(), hand[k].w_hh) < tol);
            if (bias) {
                BOOST_TEST(rel_err(m.parameter("bias_ih_l" + s).grad(), hand[k].b_ih) < tol);
                BOOST_TEST(rel_err(m.parameter("bias_hh_l" + s).grad(), hand[k].b_hh) < tol);
            }
        }
    }
}

/// Scaled dot-product attention by hand on (N, L, E) views of (…, L, E): S = Q·Kᵀ/√E + M (−∞ for
/// j > i when causal), P = softmax(S), Y = P·V; with G = dY: dV = Pᵀ·G, dP = G·Vᵀ,
/// dS = P ⊙ (dP − Σ_j dP ⊙ P), dQ = dS·K/√E, dK = dSᵀ·Q/√E.
struct HandAttention {
    Tens y, p, dq, dk, dv;
};

/// mask_at(n, i, j): the additive mask's entry for batch-head n (0 without a mask).
template <class MaskAt>
HandAttention hand_attention(const Tens& q, const Tens& k, const Tens& v, const Tens& g, bool causal, MaskAt mask_at)
{
    const std::size_t rank = q.dimension(), L = q.shape()[rank - 2], E = q.shape()[rank - 1];
    const std::size_t S = k.shape()[rank - 2], Ev = v.shape()[rank - 1], N = q.size() / (L * E);
    const double scale = 1 / std::sqrt(double(E));
    Shape ps = q.shape(), ys = q.shape();
    ps[rank - 1] = S;
    ys[rank - 1] = Ev;
    HandAttention h{zeros(ys), zeros(ps), zeros(q.shape()), zeros(k.shape()), zeros(v.shape())};
    for (std::size_t n = 0; n < N; ++n) {
        const double *Q = q.data() + n * L * E, *K = k.data() + n * S * E, *Vv = v.data() + n * S * Ev,
                     *G = g.data() + n * L * Ev;
        double *Y = h.y.data() + n * L * Ev, *P = h.p.data() + n * L * S, *dQ = h.dq.data() + n * L * E,
               *dK = h.dk.data() + n * S * E, *dV = h.dv.data() + n * S * Ev;
        for (std::size_t i = 0; i < L; ++i) {
            std::vector<double> s(S);
            double mx = -inf;
            for (std::size_t j = 0; j < S; ++j) {
                double dot = 0;
                for (std::size_t e = 0; e < E; ++e) dot += Q[i * E + e] * K[j * E + e];
                s[j] = (causal && j > i) ? -inf : dot * scale + mask_at(n, i, j);
                mx = std::max(mx, s[j]);
            }
            double z = 0;
            for (std::size_t j = 0; j < S; ++j) z += std::exp(s[j] - mx);
            for (std::size_t j = 0; j < S; ++j) P[i * S + j] = std::exp(s[j] - mx) / z;
            for (std::size_t e = 0; e < Ev; ++e) {
                double acc = 0;
                for (std::size_t j = 0; j < S; ++j) acc += P[i * S + j] * Vv[j * Ev + e];
                Y[i * Ev + e] = acc;
            }
            // dP, then the softmax Jacobian row by row
            std::vector<double> dp(S), ds(S);
            double dot = 0;
            for (std::size_t j = 0; j < S; ++j) {
                double acc = 0;
                for (std::size_t e = 0; e < Ev; ++e) acc += G[i * Ev + e] * Vv[j * Ev + e];
                dp[j] = acc;
                dot += acc * P[i * S + j];
            }
            for (std::size_t j = 0; j < S; ++j) ds[j] = P[i * S + j] * (dp[j] - dot);
            for (std::size_t j = 0; j < S; ++j) {
                for (std::size_t e = 0; e < Ev; ++e) dV[j * Ev + e] += P[i * S + j] * G[i * Ev + e];
                for (std::size_t e = 0; e < E; ++e) {
                    dQ[i * E + e] += ds[j] * K[j * E + e] * scale;
                    dK[j * E + e] += ds[j] * Q[i * E + e] * scale;
                }
            }
        }
    }
    return h;
}

HandAttention hand_attention(const Tens& q, const Tens& k, const Tens& v, const Tens& g, bool causal)
{
    return hand_attention(q, k, v, g, causal, [](std::size_t, std::size_t, std::size_t) { return 0.0; });
}

/// The hand derivations checked on their own: central differences of `loss` (a hand forward) over
/// every element of every tensor in xs, against the hand gradients; the largest error relative to
/// each gradient's largest entry.
double fd_rel_err(const std::function<double()>& loss, const std::vector<Tens*>& xs, const std::vector<Tens>& grads)
{
    BOOST_REQUIRE(xs.size() == grads.size());
    const double eps = 1e-6;
    double worst = 0;
    for (std::size_t n = 0; n < xs.size(); ++n) {
        Tens fd = zeros(xs[n]->shape());
        for (std::size_t i = 0; i < xs[n]->size(); ++i) {
            double& v = xs[n]->data()[i];
            const double keep = v;
            v = keep + eps;
            const double up = loss();
            v = keep - eps;
            const double down = loss();
            v = keep;
            fd.data()[i] = (up - down) / (2 * eps);
        }
        worst = std::max(worst, rel_err(grads[n], fd));
    }
    return worst;
}

double dot(const Tens& a, const Tens& b)
{
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a.data()[i] * b.data()[i];
    return s;
}

/// f() must throw a ShapeError whose message contains every one of `parts`.
template <class F>
void expect_shape_error(F f, const std::vector<std::string>& parts)
{
    try {
        f();
        BOOST_ERROR("no ShapeError; expected one naming " << parts.front());
    } catch (const ShapeError& e) {
        const std::string msg = e.what();
        for (const auto& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
    }
}

std::vector<std::string> names_of(Module<double>& m)
{
    std::vector<std::string> n;
    for (const auto& [name, p] : m.named_parameters()) n.push_back(name);
    return n;
}

/// A module around a MultiheadAttention forward with a mask, for gradcheck_module.
class MaskedSelfAttention : public Module<double> {
public:
    MaskedSelfAttention(std::size_t e, std::size_t heads, const Tens* mask, bool causal, bool weights, std::uint64_t seed)
        : attn_(register_module("attn", std::make_unique<MultiheadAttention<double>>(MultiheadAttentionOptions(e, heads), seed))),
          mask_(mask), causal_(causal), weights_(weights)
    {
    }
    V forward(const V& x) override
    {
        auto [y, w] = attn_.forward(x, x, x, mask_, weights_, causal_);
        return weights_ ? w : y;
    }

private:
    MultiheadAttention<double>& attn_;
    const Tens* mask_;
    bool causal_, weights_;
};

/// A module around a MultiheadAttention forward with query, key and value distinct Vars (the
/// three-GEMM path), key and value 2L steps long.
class CrossAttention : public Module<double> {
public:
    CrossAttention(const MultiheadAttentionOptions& o, std::uint64_t seed)
        : attn_(register_module("attn", std::make_unique<MultiheadAttention<double>>(o, seed)))
    {
    }
    V forward(const V& x) override
    {
        const int time = attn_.options().batch_first() ? 1 : 0;
        const V key = concatenate({x, x * 0.5}, time);
        auto [y, w] = attn_.forward(x, key, tanh(key));
        return concatenate({reshape(y, {-1}), reshape(w, {-1})}, 0);
    }

private:
    MultiheadAttention<double>& attn_;
};

/// A module around a TransformerEncoderLayer forward with is_causal.
class CausalBlock : public Module<double> {
public:
    CausalBlock(const TransformerEncoderLayerOptions& o, std::uint64_t seed)
        : layer_(register_module("layer", std::make_unique<TransformerEncoderLayer<double>>(o, seed)))
    {
    }
    V forward(const V& x) override { return layer_.forward(x, nullptr, true); }

private:
    TransformerEncoderLayer<double>& layer_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(hand)

// The hand derivations themselves against finite differences of the hand forward (no tape), so that a
// disagreement with the tape below points at the layer.
BOOST_AUTO_TEST_CASE(hand_derivations_match_finite_differences)
{
    const std::size_t L = 5, B = 2, I = 3, H = 4, layers = 2;
    std::vector<LayerParams> p(layers);
    for (std::size_t k = 0; k < layers; ++k) {
        const std::size_t in = k ? H : I;
        p[k] = {rnd({4 * H, in}, 200 + k, -0.5, 0.5), rnd({4 * H, H}, 210 + k, -0.5, 0.5), rnd({4 * H}, 220 + k, -0.5, 0.5),
                rnd({4 * H}, 230 + k, -0.5, 0.5), true};
    }
    Tens x = rnd({L, B, I}, 240), h0 = rnd({layers, B, H}, 241), c0 = rnd({layers, B, H}, 242);
    const Tens R = rnd({L, B, H}, 243), Rh = rnd({layers, B, H}, 244), Rc = rnd({layers, B, H}, 245);
    const HandRnn h = hand_lstm(p, x, h0, c0, R, Rh, Rc);
    auto lstm_loss = [&] {
        const HandRnn f = hand_lstm(p, x, h0, c0, R, Rh, Rc);
        return dot(f.out, R) + dot(f.h_n, Rh) + dot(f.c_n, Rc);
    };
    std::vector<Tens*> xs{&x, &h0, &c0};
    std::vector<Tens> gs{h.dx, h.dh0, h.dc0};
    for (std::size_t k = 0; k < layers; ++k) {
        for (Tens* t : {&p[k].w_ih, &p[k].w_hh, &p[k].b_ih, &p[k].b_hh}) xs.push_back(t);
        for (const Tens& g : {h.grads[k].w_ih, h.grads[k].w_hh, h.grads[k].b_ih, h.grads[k].b_hh}) gs.push_back(g);
    }
    BOOST_TEST(fd_rel_err(lstm_loss, xs, gs) < 1e-7);

    std::vector<LayerParams> pg(layers);
    for (std::size_t k = 0; k < layers; ++k) {
        const std::size_t in = k ? H : I;
        pg[k] = {rnd({3 * H, in}, 300 + k, -0.5, 0.5), rnd({3 * H, H}, 310 + k, -0.5, 0.5), rnd({3 * H}, 320 + k, -0.5, 0.5),
                 rnd({3 * H}, 330 + k, -0.5, 0.5), true};
    }
    const HandRnn hg = hand_gru(pg, x, h0, R, Rh);
    auto gru_loss = [&] {
        const HandRnn f = hand_gru(pg, x, h0, R, Rh);
        return dot(f.out, R) + dot(f.h_n, Rh);
    };
    std::vector<Tens*> xg{&x, &h0};
    std::vector<Tens> gg{hg.dx, hg.dh0};
    for (std::size_t k = 0; k < layers; ++k) {
        for (Tens* t : {&pg[k].w_ih, &pg[k].w_hh, &pg[k].b_ih, &pg[k].b_hh}) xg.push_back(t);
        for (const Tens& g : {hg.grads[k].w_ih, hg.grads[k].w_hh, hg.grads[k].b_ih, hg.grads[k].b_hh}) gg.push_back(g);
    }
    BOOST_TEST(fd_rel_err(gru_loss, xg, gg) < 1e-7);

    Tens q = rnd({2, 2, 4, 3}, 250, -2, 2), k = rnd({2, 2, 4, 3}, 251, -2, 2), v = rnd({2, 2, 4, 2}, 252);
    const Tens g = rnd({2, 2, 4, 2}, 253);
    Tens mask = rnd({4, 4}, 254);
    mask(0, 1) = -inf;
    auto mask_at = [&](std::size_t, std::size_t i, std::size_t j) { return mask(i, j); };
    for (bool causal : {false, true}) {
        const HandAttention a = hand_attention(q, k, v, g, causal, mask_at);
        auto attn_loss = [&] { return dot(hand_attention(q, k, v, g, causal, mask_at).y, g); };
        BOOST_TEST(fd_rel_err(attn_loss, {&q, &k, &v}, {a.dq, a.dk, a.dv}) < 1e-7);
    }
}

BOOST_AUTO_TEST_CASE(lstm_bptt_matches_the_hand_derivation)
{
    const std::size_t L = 6, B = 3, I = 3, H = 4, layers = 2;
    LSTM<double> lstm(LSTMOptions(I, H).num_layers(layers), 41);
    const std::vector<LayerParams> p = read_params(lstm, layers, true);
    const Tens x = rnd({L, B, I}, 1, -1.5, 1.5), h0 = rnd({layers, B, H}, 2), c0 = rnd({layers, B, H}, 3, -2, 2);
    const Tens R = rnd({L, B, H}, 4), Rh = rnd({layers, B, H}, 5), Rc = rnd({layers, B, H}, 6);
    const HandRnn h = hand_lstm(p, x, h0, c0, R, Rh, Rc);

    Tape<double> tape;
    const V xv = tape.variable(x), h0v = tape.variable(h0), c0v = tape.variable(c0);
    auto [out, state] = lstm.forward(xv, std::make_tuple(h0v, c0v));
    auto [hn, cn] = state;
    const V loss = sum(out * tape.constant(R)) + sum(hn * tape.constant(Rh)) + sum(cn * tape.constant(Rc));
    tape.backward(loss);
    BOOST_TEST(rel_err(out.value(), h.out) < 1e-12);
    BOOST_TEST(rel_err(hn.value(), h.h_n) < 1e-12);
    BOOST_TEST(rel_err(cn.value(), h.c_n) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
    BOOST_TEST(rel_err(h0v.grad(), h.dh0) < 1e-12);
    BOOST_TEST(rel_err(c0v.grad(), h.dc0) < 1e-12);
    check_param_grads(lstm, h.grads, true);
    // the hand derivation is not vacuous: every gradient has entries of some size
    for (const auto& g : h.grads) BOOST_TEST(xt::amax(xt::abs(g.w_hh))() > 1e-3);
    BOOST_TEST(xt::amax(xt::abs(h.dc0))() > 1e-3);
}

BOOST_AUTO_TEST_CASE(lstm_without_bias_and_zero_states_matches_the_hand_derivation)
{
    const std::size_t L = 5, B = 2, I = 3, H = 4, layers = 2;
    LSTM<double> lstm(LSTMOptions(I, H).num_layers(layers).bias(false), 43);
    const std::vector<LayerParams> p = read_params(lstm, layers, false);
    const Tens x = rnd({L, B, I}, 11), zero = zeros({layers, B, H}), R = rnd({L, B, H}, 12);
    const HandRnn h = hand_lstm(p, x, zero, zero, R, zero, zero);
    Tape<double> tape;
    const V xv = tape.variable(x);
    auto [out, state] = lstm.forward(xv, std::nullopt);
    tape.backward(sum(out * tape.constant(R)));
    BOOST_TEST(rel_err(out.value(), h.out) < 1e-12);
    BOOST_TEST(rel_err(std::get<0>(state).value(), h.h_n) < 1e-12);
    BOOST_TEST(rel_err(std::get<1>(state).value(), h.c_n) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
    check_param_grads(lstm, h.grads, false);
}

BOOST_AUTO_TEST_CASE(gru_bptt_matches_the_hand_derivation)
{
    const std::size_t L = 6, B = 3, I = 3, H = 4, layers = 2;
    GRU<double> gru(GRUOptions(I, H).num_layers(layers), 51);
    const std::vector<LayerParams> p = read_params(gru, layers, true);
    const Tens x = rnd({L, B, I}, 21, -1.5, 1.5), h0 = rnd({layers, B, H}, 22);
    const Tens R = rnd({L, B, H}, 23), Rh = rnd({layers, B, H}, 24);
    const HandRnn h = hand_gru(p, x, h0, R, Rh);

    Tape<double> tape;
    const V xv = tape.variable(x), h0v = tape.variable(h0);
    auto [out, hn] = gru.forward(xv, h0v);
    tape.backward(sum(out * tape.constant(R)) + sum(hn * tape.constant(Rh)));
    BOOST_TEST(rel_err(out.value(), h.out) < 1e-12);
    BOOST_TEST(rel_err(hn.value(), h.h_n) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
    BOOST_TEST(rel_err(h0v.grad(), h.dh0) < 1e-12);
    check_param_grads(gru, h.grads, true);
    for (const auto& g : h.grads) BOOST_TEST(xt::amax(xt::abs(g.b_hh))() > 1e-3);
}

BOOST_AUTO_TEST_CASE(gru_without_bias_and_zero_state_matches_the_hand_derivation)
{
    const std::size_t L = 5, B = 2, I = 3, H = 4, layers = 2;
    GRU<double> gru(GRUOptions(I, H).num_layers(layers).bias(false), 53);
    const std::vector<LayerParams> p = read_params(gru, layers, false);
    const Tens x = rnd({L, B, I}, 31), zero = zeros({layers, B, H}), R = rnd({L, B, H}, 32);
    const HandRnn h = hand_gru(p, x, zero, R, zero);
    Tape<double> tape;
    const V xv = tape.variable(x);
    auto [out, hn] = gru.forward(xv, std::nullopt);
    tape.backward(sum(out * tape.constant(R)));
    BOOST_TEST(rel_err(out.value(), h.out) < 1e-12);
    BOOST_TEST(rel_err(hn.value(), h.h_n) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
    check_param_grads(gru, h.grads, false);
}

BOOST_AUTO_TEST_CASE(attention_backward_matches_the_hand_derivation)
{
    const std::size_t B = 2, nh = 3, L = 5, S = 5, E = 4, Ev = 3;
    const Tens q = rnd({B, nh, L, E}, 61, -2, 2), k = rnd({B, nh, S, E}, 62, -2, 2), v = rnd({B, nh, S, Ev}, 63);
    const Tens g = rnd({B, nh, L, Ev}, 64);
    // an additive mask with finite entries and a few −∞ (no row entirely removed)
    Tens mask = rnd({L, S}, 65, -1, 1);
    mask(0, 3) = mask(2, 0) = mask(4, 4) = mask(1, 1) = -inf;
    auto mask_at = [&](std::size_t, std::size_t i, std::size_t j) { return mask(i, j); };
    struct Case {
        const char* name;
        const Tens* mask;
        bool causal;
    };
    for (const Case c : {Case{"causal", nullptr, true}, Case{"additive mask", &mask, false},
                         Case{"mask and causal", &mask, true}, Case{"no mask", nullptr, false}}) {
        BOOST_TEST_CONTEXT(c.name)
        {
            const HandAttention h = c.mask ? hand_attention(q, k, v, g, c.causal, mask_at) : hand_attention(q, k, v, g, c.causal);
            Tape<double> tape;
            const V qv = tape.variable(q), kv = tape.variable(k), vv = tape.variable(v);
            V probs;
            const V y = scaled_dot_product_attention(qv, kv, vv, c.mask, c.causal, &probs);
            tape.backward(y, g);
            BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
            BOOST_TEST(rel_err(probs.value(), h.p) < 1e-12);
            BOOST_TEST(rel_err(qv.grad(), h.dq) < 1e-12);
            BOOST_TEST(rel_err(kv.grad(), h.dk) < 1e-12);
            BOOST_TEST(rel_err(vv.grad(), h.dv) < 1e-12);
            if (c.causal) BOOST_TEST(probs.value()(1, 2, 1, 3) == 0.0);
        }
    }
}

BOOST_AUTO_TEST_CASE(attention_with_fewer_queries_and_a_broadcast_mask_matches_the_hand_derivation)
{
    // L ≠ S, a (B, 1, L, S) mask broadcast over the heads
    const std::size_t B = 2, nh = 2, L = 3, S = 6, E = 4, Ev = 5;
    const Tens q = rnd({B, nh, L, E}, 71, -2, 2), k = rnd({B, nh, S, E}, 72, -2, 2), v = rnd({B, nh, S, Ev}, 73);
    const Tens g = rnd({B, nh, L, Ev}, 74);
    Tens mask = rnd({B, 1, L, S}, 75, -2, 2);
    mask(0, 0, 1, 5) = mask(1, 0, 2, 0) = -inf;
    const HandAttention h =
        hand_attention(q, k, v, g, false, [&](std::size_t n, std::size_t i, std::size_t j) { return mask(n / nh, 0, i, j); });
    Tape<double> tape;
    const V qv = tape.variable(q), kv = tape.variable(k), vv = tape.variable(v);
    const V y = scaled_dot_product_attention(qv, kv, vv, &mask);
    tape.backward(y, g);
    BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
    BOOST_TEST(rel_err(qv.grad(), h.dq) < 1e-12);
    BOOST_TEST(rel_err(kv.grad(), h.dk) < 1e-12);
    BOOST_TEST(rel_err(vv.grad(), h.dv) < 1e-12);
}

BOOST_AUTO_TEST_CASE(multihead_attention_forward_matches_the_hand_computation)
{
    // [Q K V] = [q k v]·W_inᵀ + b_in, heads of width E/h, attention per head, heads joined, out_proj;
    // the weights are P averaged over the heads. Time-major (L, B, E) as PyTorch's default.
    const std::size_t E = 6, nh = 2, d = E / nh, L = 4, S = 5, B = 2;
    MultiheadAttention<double> mha(MultiheadAttentionOptions(E, nh), 81);
    // biases not zero, so that a missing or swapped bias shows
    mha.parameter("in_proj_bias").value() = rnd({3 * E}, 82);
    mha.parameter("out_proj.bias").value() = rnd({E}, 83);
    const Tens w_in = mha.parameter("in_proj_weight").value(), b_in = mha.parameter("in_proj_bias").value();
    const Tens w_out = mha.parameter("out_proj.weight").value(), b_out = mha.parameter("out_proj.bias").value();
    const Tens query = rnd({L, B, E}, 84), key = rnd({S, B, E}, 85), value = rnd({S, B, E}, 86);
    Tens mask = rnd({L, S}, 87);
    mask(1, 2) = -inf;
    // projections, as (B, h, ·, d)
    auto project = [&](const Tens& x, std::size_t part, std::size_t n) {
        Tens out = zeros({B, nh, n, d});
        for (std::size_t t = 0; t < n; ++t)
            for (std::size_t b = 0; b < B; ++b)
                for (std::size_t r = 0; r < E; ++r) {
                    double s = b_in(part * E + r);
                    for (std::size_t j = 0; j < E; ++j) s += w_in(part * E + r, j) * x(t, b, j);
                    out(b, r / d, t, r % d) = s;
                }
        return out;
    };
    const Tens qh = project(query, 0, L), kh = project(key, 1, S), vh = project(value, 2, S);
    const HandAttention a = hand_attention(qh, kh, vh, zeros({B, nh, L, d}), false,
                                           [&](std::size_t, std::size_t i, std::size_t j) { return mask(i, j); });
    Tens want = zeros({L, B, E}), want_w = zeros({B, L, S});
    for (std::size_t t = 0; t < L; ++t)
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t r = 0; r < E; ++r) {
                double s = b_out(r);
                for (std::size_t j = 0; j < E; ++j) s += w_out(r, j) * a.y(b, j / d, t, j % d);
                want(t, b, r) = s;
            }
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < L; ++i)
            for (std::size_t j = 0; j < S; ++j) {
                double s = 0;
                for (std::size_t hh = 0; hh < nh; ++hh) s += a.p(b, hh, i, j);
                want_w(b, i, j) = s / double(nh);
            }
    Tape<double> tape;
    auto [y, w] = mha.forward(tape.constant(query), tape.constant(key), tape.constant(value), &mask);
    BOOST_TEST(rel_err(y.value(), want) < 1e-12);
    BOOST_TEST(rel_err(w.value(), want_w) < 1e-12);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(finite_differences)

BOOST_AUTO_TEST_CASE(multihead_attention_gradcheck)
{
    const std::size_t E = 4, nh = 2;
    const Tens x = rnd({3, 2, E}, 91);  // (L, B, E)
    MultiheadAttention<double> plain(MultiheadAttentionOptions(E, nh), 92);
    plain.parameter("in_proj_bias").value() = rnd({3 * E}, 93);
    const GradcheckReport rp = gradcheck_module(plain, x);
    BOOST_TEST(rp.ok, rp.summary());
    MultiheadAttention<double> bf(MultiheadAttentionOptions(E, nh).batch_first(true).bias(false), 94);
    const GradcheckReport rb = gradcheck_module(bf, x);
    BOOST_TEST(rb.ok, rb.summary());
    for (bool batch_first : {false, true}) {
        CrossAttention cross(MultiheadAttentionOptions(E, nh).batch_first(batch_first), 97);
        cross.parameter("attn.in_proj_bias").value() = rnd({3 * E}, 98);
        const GradcheckReport r = gradcheck_module(cross, x);
        BOOST_TEST(r.ok, r.summary());
    }
    Tens mask = rnd({3, 3}, 95);
    mask(0, 2) = -inf;
    for (bool causal : {false, true})
        for (bool weights : {false, true}) {
            BOOST_TEST_CONTEXT("causal " << causal << ", weights " << weights)
            {
                MaskedSelfAttention m(E, nh, causal ? nullptr : &mask, causal, weights, 96);
                const GradcheckReport r = gradcheck_module(m, x);
                BOOST_TEST(r.ok, r.summary());
            }
        }
}

BOOST_AUTO_TEST_CASE(transformer_encoder_layer_gradcheck)
{
    const std::size_t E = 4;
    const Tens x = rnd({3, 2, E}, 101, -2, 2);
    for (bool norm_first : {false, true})
        for (const char* act : {"relu", "gelu"}) {
            BOOST_TEST_CONTEXT("norm_first " << norm_first << ", " << act)
            {
                const auto o =
                    TransformerEncoderLayerOptions(E, 2).dim_feedforward(6).dropout(0.0).activation(act).norm_first(norm_first);
                TransformerEncoderLayer<double> layer(o, 102);
                const GradcheckReport r = gradcheck_module(layer, x);
                BOOST_TEST(r.ok, r.summary());
                CausalBlock causal(o, 103);
                const GradcheckReport rc = gradcheck_module(causal, x);
                BOOST_TEST(rc.ok, rc.summary());
            }
        }
}

BOOST_AUTO_TEST_CASE(lstm_and_gru_gradcheck)
{
    const Tens x = rnd({2, 4, 3}, 111);  // batch_first (B, L, I)
    LSTM<double> lstm(LSTMOptions(3, 2).num_layers(2).batch_first(true), 112);
    const GradcheckReport rl = gradcheck_module(lstm, x);
    BOOST_TEST(rl.ok, rl.summary());
    GRU<double> gru(GRUOptions(3, 2).num_layers(2).batch_first(true), 113);
    const GradcheckReport rg = gradcheck_module(gru, x);
    BOOST_TEST(rg.ok, rg.summary());
}

BOOST_AUTO_TEST_CASE(lstm_and_gru_gradgradcheck)
{
    const std::size_t L = 3, B = 2, I = 2, H = 3;
    LSTM<double> lstm(LSTMOptions(I, H), 121);
    expect_gradgradcheck(
        [&](const std::vector<V>& in) {
            auto [out, st] = lstm.forward(in[0], std::make_tuple(in[1], in[2]));
            return concatenate({reshape(out, {-1}), reshape(std::get<0>(st), {-1}), reshape(std::get<1>(st), {-1})}, 0);
        },
        {rnd({L, B, I}, 122), rnd({1, B, H}, 123), rnd({1, B, H}, 124)});
    GRU<double> gru(GRUOptions(I, H), 125);
    expect_gradgradcheck(
        [&](const std::vector<V>& in) {
            auto [out, hn] = gru.forward(in[0], in[1]);
            return concatenate({reshape(out, {-1}), reshape(hn, {-1})}, 0);
        },
        {rnd({L, B, I}, 126), rnd({1, B, H}, 127)});
}

BOOST_AUTO_TEST_CASE(attention_gradcheck_and_gradgradcheck)
{
    const Tens q = rnd({1, 2, 3, 2}, 131), k = rnd({1, 2, 3, 2}, 132), v = rnd({1, 2, 3, 2}, 133);
    Tens mask = rnd({3, 3}, 134);
    mask(1, 0) = -inf;
    for (bool causal : {false, true}) {
        BOOST_TEST_CONTEXT("causal " << causal)
        {
            auto f = [&](const std::vector<V>& in) {
                return scaled_dot_product_attention(in[0], in[1], in[2], causal ? nullptr : &mask, causal);
            };
            expect_gradcheck(f, {q, k, v});
            expect_gradgradcheck(f, {q, k, v});
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(behaviour)

BOOST_AUTO_TEST_CASE(lstm_shapes_and_batch_first)
{
    const std::size_t L = 5, B = 3, I = 3, H = 4;
    LSTM<double> tm(LSTMOptions(I, H).num_layers(2), 7), bf(LSTMOptions(I, H).num_layers(2).batch_first(true), 7);
    const Tens x = rnd({L, B, I}, 141), h0 = rnd({2, B, H}, 142), c0 = rnd({2, B, H}, 143), R = rnd({L, B, H}, 144);
    Tape<double> t1, t2;
    const V x1 = t1.variable(x);
    auto [o1, s1] = tm.forward(x1, std::make_tuple(t1.constant(h0), t1.constant(c0)));
    BOOST_TEST(o1.shape() == Shape({L, B, H}));
    BOOST_TEST(std::get<0>(s1).shape() == Shape({2, B, H}));
    BOOST_TEST(std::get<1>(s1).shape() == Shape({2, B, H}));
    t1.backward(sum(o1 * t1.constant(R)));
    const Tens xb = xt::transpose(x, {1, 0, 2});
    const V x2 = t2.variable(xb);
    auto [o2, s2] = bf.forward(x2, std::make_tuple(t2.constant(h0), t2.constant(c0)));
    BOOST_TEST(o2.shape() == Shape({B, L, H}));
    t2.backward(sum(o2 * t2.constant(Tens(xt::transpose(R, {1, 0, 2})))));
    BOOST_TEST(rel_err(Tens(xt::transpose(o2.value(), {1, 0, 2})), o1.value()) < 1e-14);
    BOOST_TEST(rel_err(std::get<0>(s2).value(), std::get<0>(s1).value()) < 1e-14);
    BOOST_TEST(rel_err(std::get<1>(s2).value(), std::get<1>(s1).value()) < 1e-14);
    BOOST_TEST(rel_err(Tens(xt::transpose(x2.grad(), {1, 0, 2})), x1.grad()) < 1e-14);
    BOOST_TEST(rel_err(bf.parameter("weight_hh_l1").grad(), tm.parameter("weight_hh_l1").grad()) < 1e-14);
    // the single-argument forward: the output with zero states
    Tape<double> t3;
    auto [o3, s3] = tm.forward(t3.constant(x), std::make_tuple(t3.constant(zeros({2, B, H})), t3.constant(zeros({2, B, H}))));
    BOOST_TEST(rel_err(tm(t3.constant(x)).value(), o3.value()) == 0.0);
}

BOOST_AUTO_TEST_CASE(gru_shapes_and_batch_first)
{
    const std::size_t L = 4, B = 2, I = 3, H = 5;
    GRU<double> tm(GRUOptions(I, H).num_layers(3), 8), bf(GRUOptions(I, H).num_layers(3).batch_first(true), 8);
    const Tens x = rnd({L, B, I}, 151), h0 = rnd({3, B, H}, 152);
    Tape<double> t1, t2;
    auto [o1, h1] = tm.forward(t1.constant(x), t1.constant(h0));
    BOOST_TEST(o1.shape() == Shape({L, B, H}));
    BOOST_TEST(h1.shape() == Shape({3, B, H}));
    auto [o2, h2] = bf.forward(t2.constant(Tens(xt::transpose(x, {1, 0, 2}))), t2.constant(h0));
    BOOST_TEST(o2.shape() == Shape({B, L, H}));
    BOOST_TEST(rel_err(Tens(xt::transpose(o2.value(), {1, 0, 2})), o1.value()) < 1e-14);
    BOOST_TEST(rel_err(h2.value(), h1.value()) < 1e-14);
    // the last layer's h_n is the output's last step
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t u = 0; u < H; ++u) BOOST_TEST(h1.value()(2, b, u) == o1.value()(L - 1, b, u));
    Tape<double> t3;
    auto [o3, h3] = tm.forward(t3.constant(x), std::nullopt);
    BOOST_TEST(rel_err(tm(t3.constant(x)).value(), o3.value()) == 0.0);
}

BOOST_AUTO_TEST_CASE(attention_layers_batch_first)
{
    const std::size_t L = 4, B = 3, E = 6;
    const Tens x = rnd({L, B, E}, 161), xb = xt::transpose(x, {1, 0, 2});
    MultiheadAttention<double> tm(MultiheadAttentionOptions(E, 3), 9), bf(MultiheadAttentionOptions(E, 3).batch_first(true), 9);
    Tape<double> tape;
    auto [y1, w1] = tm.forward(tape.constant(x), tape.constant(x), tape.constant(x));
    auto [y2, w2] = bf.forward(tape.constant(xb), tape.constant(xb), tape.constant(xb));
    BOOST_TEST(y1.shape() == Shape({L, B, E}));
    BOOST_TEST(w1.shape() == Shape({B, L, L}));
    BOOST_TEST(rel_err(Tens(xt::transpose(y2.value(), {1, 0, 2})), y1.value()) < 1e-14);
    BOOST_TEST(rel_err(w2.value(), w1.value()) < 1e-14);
    // the weights' rows sum to 1; without need_weights, no weights
    BOOST_TEST(rel_err(Tens(xt::sum(w1.value(), {2})), Tens(xt::ones<double>({B, L}))) < 1e-14);
    auto [y3, w3] = tm.forward(tape.constant(x), tape.constant(x), tape.constant(x), nullptr, false);
    BOOST_TEST(!w3.valid());
    BOOST_TEST(rel_err(y3.value(), y1.value()) < 1e-14);
    BOOST_TEST(rel_err(tm(tape.constant(x)).value(), y1.value()) < 1e-14);
    for (bool norm_first : {false, true}) {
        const auto o = TransformerEncoderLayerOptions(E, 2).dim_feedforward(8).dropout(0.0).norm_first(norm_first);
        TransformerEncoderLayer<double> a(o, 10), b(TransformerEncoderLayerOptions(o).batch_first(true), 10);
        const V ya = a(tape.constant(x)), yb = b(tape.constant(xb));
        BOOST_TEST(ya.shape() == Shape({L, B, E}));
        BOOST_TEST(rel_err(Tens(xt::transpose(yb.value(), {1, 0, 2})), ya.value()) < 1e-14);
    }
}

BOOST_AUTO_TEST_CASE(final_states_continue_the_sequence)
{
    // the whole sequence at once = the first steps, then the rest from their (h_n, c_n) given as
    // constants (truncated backpropagation through time's forward)
    const std::size_t L = 6, B = 2, I = 3, H = 4, split = 2;
    const Tens x = rnd({L, B, I}, 201), h0 = rnd({2, B, H}, 202), c0 = rnd({2, B, H}, 203);
    const Tens first = xt::view(x, xt::range(0, split)), rest = xt::view(x, xt::range(split, L));
    LSTM<double> lstm(LSTMOptions(I, H).num_layers(2), 204);
    Tape<double> t;
    auto [all, s_all] = lstm.forward(t.constant(x), std::make_tuple(t.constant(h0), t.constant(c0)));
    auto [y1, s1] = lstm.forward(t.constant(first), std::make_tuple(t.constant(h0), t.constant(c0)));
    auto [y2, s2] = lstm.forward(t.constant(rest), std::make_tuple(t.constant(std::get<0>(s1).value()),
                                                                  t.constant(std::get<1>(s1).value())));
    BOOST_TEST(rel_err(Tens(xt::view(all.value(), xt::range(split, L))), y2.value()) < 1e-14);
    BOOST_TEST(rel_err(std::get<0>(s2).value(), std::get<0>(s_all).value()) < 1e-14);
    BOOST_TEST(rel_err(std::get<1>(s2).value(), std::get<1>(s_all).value()) < 1e-14);
    GRU<double> gru(GRUOptions(I, H).num_layers(2), 205);
    auto [g_all, gh_all] = gru.forward(t.constant(x), t.constant(h0));
    auto [g1, gh1] = gru.forward(t.constant(first), t.constant(h0));
    auto [g2, gh2] = gru.forward(t.constant(rest), t.constant(gh1.value()));
    BOOST_TEST(rel_err(Tens(xt::view(g_all.value(), xt::range(split, L))), g2.value()) < 1e-14);
    BOOST_TEST(rel_err(gh2.value(), gh_all.value()) < 1e-14);
}

BOOST_AUTO_TEST_CASE(a_query_without_keys_gives_nan)
{
    // as PyTorch: every key of query 1 removed
    Tape<double> t;
    Tens mask = zeros({3, 3});
    for (std::size_t j = 0; j < 3; ++j) mask(1, j) = -inf;
    const V q = t.constant(rnd({1, 3, 2}, 211)), k = t.constant(rnd({1, 3, 2}, 212)), v = t.constant(rnd({1, 3, 2}, 213));
    const Tens y = scaled_dot_product_attention(q, k, v, &mask).value();
    for (std::size_t e = 0; e < 2; ++e) {
        BOOST_TEST(std::isnan(y(0, 1, e)));
        BOOST_TEST(std::isfinite(y(0, 0, e)));
        BOOST_TEST(std::isfinite(y(0, 2, e)));
    }
}

BOOST_AUTO_TEST_CASE(float_layers_checked_in_double)
{
    // gradcheck_module's float form: the float layer's weights in a double twin
    const Tensor<float> x = rand_uniform<float>({4, 2, 3}, 221, -1.0f, 1.0f);
    LSTM<float> lstm(LSTMOptions(3, 4).num_layers(2), 222);
    LSTM<double> lstm_twin(LSTMOptions(3, 4).num_layers(2), 1);
    const GradcheckReport rl = gradcheck_module(lstm, lstm_twin, x);
    BOOST_TEST(rl.ok, rl.summary());
    const Tensor<float> xe = rand_uniform<float>({4, 2, 4}, 223, -1.0f, 1.0f);
    const auto o = TransformerEncoderLayerOptions(4, 2).dim_feedforward(8).dropout(0.0).activation("gelu").norm_first(true);
    TransformerEncoderLayer<float> block(o, 224);
    TransformerEncoderLayer<double> block_twin(o, 1);
    const GradcheckReport rb = gradcheck_module(block, block_twin, xe);
    BOOST_TEST(rb.ok, rb.summary());
    // float and double forward agree to float precision on the same weights
    Tape<float> tf;
    Tape<double> td;
    const Tensor<float> yf = block(tf.constant(xe)).value();
    const Tens yd = block_twin(td.constant(Tens(xt::cast<double>(xe)))).value();
    BOOST_TEST(rel_err(Tens(xt::cast<double>(yf)), yd) < 1e-5);
}

BOOST_AUTO_TEST_CASE(state_dict_names_and_shapes_as_pytorch)
{
    LSTM<double> lstm(LSTMOptions(3, 4).num_layers(2), 1);
    BOOST_TEST(names_of(lstm) == (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                                           "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"}),
               boost::test_tools::per_element());
    BOOST_TEST(lstm.parameter("weight_ih_l0").shape() == Shape({16, 3}));
    BOOST_TEST(lstm.parameter("weight_hh_l0").shape() == Shape({16, 4}));
    BOOST_TEST(lstm.parameter("weight_ih_l1").shape() == Shape({16, 4}));
    BOOST_TEST(lstm.parameter("bias_hh_l1").shape() == Shape({16}));
    // U(−1/√H, 1/√H)
    for (auto* p : lstm.parameters()) BOOST_TEST(xt::amax(xt::abs(p->value()))() <= 0.5);
    GRU<double> gru(GRUOptions(3, 5).num_layers(2).bias(false), 2);
    BOOST_TEST(names_of(gru) == (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"}),
               boost::test_tools::per_element());
    BOOST_TEST(gru.parameter("weight_ih_l0").shape() == Shape({15, 3}));
    BOOST_TEST(gru.parameter("weight_hh_l1").shape() == Shape({15, 5}));
    LSTM<double> nobias(LSTMOptions(3, 4).bias(false), 1);
    BOOST_TEST(names_of(nobias) == (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0"}), boost::test_tools::per_element());

    MultiheadAttention<double> mha(MultiheadAttentionOptions(8, 2), 3);
    BOOST_TEST(names_of(mha) == (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}),
               boost::test_tools::per_element());
    BOOST_TEST(mha.parameter("in_proj_weight").shape() == Shape({24, 8}));
    BOOST_TEST(mha.parameter("out_proj.weight").shape() == Shape({8, 8}));
    // biases start at zero, in_proj_weight Xavier-uniform: |w| ≤ √(6 / (E + 3E))
    BOOST_TEST(xt::amax(xt::abs(mha.parameter("in_proj_bias").value()))() == 0.0);
    BOOST_TEST(xt::amax(xt::abs(mha.parameter("out_proj.bias").value()))() == 0.0);
    BOOST_TEST(xt::amax(xt::abs(mha.parameter("in_proj_weight").value()))() <= std::sqrt(6.0 / 32.0));
    MultiheadAttention<double> mha_nb(MultiheadAttentionOptions(8, 2).bias(false), 3);
    BOOST_TEST(names_of(mha_nb) == (std::vector<std::string>{"in_proj_weight", "out_proj.weight"}), boost::test_tools::per_element());

    TransformerEncoderLayer<double> block(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16), 4);
    BOOST_TEST(names_of(block) == (std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                                            "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                                            "linear1.weight", "linear1.bias", "linear2.weight",
                                                            "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight",
                                                            "norm2.bias"}),
               boost::test_tools::per_element());
    BOOST_TEST(block.parameter("linear1.weight").shape() == Shape({16, 8}));
    BOOST_TEST(block.parameter("linear2.weight").shape() == Shape({8, 16}));
    BOOST_TEST(block.parameter("norm2.bias").shape() == Shape({8}));
}

BOOST_AUTO_TEST_CASE(seeds_make_the_weights)
{
    LSTM<double> a(LSTMOptions(3, 4), 5), b(LSTMOptions(3, 4), 5), c(LSTMOptions(3, 4), 6);
    BOOST_TEST(rel_err(a.parameter("weight_hh_l0").value(), b.parameter("weight_hh_l0").value()) == 0.0);
    BOOST_TEST(rel_err(a.parameter("weight_hh_l0").value(), c.parameter("weight_hh_l0").value()) > 0.0);
}

BOOST_AUTO_TEST_CASE(causal_attention_does_not_look_ahead)
{
    const std::size_t L = 6, B = 2, E = 4;
    const Tens x = rnd({B, L, E}, 171);
    MultiheadAttention<double> mha(MultiheadAttentionOptions(E, 2).batch_first(true), 172);
    const Tens causal_mask = generate_square_subsequent_mask<double>(L);
    auto block_opts = TransformerEncoderLayerOptions(E, 2).dim_feedforward(8).dropout(0.0).batch_first(true);
    TransformerEncoderLayer<double> block(block_opts.norm_first(true).activation("gelu"), 173);
    // each model's output for an input; the mask given as is_causal or as the additive mask
    std::vector<std::pair<std::string, std::function<Tens(const Tens&)>>> models = {
        {"sdpa", [&](const Tens& in) {
             Tape<double> t;
             const V v = t.constant(in);
             return Tens(scaled_dot_product_attention<double>(v, v, v, nullptr, true).value());
         }},
        {"mha is_causal", [&](const Tens& in) {
             Tape<double> t;
             const V v = t.constant(in);
             return Tens(std::get<0>(mha.forward(v, v, v, nullptr, false, true)).value());
         }},
        {"mha mask", [&](const Tens& in) {
             Tape<double> t;
             const V v = t.constant(in);
             return Tens(std::get<0>(mha.forward(v, v, v, &causal_mask, false, false)).value());
         }},
        {"block is_causal", [&](const Tens& in) {
             Tape<double> t;
             return Tens(block.forward(t.constant(in), nullptr, true).value());
         }},
        {"block mask", [&](const Tens& in) {
             Tape<double> t;
             return Tens(block.forward(t.constant(in), &causal_mask).value());
         }},
    };
    for (auto& [name, f] : models) {
        BOOST_TEST_CONTEXT(name)
        {
            const Tens y = f(x);
            for (std::size_t i = 0; i + 1 < L; ++i) {
                Tens changed = x;
                for (std::size_t b = 0; b < B; ++b)
                    for (std::size_t t = i + 1; t < L; ++t)
                        for (std::size_t e = 0; e < E; ++e) changed(b, t, e) += 0.5 + 0.1 * double(e);
                const Tens y2 = f(changed);
                double before = 0, after = 0;
                for (std::size_t b = 0; b < B; ++b)
                    for (std::size_t t = 0; t < L; ++t)
                        for (std::size_t e = 0; e < y.shape()[2]; ++e)
                            (t <= i ? before : after) = std::max(t <= i ? before : after, std::abs(y2(b, t, e) - y(b, t, e)));
                BOOST_TEST(before == 0.0, "position ≤ " << i << " changed by " << before);
                BOOST_TEST(after > 1e-6, "positions > " << i << " did not change");
            }
        }
    }
    // is_causal and the additive mask agree
    BOOST_TEST(rel_err(models[1].second(x), models[2].second(x)) < 1e-14);
    BOOST_TEST(rel_err(models[3].second(x), models[4].second(x)) < 1e-14);
    // the mask: 0 on and below the diagonal, −∞ above
    for (std::size_t i = 0; i < L; ++i)
        for (std::size_t j = 0; j < L; ++j) BOOST_TEST(causal_mask(i, j) == (j > i ? -inf : 0.0));
}

BOOST_AUTO_TEST_CASE(recurrent_layers_do_not_look_ahead)
{
    const std::size_t L = 5, B = 2, I = 3;
    LSTM<double> lstm(LSTMOptions(I, 4).num_layers(2), 181);
    GRU<double> gru(GRUOptions(I, 4).num_layers(2), 182);
    const Tens x = rnd({L, B, I}, 183);
    Tens changed = x;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < I; ++j) changed(3, b, j) += 1.0;
    for (Module<double>* m : std::vector<Module<double>*>{&lstm, &gru}) {
        Tape<double> t;
        const Tens y = (*m)(t.constant(x)).value(), y2 = (*m)(t.constant(changed)).value();
        const std::size_t before = 3 * y.size() / L;  // steps 0, 1, 2
        double d_before = 0, d_after = 0;
        for (std::size_t i = 0; i < y.size(); ++i)
            (i < before ? d_before : d_after) = std::max(i < before ? d_before : d_after, std::abs(y.data()[i] - y2.data()[i]));
        BOOST_TEST(d_before == 0.0);
        BOOST_TEST(d_after > 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(shape_errors_name_the_layer_and_the_shapes)
{
    using xgrad::test::expect_message;
    Tape<double> t;
    auto c = [&](const Shape& s) { return t.constant(zeros(s)); };
    LSTM<double> lstm(LSTMOptions(3, 4).num_layers(2), 1);
    const std::string lstm_input = "LSTM(3, 4, num_layers=2): expected input (L, B, I) with I = 3 and L, B ≥ 1, got ";
    expect_message<ShapeError>([&] { lstm(c({5, 3})); }, lstm_input + "(5,3)");
    expect_message<ShapeError>([&] { lstm(c({5, 2, 7})); }, lstm_input + "(5,2,7)");
    expect_message<ShapeError>([&] { lstm(c({0, 2, 3})); }, lstm_input + "(0,2,3)");
    expect_message<ShapeError>([&] { lstm.forward(c({5, 2, 3}), std::make_tuple(c({1, 2, 4}), c({2, 2, 4}))); },
                               "LSTM(3, 4, num_layers=2): h_0 must be (num_layers, B, H) = (2,2,4) for input (5,2,3), got (1,2,4)");
    expect_message<ShapeError>([&] { lstm.forward(c({5, 2, 3}), std::make_tuple(c({2, 2, 4}), c({2, 3, 4}))); },
                               "LSTM(3, 4, num_layers=2): c_0 must be (num_layers, B, H) = (2,2,4) for input (5,2,3), got (2,3,4)");
    LSTM<double> lstm_bf(LSTMOptions(3, 4).batch_first(true), 1);
    expect_message<ShapeError>([&] { lstm_bf(c({2, 5, 4})); },
                               "LSTM(3, 4, batch_first=True): expected input (B, L, I) with I = 3 and L, B ≥ 1, got (2,5,4)");
    GRU<double> gru(GRUOptions(3, 4), 1);
    const std::string gru_input = "GRU(3, 4): expected input (L, B, I) with I = 3 and L, B ≥ 1, got ";
    expect_message<ShapeError>([&] { gru(c({5, 2, 3, 1})); }, gru_input + "(5,2,3,1)");
    expect_message<ShapeError>([&] { gru(c({5, 2, 2})); }, gru_input + "(5,2,2)");
    expect_message<ShapeError>([&] { gru.forward(c({5, 2, 3}), c({1, 2, 5})); },
                               "GRU(3, 4): h_0 must be (num_layers, B, H) = (1,2,4) for input (5,2,3), got (1,2,5)");
    // a state on another tape
    Tape<double> other;
    expect_message<std::invalid_argument>([&] { gru.forward(c({5, 2, 3}), other.constant(zeros({1, 2, 4}))); },
                                          "GRU(3, 4): h_0 is on another tape than the input");

    MultiheadAttention<double> mha(MultiheadAttentionOptions(4, 2), 1);
    const std::string m = "MultiheadAttention(embed_dim=4, num_heads=2): ";
    expect_message<ShapeError>([&] { mha(c({3, 2, 5})); },
                               m + "expected (L, B, E) inputs with E = 4; got query (3,2,5), key (3,2,5), value (3,2,5)");
    expect_message<ShapeError>([&] { mha(c({3, 4})); }, m + "expected (L, B, E) inputs with E = 4; got query (3,4), key (3,4), value (3,4)");
    expect_message<ShapeError>([&] { mha.forward(c({3, 2, 4}), c({5, 2, 4}), c({4, 2, 4})); },
                               m + "key and value must have one shape and the query's batch size; got query (3,2,4), key (5,2,4), value (4,2,4)");
    expect_message<ShapeError>([&] { mha.forward(c({3, 2, 4}), c({5, 3, 4}), c({5, 3, 4})); },
                               m + "key and value must have one shape and the query's batch size; got query (3,2,4), key (5,3,4), value (5,3,4)");
    const Tens bad_mask = zeros({3, 4});
    expect_message<ShapeError>([&] { mha.forward(c({3, 2, 4}), c({5, 2, 4}), c({5, 2, 4}), &bad_mask); },
                               m + "attn_mask must be (L, S) = (3, 5), got (3,4)");
    // the block checks its input itself, pre- or post-LayerNorm alike
    TransformerEncoderLayer<double> block(TransformerEncoderLayerOptions(4, 2).dim_feedforward(8), 1);
    const std::string b = "TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=8): expected src (L, B, E) with E = 4, got ";
    expect_message<ShapeError>([&] { block(c({3, 2, 6})); }, b + "(3,2,6)");
    expect_message<ShapeError>([&] { block(c({3, 4})); }, b + "(3,4)");
    TransformerEncoderLayer<double> block_pre(
        TransformerEncoderLayerOptions(4, 2).dim_feedforward(8).norm_first(true).batch_first(true), 1);
    const std::string bp = "TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=8, norm_first=True): expected src "
                           "(B, L, E) with E = 4, got ";
    expect_message<ShapeError>([&] { block_pre(c({3, 2, 6})); }, bp + "(3,2,6)");
    expect_message<ShapeError>([&] { block_pre(c({3, 4})); }, bp + "(3,4)");

    const std::string sdpa =
        "scaled_dot_product_attention: expected Q (…, L, E), K (…, S, E), V (…, S, Ev) with the same leading axes, got ";
    expect_message<ShapeError>([&] { scaled_dot_product_attention(c({2, 3, 4}), c({2, 5, 3}), c({2, 5, 4})); },
                               sdpa + "Q (2,3,4), K (2,5,3), V (2,5,4)");
    expect_message<ShapeError>([&] { scaled_dot_product_attention(c({2, 3, 4}), c({2, 5, 4}), c({2, 4, 4})); },
                               sdpa + "Q (2,3,4), K (2,5,4), V (2,4,4)");
    const Tens mask35 = zeros({3, 4});
    expect_shape_error([&] { scaled_dot_product_attention(c({2, 3, 4}), c({2, 5, 4}), c({2, 5, 4}), &mask35); },
                       {"scaled_dot_product_attention", "(3,4)"});
}

BOOST_AUTO_TEST_CASE(bad_options_throw_invalid_argument)
{
    using E = std::invalid_argument;
    using xgrad::test::expect_message;
    expect_message<E>([] { LSTM<double>(LSTMOptions(0, 4), 1); },
                      "LSTM: input_size, hidden_size and num_layers must be at least 1, got 0, 4, 1");
    expect_message<E>([] { LSTM<double>(LSTMOptions(3, 0), 1); },
                      "LSTM: input_size, hidden_size and num_layers must be at least 1, got 3, 0, 1");
    expect_message<E>([] { LSTM<double>(LSTMOptions(3, 4).num_layers(0), 1); },
                      "LSTM: input_size, hidden_size and num_layers must be at least 1, got 3, 4, 0");
    expect_message<E>([] { LSTM<double>(LSTMOptions(3, 4).dropout(1.0), 1); }, "LSTM: dropout must be in [0, 1), got 1");
    expect_message<E>([] { GRU<double>(GRUOptions(3, 4).dropout(-0.1), 1); }, "GRU: dropout must be in [0, 1), got -0.1");
    expect_message<E>([] { GRU<double>(GRUOptions(3, 0), 1); },
                      "GRU: input_size, hidden_size and num_layers must be at least 1, got 3, 0, 1");
    BOOST_CHECK_THROW((void)GRU<double>(GRUOptions(3, 4).dropout(std::nan(""))), E);
    expect_message<E>([] { MultiheadAttention<double>(MultiheadAttentionOptions(5, 2), 1); },
                      "MultiheadAttention: embed_dim (5) must be a positive multiple of num_heads (2)");
    expect_message<E>([] { MultiheadAttention<double>(MultiheadAttentionOptions(4, 0), 1); },
                      "MultiheadAttention: embed_dim (4) must be a positive multiple of num_heads (0)");
    expect_message<E>([] { MultiheadAttention<double>(MultiheadAttentionOptions(0, 2), 1); },
                      "MultiheadAttention: embed_dim (0) must be a positive multiple of num_heads (2)");
    expect_message<E>([] { MultiheadAttention<double>(MultiheadAttentionOptions(4, 2).dropout(1.5), 1); },
                      "MultiheadAttention: dropout must be in [0, 1), got 1.5");
    expect_message<E>([] { TransformerEncoderLayer<double>(TransformerEncoderLayerOptions(4, 2).activation("tanh"), 1); },
                      "TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"tanh\"");
    expect_message<E>([] { TransformerEncoderLayer<double>(TransformerEncoderLayerOptions(4, 2).dim_feedforward(0), 1); },
                      "TransformerEncoderLayer: dim_feedforward must be at least 1");
    // MultiheadAttention's checks, through the block
    expect_message<E>([] { TransformerEncoderLayer<double>(TransformerEncoderLayerOptions(4, 3), 1); },
                      "MultiheadAttention: embed_dim (4) must be a positive multiple of num_heads (3)");
    expect_message<E>([] { TransformerEncoderLayer<double>(TransformerEncoderLayerOptions(4, 2).dropout(1.0), 1); },
                      "MultiheadAttention: dropout must be in [0, 1), got 1");
    expect_message<E>([] { generate_square_subsequent_mask<double>(0); }, "generate_square_subsequent_mask: n must be at least 1");
    // valid edge values
    BOOST_CHECK_NO_THROW((void)LSTM<double>(LSTMOptions(1, 1).dropout(0.0)));
    BOOST_CHECK_NO_THROW((void)GRU<double>(GRUOptions(1, 1).dropout(0.999)));
    BOOST_CHECK_NO_THROW((void)MultiheadAttention<double>(MultiheadAttentionOptions(4, 4)));
}

BOOST_AUTO_TEST_CASE(dropout_in_training_only)
{
    const Tens x = rnd({5, 2, 3}, 191);
    auto out = [&](Module<double>& m) {
        Tape<double> t;
        return Tens(m(t.constant(x)).value());
    };
    // LSTM: between the layers only
    LSTM<double> drop(LSTMOptions(3, 6).num_layers(2).dropout(0.5), 192), plain(LSTMOptions(3, 6).num_layers(2), 192);
    LSTM<double> one_layer(LSTMOptions(3, 6).dropout(0.5), 193), one_plain(LSTMOptions(3, 6), 193);
    BOOST_TEST(drop.is_training());
    BOOST_TEST(rel_err(out(drop), out(plain)) > 1e-3);
    BOOST_TEST(rel_err(out(one_layer), out(one_plain)) == 0.0);  // nothing after the last layer
    drop.eval();
    BOOST_TEST(rel_err(out(drop), out(plain)) == 0.0);
    drop.train();
    BOOST_TEST(rel_err(out(drop), out(plain)) > 1e-3);
    GRU<double> gdrop(GRUOptions(3, 6).num_layers(2).dropout(0.5), 194), gplain(GRUOptions(3, 6).num_layers(2), 194);
    BOOST_TEST(rel_err(out(gdrop), out(gplain)) > 1e-3);
    gdrop.eval();
    BOOST_TEST(rel_err(out(gdrop), out(gplain)) == 0.0);

    // attention probabilities and the block's dropouts
    const Tens xe = rnd({5, 2, 4}, 195);
    auto out_e = [&](Module<double>& m) {
        Tape<double> t;
        return Tens(m(t.constant(xe)).value());
    };
    MultiheadAttention<double> mdrop(MultiheadAttentionOptions(4, 2).dropout(0.5), 196), mplain(MultiheadAttentionOptions(4, 2), 196);
    BOOST_TEST(rel_err(out_e(mdrop), out_e(mplain)) > 1e-3);
    mdrop.eval();
    BOOST_TEST(rel_err(out_e(mdrop), out_e(mplain)) == 0.0);
    const auto o = TransformerEncoderLayerOptions(4, 2).dim_feedforward(8);
    TransformerEncoderLayer<double> bdrop(TransformerEncoderLayerOptions(o).dropout(0.3), 197), bplain(TransformerEncoderLayerOptions(o).dropout(0.0), 197);
    BOOST_TEST(rel_err(out_e(bdrop), out_e(bplain)) > 1e-3);
    bdrop.eval();
    BOOST_TEST(rel_err(out_e(bdrop), out_e(bplain)) == 0.0);
}

BOOST_AUTO_TEST_CASE(attention_weights_are_the_ones_used_after_dropout)
{
    // As PyTorch: in training, the returned weights are the probabilities after dropout, and the
    // output is out_proj(weights · V). One head and one sequence, so the weights are P itself.
    const std::size_t e = 4, l = 5;
    MultiheadAttention<double> mha(MultiheadAttentionOptions(e, 1).dropout(0.5), 198);
    const Tens x = rnd({l, 1, e}, 199);
    Tape<double> t;
    const Var<double> xv = t.constant(x);
    const auto [out, w] = mha.forward(xv, xv, xv);
    const Tens& wt = w.value();  // (1, L, L)
    const Tens& win = mha.parameter("in_proj_weight").value();
    const Tens& bin = mha.parameter("in_proj_bias").value();
    const Tens& wo = mha.parameter("out_proj.weight").value();
    const Tens& bo = mha.parameter("out_proj.bias").value();
    std::size_t dropped = 0;
    for (std::size_t i = 0; i < l; ++i)
        for (std::size_t j = 0; j < l; ++j) dropped += wt(0, i, j) == 0.0;
    BOOST_TEST(dropped > 0u);  // some probabilities were dropped (p = 0.5, 25 of them)
    Tens v = zeros({l, e}), y = zeros({l, e}), want = zeros({l, 1, e});
    for (std::size_t s = 0; s < l; ++s)
        for (std::size_t a = 0; a < e; ++a) {
            v(s, a) = bin(2 * e + a);
            for (std::size_t b = 0; b < e; ++b) v(s, a) += win(2 * e + a, b) * x(s, 0, b);
        }
    for (std::size_t i = 0; i < l; ++i)
        for (std::size_t a = 0; a < e; ++a)
            for (std::size_t s = 0; s < l; ++s) y(i, a) += wt(0, i, s) * v(s, a);
    for (std::size_t i = 0; i < l; ++i)
        for (std::size_t a = 0; a < e; ++a) {
            want(i, 0, a) = bo(a);
            for (std::size_t b = 0; b < e; ++b) want(i, 0, a) += wo(a, b) * y(i, b);
        }
    BOOST_TEST(rel_err(out.value(), want) < 1e-14);
}

BOOST_AUTO_TEST_CASE(describe_names_the_layer)
{
    BOOST_TEST(LSTM<double>(LSTMOptions(3, 4), 1).describe().find("LSTM") != std::string::npos);
    BOOST_TEST(GRU<double>(GRUOptions(3, 4), 1).describe().find("GRU") != std::string::npos);
    BOOST_TEST(MultiheadAttention<double>(MultiheadAttentionOptions(4, 2), 1).describe().find("MultiheadAttention") != std::string::npos);
    BOOST_TEST(TransformerEncoderLayer<double>(TransformerEncoderLayerOptions(4, 2), 1).describe().find("TransformerEncoderLayer") !=
               std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

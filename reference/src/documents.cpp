// The documents' derivations as written, through diagnose(); see xgrad/reference/documents.hpp.
// Hand arithmetic is plain xtensor (never tape ops); each document's own formula is reproduced,
// wrong where the document is wrong, and nothing here says what is wrong: diagnose() finds it.
#include "xgrad/reference/documents.hpp"

#include <cmath>

#include <xtensor/xview.hpp>

#include "xgrad/nn/losses.hpp"
#include "xgrad/ops.hpp"
#include "xgrad/random.hpp"
#include "xgrad/reference/backprop.hpp"
#include "xgrad/reference/hand_math.hpp"

namespace xgrad::reference {
namespace {

constexpr double not_printed = NAN;

using namespace hand;

// ---- 000: the trace regularizer's gradient as the document's D1 writes it -----------------------

/// Which part of document 000's derivation is run as written; the rest is the correct formula, so
/// each run holds the one mistake it names.
enum class Doc000 {
    regularizer,  ///< D1's regularizer term per sample (n read as n_c)
    data_term,    ///< D1's data term Σⱼ(y_{i,j} − d_{i,j}): one number per sample in every entry
    vec_w1,       ///< D4's ∂E/∂W⁽¹⁾ = vec(δ⁽¹⁾X)
    d1,           ///< all of D1: the data term's Σⱼ and the regularizer's term per sample
    per_class,    ///< D1's regularizer term as one gradient per class, Σ over the class's samples (n read
                  ///< as n_c), given to each sample of the class; the data term correct
    d1_per_class, ///< all of D1 with its regularizer term per class: Σⱼ and the Σ over the class
};

DiagnosisReport mlp_trace_regularizer(Doc000 part)
{
    const IndexTensor labels = {0, 1, 1, 2, 0, 2, 2, 1};
    const std::size_t N = 8, C = 3;
    const Tens X = rand_uniform({N, 4}, 1, -1.0, 1.0), D = one_hot_rows(labels, C);
    Parameter<double> W1(rand_uniform({5, 4}, 2, -1.0, 1.0), "W1"), b1(rand_uniform({5}, 3, -1.0, 1.0), "b1"),
        W2(rand_uniform({3, 5}, 4, -1.0, 1.0), "W2"), b2(rand_uniform({3}, 5, -1.0, 1.0), "b2");
    const double gamma = 0.3;
    auto model = [&](Tape<double>& t) {
        auto z1 = t.observe("z1", linear(t.constant(X), t.param(W1), t.param(b1)));
        auto y1 = t.observe("y1", sigmoid(z1));
        auto y = t.observe("y", linear(y1, t.param(W2), t.param(b2)));
        auto data = t.observe("squared error", mse_loss(y, t.constant(D), Reduction::half_sum));
        // the fused op: it keeps the classes, so diagnose can fit the regularizer's coefficients
        auto reg = t.observe("regularizer", nn::trace_scatter_loss(y, labels, gamma));
        return data + reg;
    };
    auto hand = [&](HandDerivation& h) {
        const Tens& z1 = h.value("z1", affine(X, W1.value(), b1.value()));
        const Tens& y1 = h.value("y1", sig(z1));
        const Tens& Y = h.value("y", affine(y1, W2.value(), b2.value()));
        // D1 per sample, n read as n_c: (y − d) + γ[(1 − 1/n_c)(y_i − m_c) − n_c(1/n_c − 1/N)(m_c − m)]
        Tens mc = xt::zeros<double>({C, C});
        const Tens m = xt::mean(Y, {0});
        std::vector<double> n(C, 0);
        for (std::size_t i = 0; i < N; ++i) {
            n[std::size_t(labels(i))] += 1;
            for (std::size_t d = 0; d < C; ++d) mc(std::size_t(labels(i)), d) += Y(i, d);
        }
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t d = 0; d < C; ++d) mc(c, d) /= n[c];
        Tens dY = Y - D;
        if (part == Doc000::data_term || part == Doc000::d1 || part == Doc000::d1_per_class)  // D1's Σⱼ(y_{i,j} − d_{i,j}), the same number in each entry of row i
            for (std::size_t i = 0; i < N; ++i) {
                double s = 0;
                for (std::size_t d = 0; d < C; ++d) s += Y(i, d) - D(i, d);
                for (std::size_t d = 0; d < C; ++d) dY(i, d) = s;
            }
        // D1 per class, as the document reads it ("the gradient values of the different classes"):
        // γ[Σ_{yᵢ∈c}(1 − 1/n_c)(yᵢ − m_c) − n_c(1/n_c − 1/N)(m_c − m)], one vector per class
        Tens per_class = xt::zeros<double>({C, C});
        for (std::size_t i = 0; i < N; ++i) {
            const auto c = std::size_t(labels(i));
            for (std::size_t d = 0; d < C; ++d) per_class(c, d) += (1 - 1 / n[c]) * (Y(i, d) - mc(c, d));
        }
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t d = 0; d < C; ++d) per_class(c, d) -= n[c] * (1 / n[c] - 1.0 / N) * (mc(c, d) - m(d));
        for (std::size_t i = 0; i < N; ++i) {
            const auto c = std::size_t(labels(i));
            if (part == Doc000::per_class || part == Doc000::d1_per_class) {  // each sample takes its class's vector
                for (std::size_t d = 0; d < C; ++d) dY(i, d) += gamma * per_class(c, d);
                continue;
            }
            for (std::size_t d = 0; d < C; ++d)
                dY(i, d) += part == Doc000::regularizer || part == Doc000::d1
                                ? gamma * ((1 - 1 / n[c]) * (Y(i, d) - mc(c, d)) -
                                           n[c] * (1 / n[c] - 1.0 / N) * (mc(c, d) - m(d)))
                                : gamma * (Y(i, d) - 2 * mc(c, d) + m(d));  // the correct γ(yᵢ − 2m_c + m)
        }
        const Tens& d2 = h.grad("y", dY);
        h.grad("W2", mm(tr(d2), y1));  // D3
        h.grad("b2", colsum(d2));
        const Tens& d1 = h.grad("z1", Tens(y1 * (1 - y1) * mm(d2, W2.value())));  // D2
        if (part != Doc000::vec_w1) {
            h.grad("W1", mm(tr(d1), X));  // D4, as δ⁽¹⁾xᵀ summed over the samples
        } else {
            // D4 as written, vec(δ⁽¹⁾X): for one sample δ⁽¹⁾ (5×1) times x (4×1) does not exist; the
            // product exists with the samples' δ⁽¹⁾ as columns, (5,N), and X's rows the samples, (N,4),
            // and vec stacks its columns: 20 numbers
            const Tens p = mm(tr(d1), X);
            Tens v = xt::zeros<double>({p.size()});
            for (std::size_t j = 0; j < p.shape()[1]; ++j)
                for (std::size_t i = 0; i < p.shape()[0]; ++i) v(j * p.shape()[0] + i) = p(i, j);
            h.grad("W1", v);
        }
        h.grad("b1", colsum(d1));
    };
    return diagnose(model, hand);
}

// ---- 001: the δ recursion of §3 (E = ½Σ(y − t)², (47)) against the loss the notes train, (44) ----

DiagnosisReport mlp_l_layer_notes()
{
    Parameter<double> W1(rand_uniform({7, 5}, 11, -1.0, 1.0), "W1"), W2(rand_uniform({6, 7}, 13, -1.0, 1.0), "W2"),
        W3(rand_uniform({3, 6}, 15, -1.0, 1.0), "W3");
    const Tens X = rand_uniform({6, 5}, 17, -1.0, 1.0), T = rand_uniform({6, 3}, 18, -1.0, 1.0);
    auto model = [&](Tape<double>& t) {  // no biases, as in the notes; h = σ, then ReLU, linear output
        auto a2 = t.observe("a2", linear(t.constant(X), t.param(W1)));
        auto z2 = t.observe("z2", sigmoid(a2));
        auto a3 = t.observe("a3", linear(z2, t.param(W2)));
        auto z3 = t.observe("z3", relu(a3));
        auto y = t.observe("a4", linear(z3, t.param(W3)));
        return mse_loss(y, t.constant(T), Reduction::sum);  // (44): Σₙ Σᵢ (yₙᵢ − Tₙᵢ)²
    };
    auto hand = [&](HandDerivation& h) {
        const Tens& a2 = h.value("a2", mm(X, tr(W1.value())));
        const Tens& z2 = h.value("z2", sig(a2));
        const Tens& a3 = h.value("a3", mm(z2, tr(W2.value())));
        const Tens& z3 = h.value("z3", Tens(xt::maximum(a3, 0.0)));
        const Tens& y = h.value("a4", mm(z3, tr(W3.value())));
        const Tens& d4 = h.grad("a4", y - T);  // §3.2.2: δ⁽ᴸ⁾ = ∂E/∂y for the linear output
        h.grad("W3", mm(tr(d4), z3));          // §3.2.3: ∂E/∂W⁽ˡ⁻¹⁾ = δ⁽ˡ⁾z⁽ˡ⁻¹⁾ᵀ
        const Tens& d3 = h.grad("a3", Tens(xt::cast<double>(a3 > 0.0) * mm(d4, W3.value())));
        h.grad("W2", mm(tr(d3), z2));
        const Tens& d2 = h.grad("a2", Tens(z2 * (1 - z2) * mm(d3, W2.value())));
        h.grad("W1", mm(tr(d2), X));
    };
    return diagnose(model, hand);
}

// ---- 002: the CNN's backward pass: §2.2.4's dropped ¼, (10)'s single output, (11)'s indices -------

/// Which of document 002's formulas the backward pass runs as written; the others are correct
/// there, so each run holds the mistake it names — except as_written, which runs all of §2.2's
/// printed equations at once.
enum class Doc002 {
    quarter_dropped,  ///< §2.2.4: "the pooling derivative is always ¼, so it does not matter"
    single_output,    ///< (10) ∂CE/∂a_j = (ŷ_i − y_i) w_j, per output i, and (15) with the same product
    index_formula,    ///< (11)'s window positions route the pooling gradient
    all_positions,    ///< (15)'s Σ_l over every convolution output l for each pooled a_j (with the ¼)
    as_written,       ///< all of §2.2 as printed: a by (11)'s positions, ∂CE/∂a by (10), ∂CE/∂v, ∂CE/∂q by (15)
};

DiagnosisReport cnn_sigmoid_avgpool(Doc002 part)
{
    const std::size_t B = 3, H = 10, O = 3, K = 3, P = (H - K + 1) / 2, F = O * P * P, classes = 4;
    Parameter<double> V(rand_uniform({O, 1, K, K}, 21, -1.0, 1.0), "V"), q(rand_uniform({O}, 22, -1.0, 1.0), "q"),
        W(rand_uniform({classes, F}, 23, -1.0, 1.0), "W"), b(rand_uniform({classes}, 24, -1.0, 1.0), "b");
    const Tens X = rand_uniform({B, 1, H, H}, 25, 0.0, 1.0);
    const IndexTensor labels = {0, 3, 1};
    auto model = [&](Tape<double>& t) {
        auto d = t.observe("d", conv2d(t.constant(X), t.param(V), t.param(q)));
        auto c = t.observe("c", sigmoid(d));
        auto a = t.observe("a", flatten(avg_pool2d(c, 2)));
        auto x = t.observe("x", linear(a, t.param(W), t.param(b)));
        return cross_entropy(x, labels, Reduction::sum);
    };
    auto hand = [&](HandDerivation& h) {
        const std::size_t S = H - K + 1;
        Tens dv = xt::zeros<double>({B, O, S, S});  // (13): d = Uv + q
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t o = 0; o < O; ++o)
                for (std::size_t i = 0; i < S; ++i)
                    for (std::size_t j = 0; j < S; ++j) {
                        double acc = q.value()(o);
                        for (std::size_t u = 0; u < K; ++u)
                            for (std::size_t v = 0; v < K; ++v) acc += V.value()(o, 0, u, v) * X(n, 0, i + u, j + v);
                        dv(n, o, i, j) = acc;
                    }
        const Tens& d = h.value("d", dv);
        const Tens& c = h.value("c", sig(d));
        Tens av = xt::zeros<double>({B, F});  // a = ¼ of each 2×2 window (the text's definition)
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t o = 0; o < O; ++o)
                for (std::size_t i = 0; i < P; ++i)
                    for (std::size_t j = 0; j < P; ++j) {
                        if (part == Doc002::as_written) {
                            // (11): window (i, j) takes c at 2i·2n_p + 2j, 2i·2n_p + 2(j + 1),
                            // 2(i + 1)·2n_p + 2j, 2(i + 1)·2n_p + 2(j + 1) of the flattened image
                            const std::size_t base = 2 * i * S + 2 * j;
                            double acc = 0;
                            for (std::size_t l : {base, base + 2, base + 2 * S, base + 2 * S + 2})
                                if (l < S * S) acc += c(n, o, l / S, l % S);  // past the image: no such c
                            av(n, (o * P + i) * P + j) = 0.25 * acc;
                            continue;
                        }
                        av(n, (o * P + i) * P + j) = 0.25 * (c(n, o, 2 * i, 2 * j) + c(n, o, 2 * i, 2 * j + 1) +
                                                             c(n, o, 2 * i + 1, 2 * j) + c(n, o, 2 * i + 1, 2 * j + 1));
                    }
        const Tens& a = h.value("a", av);
        const Tens& x = h.value("x", affine(a, W.value(), b.value()));
        const Tens& dx = h.grad("x", softmax_rows(x) - one_hot_rows(labels, classes));  // (7)
        h.grad("W", mm(tr(dx), a));                                                     // (9)
        h.grad("b", colsum(dx));
        Tens da_hand = mm(dx, W.value());
        if (part == Doc002::single_output || part == Doc002::as_written) {  // (10): (ŷ_i − y_i) w_j, one vector over j for each output i
            da_hand = xt::zeros<double>({B, classes, F});
            for (std::size_t n = 0; n < B; ++n)
                for (std::size_t i = 0; i < classes; ++i)
                    for (std::size_t j = 0; j < F; ++j) da_hand(n, i, j) = dx(n, i) * W.value()(i, j);
        }
        const Tens& da = h.grad("a", da_hand);
        // Below, every quantity keeps (10)'s free output index i when dL/da has one (R = K), else R = 1.
        const std::size_t R = da.dimension() == 3 ? da.shape()[1] : 1;
        auto ga = [&](std::size_t n, std::size_t r, std::size_t f) { return R == 1 ? da(n, f) : da(n, r, f); };
        auto drop_r = [&](Tens t) {  // (B or 1, R, …) without the output axis when there is none
            if (R > 1) return t;
            Shape sh = t.shape();
            sh.erase(sh.begin() + 1);
            return Tens(xt::reshape_view(t, sh));
        };
        Tens dc = xt::zeros<double>({B, R, O, S, S});
        const double quarter = part == Doc002::quarter_dropped ? 1.0 : 0.25;  // §2.2.4 drops it; (15) keeps it
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t r = 0; r < R; ++r)
                for (std::size_t o = 0; o < O; ++o)
                    for (std::size_t i = 0; i < P; ++i)
                        for (std::size_t j = 0; j < P; ++j) {
                            const double g = quarter * ga(n, r, (o * P + i) * P + j);
                            if (part == Doc002::all_positions || part == Doc002::as_written) {
                                // (15): Σ_l ∂a_j/∂c_l over every convolution output l of the map, ∂a_j/∂c_l = ¼
                                for (std::size_t u = 0; u < S; ++u)
                                    for (std::size_t v = 0; v < S; ++v) dc(n, r, o, u, v) += g;
                            } else if (part == Doc002::index_formula) {
                                // (11): window (i, j) pools c at 2i·2n_p + 2j, 2i·2n_p + 2(j + 1),
                                // 2(i + 1)·2n_p + 2j, 2(i + 1)·2n_p + 2(j + 1) of the flattened image
                                const std::size_t base = 2 * i * S + 2 * j;
                                for (std::size_t l : {base, base + 2, base + 2 * S, base + 2 * S + 2})
                                    if (l < S * S) dc(n, r, o, l / S, l % S) += g;  // past the image: no such c
                            } else {
                                for (std::size_t u = 0; u < 2; ++u)
                                    for (std::size_t v = 0; v < 2; ++v) dc(n, r, o, 2 * i + u, 2 * j + v) += g;
                            }
                        }
        const Tens& gc = h.grad("c", drop_r(dc));
        Tens gdv = xt::zeros<double>({B, R, O, S, S});  // (12)
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t r = 0; r < R; ++r)
                for (std::size_t o = 0; o < O; ++o)
                    for (std::size_t i = 0; i < S; ++i)
                        for (std::size_t j = 0; j < S; ++j) {
                            const double g = R == 1 ? gc(n, o, i, j) : gc(n, r, o, i, j);
                            gdv(n, r, o, i, j) = g * c(n, o, i, j) * (1 - c(n, o, i, j));
                        }
        const Tens& gd = h.grad("d", drop_r(gdv));
        Tens gV = xt::zeros<double>({std::size_t(1), R, O, std::size_t(1), K, K}),
             gq = xt::zeros<double>({std::size_t(1), R, O});  // (14), (15)
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t r = 0; r < R; ++r)
                for (std::size_t o = 0; o < O; ++o)
                    for (std::size_t i = 0; i < S; ++i)
                        for (std::size_t j = 0; j < S; ++j) {
                            const double g = R == 1 ? gd(n, o, i, j) : gd(n, r, o, i, j);
                            gq(0, r, o) += g;
                            for (std::size_t u = 0; u < K; ++u)
                                for (std::size_t v = 0; v < K; ++v) gV(0, r, o, 0, u, v) += g * X(n, 0, i + u, j + v);
                        }
        auto lead = [](Tens t) {  // the leading 1 (no batch axis on a parameter's gradient) away
            Shape sh(t.shape().begin() + 1, t.shape().end());
            return Tens(xt::reshape_view(t, sh));
        };
        h.grad("V", lead(drop_r(gV)));
        h.grad("q", lead(drop_r(gq)));
    };
    return diagnose(model, hand);
}

// ---- 004: the softmax network's gradients, (12), (15) and (18) -------------------------------------

DiagnosisReport mnist_softmax_sgd()
{
    const std::size_t B = 4, I = 784, C = 10;
    Parameter<double> b0(rand_uniform({I}, 32, -0.1, 0.1), "b0"), W1(rand_uniform({I, C}, 33, -0.087, 0.087), "W1"),
        b1(rand_uniform({C}, 34, -0.1, 0.1), "b1");
    const Tens X = rand_uniform({B, I}, 31, 0.0, 1.0);
    Tens T = xt::zeros<double>({B, C});
    for (std::size_t i = 0; i < B; ++i) T(i, (3 * i) % C) = 1;
    auto model = [&](Tape<double>& t) {
        auto l0 = t.observe("l0", tanh(t.constant(X) + t.param(b0)));
        auto u = t.observe("u", matmul(l0, t.param(W1)) + t.param(b1));
        auto s = t.observe("s", softmax(u, 1));
        return mse_loss(s, t.constant(T), Reduction::sum);  // (7), summed over the batch
    };
    auto hand = [&](HandDerivation& h) {
        const Tens& l0 = h.value("l0", Tens(xt::tanh(X + b0.value())));
        const Tens& u = h.value("u", Tens(mm(l0, W1.value()) + b1.value()));
        const Tens& s = h.value("s", softmax_rows(u));
        const Tens& g = h.grad("s", Tens(-2.0 * (T - s)));  // ∂L/∂y_pred = −2(y − y_pred)
        // (12): ∂L/∂b₁ᵢ = −2(y − y_pred)·∂ᵢA₂(u), with ∂ᵢA₂,k = s_k(δ_ki − s_i)
        Tens du12 = xt::zeros<double>({B, C});
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t i = 0; i < C; ++i)
                for (std::size_t k = 0; k < C; ++k) du12(n, i) += g(n, k) * s(n, k) * ((k == i) - s(n, i));
        h.grad("b1", colsum(du12));
        // (15): ∂L/∂W₁,ᵢⱼ = −2 l₀,ᵢ A₂·(y − y_pred): the factor of l₀,ᵢ, per output j
        Tens du15 = xt::zeros<double>({B, C});
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t j = 0; j < C; ++j)
                for (std::size_t k = 0; k < C; ++k) du15(n, j) += g(n, k) * s(n, k);
        const Tens& du = h.grad("u", du15);
        h.grad("W1", mm(tr(l0), du));
        // (18): ∂L/∂b₀,ᵢ = −2 ∂ᵢA₁·W₁·∂A₂·(y − y_pred), with the Jacobian of (12)
        h.grad("b0", colsum(Tens((1 - l0 * l0) * mm(du12, tr(W1.value())))));
    };
    return diagnose(model, hand);
}

// ---- 003: the worked 2-3-2-1 example, its printed numbers ------------------------------------

DiagnosisReport worked_example_2_3_2_1()
{
    const auto layers = worked_example_2_3_2_1_parameters();
    Parameter<double> W1(layers[0].W, "W1"), b1(layers[0].b, "b1"), W2(layers[1].W, "W2"), b2(layers[1].b, "b2"),
        W3(layers[2].W, "W3"), b3(layers[2].b, "b3");
    const Tens x = row({1, 2}), y = row({1});
    const double eta = 0.1;
    auto model = [&](Tape<double>& t) {
        auto z1 = t.observe("z1", linear(t.constant(x), t.param(W1), t.param(b1)));
        auto n1 = t.observe("n1", sigmoid(z1));
        auto z2 = t.observe("z2", linear(n1, t.param(W2), t.param(b2)));
        auto n2 = t.observe("n2", sigmoid(z2));
        auto z3 = t.observe("z3", linear(n2, t.param(W3), t.param(b3)));
        auto n3 = t.observe("ŷ", sigmoid(z3));
        // the printed derivatives f′(z) = n(1 − n) and y − ŷ, off the loss's graph
        for (auto [name, n] : {std::pair{"f′(z1)", n1}, {"f′(z2)", n2}, {"f′(z3)", n3}}) {
            auto d = t.detach(n);
            t.observe(name, d * (1.0 - d));
        }
        t.observe("y − ŷ", t.constant(y) - t.detach(n3));
        // δ⁽¹⁾ is printed again in each update line: the same quantity under the line's name
        for (const char* line : {"z1 (W1 update, line 1)", "z1 (W1 update, line 2)", "z1 (b1 update)"}) t.observe(line, z1);
        return mse_loss(n3, t.constant(y), Reduction::half_sum);
    };
    auto hand = [&](HandDerivation& h) {
        // §1: forward, neuron by neuron; the document's z5 takes b = 2 (its arithmetic, kept)
        const Tens& z1 = h.value("z1", row({not_printed, not_printed, not_printed}), affine(x, W1.value(), b1.value()));
        const Tens& n1 = h.value("n1", row({0.993307149075715, 0.999876605424014, 0.999954602131298}), sig(z1));
        const Tens& f1 = h.value("f′(z1)", row({0.006648056670790, 0.000123379349765, 0.000045395807735}), n1 * (1 - n1));
        Tens b2_used = b2.value();
        b2_used(1) = 2;
        const Tens& z2 = h.value("z2", row({5.993092958762325, not_printed}), affine(n1, W2.value(), b2_used));
        const Tens& n2 = h.value("n2", row({0.997510281884102, not_printed}), sig(z2));
        const Tens& f2 = h.value("f′(z2)", row({0.002483519419601, 0.000125939063189}), n2 * (1 - n2));
        const Tens& z3 = h.value("z3", row({not_printed}), affine(n2, W3.value(), b3.value()));
        const Tens& n3 = h.value("ŷ", row({0.997520293823002}), sig(z3));
        const Tens& e = h.value("y − ŷ", row({0.002479706176998}), y - n3);
        const Tens& f3 = h.value("f′(z3)", row({0.002473557234274}), n3 * (1 - n3));
        // §2: δ⁽³⁾ = −(y − ŷ) f₃′, δ⁽ᵏ⁾ = f′(z⁽ᵏ⁾) ⊙ W⁽ᵏ⁺¹⁾ᵀδ⁽ᵏ⁺¹⁾
        const Tens& d3 = h.grad("z3", row({-0.000006133695153}), -e * f3);
        const Tens& g2 = h.grad("n2", row({-0.000006133695153, -0.000018401085459}), mm(d3, W3.value()));
        const Tens d2 = f2 * g2;
        h.grad("z2", row({-0.0000000015233151, -0.000000002317415}), d2);
        // δ⁽¹⁾ is computed from δ⁽²⁾ as the formula gives it, not from the printed line; it is printed
        // with two entries (first and third) to four or five digits.
        const Tens d1 = f1 * mm(d2, W2.value());
        h.grad("z1", row({-1.4749e-13, not_printed, -1.593e-13}), d1, 1e-3);
        h.grad("z1 (W1 update, line 1)", row({-1.4749e-10, -2.451e-13, -1.593e-12}), d1, 1e-3);
        h.grad("z1 (W1 update, line 2)", row({not_printed, -2.451e-12, not_printed}), d1, 1e-3);
        // §2.5: the printed W⁽¹⁾ after W ← W − η(δ⁽¹⁾xᵀ + W), read back as the gradient it implies.
        // W is printed to 16 significant digits (±5e-16), so the read-back gradient (~1.6e-12 at its
        // smallest) carries ±5e-15, i.e. ±3e-3 relative: the tolerance is 5e-3 (a misprint is ×10).
        const Tens W1_after = {{1.800000000014749, 0.900000000029498},
                               {0.90000000000245, 2.70000000000490},
                               {2.700000000000159, 1.80000000000319}};
        h.grad("W1", Tens(((1 - eta) * W1.value() - W1_after) / eta), mm(tr(d1), x), 5e-3);
        // the b⁽¹⁾ update, b ← b − ηδ⁽¹⁾, is set up with its own δ⁽¹⁾ (its result is not printed)
        h.grad("z1 (b1 update)", row({-1.4749e-9, -2.451e-11, -1.593e-10}), d1, 1e-3);
    };
    return diagnose(model, hand);
}

}  // namespace

std::vector<DocumentDiagnosis> document_diagnoses()
{
    return {
        {"000", "mlp_trace_regularizer",
         "3-layer MLP, ½Σ‖y − d‖² + ½γ(tr S_w − tr S_b): the regularizer's gradient as D1 writes it",
         [] { return mlp_trace_regularizer(Doc000::regularizer); }},
        {"000", "mlp_trace_regularizer_data_term",
         "the same MLP: D1's data term Σⱼ(y_{i,j} − d_{i,j}) as written (the regularizer's term correct)",
         [] { return mlp_trace_regularizer(Doc000::data_term); }},
        {"000", "mlp_trace_regularizer_d1",
         "the same MLP: all of D1 as written, Σⱼ(y_{i,j} − d_{i,j}) and the regularizer's term per sample",
         [] { return mlp_trace_regularizer(Doc000::d1); }},
        {"000", "mlp_trace_regularizer_vec_w1",
         "the same MLP: D4's ∂E/∂W⁽¹⁾ = vec(δ⁽¹⁾X) as written (D1 correct)",
         [] { return mlp_trace_regularizer(Doc000::vec_w1); }},
        {"000", "mlp_trace_regularizer_per_class",
         "the same MLP: D1's regularizer term as one gradient per class, Σ over the class's samples as written, given "
         "to each sample of the class (the data term correct)",
         [] { return mlp_trace_regularizer(Doc000::per_class); }},
        {"000", "mlp_trace_regularizer_d1_per_class",
         "the same MLP: all of D1 as written with its regularizer term per class, Σⱼ(y_{i,j} − d_{i,j}) and the Σ "
         "over the class's samples",
         [] { return mlp_trace_regularizer(Doc000::d1_per_class); }},
        {"001", "mlp_l_layer_notes",
         "L-layer MLP: the δ recursion of §3 (E = ½Σ(y − t)², (47)) against the loss of (44), E = ΣΣ(y − T)²",
         mlp_l_layer_notes},
        {"002", "cnn_sigmoid_avgpool",
         "conv → sigmoid → 2×2 average pool → dense → softmax cross-entropy, the pooling derivative dropped (§2.2.4)",
         [] { return cnn_sigmoid_avgpool(Doc002::quarter_dropped); }},
        {"002", "cnn_sigmoid_avgpool_single_output",
         "the same CNN: ∂CE/∂a_j = (ŷ_i − y_i) w_j as (10) writes it, for each output i, and (15) with it",
         [] { return cnn_sigmoid_avgpool(Doc002::single_output); }},
        {"002", "cnn_sigmoid_avgpool_index_formula",
         "the same CNN: the pooling gradient routed to the positions of (11)'s index formula (with the ¼)",
         [] { return cnn_sigmoid_avgpool(Doc002::index_formula); }},
        {"002", "cnn_sigmoid_avgpool_all_positions",
         "the same CNN: (15)'s Σ_l over every convolution output l for each pooled a_j (with the ¼; (10) correct)",
         [] { return cnn_sigmoid_avgpool(Doc002::all_positions); }},
        {"002", "cnn_sigmoid_avgpool_as_written",
         "the same CNN, all of §2.2 as printed in one run: a by (11)'s positions, ∂CE/∂a by (10), ∂CE/∂v and ∂CE/∂q "
         "by (15)",
         [] { return cnn_sigmoid_avgpool(Doc002::as_written); }},
        {"003", "worked_example_2_3_2_1",
         "the worked 2-3-2-1 sigmoid example, x = [1 2], y = 1, E = ½(y − ŷ)²: every printed number against the tape",
         worked_example_2_3_2_1},
        {"004", "mnist_softmax_sgd",
         "softmax(tanh(x + b0)·W1 + b1) under Σ(y − t)²: ∂L/∂b1 by (12), ∂L/∂W1 by (15), ∂L/∂b0 by (18)",
         mnist_softmax_sgd},
    };
}

}  // namespace xgrad::reference

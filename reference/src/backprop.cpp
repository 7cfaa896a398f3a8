// Hand-derived backprop (no tape). Formulas in the header and in docs/derivations.md.
#include "xgrad/reference/backprop.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "kernels/gemm.hpp"
#include "kernels/softmax.hpp"

namespace xgrad::reference {

using kernels::gemm;
using nn::Activation;

namespace {

template <class T>
void activate(Activation a, const Tensor<T>& A, Tensor<T>& Z)
{
    Z.resize(A.shape());
    switch (a) {
        case Activation::identity: xt::noalias(Z) = A; break;
        case Activation::sigmoid: xt::noalias(Z) = T(1) / (T(1) + xt::exp(-A)); break;
        case Activation::tanh: xt::noalias(Z) = xt::tanh(A); break;
        case Activation::relu: xt::noalias(Z) = xt::maximum(A, T(0)); break;
    }
}

/// dA = dZ ⊙ h′(A), with h′ from the activation's output Z where that is cheaper.
template <class T>
void through_activation(Activation a, const Tensor<T>& A, const Tensor<T>& Z, const Tensor<T>& dZ, Tensor<T>& dA)
{
    dA.resize(dZ.shape());
    switch (a) {
        case Activation::identity: xt::noalias(dA) = dZ; break;
        case Activation::sigmoid: xt::noalias(dA) = dZ * Z * (T(1) - Z); break;    // σ′ = σ(1 − σ)
        case Activation::tanh: xt::noalias(dA) = dZ * (T(1) - Z * Z); break;      // tanh′ = 1 − tanh²
        case Activation::relu: xt::noalias(dA) = xt::where(A > T(0), dZ, T(0)); break;
    }
}

/// Y (B,O) = X (B,I) · Wᵀ + b
template <class T>
void affine(const Tensor<T>& X, const Layer<T>& l, Tensor<T>& Y)
{
    const std::size_t B = X.shape()[0], I = X.shape()[1], O = l.W.shape()[0];
    if (l.W.shape()[1] != I)
        throw std::invalid_argument(fmt::format("mlp_backprop: layer expects {} inputs, got {}", l.W.shape()[1], I));
    Y.resize(Shape{B, O});
    for (std::size_t n = 0; n < B; ++n) std::copy(l.b.begin(), l.b.end(), Y.data() + n * O);
    gemm(false, true, B, O, I, T(1), X.data(), I, l.W.data(), I, T(1), Y.data(), O);
}

}  // namespace

template <class T>
OutputLoss<T> half_squared_error(const Tensor<T>& targets)
{
    return [targets](const Tensor<T>& Y, Tensor<T>& dY) {
        dY = Y - targets;  // ∂/∂Y ½‖Y − T‖² = Y − T
        return T(0.5) * T(xt::sum(dY * dY)());
    };
}

template <class T>
MlpPass<T> mlp_backprop(const std::vector<Layer<T>>& layers, const Tensor<T>& X, const OutputLoss<T>& loss)
{
    MlpPass<T> p;
    const std::size_t L = layers.size();
    p.Z.push_back(X);
    p.A.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        affine(p.Z[l], layers[l], p.A[l]);
        Tensor<T> z;
        activate(layers[l].act, p.A[l], z);
        p.Z.push_back(std::move(z));
    }
    Tensor<T> dZ;
    p.loss = loss(p.Z[L], dZ);
    p.delta.resize(L);
    p.dW.resize(L);
    p.db.resize(L);
    for (std::size_t l = L; l-- > 0;) {
        through_activation(layers[l].act, p.A[l], p.Z[l + 1], dZ, p.delta[l]);  // δ = ∂E/∂Z ⊙ h′(A)
        const Tensor<T>& d = p.delta[l];
        const std::size_t B = d.shape()[0], O = d.shape()[1], I = p.Z[l].shape()[1];
        p.dW[l] = Tensor<T>::from_shape({O, I});
        gemm(true, false, O, I, B, T(1), d.data(), O, p.Z[l].data(), I, T(0), p.dW[l].data(), I);  // δᵀ Z_prev
        p.db[l] = xt::sum(d, {0});                                                                 // Σ_n δ_n
        if (l > 0) {
            dZ = Tensor<T>::from_shape({B, I});
            gemm(false, false, B, I, O, T(1), d.data(), O, layers[l].W.data(), I, T(0), dZ.data(), I);  // δ W
        }
    }
    return p;
}

template <class T>
T trace_regularizer(const Tensor<T>& Y, const IndexTensor& labels, T gamma, Tensor<T>& dY)
{
    const std::size_t B = Y.shape()[0], D = Y.shape()[1];
    std::size_t K = 0;
    for (std::size_t i = 0; i < B; ++i) K = std::max<std::size_t>(K, std::size_t(labels(i)) + 1);
    Tensor<T> mc = xt::zeros<T>({K, D}), m = xt::zeros<T>({D});
    std::vector<std::size_t> n(K, 0);
    for (std::size_t i = 0; i < B; ++i) {
        const auto c = std::size_t(labels(i));
        ++n[c];
        for (std::size_t d = 0; d < D; ++d) mc(c, d) += Y(i, d), m(d) += Y(i, d);
    }
    for (std::size_t c = 0; c < K; ++c)
        for (std::size_t d = 0; d < D; ++d) mc(c, d) /= n[c] ? T(n[c]) : T(1);
    m /= T(B);
    T sw = 0, sb = 0;
    dY = Tensor<T>::from_shape({B, D});
    for (std::size_t i = 0; i < B; ++i) {
        const auto c = std::size_t(labels(i));
        for (std::size_t d = 0; d < D; ++d) {
            const T e = Y(i, d) - mc(c, d);
            sw += e * e;
            dY(i, d) = gamma * (Y(i, d) - T(2) * mc(c, d) + m(d));  // γ(y_i − 2m_c + m)
        }
    }
    for (std::size_t c = 0; c < K; ++c)
        for (std::size_t d = 0; d < D; ++d) sb += T(n[c]) * (mc(c, d) - m(d)) * (mc(c, d) - m(d));
    return T(0.5) * gamma * (sw - sb);
}

template <class T>
OutputLoss<T> squared_error_with_trace_regularizer(const Tensor<T>& targets, const IndexTensor& labels, T gamma)
{
    return [targets, labels, gamma](const Tensor<T>& Y, Tensor<T>& dY) {
        Tensor<T> dR;
        const T r = trace_regularizer(Y, labels, gamma, dR);
        dY = Y - targets + dR;
        return T(0.5) * T(xt::sum(xt::square(Y - targets))()) + r;
    };
}

template <class T>
CnnGrads<T> cnn_sigmoid_avgpool_backprop(const CnnParams<T>& p, const Tensor<T>& X, const IndexTensor& labels)
{
    const std::size_t N = X.shape()[0], C = X.shape()[1], H = X.shape()[2], Wd = X.shape()[3];
    const std::size_t O = p.V.shape()[0], k = p.V.shape()[2];
    const std::size_t OH = H - k + 1, OW = Wd - k + 1, PH = OH / 2, PW = OW / 2, F = O * PH * PW;
    const std::size_t K = p.W.shape()[0];
    if (p.W.shape()[1] != F) throw std::invalid_argument(fmt::format("cnn_sigmoid_avgpool_backprop: W is {}, must be (classes, {})", shape_str(p.W.shape()), F));
    // forward: D = conv + q, Cs = σ(D), P = avgpool(Cs)
    Tensor<T> Cs = Tensor<T>::from_shape({N, O, OH, OW});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < OH; ++i)
                for (std::size_t j = 0; j < OW; ++j) {
                    T d = p.q(o);
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t u = 0; u < k; ++u)
                            for (std::size_t v = 0; v < k; ++v) d += p.V(o, c, u, v) * X(n, c, i + u, j + v);
                    Cs(n, o, i, j) = T(1) / (T(1) + std::exp(-d));
                }
    Tensor<T> a = Tensor<T>::from_shape({N, F});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < PH; ++i)
                for (std::size_t j = 0; j < PW; ++j)
                    a(n, (o * PH + i) * PW + j) = (Cs(n, o, 2 * i, 2 * j) + Cs(n, o, 2 * i, 2 * j + 1) +
                                                  Cs(n, o, 2 * i + 1, 2 * j) + Cs(n, o, 2 * i + 1, 2 * j + 1)) / T(4);
    Tensor<T> logits;
    affine(a, Layer<T>{p.W, p.b, Activation::identity}, logits);  // a·Wᵀ + b
    // E = Σ_n −log softmax(logits_n)[label_n];  δ = softmax − onehot
    CnnGrads<T> g;
    Tensor<T> delta = Tensor<T>::from_shape({N, K});
    for (std::size_t n = 0; n < N; ++n) {
        const auto y = std::size_t(labels(n));
        g.loss += kernels::softmax_row(&logits(n, 0), &delta(n, 0), K) - logits(n, y);  // log Σ exp − logit_y
        delta(n, y) -= T(1);
    }
    g.dW = Tensor<T>::from_shape({K, F});
    gemm(true, false, K, F, N, T(1), delta.data(), K, a.data(), F, T(0), g.dW.data(), F);  // δᵀ a
    g.db = xt::sum(delta, {0});
    Tensor<T> da = Tensor<T>::from_shape({N, F});
    gemm(false, false, N, F, K, T(1), delta.data(), K, p.W.data(), F, T(0), da.data(), F);  // δ W
    // through the pooling (¼ to each of the four positions) and the sigmoid: ∂E/∂D
    Tensor<T> dD = xt::zeros<T>({N, O, OH, OW});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < PH; ++i)
                for (std::size_t j = 0; j < PW; ++j) {
                    const T v = da(n, (o * PH + i) * PW + j) / T(4);
                    for (std::size_t u = 0; u < 2; ++u)
                        for (std::size_t w = 0; w < 2; ++w) {
                            const T c = Cs(n, o, 2 * i + u, 2 * j + w);
                            dD(n, o, 2 * i + u, 2 * j + w) = v * c * (T(1) - c);
                        }
                }
    g.dV = xt::zeros<T>(p.V.shape());
    g.dq = xt::zeros<T>({O});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < OH; ++i)
                for (std::size_t j = 0; j < OW; ++j) {
                    const T d = dD(n, o, i, j);
                    if (d == T(0)) continue;
                    g.dq(o) += d;
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t u = 0; u < k; ++u)
                            for (std::size_t v = 0; v < k; ++v) g.dV(o, c, u, v) += d * X(n, c, i + u, j + v);
                }
    return g;
}

template <class T>
MnistSoftmaxSgdGrads<T> mnist_softmax_sgd_backprop(const Tensor<T>& b0, const Tensor<T>& W1, const Tensor<T>& b1, const Tensor<T>& X,
                                 const Tensor<T>& targets)
{
    const std::size_t B = X.shape()[0], I = X.shape()[1], K = W1.shape()[1];
    const Tensor<T> L0 = xt::tanh(X + b0);
    Tensor<T> U = Tensor<T>::from_shape({B, K});
    for (std::size_t n = 0; n < B; ++n) std::copy(b1.begin(), b1.end(), U.data() + n * K);
    gemm(false, false, B, K, I, T(1), L0.data(), I, W1.data(), K, T(1), U.data(), K);  // L0·W1 + b1
    MnistSoftmaxSgdGrads<T> g;
    Tensor<T> dU = Tensor<T>::from_shape({B, K});
    std::vector<T> s(K), ds(K);
    for (std::size_t n = 0; n < B; ++n) {
        kernels::softmax_row(&U(n, 0), s.data(), K);
        for (std::size_t c = 0; c < K; ++c) {
            const T e = s[c] - targets(n, c);
            g.loss += e * e;
            ds[c] = T(2) * e;  // ∂E/∂S = 2(S − T)
        }
        kernels::softmax_backward(s.data(), ds.data(), &dU(n, 0), 1, K, 1, false);  // S ⊙ (∂E/∂S − Σ ∂E/∂S ⊙ S)
    }
    g.dW1 = Tensor<T>::from_shape({I, K});
    gemm(true, false, I, K, B, T(1), L0.data(), I, dU.data(), K, T(0), g.dW1.data(), K);  // L0ᵀ dU
    g.db1 = xt::sum(dU, {0});
    Tensor<T> dL0 = Tensor<T>::from_shape({B, I});
    gemm(false, true, B, I, K, T(1), dU.data(), K, W1.data(), K, T(0), dL0.data(), I);  // dU W1ᵀ
    g.db0 = xt::sum((T(1) - L0 * L0) * dL0, {0});
    return g;
}

std::vector<Layer<double>> worked_example_2_3_2_1_parameters()
{
    return {{Tensor<double>{{2, 1}, {1, 3}, {3, 2}}, Tensor<double>{1, 2, 3}, Activation::sigmoid},
            {Tensor<double>{{1, 1, 2}, {3, 2, 2}}, Tensor<double>{2, 1}, Activation::sigmoid},
            {Tensor<double>(xt::xtensor<double, 2>{{1, 3}}), Tensor<double>{2}, Activation::sigmoid}};
}

WorkedExample2321Trace worked_example_2_3_2_1_step(const std::vector<Layer<double>>& layers, const Tensor<double>& x, double y, double eta)
{
    WorkedExample2321Trace t;
    t.before = layers;
    t.x = x;
    t.y = y;
    const Tensor<double> X = xt::reshape_view(x, std::vector<std::size_t>{1, x.size()});
    const Tensor<double> target = Tensor<double>(xt::xtensor<double, 2>{{y}});
    const MlpPass<double> p = mlp_backprop(layers, X, half_squared_error(target));
    t.loss = p.loss;
    for (std::size_t k = 0; k < layers.size(); ++k) {
        t.z.push_back(xt::flatten(p.A[k]));
        t.n.push_back(xt::flatten(p.Z[k + 1]));
        t.delta.push_back(xt::flatten(p.delta[k]));
        t.dW.push_back(p.dW[k]);
        t.db.push_back(p.db[k]);
        Layer<double> l = layers[k];
        l.W = l.W - eta * (p.dW[k] + l.W);  // W ← W − η(δ n_prevᵀ + W)
        l.b = l.b - eta * p.db[k];          // b ← b − ηδ
        t.after.push_back(l);
    }
    return t;
}

#define XGRAD_INSTANTIATE(T)                                                                                      \
    template OutputLoss<T> half_squared_error(const Tensor<T>&);                                                   \
    template MlpPass<T> mlp_backprop(const std::vector<Layer<T>>&, const Tensor<T>&, const OutputLoss<T>&);        \
    template T trace_regularizer(const Tensor<T>&, const IndexTensor&, T, Tensor<T>&);                             \
    template OutputLoss<T> squared_error_with_trace_regularizer(const Tensor<T>&, const IndexTensor&, T);          \
    template CnnGrads<T> cnn_sigmoid_avgpool_backprop(const CnnParams<T>&, const Tensor<T>&, const IndexTensor&);               \
    template MnistSoftmaxSgdGrads<T> mnist_softmax_sgd_backprop(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, \
                                              const Tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::reference

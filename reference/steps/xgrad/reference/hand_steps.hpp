#pragma once
// Hand-written backprop training steps for the benchmark workloads: the same kernels as the tape
// (BLAS GEMMs with transpose flags, xgrad's conv and pooling kernels), preallocated buffers, no
// tape. They are the floor the tape's overhead is measured from.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/conv.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/gemm.hpp"
#include "kernels/pool.hpp"
#include "kernels/softmax.hpp"
#include "xgrad/nn.hpp"

namespace xgrad::reference {

using kernels::gemm;
using F = float;

/// A dense layer y = x·Wᵀ + b with W (out, in) (xgrad's Linear layout, PyTorch's), its grads and buffers.
struct HandLinear {
    std::size_t in, out;
    Tensor<F> W, b, dW, db, y, dx;
    HandLinear(const Tensor<F>& w, const Tensor<F>& bias) : in(w.shape()[1]), out(w.shape()[0]), W(w), b(bias)
    {
        dW = xt::zeros<F>(W.shape());
        db = xt::zeros<F>(b.shape());
    }
    void forward(const F* x, std::size_t B, bool relu)
    {
        y.resize(Shape{B, out});
        F* p = y.data();
        for (std::size_t n = 0; n < B; ++n) std::copy(b.data(), b.data() + out, p + n * out);
        gemm(false, true, B, out, in, F(1), x, in, W.data(), in, F(1), p, out);  // x·Wᵀ + b
        if (relu)
            for (std::size_t i = 0; i < B * out; ++i) p[i] = p[i] > 0 ? p[i] : F(0);
    }
    /// dy (B,out) given; computes dW = dyᵀx, db = Σ dy, and (if want_dx) dx = dy·W.
    void backward(const F* x, const F* dy, std::size_t B, bool want_dx)
    {
        gemm(true, false, out, in, B, F(1), dy, out, x, in, F(0), dW.data(), in);
        std::fill(db.begin(), db.end(), F(0));
        for (std::size_t n = 0; n < B; ++n)
            for (std::size_t j = 0; j < out; ++j) db(j) += dy[n * out + j];
        if (want_dx) {
            dx.resize(Shape{B, in});
            gemm(false, false, B, in, out, F(1), dy, out, W.data(), in, F(0), dx.data(), in);
        }
    }
    void sgd(F lr)
    {
        xt::noalias(W) -= lr * dW;
        xt::noalias(b) -= lr * db;
    }
};

/// dy ⊙= [y > 0] (ReLU backward through its output).
inline void relu_mask(const F* y, F* dy, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i)
        if (!(y[i] > 0)) dy[i] = 0;
}

/// Mean softmax cross-entropy of logits (B,C); writes dlogits = (softmax − onehot)/B.
inline F cross_entropy_grad(const Tensor<F>& z, const IndexTensor& labels, Tensor<F>& dz)
{
    const std::size_t B = z.shape()[0], C = z.shape()[1];
    dz.resize(z.shape());
    double loss = 0;
    const F inv_b = F(1) / F(B);
    for (std::size_t n = 0; n < B; ++n) {
        const F* r = z.data() + n * C;
        F* d = dz.data() + n * C;
        loss += double(kernels::softmax_row(r, d, C, 1, inv_b) - r[labels(n)]);  // log Σ exp − z_y
        d[labels(n)] -= inv_b;
    }
    return F(loss / double(B));
}

/// 784-256-128-10 ReLU MLP, cross-entropy (mean), SGD.
struct HandMlp {
    std::vector<HandLinear> layers;
    Tensor<F> dz;
    explicit HandMlp(nn::MLP<F>& m)
    {
        auto ps = m.parameters();
        for (std::size_t i = 0; i < ps.size(); i += 2) layers.emplace_back(ps[i]->value(), ps[i + 1]->value());
    }
    F step(const Tensor<F>& x, const IndexTensor& labels, F lr)
    {
        const std::size_t B = x.shape()[0], L = layers.size();
        const F* in = x.data();
        for (std::size_t l = 0; l < L; ++l) {
            layers[l].forward(in, B, l + 1 < L);
            in = layers[l].y.data();
        }
        const F loss = cross_entropy_grad(layers[L - 1].y, labels, dz);
        const F* dy = dz.data();
        for (std::size_t l = L; l-- > 0;) {
            const F* xin = l ? layers[l - 1].y.data() : x.data();
            layers[l].backward(xin, dy, B, l > 0);
            if (l > 0) {
                relu_mask(layers[l - 1].y.data(), layers[l].dx.data(), layers[l].dx.size());
                dy = layers[l].dx.data();
            }
        }
        for (auto& l : layers) l.sgd(lr);
        return loss;
    }
};

/// The mnist_softmax_sgd network (source document 004): y = softmax(tanh(x + b0)·W1 + b1), loss Σ(y − t)², SGD.
struct HandMnistSoftmaxSgd {
    Tensor<F> b0, W1, b1, L0, U, dU, dL0, dW1, db0, db1;
    HandMnistSoftmaxSgd(const Tensor<F>& b0_, const Tensor<F>& W1_, const Tensor<F>& b1_) : b0(b0_), W1(W1_), b1(b1_) {}
    F step(const Tensor<F>& x, const Tensor<F>& t, F lr)
    {
        const std::size_t B = x.shape()[0], I = x.shape()[1], K = W1.shape()[1];
        L0.resize(x.shape());
        xt::noalias(L0) = xt::tanh(x + b0);
        U.resize(Shape{B, K});
        for (std::size_t n = 0; n < B; ++n) std::copy(b1.data(), b1.data() + K, U.data() + n * K);
        gemm(false, false, B, K, I, F(1), L0.data(), I, W1.data(), K, F(1), U.data(), K);
        dU.resize(U.shape());
        double loss = 0;
        for (std::size_t n = 0; n < B; ++n) {
            F* u = U.data() + n * K;
            F* d = dU.data() + n * K;
            kernels::softmax_row(u, u, K);  // in place
            for (std::size_t c = 0; c < K; ++c) {
                const F e = u[c] - t(n, c);
                loss += double(e * e);
                d[c] = F(2) * e;
            }
            kernels::softmax_backward(u, d, d, 1, K, 1, false);  // in place
        }
        dW1.resize(W1.shape());
        gemm(true, false, I, K, B, F(1), L0.data(), I, dU.data(), K, F(0), dW1.data(), K);
        db1 = xt::sum(dU, {0});
        dL0.resize(Shape{B, I});
        gemm(false, true, B, I, K, F(1), dU.data(), K, W1.data(), K, F(0), dL0.data(), I);
        xt::noalias(dL0) = (F(1) - L0 * L0) * dL0;
        db0 = xt::sum(dL0, {0});
        xt::noalias(W1) -= lr * dW1;
        xt::noalias(b0) -= lr * db0;
        xt::noalias(b1) -= lr * db1;
        return F(loss);
    }
};

/// The convolution of the hand-written steps: the float kernels the conv2d op runs (oneDNN's
/// primitives and the direct few-channel kernels) when the build has oneDNN, else im2col + GEMM
/// (into `cols`, g.k() × g.l()), so that tape / hand measures the tape, not a different kernel.
inline bool hand_conv_on_float_kernels() { return kernels::dnnl_conv_available(); }
inline kernels::DnnlConvShape hand_conv_shape(const kernels::ConvGeom& g)
{
    return {g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.s, g.p};
}
inline void hand_conv_forward(const F* x, const F* w, const F* b, const kernels::ConvGeom& g, F* y, F* cols)
{
    if (hand_conv_on_float_kernels())
        kernels::float_conv2d_forward(x, w, b, hand_conv_shape(g), y);
    else
        kernels::conv2d_forward(x, w, b, g, y, cols);
}
/// dx, dw, db overwritten (each may be null).
inline void hand_conv_backward(const F* x, const F* w, const F* gy, const kernels::ConvGeom& g, F* dx, F* dw, F* db,
                               const F* cols)
{
    if (hand_conv_on_float_kernels())
        kernels::float_conv2d_backward(x, w, gy, hand_conv_shape(g), dx, false, dw, false, db, false);
    else
        kernels::conv2d_backward(x, w, gy, g, dx, false, dw, false, db, false, cols);
}

/// LeNet-5 (avg pooling) with xgrad's conv and pooling kernels, by hand.
struct HandLenet {
    Tensor<F> w1, c1b, w2, c2b, dw1, dc1b, dw2, dc2b;
    std::vector<HandLinear> fc;
    Tensor<F> y1, p1, y2, p2, dp2, dy2, dp1, dy1, dz, cols1, cols2;
    kernels::ConvGeom g1{}, g2{};
    kernels::PoolGeom q1{}, q2{};
    explicit HandLenet(nn::Sequential<F>& net)
    {
        auto ps = net.parameters();
        w1 = ps[0]->value(), c1b = ps[1]->value(), w2 = ps[2]->value(), c2b = ps[3]->value();
        for (std::size_t i = 4; i < ps.size(); i += 2) fc.emplace_back(ps[i]->value(), ps[i + 1]->value());
        dw1 = xt::zeros<F>(w1.shape()), dc1b = xt::zeros<F>(c1b.shape()), dw2 = xt::zeros<F>(w2.shape()),
        dc2b = xt::zeros<F>(c2b.shape());
    }
    F step(const Tensor<F>& x, const IndexTensor& labels, F lr)
    {
        const std::size_t B = x.shape()[0];
        g1 = kernels::conv_geometry(x.shape(), w1.shape(), &c1b.shape(), 1, 2);
        y1.resize(Shape{B, 6, g1.oh, g1.ow});
        if (!hand_conv_on_float_kernels()) cols1.resize(Shape{g1.k(), g1.l()});
        hand_conv_forward(x.data(), w1.data(), c1b.data(), g1, y1.data(), cols1.data());
        for (auto& v : y1) v = v > 0 ? v : F(0);
        q1 = kernels::pool_geometry("avg_pool2d", y1.shape(), 2, 2);
        p1.resize(Shape{B, 6, q1.oh, q1.ow});
        kernels::avg_pool2d_forward(y1.data(), q1, p1.data());
        g2 = kernels::conv_geometry(p1.shape(), w2.shape(), &c2b.shape(), 1, 0);
        y2.resize(Shape{B, 16, g2.oh, g2.ow});
        if (!hand_conv_on_float_kernels()) cols2.resize(Shape{g2.k(), g2.l()});
        hand_conv_forward(p1.data(), w2.data(), c2b.data(), g2, y2.data(), cols2.data());
        for (auto& v : y2) v = v > 0 ? v : F(0);
        q2 = kernels::pool_geometry("avg_pool2d", y2.shape(), 2, 2);
        p2.resize(Shape{B, 16, q2.oh, q2.ow});
        kernels::avg_pool2d_forward(y2.data(), q2, p2.data());
        fc[0].forward(p2.data(), B, true);
        fc[1].forward(fc[0].y.data(), B, true);
        fc[2].forward(fc[1].y.data(), B, false);
        const F loss = cross_entropy_grad(fc[2].y, labels, dz);
        fc[2].backward(fc[1].y.data(), dz.data(), B, true);
        relu_mask(fc[1].y.data(), fc[2].dx.data(), fc[2].dx.size());
        fc[1].backward(fc[0].y.data(), fc[2].dx.data(), B, true);
        relu_mask(fc[0].y.data(), fc[1].dx.data(), fc[1].dx.size());
        fc[0].backward(p2.data(), fc[1].dx.data(), B, true);
        dy2.resize(y2.shape());
        kernels::avg_pool2d_backward(fc[0].dx.data(), q2, dy2.data(), false);
        relu_mask(y2.data(), dy2.data(), dy2.size());
        dp1.resize(p1.shape());
        hand_conv_backward(p1.data(), w2.data(), dy2.data(), g2, dp1.data(), dw2.data(), dc2b.data(), cols2.data());
        dy1.resize(y1.shape());
        kernels::avg_pool2d_backward(dp1.data(), q1, dy1.data(), false);
        relu_mask(y1.data(), dy1.data(), dy1.size());
        hand_conv_backward(x.data(), w1.data(), dy1.data(), g1, nullptr, dw1.data(), dc1b.data(), cols1.data());
        xt::noalias(w1) -= lr * dw1;
        xt::noalias(c1b) -= lr * dc1b;
        xt::noalias(w2) -= lr * dw2;
        xt::noalias(c2b) -= lr * dc2b;
        for (auto& l : fc) l.sgd(lr);
        return loss;
    }
};

/// Σ f(i) for i < n in 8 independent float lanes (vectorizable, unlike one serial sum), returned in double.
template <class Fn>
double lane_sum(std::size_t n, Fn f)
{
    F acc[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (std::size_t l = 0; l < 8; ++l) acc[l] += f(i + l);
    double s = 0;
    for (; i < n; ++i) s += double(f(i));
    for (F v : acc) s += double(v);
    return s;
}

/// The bn_conv block: conv 3×3 (C→C, pad 1, no bias) → BatchNorm2d (training mode: batch statistics,
/// running statistics updated as the module does) → ReLU → mean as the loss, SGD. Batch norm by hand,
/// per channel c over its M = N·H·W values: dx = γ/(M·σ)·(M·dy − Σdy − x̂·Σ(dy·x̂)), dγ = Σ dy·x̂, dβ = Σ dy.
struct HandBnConv {
    Tensor<F> w, gamma, beta, running_mean, running_var, dw, dgamma, dbeta;
    Tensor<F> y, a, dy, cols, mean, inv;
    kernels::ConvGeom g{};
    double eps = 1e-5, momentum = 0.1;
    /// net: Conv2d (no bias), BatchNorm2d, ReLU, as bench_xgrad's bn_conv builds it.
    explicit HandBnConv(nn::Sequential<F>& net)
    {
        auto ps = net.parameters();
        w = ps[0]->value(), gamma = ps[1]->value(), beta = ps[2]->value();
        running_mean = xt::zeros<F>(gamma.shape()), running_var = xt::ones<F>(gamma.shape());
        dw = xt::zeros<F>(w.shape()), dgamma = xt::zeros<F>(gamma.shape()), dbeta = xt::zeros<F>(beta.shape());
    }
    F step(const Tensor<F>& x, F lr)
    {
        const std::size_t B = x.shape()[0], C = w.shape()[0];
        g = kernels::conv_geometry(x.shape(), w.shape(), nullptr, 1, 1);
        const std::size_t inner = g.oh * g.ow, M = B * inner;
        y.resize(Shape{B, C, g.oh, g.ow});
        if (!hand_conv_on_float_kernels()) cols.resize(Shape{g.k(), g.l()});
        hand_conv_forward(x.data(), w.data(), nullptr, g, y.data(), cols.data());
        a.resize(y.shape());
        dy.resize(y.shape());
        mean.resize(Shape{C});
        inv.resize(Shape{C});
        const F d_out = F(1) / F(a.size());  // d(mean)/d(out)
        double loss = 0;
        for (std::size_t c = 0; c < C; ++c) {
            // two passes (the variance must not cancel), per row in float lanes, rows summed in double
            double s = 0, q = 0;
            for (std::size_t n = 0; n < B; ++n) {
                const F* r = y.data() + (n * C + c) * inner;
                s += lane_sum(inner, [r](std::size_t i) { return r[i]; });
            }
            const F mu = F(s / double(M));
            for (std::size_t n = 0; n < B; ++n) {
                const F* r = y.data() + (n * C + c) * inner;
                q += lane_sum(inner, [r, mu](std::size_t i) { return (r[i] - mu) * (r[i] - mu); });
            }
            const double var = q / double(M);
            mean(c) = mu, inv(c) = F(1 / std::sqrt(var + eps));
            running_mean(c) = F((1 - momentum) * running_mean(c) + momentum * double(mu));
            running_var(c) = F((1 - momentum) * running_var(c) + momentum * var * double(M) / double(M - 1));
            const F scale = gamma(c) * inv(c), shift = beta(c);
            for (std::size_t n = 0; n < B; ++n) {
                const std::size_t at = (n * C + c) * inner;
                F* o = a.data() + at;
                F* ga = dy.data() + at;
                const F* r = y.data() + at;
                for (std::size_t i = 0; i < inner; ++i) {
                    const F v = (r[i] - mu) * scale + shift;
                    o[i] = std::max(v, F(0));
                    ga[i] = v > 0 ? d_out : F(0);  // the loss's gradient through the ReLU, no branch
                }
                loss += lane_sum(inner, [o](std::size_t i) { return o[i]; });
            }
        }
        // batch norm's backward per channel, in place on dy (which holds the ReLU's output gradient)
        for (std::size_t c = 0; c < C; ++c) {
            const F m = mean(c), iv = inv(c);
            double sg = 0, sgx = 0;
            for (std::size_t n = 0; n < B; ++n) {
                const std::size_t at = (n * C + c) * inner;
                const F* ga = dy.data() + at;
                const F* r = y.data() + at;
                sg += lane_sum(inner, [ga](std::size_t i) { return ga[i]; });
                sgx += lane_sum(inner, [ga, r, m, iv](std::size_t i) { return ga[i] * ((r[i] - m) * iv); });
            }
            dgamma(c) = F(sgx), dbeta(c) = F(sg);
            const F k = gamma(c) * iv, mg = F(sg / double(M)), mgx = F(sgx / double(M));
            for (std::size_t n = 0; n < B; ++n) {
                const std::size_t at = (n * C + c) * inner;
                F* ga = dy.data() + at;
                const F* r = y.data() + at;
                for (std::size_t i = 0; i < inner; ++i) ga[i] = k * (ga[i] - mg - (r[i] - m) * iv * mgx);
            }
        }
        hand_conv_backward(x.data(), w.data(), dy.data(), g, nullptr, dw.data(), nullptr, cols.data());
        xt::noalias(w) -= lr * dw;
        xt::noalias(gamma) -= lr * dgamma;
        xt::noalias(beta) -= lr * dbeta;
        return F(loss / double(a.size()));
    }
};

}  // namespace xgrad::reference

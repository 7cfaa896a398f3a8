// Activations, softmax and log-softmax.
#include "xgrad/ops/activation.hpp"

#include <cmath>

#include "../op_util.hpp"

namespace xgrad {

template <class T>
Var<T> sigmoid(const Var<T>& x)
{
    auto op = begin_op("sigmoid", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    // 1/(1+e^−x) is safe at both ends: e^−x = inf gives 0, e^−x = 0 gives 1.
    xt::noalias(op.value()) = T(1) / (T(1) + xt::exp(-xv));
    return op.finish([](BackwardContext<T>& c) {
        const auto& y = c.value();
        c.accumulate(0, c.grad() * y * (T(1) - y));  // dL/dX = G ⊙ Y ⊙ (1 − Y)
    });
}

template <class T>
Var<T> tanh(const Var<T>& x)
{
    auto op = begin_op("tanh", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    xt::noalias(op.value()) = xt::tanh(xv);
    return op.finish([](BackwardContext<T>& c) {
        const auto& y = c.value();
        c.accumulate(0, c.grad() * (T(1) - y * y));  // dL/dX = G ⊙ (1 − Y²)
    });
}

template <class T>
Var<T> relu(const Var<T>& x)
{
    auto op = begin_op("relu", {x});
    const Tensor<T>& xv = x.value();
    op.value().resize(xv.shape());
    xt::noalias(op.value()) = xt::maximum(xv, T(0));
    return op.finish([](BackwardContext<T>& c) {
        c.accumulate(0, xt::where(c.input(0) > T(0), c.grad(), T(0)));  // dL/dX = G ⊙ [X > 0]
    });
}

namespace {

// y = softmax(x) along the middle axis of an (outer, n, inner) layout, or its log.
template <class T>
void softmax_forward(const T* x, T* y, const detail::AxisSplit& s, bool log_space)
{
    for (std::size_t o = 0; o < s.outer; ++o) {
        for (std::size_t i = 0; i < s.inner; ++i) {
            const T* xp = x + o * s.n * s.inner + i;
            T* yp = y + o * s.n * s.inner + i;
            T m = -std::numeric_limits<T>::infinity();
            for (std::size_t j = 0; j < s.n; ++j) m = std::max(m, xp[j * s.inner]);
            if (!std::isfinite(m)) m = 0;  // all −inf (or inf/nan): let the arithmetic report it
            T z = 0;
            for (std::size_t j = 0; j < s.n; ++j) {
                const T e = std::exp(xp[j * s.inner] - m);
                if (!log_space) yp[j * s.inner] = e;
                z += e;
            }
            if (log_space) {
                const T lz = m + std::log(z);
                for (std::size_t j = 0; j < s.n; ++j) yp[j * s.inner] = xp[j * s.inner] - lz;
            } else {
                const T r = T(1) / z;
                for (std::size_t j = 0; j < s.n; ++j) yp[j * s.inner] *= r;
            }
        }
    }
}

}  // namespace

template <class T>
Var<T> softmax(const Var<T>& x, int axis)
{
    auto op = begin_op("softmax", {x});
    const Tensor<T>& xv = x.value();
    const std::size_t ax = detail::normalize_axis("softmax", axis, xv.shape());
    const detail::AxisSplit s = detail::split_at(xv.shape(), ax);
    op.value().resize(xv.shape());
    softmax_forward(xv.data(), op.value().data(), s, false);
    return op.finish([s](BackwardContext<T>& c) {
        // dL/dX = Y ⊙ (G − Σ_axis G ⊙ Y)
        const InputGrad<T> gx = c.input_grad(0);
        const T* y = c.value().data();
        const T* g = c.grad().data();
        T* d = gx.data();
        for (std::size_t o = 0; o < s.outer; ++o)
            for (std::size_t i = 0; i < s.inner; ++i) {
                const std::size_t base = o * s.n * s.inner + i;
                T dot = 0;
                for (std::size_t j = 0; j < s.n; ++j) dot += g[base + j * s.inner] * y[base + j * s.inner];
                for (std::size_t j = 0; j < s.n; ++j) {
                    const std::size_t k = base + j * s.inner;
                    const T v = y[k] * (g[k] - dot);
                    d[k] = gx.accumulate ? d[k] + v : v;
                }
            }
    });
}

template <class T>
Var<T> log_softmax(const Var<T>& x, int axis)
{
    auto op = begin_op("log_softmax", {x});
    const Tensor<T>& xv = x.value();
    const std::size_t ax = detail::normalize_axis("log_softmax", axis, xv.shape());
    const detail::AxisSplit s = detail::split_at(xv.shape(), ax);
    op.value().resize(xv.shape());
    softmax_forward(xv.data(), op.value().data(), s, true);
    return op.finish([s](BackwardContext<T>& c) {
        // dL/dX = G − softmax(X) ⊙ Σ_axis G, softmax(X) = exp(Y)
        const InputGrad<T> gx = c.input_grad(0);
        const T* y = c.value().data();
        const T* g = c.grad().data();
        T* d = gx.data();
        for (std::size_t o = 0; o < s.outer; ++o)
            for (std::size_t i = 0; i < s.inner; ++i) {
                const std::size_t base = o * s.n * s.inner + i;
                T gs = 0;
                for (std::size_t j = 0; j < s.n; ++j) gs += g[base + j * s.inner];
                for (std::size_t j = 0; j < s.n; ++j) {
                    const std::size_t k = base + j * s.inner;
                    const T v = g[k] - std::exp(y[k]) * gs;
                    d[k] = gx.accumulate ? d[k] + v : v;
                }
            }
    });
}

#define XGRAD_INSTANTIATE(T)                          \
    template Var<T> sigmoid(const Var<T>&);           \
    template Var<T> tanh(const Var<T>&);              \
    template Var<T> relu(const Var<T>&);              \
    template Var<T> softmax(const Var<T>&, int);      \
    template Var<T> log_softmax(const Var<T>&, int);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

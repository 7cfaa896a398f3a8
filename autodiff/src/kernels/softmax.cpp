// Kernels: softmax and log-softmax (see softmax.hpp).
#include "kernels/softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <xsimd/xsimd.hpp>

namespace xgrad::kernels {

namespace {

/// max over a contiguous row, in xsimd batches (the attention probabilities' rows, the classes).
template <class T>
T row_max(const T* x, std::size_t n)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    T m = -std::numeric_limits<T>::infinity();
    std::size_t j = 0;
    if (n >= w) {
        B mb = B::load_unaligned(x);
        for (j = w; j + w <= n; j += w) mb = xsimd::max(mb, B::load_unaligned(x + j));
        alignas(B::arch_type::alignment()) T lanes[w];
        mb.store_aligned(lanes);
        for (std::size_t k = 0; k < w; ++k) m = std::max(m, lanes[k]);
    }
    for (; j < n; ++j) m = std::max(m, x[j]);
    return m;
}

/// Σ exp(x_j − m) over a contiguous row, each term stored to y when y is given.
template <class T>
T row_exp_sum(const T* x, T* y, std::size_t n, T m)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    B zb(T(0));
    const B mb(m);
    std::size_t j = 0;
    for (; j + w <= n; j += w) {
        const B e = xsimd::exp(B::load_unaligned(x + j) - mb);
        if (y) e.store_unaligned(y + j);
        zb += e;
    }
    T z = xsimd::hadd(zb);
    for (; j < n; ++j) {
        const T e = std::exp(x[j] - m);
        if (y) y[j] = e;
        z += e;
    }
    return z;
}

}  // namespace

template <class T>
T softmax_row(const T* x, T* y, std::size_t n, std::size_t stride, T scale, bool acc)
{
    const bool store = y && !acc;  // the exponentials go to y, then are scaled in place
    T m = -std::numeric_limits<T>::infinity();
    if (stride == 1) {
        m = row_max(x, n);
    } else {
        for (std::size_t j = 0; j < n; ++j) m = std::max(m, x[j * stride]);
    }
    if (!std::isfinite(m)) m = 0;  // all −inf (or inf/nan): let the arithmetic report it
    T z = 0;
    if (stride == 1) {
        z = row_exp_sum(x, store ? y : nullptr, n, m);
    } else {
        for (std::size_t j = 0; j < n; ++j) {
            const T e = std::exp(x[j * stride] - m);
            if (store) y[j * stride] = e;
            z += e;
        }
    }
    if (y) {
        const T r = scale / z;
        if (acc)
            for (std::size_t j = 0; j < n; ++j) y[j * stride] += std::exp(x[j * stride] - m) * r;
        else
            for (std::size_t j = 0; j < n; ++j) y[j * stride] *= r;
    }
    return m + std::log(z);
}

template <class T>
T log_sum_exp(const T* x, std::size_t n, std::size_t stride)
{
    return softmax_row(x, static_cast<T*>(nullptr), n, stride);
}

namespace {

/// f(base) for each of the outer × inner rows of (outer, n, inner); a row's j-th value is at base + j·inner.
template <class F>
void for_each_row(std::size_t outer, std::size_t n, std::size_t inner, F f)
{
    for (std::size_t o = 0; o < outer; ++o)
        for (std::size_t i = 0; i < inner; ++i) f(o * n * inner + i);
}

}  // namespace

template <class T>
void softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner, T scale, bool acc)
{
    for_each_row(outer, n, inner, [&](std::size_t base) { softmax_row(x + base, y + base, n, inner, scale, acc); });
}

template <class T>
void log_softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner)
{
    for_each_row(outer, n, inner, [&](std::size_t base) {
        const T lz = log_sum_exp(x + base, n, inner);
        for (std::size_t j = 0; j < n; ++j) y[base + j * inner] = x[base + j * inner] - lz;
    });
}

template <class T>
void softmax_backward(const T* y, const T* g, T* dx, std::size_t outer, std::size_t n, std::size_t inner, bool acc)
{
    for_each_row(outer, n, inner, [&](std::size_t base) {
        T dot = 0;
        for (std::size_t j = 0; j < n; ++j) dot += g[base + j * inner] * y[base + j * inner];
        if (inner == 1) {  // contiguous rows: loops the compiler vectorizes (dx may be g: read, then written)
            const T *yr = y + base, *gr = g + base;
            T* d = dx + base;
            if (acc)
                for (std::size_t j = 0; j < n; ++j) d[j] += yr[j] * (gr[j] - dot);
            else
                for (std::size_t j = 0; j < n; ++j) d[j] = yr[j] * (gr[j] - dot);
            return;
        }
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t k = base + j * inner;
            const T v = y[k] * (g[k] - dot);
            dx[k] = acc ? dx[k] + v : v;
        }
    });
}

template <class T>
void log_softmax_backward(const T* y, const T* g, T* dx, std::size_t outer, std::size_t n, std::size_t inner, bool acc)
{
    for_each_row(outer, n, inner, [&](std::size_t base) {
        T gs = 0;
        for (std::size_t j = 0; j < n; ++j) gs += g[base + j * inner];
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t k = base + j * inner;
            const T v = g[k] - std::exp(y[k]) * gs;
            dx[k] = acc ? dx[k] + v : v;
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                                                 \
    template T softmax_row(const T*, T*, std::size_t, std::size_t, T, bool);                                 \
    template T log_sum_exp(const T*, std::size_t, std::size_t);                                              \
    template void softmax(const T*, T*, std::size_t, std::size_t, std::size_t, T, bool);                     \
    template void log_softmax(const T*, T*, std::size_t, std::size_t, std::size_t);                          \
    template void softmax_backward(const T*, const T*, T*, std::size_t, std::size_t, std::size_t, bool);     \
    template void log_softmax_backward(const T*, const T*, T*, std::size_t, std::size_t, std::size_t, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::kernels

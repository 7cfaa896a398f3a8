#pragma once
// Kernels: elementwise activations and their derivatives on [b, e) of raw buffers, in xsimd batches.
// Every element goes through the same instructions wherever a range starts or ends (tails through
// one padded batch), so a split over threads, or a plane at a time, gives the same bits as one loop.
#include <algorithm>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "kernels/isa.hpp"
#include "xgrad/activation_kind.hpp"

namespace xgrad::kernels {

/// out[i] = f(in[i]) for i in [b, e), in batches of instruction set A. (Plain loops for the tail: the
/// AVX-512 file instantiates this too, and must share no inline function with the rest.)
template <class T, class F, class A = xsimd::default_arch>
void map_batches(const T* __restrict in, T* __restrict out, std::size_t b, std::size_t e, F f)
{
    using B = xsimd::batch<T, A>;
    constexpr std::size_t w = B::size;
    std::size_t i = b;
    for (; i + w <= e; i += w) f(B::load_unaligned(in + i)).store_unaligned(out + i);
    if (i == e) return;
    alignas(A::alignment()) T tail[w] = {};
    for (std::size_t k = i; k < e; ++k) tail[k - i] = in[k];
    f(B::load_aligned(tail)).store_aligned(tail);
    for (std::size_t k = i; k < e; ++k) out[k] = tail[k - i];
}

/// out[i] = g[i] · d(y[i]) (acc false) or out[i] += g[i] · d(y[i]), i in [b, e). The tail goes through
/// one padded batch too, so no element depends on where the caller's range ends (a plane, a thread's
/// share). Files that include this are built with -ffp-contract=off: contracting g·d + out into an
/// FMA in one loop and not another changed the last bit.
template <class T, class D>
void scale_by_batches(const T* __restrict g, const T* __restrict y, T* __restrict out, std::size_t b, std::size_t e,
                      bool acc, D d)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    std::size_t i = b;
    for (; i + w <= e; i += w) {
        B v = B::load_unaligned(g + i) * d(B::load_unaligned(y + i));
        if (acc) v += B::load_unaligned(out + i);
        v.store_unaligned(out + i);
    }
    if (i == e) return;
    alignas(B::arch_type::alignment()) T tg[w] = {}, ty[w] = {}, to[w] = {};
    std::copy(g + i, g + e, tg);
    std::copy(y + i, y + e, ty);
    B v = B::load_aligned(tg) * d(B::load_aligned(ty));
    if (acc) {
        std::copy(out + i, out + e, to);
        v += B::load_aligned(to);
    }
    v.store_aligned(to);
    std::copy(to, to + (e - i), out + i);
}

/// σ(x) = 1/(1 + e^−x): e^−x = inf gives 0, e^−x = 0 gives 1 (no overflow at either end).
struct Sigmoid {
    template <class V>
    V operator()(V v) const { return V(1) / (V(1) + xsimd::exp(-v)); }
};
/// σ' as a function of y = σ(x): y(1 − y).
struct SigmoidSlope {
    template <class V>
    V operator()(V y) const { return y * (V(1) - y); }
};
struct Tanh {
    template <class V>
    V operator()(V v) const { return xsimd::tanh(v); }
};
/// tanh' as a function of y = tanh(x): 1 − y².
struct TanhSlope {
    template <class V>
    V operator()(V y) const { return V(1) - y * y; }
};

/// σ and tanh on [b, e) in AVX-512 batches (activation_avx512.cpp, built for AVX-512): call only
/// where widest_isa() is avx512. The exponential there takes about half the AVX2 time (document
/// 002's CNN: σ over 64×8×24×24, 105 → 59 µs alone).
namespace activation_avx512 {
void map(const float* in, float* out, std::size_t b, std::size_t e, Sigmoid);
void map(const double* in, double* out, std::size_t b, std::size_t e, Sigmoid);
void map(const float* in, float* out, std::size_t b, std::size_t e, Tanh);
void map(const double* in, double* out, std::size_t b, std::size_t e, Tanh);
}  // namespace activation_avx512

/// out = f(in) on [b, e), f = Sigmoid or Tanh: AVX-512 where the CPU has it, else the build's AVX2.
/// The op and the fused activation + pooling both compute through here, so they agree bit for bit.
template <class T, class F>
void activation_batches(const T* in, T* out, std::size_t b, std::size_t e, F f)
{
    if (widest_isa() == DirectIsa::avx512)
        activation_avx512::map(in, out, b, e, f);
    else
        map_batches(in, out, b, e, f);
}

/// max(x, 0); NaN stays NaN, as in PyTorch. Plain loops with restrict pointers: GCC vectorizes them
/// (inside a lambda they compiled to branches: LeNet's step took 0.5 ms longer).
template <class T>
void relu_range(const T* __restrict in, T* __restrict out, std::size_t b, std::size_t e)
{
    for (std::size_t i = b; i < e; ++i) out[i] = in[i] < T(0) ? T(0) : in[i];
}

/// max(a + b, 0) on [lo, hi): a residual block's end.
template <class T>
void add_relu_range(const T* __restrict a, const T* __restrict b, T* __restrict out, std::size_t lo, std::size_t hi)
{
    for (std::size_t i = lo; i < hi; ++i) {
        const T v = a[i] + b[i];
        out[i] = v < T(0) ? T(0) : v;
    }
}

/// out (+)= G ⊙ [X > 0] on [b, e) (acc false: out may hold garbage).
template <class T>
void relu_mask_range(const T* __restrict g, const T* __restrict x, T* __restrict out, std::size_t b, std::size_t e,
                     bool acc)
{
    if (acc)
        for (std::size_t i = b; i < e; ++i) out[i] += x[i] > T(0) ? g[i] : T(0);
    else
        for (std::size_t i = b; i < e; ++i) out[i] = x[i] > T(0) ? g[i] : T(0);
}

/// y = act(x) on [b, e), the values of the ops relu, sigmoid and tanh.
template <class T>
void activation_range(Activation act, const T* x, T* y, std::size_t b, std::size_t e)
{
    switch (act) {
        case Activation::identity: std::copy(x + b, x + e, y + b); return;
        case Activation::relu: relu_range(x, y, b, e); return;
        case Activation::sigmoid: activation_batches(x, y, b, e, Sigmoid{}); return;
        case Activation::tanh: activation_batches(x, y, b, e, Tanh{}); return;
    }
}

/// out (+)= G ⊙ act'(X) on [b, e): relu's mask from X, σ' and tanh' from Y = act(X). The same bits
/// as the ops' backward.
template <class T>
void activation_backward_range(Activation act, const T* g, const T* x, const T* y, T* out, std::size_t b, std::size_t e,
                               bool acc)
{
    switch (act) {
        case Activation::identity:
            if (acc)
                for (std::size_t i = b; i < e; ++i) out[i] += g[i];
            else
                std::copy(g + b, g + e, out + b);
            return;
        case Activation::relu: relu_mask_range(g, x, out, b, e, acc); return;
        case Activation::sigmoid: scale_by_batches(g, y, out, b, e, acc, SigmoidSlope{}); return;
        case Activation::tanh: scale_by_batches(g, y, out, b, e, acc, TanhSlope{}); return;
    }
}

}  // namespace xgrad::kernels

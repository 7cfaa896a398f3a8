#pragma once
// Kernels: softmax and log-softmax on raw buffers, numerically stable (shifted by the maximum).
// The one softmax of the build: the ops (softmax, log_softmax, cross_entropy), the hand-derived
// backprop of xgrad::reference and the benchmarks' hand-written steps all call these.
//
// Layout: `outer` blocks of `n` values along the normalized axis, `inner` apart (the
// (outer, n, inner) split of a shape around an axis); rows of a (B, C) matrix are (B, C, 1).
#include <cstddef>

namespace xgrad::kernels {

/// y = scale · softmax(x) over one row of `n` values `stride` apart (y += … when `acc`); y may be
/// null to compute only the normalizer. Returns log Σ_j exp(x_j) (the log-sum-exp).
/// The shift is the row's maximum; a row whose maximum is not finite (all −inf, an inf or a NaN)
/// is shifted by 0 so that the arithmetic reports it.
template <class T>
T softmax_row(const T* x, T* y, std::size_t n, std::size_t stride = 1, T scale = T(1), bool acc = false);

/// log Σ_j exp(x_j) over one row of `n` values `stride` apart, shifted by the maximum.
template <class T>
T log_sum_exp(const T* x, std::size_t n, std::size_t stride = 1);

/// y = scale · softmax(x) along the middle axis of (outer, n, inner); y += … when `acc`.
template <class T>
void softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner, T scale = T(1), bool acc = false);

/// y = log softmax(x) = x − log Σ exp(x) along the middle axis of (outer, n, inner).
template <class T>
void log_softmax(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner);

/// dx (+)= y ⊙ (g − Σ_axis g ⊙ y) for y = softmax(x): the softmax Jacobian applied to g along the
/// middle axis of (outer, n, inner). `acc` false overwrites dx; dx may be g (in place).
template <class T>
void softmax_backward(const T* y, const T* g, T* dx, std::size_t outer, std::size_t n, std::size_t inner, bool acc);

/// dx (+)= g − exp(y) ⊙ Σ_axis g for y = log softmax(x), along the middle axis of (outer, n, inner).
/// `acc` false overwrites dx; dx may be g (in place).
template <class T>
void log_softmax_backward(const T* y, const T* g, T* dx, std::size_t outer, std::size_t n, std::size_t inner,
                          bool acc);

}  // namespace xgrad::kernels

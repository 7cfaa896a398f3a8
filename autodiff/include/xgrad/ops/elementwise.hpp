#pragma once
// Elementwise ops. Binary ops broadcast like NumPy; their gradients are reduced back to each
// input's shape in one place (BackwardContext::accumulate).
#include <type_traits>

#include "xgrad/tape.hpp"

namespace xgrad {

/// C = A + B (broadcast).                 dA = G, dB = G (each summed to its input's shape)
template <class T> Var<T> add(const Var<T>& a, const Var<T>& b);
/// C = A − B (broadcast).                 dA = G, dB = −G
template <class T> Var<T> sub(const Var<T>& a, const Var<T>& b);
/// C = A ⊙ B (broadcast).                 dA = G ⊙ B, dB = G ⊙ A
template <class T> Var<T> mul(const Var<T>& a, const Var<T>& b);
/// C = A / B (broadcast).                 dA = G / B, dB = −G ⊙ A / B²
template <class T> Var<T> div(const Var<T>& a, const Var<T>& b);
/// Y = −X.                                dX = −G
template <class T> Var<T> neg(const Var<T>& x);
/// Y = X + s.                             dX = G
template <class T> Var<T> add_scalar(const Var<T>& x, T s);
/// Y = X · s.                             dX = s·G
template <class T> Var<T> mul_scalar(const Var<T>& x, T s);
/// Y = X / s.                             dX = G / s
template <class T> Var<T> div_scalar(const Var<T>& x, T s);
/// Y = s − X.                             dX = −G
template <class T> Var<T> rsub_scalar(T s, const Var<T>& x);
/// Y = s / X.                             dX = −s·G / X²
template <class T> Var<T> rdiv_scalar(T s, const Var<T>& x);
/// Y = X^p (scalar exponent).             dX = p·X^(p−1) ⊙ G
/// The exponent is not deduced (T comes from x alone), so any arithmetic value converts to T:
/// pow(v, 2) and, for a Var<float>, pow(v, 0.5) compile.
template <class T> Var<T> pow(const Var<T>& x, typename std::common_type<T>::type p);
/// Y = eˣ.                                dX = G ⊙ Y
template <class T> Var<T> exp(const Var<T>& x);
/// Y = ln X.                              dX = G / X
template <class T> Var<T> log(const Var<T>& x);
/// Y = √X.                                dX = G / (2Y)
template <class T> Var<T> sqrt(const Var<T>& x);
/// Y = |X|.                               dX = sign(X) ⊙ G (0 at X = 0)
template <class T> Var<T> abs(const Var<T>& x);
/// Y = X².                                dX = 2X ⊙ G
template <class T> Var<T> square(const Var<T>& x);
/// Y = sin X.                             dX = G ⊙ cos X
template <class T> Var<T> sin(const Var<T>& x);
/// Y = cos X.                             dX = −G ⊙ sin X
template <class T> Var<T> cos(const Var<T>& x);
/// Y = ln(1 + X), accurate near 0.        dX = G / (1 + X)
template <class T> Var<T> log1p(const Var<T>& x);
/// Y = eˣ − 1, accurate near 0.           dX = G ⊙ (Y + 1)
template <class T> Var<T> expm1(const Var<T>& x);
/// C = max(A, B) (broadcast).             dA = G ⊙ ([A > B] + ½[A = B]), dB = G − dA (ties split, as PyTorch)
template <class T> Var<T> maximum(const Var<T>& a, const Var<T>& b);
/// C = min(A, B) (broadcast).             dA = G ⊙ ([A < B] + ½[A = B]), dB = G − dA
template <class T> Var<T> minimum(const Var<T>& a, const Var<T>& b);
/// Y = min(max(X, lo), hi); lo > hi or a NaN bound throws std::invalid_argument.
///                                        dX = G ⊙ [lo ≤ X ≤ hi]  (as PyTorch's clamp)
template <class T>
Var<T> clamp(const Var<T>& x, typename std::common_type<T>::type lo, typename std::common_type<T>::type hi);
/// C = cond ? A : B elementwise, where cond is true at its nonzero entries (a mask on the tape, e.g.
/// tape.constant(mask)); cond, A and B broadcast together (NumPy rules). cond gets no gradient.
/// (A Var, not a bool tensor: with an xtensor argument, argument-dependent lookup would pick
/// xt::where.)                            dA = G ⊙ [cond ≠ 0], dB = G ⊙ [cond = 0] (each summed to its shape)
template <class T> Var<T> where(const Var<T>& cond, const Var<T>& a, const Var<T>& b);

}  // namespace xgrad

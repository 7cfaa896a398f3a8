#pragma once
// Reductions.
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

/// y = Σ X over all elements (0-d).                dX = g (broadcast)
template <class T> Var<T> sum(const Var<T>& x);
/// Y = Σ X over `axes` (negative axes count from the end).
///                                                 dX = G broadcast back over `axes`
template <class T> Var<T> sum(const Var<T>& x, const std::vector<int>& axes, bool keepdims = false);
/// y = mean of all elements (0-d).                 dX = g / N
template <class T> Var<T> mean(const Var<T>& x);
/// Y = mean over `axes`.                           dX = G / (Π sizes of axes), broadcast
template <class T> Var<T> mean(const Var<T>& x, const std::vector<int>& axes, bool keepdims = false);
/// Y = max along `axis`.   dX = G at the position of the (first) maximum, 0 elsewhere
template <class T> Var<T> max(const Var<T>& x, int axis, bool keepdims = false);
/// Y = log Σ exp X over `axes`, computed as m + log Σ exp(X − m) with m the (finite) max.
/// Composed of recorded ops, so it differentiates to any order.   dX = G ⊙ exp(X − Y) = G ⊙ softmax
template <class T> Var<T> logsumexp(const Var<T>& x, const std::vector<int>& axes, bool keepdims = false);
/// Y = Σ (X − mean)² / (N − correction) over `axes` (N elements each); N − correction <= 0 throws
/// std::invalid_argument. Composed of recorded ops.                dX = 2(X − mean) ⊙ G / (N − correction)
template <class T> Var<T> var(const Var<T>& x, const std::vector<int>& axes, int correction = 1, bool keepdims = false);
/// Y = √var(X, axes, correction) (torch::std).                     dX = (X − mean) ⊙ G / ((N − correction) Y)
template <class T> Var<T> std(const Var<T>& x, const std::vector<int>& axes, int correction = 1, bool keepdims = false);
/// Y = X summed down to `shape` (the adjoint of broadcasting: leading axes and axes where `shape`
/// has size 1 are summed). ShapeError if `shape` does not broadcast to X's.   dX = G broadcast
template <class T> Var<T> sum_to(const Var<T>& x, const Shape& shape);
/// Y = X broadcast to `shape` (NumPy rules).       dX = sum_to(G, X's shape)
template <class T> Var<T> broadcast_to(const Var<T>& x, const Shape& shape);

}  // namespace xgrad

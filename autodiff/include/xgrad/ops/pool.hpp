#pragma once
// 2-D pooling over NCHW tensors, no padding; windows that do not fit are dropped (floor).
#include "xgrad/activation_kind.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// Y[n,c,i,j] = max over the k×k window at (i·s, j·s).   dX = G routed to each window's (first) max
/// (recorded for double backward as a scatter-add of G to the maxima, whose VJP is a gather)
template <class T> Var<T> max_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride = 0);
/// Y[n,c,i,j] = mean over the k×k window at (i·s, j·s).  dX = G / k² spread over each window
/// (recorded as the internal op avg_pool2d_backward, whose VJP is avg_pool2d)
template <class T> Var<T> avg_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride = 0);
/// Y = avg_pool2d(act(X), k, s) as one op: relu(X) is made a plane at a time in cache, never stored
/// (σ(X) and tanh(X) are kept for the backward); the same values and gradients as the two ops, bit
/// for bit (identity: avg_pool2d itself).
///                                                  dX = act'(X) ⊙ (G / k² spread over each window)
/// (recorded: avg_pool2d_backward, then the activation's VJP as ops)
template <class T>
Var<T> activation_avg_pool2d(const Var<T>& x, Activation act, std::size_t kernel, std::size_t stride = 0);

}  // namespace xgrad

#pragma once
// 2-D pooling over NCHW tensors, no padding; windows that do not fit are dropped (floor).
#include "xgrad/tape.hpp"

namespace xgrad {

/// Y[n,c,i,j] = max over the k×k window at (i·s, j·s).   dX = G routed to each window's (first) max
/// (recorded for double backward as a scatter-add of G to the maxima, whose VJP is a gather)
template <class T> Var<T> max_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride = 0);
/// Y[n,c,i,j] = mean over the k×k window at (i·s, j·s).  dX = G / k² spread over each window
/// (recorded as the internal op avg_pool2d_backward, whose VJP is avg_pool2d)
template <class T> Var<T> avg_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride = 0);

}  // namespace xgrad

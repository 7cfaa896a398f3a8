#pragma once
// 2-D convolution (NCHW) by im2col + one GEMM over the whole batch.
#include "xgrad/tape.hpp"

namespace xgrad {

struct Conv2dOptions {
    std::size_t stride = 1;
    std::size_t padding = 0;  ///< zeros on every side
};

/// Y[n,o,i,j] = b[o] + Σ_{c,p,q} W[o,c,p,q] · X[n, c, i·s − pad + p, j·s − pad + q]
/// X (N,C,H,W), W (O,C,KH,KW), b (O) or none → Y (N,O,OH,OW), OH = ⌊(H + 2·pad − KH)/s⌋ + 1.
/// With cols = im2col(X) (C·KH·KW, N·OH·OW) and G as (O, N·OH·OW):
///   dW = G·colsᵀ,  dX = col2im(Wᵀ·G),  db = Σ_{n,i,j} G.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, Conv2dOptions options = {});
/// Without bias.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, Conv2dOptions options = {});

}  // namespace xgrad

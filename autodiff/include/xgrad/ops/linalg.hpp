#pragma once
// Matrix products through BLAS.
#include "xgrad/tape.hpp"

namespace xgrad {

/// C = A·B.  A (m,k)·B (k,n) → (m,n);  batched A (b,m,k)·B (b,k,n) → (b,m,n);
/// A (b,m,k)·B (k,n) → (b,m,n) (B shared); and, as torch.matmul for operands of rank ≥ 2, any
/// leading (batch) axes, broadcast: A (…a,m,k)·B (…b,k,n) → (broadcast(…a, …b), m, n), e.g.
/// (B,H,m,k)·(B,H,k,n), (1,m,k)·(B,k,n), (B,1,m,k)·(H,k,n).
/// dA = G·Bᵀ, dB = Aᵀ·G, each summed over the batch axes its operand was broadcast along. GEMMs use
/// transpose flags and write straight into the gradient buffers (beta = 1 to accumulate); the
/// broadcast forms are expand + reshape around the batched GEMM. Differentiable to any order:
/// the recorded VJPs are the same products (an internal matmul with transpose flags, "matmul_t").
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);

/// Y = X·Wᵀ + b, fused (one node, bias added by the GEMM): X (B,in), W (out,in) as PyTorch stores
/// it (read through the GEMM's transpose flag, not copied), b (out).
/// dX = G·W, dW = Gᵀ·X, db = Σ_rows G; recorded (double backward) as the same products
/// ("matmul_t") and sum_to.
template <class T> Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b);
/// Y = X·Wᵀ without a bias: X (B,in), W (out,in).
template <class T> Var<T> linear(const Var<T>& x, const Var<T>& w);

}  // namespace xgrad

#pragma once
// Matrix products through BLAS.
#include <type_traits>

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

/// C = α·op(A)·op(B), op(M) = Mᵀ when its flag is set, with no transposed copy (the GEMM's flags):
/// A, B (m,k)-style matrices, or batches A (b,·,·), B (b,·,·) of one size → (b,m,n); no broadcasting.
/// dA = α·G·op(B)ᵀ (transposed: α·op(B)·Gᵀ), dB = α·op(A)ᵀ·G (transposed: α·Gᵀ·op(A)); recorded as
/// the same op, so differentiable to any order. E.g. attention scores Q·Kᵀ/√E = matmul_t(Q, K, false, true, 1/√E).
template <class T> Var<T> matmul_t(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b,
                                   typename std::common_type<T>::type alpha = 1);

/// Y = X·Wᵀ + b, fused (one node, bias added by the GEMM): X (B,in), W (out,in) as PyTorch stores
/// it (read through the GEMM's transpose flag, not copied), b (out).
/// dX = G·W, dW = Gᵀ·X, db = Σ_rows G; recorded (double backward) as the same products
/// ("matmul_t") and sum_to.
template <class T> Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b);
/// Y = X·Wᵀ without a bias: X (B,in), W (out,in).
template <class T> Var<T> linear(const Var<T>& x, const Var<T>& w);

}  // namespace xgrad

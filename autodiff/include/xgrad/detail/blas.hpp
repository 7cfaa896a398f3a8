#pragma once
// Detail (not part of the API): row-major GEMM for float and double through CBLAS (OpenBLAS).
// Including it needs OpenBLAS's include directory (target xgrad::openblas).
#include <cblas.h>

#include <algorithm>
#include <cstddef>

namespace xgrad::detail {

/// C (m,n) = alpha · op(A) · op(B) + beta · C, row-major; op(X) = Xᵀ when the flag is set.
/// lda/ldb are the row strides of A and B as stored.
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {  // BLAS may leave C untouched; the product of empty matrices is zero.
        for (std::size_t i = 0; i < m; ++i) std::for_each(c + i * ldc, c + i * ldc + n, [beta](float& x) { x *= beta; });
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha, const double* a,
                 std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (std::size_t i = 0; i < m; ++i) std::for_each(c + i * ldc, c + i * ldc + n, [beta](double& x) { x *= beta; });
        return;
    }
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

}  // namespace xgrad::detail

#pragma once
// Detail (not part of the API): row-major GEMM for float and double through CBLAS (OpenBLAS).
// Including it needs the BLAS include directories (target xgrad::blas). Float GEMMs go to
// oneDNN's dnnl_sgemm when XGRAD_USE_DNNL is defined (row-major, same argument order).
#include <cblas.h>
#ifdef XGRAD_USE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

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
#ifdef XGRAD_USE_DNNL
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a, dnnl_dim_t(lda), b,
               dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc));
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
#endif
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

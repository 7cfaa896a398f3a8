#pragma once
// Kernel: row-major GEMM for float and double through CBLAS (OpenBLAS); float GEMMs go to oneDNN's
// dnnl_sgemm when XGRAD_USE_DNNL is defined (row-major, same argument order). Internal: reached
// through the build-tree target xgrad::kernels, which carries the BLAS include directories.
#include <cblas.h>
#ifdef XGRAD_USE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#include <omp.h>

#include "kernels/parallel.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace xgrad::kernels {

/// The cases BLAS must not see: an empty C, an empty product (k = 0: C = beta·C, where beta = 0
/// means "C is garbage", so it is zeroed, never multiplied: NaN·0 is NaN), and dimensions beyond
/// BLAS's int. Returns true when C is done.
template <class T>
bool gemm_trivial(std::size_t m, std::size_t n, std::size_t k, T beta, T* c, std::size_t ldc)
{
    constexpr std::size_t int_max = std::size_t(std::numeric_limits<int>::max());
    if (m > int_max || n > int_max || k > int_max || ldc > int_max)
        throw std::length_error("gemm: a dimension exceeds the BLAS limit of 2^31 - 1");
    if (m == 0 || n == 0) return true;
    if (k != 0) return false;
    for (std::size_t i = 0; i < m; ++i) {
        T* row = c + i * ldc;
        if (beta == T(0))
            std::fill(row, row + n, T(0));
        else
            std::for_each(row, row + n, [beta](T& x) { x *= beta; });
    }
    return true;
}

/// Float GEMMs of fewer multiply-adds (m·n·k) run on one thread: oneDNN splits even a 64×10×84
/// product over both threads, and loses. Measured on the 2-vCPU VM (bench_parallel gemm, 2 threads
/// / 1; docs/performance.md, "Threads"): with spinning workers 64×10×84 0.41–0.78, 64×10×128
/// 0.72–0.89, 64×84×120 (6.5·10^5) 1.26–1.47; with sleeping ones (OMP_WAIT_POLICY=PASSIVE)
/// 64×84×120 0.64, 64×128×256 (2^21) 0.85–1.06, 64×120×400 (3.1·10^6) 1.27. Double GEMMs need
/// none: OpenBLAS keeps products under 2.6·10^5 on one thread itself.
inline std::size_t gemm_parallel_threshold() { return std::size_t(1) << (omp_workers_sleep() ? 21 : 17); }

/// Limits OpenMP, which sizes oneDNN's team, to one thread on the calling thread while alive.
class OneThread {
public:
    explicit OneThread(bool on) : saved_(on ? omp_get_max_threads() : 1)
    {
        if (saved_ > 1) omp_set_num_threads(1);
    }
    ~OneThread()
    {
        if (saved_ > 1) omp_set_num_threads(saved_);
    }
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;

private:
    int saved_;
};

/// Whether float GEMMs go to dnnl_sgemm: in builds with oneDNN, unless the environment variable
/// XGRAD_SGEMM=openblas (read once; for comparing the two libraries) sends them to OpenBLAS.
inline bool sgemm_on_dnnl()
{
#ifdef XGRAD_USE_DNNL
    static const bool on = [] {
        const char* e = std::getenv("XGRAD_SGEMM");
        return !(e && std::strcmp(e, "openblas") == 0);
    }();
    return on;
#else
    return false;
#endif
}

/// C (m,n) = alpha · op(A) · op(B) + beta · C, row-major; op(X) = Xᵀ when the flag is set.
/// lda/ldb are the row strides of A and B as stored.
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc)
{
    if (gemm_trivial(m, n, k, beta, c, ldc)) return;
    const std::size_t threshold = gemm_parallel_threshold();
    const OneThread one(m * n < threshold && m * n * k < threshold);  // m·n first: no overflow
#ifdef XGRAD_USE_DNNL
    if (sgemm_on_dnnl()) {
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a,
                   dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc));
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha, const double* a,
                 std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc)
{
    if (gemm_trivial(m, n, k, beta, c, ldc)) return;
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

/// One GEMM's arguments, as gemm() takes them: C (m,n) = alpha · op(A) · op(B) + beta · C.
template <class T>
struct GemmArgs {
    bool ta, tb;
    std::size_t m, n, k;
    T alpha;
    const T* a;
    std::size_t lda;
    const T* b;
    std::size_t ldb;
    T beta;
    T* c;
    std::size_t ldc;
};

template <class T>
void gemm(const GemmArgs<T>& g)
{
    gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
}

/// Two GEMMs whose inputs do not depend on each other (a backward's dX and dW), x first. On exactly
/// two threads, float products of at least gemm_parallel_threshold() multiply-adds each, into C
/// ranges that do not overlap, run at once, one thread each: oneDNN's sgemm splits such products
/// worse than it runs them whole (bench_parallel gemm, "pair": 1.15× on 512³, 1.2–1.6× on the MLP's
/// and LeNet's dense layers; docs/performance.md). Otherwise one after the other: an input given
/// twice (matmul(x, x)) has both gradients in one buffer, written by x and added to by y. (More
/// threads would need nested teams; not measured, so not done.)
template <class T>
void gemm_pair(const GemmArgs<T>& x, const GemmArgs<T>& y)
{
    if constexpr (std::is_same_v<T, float>) {
        constexpr std::size_t int_max = std::size_t(std::numeric_limits<int>::max());
        const std::size_t threshold = gemm_parallel_threshold();
        auto big = [&](const GemmArgs<T>& g) {  // and nothing gemm() would throw for inside the region
            return g.m && g.n && g.k && g.m <= int_max && g.n <= int_max && g.k <= int_max && g.ldc <= int_max &&
                   g.m * g.n >= threshold / g.k + 1;  // m·n·k ≥ threshold without overflow
        };
        auto end = [](const GemmArgs<T>& g) { return g.c + (g.m - 1) * g.ldc + g.n; };  // past C's last element
        const bool apart = end(x) <= y.c || end(y) <= x.c;
        if (omp_get_max_threads() == 2 && !omp_in_parallel() && big(x) && big(y) && apart) {
            // inside the region oneDNN runs on the calling thread
#pragma omp parallel num_threads(2)
            gemm(omp_get_thread_num() == 0 ? x : y);
            return;
        }
    }
    gemm(x);
    gemm(y);
}

}  // namespace xgrad::kernels

#pragma once
// Kernel: row-major GEMM for float and double through CBLAS (OpenBLAS); float GEMMs go to oneDNN's
// dnnl_sgemm when XGRAD_USE_DNNL is defined (row-major, same argument order). Internal: reached
// through the build-tree target xgrad::kernels, which carries the BLAS include directories.
#include <cblas.h>
#ifdef XGRAD_USE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#include <omp.h>
#include <strings.h>

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

/// Float GEMMs of fewer multiply-adds (m·n·k) run on one thread: below it a fork/join costs more
/// than the second thread saves. Measured on the Zen 5 VM (bench_parallel gemm, 2 threads / 1;
/// docs/performance.md, "Threads"): with spinning workers no product below 2^21 gains more than
/// 1.1× and most lose (64×10×784 0.94, 10×784×64 0.66, 128×128×64 0.87), from 2^21 all gain
/// 1.3–1.5× split by hand (gemm_split); with sleeping ones (OMP_WAIT_POLICY=PASSIVE, about 20 µs to
/// wake a worker) 256×256×64 (2^22) still loses (0.92–0.98), 6×50176×25 (7.5·10^6) gains 1.31.
/// (The Xeon of the earlier measurements, a core half as fast, broke even at 2^17 and 2^21.)
/// Double GEMMs need none: OpenBLAS keeps products under 2.6·10^5 on one thread itself.
inline std::size_t gemm_parallel_threshold() { return std::size_t(1) << (omp_workers_sleep() ? 23 : 21); }

/// One float GEMM is split over two threads by hand from the same 2^21 multiply-adds (2^23 with
/// PASSIVE). It was 2^22 for a while: in the step, both halves read all of the operand they share,
/// which the previous op left in one core's cache (docs/performance.md, "Split GEMMs in the step").
/// Timed since step by step in one process, the two thresholds alternating in blocks of 20 steps
/// (2026-12-02, evening), 2^21 is the faster: lenet 666 → 654 µs, mlp_b64 212 → 206 µs at 2 threads
/// (it splits LeNet's 64×120×400 and the MLP's 64×128×256 forwards). Products from the threshold that
/// gemm_split() does not cut by hand (fewer than 64 rows and 128 columns, or on OpenBLAS) run on the
/// library's own threads.
inline std::size_t gemm_split_threshold() { return gemm_parallel_threshold(); }

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

/// Whether OpenBLAS runs one of its AVX-512 kernel families (SkylakeX, Cooperlake, SapphireRapids).
/// Not always where the CPU has AVX-512: OPENBLAS_CORETYPE=Haswell, set for every process on some
/// VMs, holds it to AVX2 (read once, after OpenBLAS's dispatch).
inline bool openblas_avx512()
{
    static const bool on = [] {
        const char* c = openblas_get_corename();
        // any case: builds without DYNAMIC_ARCH name their core in capitals ("SKYLAKEX")
        return c && (strcasecmp(c, "SkylakeX") == 0 || strcasecmp(c, "Cooperlake") == 0 ||
                     strcasecmp(c, "SapphireRapids") == 0);
    }();
    return on;
}

/// Products oneDNN's sgemm runs at half the speed of OpenBLAS's AVX-512 kernels or less: fewer than
/// 16 columns (one AVX-512 vector) with a transposed operand, i.e. a dense layer of few outputs,
/// forward (64×10×1152 NT 16.6 against 7.6 µs; 64×10×64 to 64×10×256 and 64×8×400, NT and TT,
/// 0.35–0.65×; 1 and 2 threads, Zen 5 VM, docs/performance.md). Without a transpose, or from 16
/// columns on, oneDNN is as fast or faster; and faster than OpenBLAS's AVX2 kernels (64×10×1152 NT:
/// 27 µs), so only with an AVX-512 family. Only with OpenBLAS's OpenMP build: the pthread build would
/// wake a second pool of threads.
inline bool narrow_for_dnnl(bool ta, bool tb, std::size_t n)
{
#ifdef XGRAD_BLAS_OPENMP
    return n < 16 && (ta || tb) && openblas_avx512();
#else
    (void)ta, (void)tb, (void)n;
    return false;
#endif
}

/// One float GEMM on the library chosen by sgemm_on_dnnl() (narrow_for_dnnl products on OpenBLAS),
/// with the threads OpenMP allows (OpenBLAS's OpenMP build reads them too).
inline void sgemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                  std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc)
{
#ifdef XGRAD_USE_DNNL
    if (sgemm_on_dnnl() && !narrow_for_dnnl(ta, tb, n)) {
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a,
                   dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc));
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

/// How a float GEMM on exactly two threads is split by hand, each half a one-thread sgemm: over
/// C's columns when each half has ≥ 64 of them (cut at a multiple of 16, whole cache lines), else
/// over its rows when each half has ≥ 32; otherwise not (none), and oneDNN splits it itself.
/// Columns first because in a training step op(B) is usually the weight matrix: each thread then
/// reads only its half of it, which stays in its core's cache from step to step. Measured in the
/// step (bench_xgrad tape, Zen 5, 2 threads): mlp_b64 0.29–0.31 ms columns first, 0.38–0.41 rows
/// first, 0.32–0.34 oneDNN's own split. Only oneDNN's sgemm runs on the calling thread inside a
/// parallel region; OpenBLAS's pthread build would start threads of its own, so it is not split.
enum class GemmSplit { none, rows, cols };
inline GemmSplit gemm_split(std::size_t m, std::size_t n)
{
    if (!sgemm_on_dnnl() || omp_get_max_threads() != 2 || omp_in_parallel()) return GemmSplit::none;
    if (n >= 128) return GemmSplit::cols;
    if (m >= 64) return GemmSplit::rows;
    return GemmSplit::none;
}

/// C (m,n) = alpha · op(A) · op(B) + beta · C, row-major; op(X) = Xᵀ when the flag is set.
/// lda/ldb are the row strides of A and B as stored.
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc)
{
    if (gemm_trivial(m, n, k, beta, c, ldc)) return;
    const std::size_t threshold = gemm_split_threshold();
    const bool small = m * n < threshold && m * n * k < threshold;  // m·n first: no overflow
    const GemmSplit split = small || narrow_for_dnnl(ta, tb, n) ? GemmSplit::none : gemm_split(m, n);
    if (split == GemmSplit::rows) {  // rows [0, h) and [h, m) of op(A) and C
        const std::size_t h = m / 2;
#pragma omp parallel num_threads(2)
        {
            const bool lo = omp_get_thread_num() == 0;
            const std::size_t r0 = lo ? 0 : h, r = lo ? h : m - h;
            sgemm(ta, tb, r, n, k, alpha, ta ? a + r0 : a + r0 * lda, lda, b, ldb, beta, c + r0 * ldc, ldc);
        }
        return;
    }
    if (split == GemmSplit::cols) {  // columns [0, h) and [h, n) of op(B) and C
        const std::size_t h = (n / 2) & ~std::size_t(15);
#pragma omp parallel num_threads(2)
        {
            const bool lo = omp_get_thread_num() == 0;
            const std::size_t c0 = lo ? 0 : h, w = lo ? h : n - h;
            sgemm(ta, tb, m, w, k, alpha, a, lda, tb ? b + c0 * ldb : b + c0, ldb, beta, c + c0, ldc);
        }
        return;
    }
    const OneThread one(small);
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
                   !narrow_for_dnnl(g.ta, g.tb, g.n) &&  // OpenBLAS's: not inside a parallel region
                   g.m * g.n > (threshold - 1) / g.k;  // m·n·k ≥ threshold without overflow
            // (from 2^21 on: the MLP's second layer, exactly 2^21, measured 4–8 % slower paired in one
            // VM's step, and 7 % faster in another's, its backward 48 → 25 µs: docs/performance.md)
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

// Workload `matmul` (../shared/benchmarks.md): C = A·B, loss = ΣC, backward (dA = G·Bᵀ, dB = Aᵀ·G),
// GFLOP/s = 6n³ / t, beside the plain cblas_sgemm rate measured in the same process.
#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

#include "timing.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;

namespace {

double sgemm_gflops(std::size_t n)
{
    // 64-byte aligned buffers, inputs U(−1,1); warm-up ≥ 2 calls and 0.3 s; then ≥ 5 calls and ≥ 1 s.
    auto alloc = [n] { return static_cast<float*>(std::aligned_alloc(64, n * n * sizeof(float))); };
    std::unique_ptr<float, decltype(&std::free)> a(alloc(), &std::free), b(alloc(), &std::free), c(alloc(), &std::free);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (std::size_t i = 0; i < n * n; ++i) a.get()[i] = d(rng), b.get()[i] = d(rng);
    const int N = int(n);
    auto call = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a.get(), N, b.get(), N, 0.0f, c.get(), N);
    };
    const bench::Stats s = bench::run([] {}, call, 2, 0.3, 5, 1.0);
    return 2.0 * double(n) * double(n) * double(n) / s.median / 1e9;
}

}  // namespace

int main(int argc, char** argv)
{
    const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    openblas_set_num_threads(threads);
    const double base = bench::peak_rss_mib();
    std::printf("| workload | threads | ms fwd+bwd | GFLOP/s (6n³/t) | plain sgemm GFLOP/s | ratio | peak RSS MiB (+workload) |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    for (std::size_t n : {512u, 1024u}) {
        std::mt19937 rng(7);
        std::normal_distribution<float> d(0, 1);
        Tensor<float> a0 = Tensor<float>::from_shape({n, n}), b0 = Tensor<float>::from_shape({n, n});
        for (auto& v : a0) v = d(rng);
        for (auto& v : b0) v = d(rng);
        Parameter<float> A(a0), B(b0);
        Tape<float> tape;
        auto setup = [&] {
            A.zero_grad();
            B.zero_grad();
        };
        auto rep = [&] {
            auto loss = sum(matmul(tape.param(A), tape.param(B)));
            tape.backward(loss);
            tape.clear();
        };
        const bench::Stats s = bench::run(setup, rep);
        const double gf = 6.0 * double(n) * double(n) * double(n) / s.median / 1e9;
        const double ceiling = sgemm_gflops(n);
        std::printf("| mm_%zu | %d | %.2f | %.1f | %.1f | %.2f | %.1f (+%.1f) |\n", n, threads, s.median * 1e3, gf,
                    ceiling, gf / ceiling, bench::peak_rss_mib(), bench::peak_rss_mib() - base);
    }
    return 0;
}

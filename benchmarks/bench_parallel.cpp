// Break-even sizes of the threading policy (docs/performance.md, "Threads"), median of repeated
// calls; not run by bench_run; OMP_WAIT_POLICY / GOMP_SPINCOUNT are whatever the environment says.
//   bench_parallel loops [reps]: the element loop kinds of the kernels (a pooling-like plane loop,
//     a row reduction, an im2col-like row copy) at 2^10 .. 2^22 elements, on one thread and
//     forced onto two (no threshold).
//   bench_parallel gemm [reps]: dnnl_sgemm on the workloads' shapes at 1 and 2 threads, and split
//     by hand over the rows (each thread a 1-thread sgemm on half the batch).
//   bench_parallel conv [reps]: the float convolution kernels on the workloads' layer shapes, per
//     pass (forward with bias; input gradient; weight and bias gradients), oneDNN's primitives
//     against the direct kernels (kernels/conv_direct), at 1 and 2 threads.
#include <omp.h>
#ifdef XGRAD_USE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#include <cstring>

#include "kernels/conv_direct.hpp"
#include "kernels/conv_dnnl.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

template <class F>
void loop(bool par, std::size_t n, F&& f)
{
    if (par) {
        const auto m = std::ptrdiff_t(n);
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t i = 0; i < m; ++i) f(std::size_t(i));
    } else {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
}

template <class F>
double median_us(int reps, F&& f)
{
    std::vector<double> t;
    for (int i = 0; i < reps / 4 + 2; ++i) f();  // warm-up: thread team, caches
    for (int i = 0; i < reps; ++i) {
        const auto a = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    return t[t.size() / 2];
}

}  // namespace

int gemm_main(int reps)
{
#ifdef XGRAD_USE_DNNL
    struct S {
        char ta, tb;
        int m, n, k;
    };
    const std::vector<S> shapes{{'N', 'T', 64, 256, 784},  {'N', 'N', 64, 784, 256}, {'T', 'N', 256, 784, 64},
                                {'N', 'T', 64, 128, 256},  {'N', 'T', 64, 10, 128},  {'N', 'N', 64, 128, 10},
                                {'N', 'T', 64, 120, 400},  {'N', 'T', 64, 84, 120},  {'N', 'T', 64, 10, 84},
                                {'N', 'N', 6, 50176, 25},  {'N', 'N', 16, 4096, 150}, {'N', 'T', 64, 10, 784},
                                {'T', 'N', 10, 784, 64},   {'N', 'N', 64, 256, 128},  {'T', 'N', 128, 256, 64},
                                {'N', 'N', 64, 120, 84},   {'T', 'N', 120, 400, 64},  {'N', 'N', 64, 64, 64},
                                {'N', 'T', 128, 128, 64},  {'N', 'T', 96, 96, 96},    {'N', 'T', 256, 64, 64},
                                {'N', 'T', 128, 128, 128}, {'N', 'T', 256, 256, 64},  {'N', 'T', 32, 512, 128},
                                {'N', 'N', 512, 512, 512}, {'N', 'N', 1024, 1024, 1024}};
    std::printf("%-18s %10s %10s %10s %10s %8s %8s %8s\n", "m x n x k", "1 thr us", "2 thr us", "rows/2 us",
                "cols/2 us", "speedup", "rows/2", "cols/2");
    for (const S& s : shapes) {
        const int lda = s.ta == 'N' ? s.k : s.m, ldb = s.tb == 'N' ? s.n : s.k;
        std::vector<float> a(std::size_t(s.m) * s.k, 0.5f), b(std::size_t(s.k) * s.n, 0.25f), c(std::size_t(s.m) * s.n);
        auto rows = [&](int m0, int m1) {
            const float* pa = s.ta == 'N' ? a.data() + std::size_t(m0) * lda : a.data() + m0;
            dnnl_sgemm(s.ta, s.tb, m1 - m0, s.n, s.k, 1.0f, pa, lda, b.data(), ldb, 0.0f, c.data() + std::size_t(m0) * s.n,
                       s.n);
        };
        auto cols = [&](int n0, int n1) {
            const float* pb = s.tb == 'N' ? b.data() + n0 : b.data() + std::size_t(n0) * ldb;
            dnnl_sgemm(s.ta, s.tb, s.m, n1 - n0, s.k, 1.0f, a.data(), lda, pb, ldb, 0.0f, c.data() + n0, s.n);
        };
        const int r = s.m >= 512 ? reps / 10 + 5 : reps;
        omp_set_num_threads(1);
        const double t1 = median_us(r, [&] { rows(0, s.m); });
        omp_set_num_threads(2);
        const double t2 = median_us(r, [&] { rows(0, s.m); });
        const double th = median_us(r, [&] {
#pragma omp parallel num_threads(2)
            {
                const int h = s.m / 2;  // inside a parallel region oneDNN runs on the calling thread
                if (omp_get_thread_num() == 0) rows(0, h); else rows(h, s.m);
            }
        });
        const double tc = median_us(r, [&] {
#pragma omp parallel num_threads(2)
            {
                const int h = s.n / 2;
                if (omp_get_thread_num() == 0) cols(0, h); else cols(h, s.n);
            }
        });
        char name[64];
        std::snprintf(name, sizeof name, "%dx%dx%d %c%c", s.m, s.n, s.k, s.ta, s.tb);
        std::printf("%-18s %10.1f %10.1f %10.1f %10.1f %8.2f %8.2f %8.2f\n", name, t1, t2, th, tc, t1 / t2, t1 / th,
                    t1 / tc);
    }
    // A backward's two products (dX = G·W, dW = Gᵀ·X): one after the other on 2 threads each, or at
    // once on one thread each.
    struct Pair {
        const char* name;
        S dx, dw;
    };
    const std::vector<Pair> pairs{{"MLP fc2", {'N', 'N', 64, 256, 128}, {'T', 'N', 128, 256, 64}},
                                  {"LeNet fc1", {'N', 'N', 64, 400, 120}, {'T', 'N', 120, 400, 64}},
                                  {"LeNet fc2", {'N', 'N', 64, 120, 84}, {'T', 'N', 84, 120, 64}},
                                  {"mm_512", {'N', 'T', 512, 512, 512}, {'T', 'N', 512, 512, 512}}};
    std::printf("\n%-10s %12s %12s %12s %8s\n", "pair", "1 thr us", "2 thr seq us", "2 at once us", "gain");
    for (const Pair& pr : pairs) {
        auto make = [](const S& s) {
            return std::function<void()>([s, a = std::vector<float>(std::size_t(s.m) * s.k, 0.5f),
                                          b = std::vector<float>(std::size_t(s.k) * s.n, 0.25f),
                                          c = std::vector<float>(std::size_t(s.m) * s.n)]() mutable {
                dnnl_sgemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), s.ta == 'N' ? s.k : s.m, b.data(),
                           s.tb == 'N' ? s.n : s.k, 0.0f, c.data(), s.n);
            });
        };
        auto f1 = make(pr.dx), f2 = make(pr.dw);
        const int r = pr.dx.m >= 512 ? reps / 10 + 5 : reps;
        omp_set_num_threads(1);
        const double t1 = median_us(r, [&] { f1(), f2(); });
        omp_set_num_threads(2);
        const double t2 = median_us(r, [&] { f1(), f2(); });
        const double tp = median_us(r, [&] {
#pragma omp parallel num_threads(2)
            {
                if (omp_get_thread_num() == 0) f1(); else f2();
            }
        });
        std::printf("%-10s %12.1f %12.1f %12.1f %8.2f\n", pr.name, t1, t2, tp, t2 / tp);
    }
    return 0;
#else
    (void)reps;
    std::printf("bench_parallel gemm: this build has no oneDNN\n");
    return 1;
#endif
}

int conv_main(int reps)
{
    using xgrad::kernels::DnnlConvShape;
    struct Layer {
        const char* name;
        DnnlConvShape s;
    };
    const std::vector<Layer> layers{{"lenet conv1", {64, 1, 28, 28, 6, 5, 5, 1, 2}},
                                    {"lenet conv2", {64, 6, 14, 14, 16, 5, 5, 1, 0}},
                                    {"cnn002 conv", {64, 1, 28, 28, 8, 5, 5, 1, 0}},
                                    {"resnet stem", {64, 1, 28, 28, 16, 3, 3, 1, 1}},
                                    {"c2 3x3", {64, 2, 28, 28, 16, 3, 3, 1, 1}},
                                    {"c3 5x5", {64, 3, 28, 28, 6, 5, 5, 1, 2}},
                                    {"resnet blk", {64, 16, 14, 14, 16, 3, 3, 1, 1}},
                                    {"c6 o32 5x5", {64, 6, 14, 14, 32, 5, 5, 1, 0}}};
    std::printf("%-12s %-6s %4s %10s %10s %8s %8s\n", "layer", "pass", "thr", "oneDNN us", "direct us", "GFLOP/s",
                "ratio");
    for (const Layer& l : layers) {
        const DnnlConvShape& s = l.s;
        const std::size_t nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.kh * s.kw, ny = s.n * s.o * s.oh() * s.ow();
        std::vector<float> x(nx, 0.5f), w(nw, 0.25f), b(s.o, 0.1f), gy(ny, 0.125f), y(ny), dx(nx), dw(nw), db(s.o);
        const double flop = 2.0 * double(ny) * double(s.c * s.kh * s.kw);
        for (int thr : {1, 2}) {
            omp_set_num_threads(thr);
            for (int pass = 0; pass < 3; ++pass) {
                auto run = [&](bool direct) {
                    const bool a = direct;  // any channel count: where the direct kernels would win
                    if (pass == 0) {
                        if (a) xgrad::kernels::direct_conv2d_forward(x.data(), w.data(), b.data(), s, y.data());
                        else xgrad::kernels::dnnl_conv2d_forward(x.data(), w.data(), b.data(), s, y.data());
                    } else {
                        float* pdx = pass == 1 ? dx.data() : nullptr;
                        float* pdw = pass == 2 ? dw.data() : nullptr;
                        float* pdb = pass == 2 ? db.data() : nullptr;
                        if (a) xgrad::kernels::direct_conv2d_backward(x.data(), w.data(), gy.data(), s, pdx, false, pdw, false, pdb, false);
                        else xgrad::kernels::dnnl_conv2d_backward(x.data(), w.data(), gy.data(), s, pdx, false, pdw, false, pdb, false);
                    }
                };
                const double td = median_us(reps, [&] { run(false); });
                const double tr = median_us(reps, [&] { run(true); });
                static const char* passes[] = {"fwd", "dx", "dw+db"};
                std::printf("%-12s %-6s %4d %10.1f %10.1f %8.1f %8.2f\n", l.name, passes[pass], thr, td, tr,
                            flop / tr * 1e-3, td / tr);
            }
        }
    }
    return 0;
}

int main(int argc, char** argv)
{
    const bool gemm = argc > 1 && std::strcmp(argv[1], "gemm") == 0;
    const bool conv = argc > 1 && std::strcmp(argv[1], "conv") == 0;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 401;
    if (omp_get_max_threads() < 2) omp_set_num_threads(2);
    if (gemm) return gemm_main(reps);
    if (conv) return conv_main(reps);
    std::printf("%-8s %10s %10s %10s %8s\n", "kind", "elements", "1 thr us", "2 thr us", "speedup");
    for (int e = 10; e <= 22; e += 1) {
        const std::size_t n = std::size_t(1) << e;
        std::vector<float> x(4 * n, 1.0f), y(4 * n);
        // pool: 2x2 average pooling forward over 28x28 planes (n elements read)
        const std::size_t plane = 28 * 28, planes = std::max<std::size_t>(1, n / plane);
        auto pool = [&](bool par) {
            loop(par, planes, [&](std::size_t pl) {
                for (std::size_t i = 0; i < 14; ++i) {
                    const float* r0 = x.data() + pl * plane + 2 * i * 28;
                    const float* r1 = r0 + 28;
                    float* out = y.data() + (pl * 14 + i) * 14;
                    for (std::size_t j = 0; j < 14; ++j)
                        out[j] = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * 0.25f;
                }
            });
        };
        // reduce: row sums of an (rows, 256) matrix
        const std::size_t cols = 256, rows = std::max<std::size_t>(1, n / cols);
        auto reduce = [&](bool par) {
            loop(par, rows, [&](std::size_t r) {
                float s = 0;
                const float* p = x.data() + r * cols;
                for (std::size_t j = 0; j < cols; ++j) s += p[j];
                y[r] = s;
            });
        };
        // im2col: 25 rows (a 5x5 kernel), each gathering n/25 values in rows of 24 from 28-wide planes
        const std::size_t k = 25, L = std::max<std::size_t>(24, n / k / 24 * 24);
        auto im2col = [&](bool par) {
            loop(par, k, [&](std::size_t r) {
                const std::size_t p = r / 5, q = r % 5;
                float* row = y.data() + r * L;
                for (std::size_t t = 0; t < L / 24; ++t) {
                    const float* src = x.data() + (t / 24) * plane + (t % 24 + p) * 28 + q;
                    std::copy(src, src + 24, row + t * 24);
                }
            });
        };
        struct Kind {
            const char* name;
            std::size_t work;
            std::function<void(bool)> f;
        };
        for (auto& [name, work, f] : std::vector<Kind>{{"pool", planes * plane, pool},
                                                       {"reduce", rows * cols, reduce},
                                                       {"im2col", k * L, im2col}}) {
            const double t1 = median_us(reps, [&] { f(false); });
            const double t2 = median_us(reps, [&] { f(true); });
            std::printf("%-8s %10zu %10.2f %10.2f %8.2f\n", name, work, t1, t2, t1 / t2);
        }
    }
}

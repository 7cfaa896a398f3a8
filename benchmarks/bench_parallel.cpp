// Break-even size of kernels::parallel_for (docs/performance.md, "Threads"): the element loop
// kinds of the kernels (a pooling-like plane loop, a row reduction, an im2col-like row copy) at
// sizes 2^10 .. 2^22 elements, each on one thread and forced onto two (no threshold), median of
// repeated calls. Not run by bench_run; `OMP_WAIT_POLICY` is whatever the environment says.
//   bench_parallel [reps]
#include <omp.h>

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

int main(int argc, char** argv)
{
    const int reps = argc > 1 ? std::atoi(argv[1]) : 401;
    if (omp_get_max_threads() < 2) omp_set_num_threads(2);
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

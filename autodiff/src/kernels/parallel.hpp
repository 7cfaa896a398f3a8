#pragma once
// Kernels: the one threading policy of the element loops. A loop goes to OpenMP threads only when
// it has enough work and more than one thread is allowed: libgomp allocates and frees a thread
// team for every parallel region that runs on one thread, so such a region is never entered (a
// training step on one thread then allocates nothing).
#include <strings.h>

#include <cstddef>
#include <cstdlib>

#include <omp.h>

namespace xgrad::kernels {

/// True when OMP_WAIT_POLICY=PASSIVE: idle OpenMP workers sleep, so waking them costs about 10 µs
/// instead of 1–2 µs, and the thresholds below rise. libgomp reads the policy once, at load, and so
/// does this.
inline bool omp_workers_sleep()
{
    static const bool passive = [] {
        const char* p = std::getenv("OMP_WAIT_POLICY");
        return p && strcasecmp(p, "passive") == 0;
    }();
    return passive;
}

/// Below this many elements touched a loop stays on one thread. Measured on the 2-vCPU VM with
/// benchmarks/bench_parallel (docs/performance.md, "Threads"): a 2-thread fork/join costs 1.3–2 µs
/// while idle workers spin (libgomp's default), about 10 µs when they sleep
/// (OMP_WAIT_POLICY=PASSIVE). Pooling, row reductions and im2col all gain ≥ 1.6× from 2^16
/// elements in the first case (break-even 2^13–2^15); sleeping workers need 2^18 for ≥ 1.15×.
inline std::size_t parallel_threshold() { return std::size_t(1) << (omp_workers_sleep() ? 18 : 16); }

/// f(i) for every i in [0, n): split statically over the threads when `work` (elements touched)
/// reaches parallel_threshold(), in order on the calling thread otherwise. Iterations must be
/// independent.
template <class F>
void parallel_for(std::size_t n, std::size_t work, F&& f)
{
    if (work >= parallel_threshold() && n > 1 && omp_get_max_threads() > 1) {
        const auto m = std::ptrdiff_t(n);
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t i = 0; i < m; ++i) f(std::size_t(i));
        return;
    }
    for (std::size_t i = 0; i < n; ++i) f(i);
}

/// What one element of σ or tanh costs in elements of a plain loop: a copy runs at about 0.03 ns an
/// element, tanh at 0.3 (AVX-512). Split over 2 threads tanh gains 1.57× from 2^13 elements, 1.14× at
/// 2^12, loses at 2^11 (best of 3000 calls, Zen 5 VM; docs/performance.md).
constexpr std::size_t exp_cost = 8;

/// f(begin, end) on contiguous ranges that cover [0, n) once, starting at multiples of 16: one per
/// thread when n elements of `cost` each (in plain-loop elements, e.g. exp_cost) reach
/// parallel_threshold(), else f(0, n) on the calling thread. For flat element loops (activations,
/// optimizer updates).
template <class F>
void parallel_ranges(std::size_t n, F&& f, std::size_t cost = 1)
{
    const std::size_t t = std::size_t(omp_get_max_threads());
    if (t < 2 || n < parallel_threshold() / cost || n < 32 * t) {
        f(std::size_t(0), n);
        return;
    }
    auto start = [&](std::size_t i) { return i == t ? n : (n * i / t) & ~std::size_t(15); };
    parallel_for(t, parallel_threshold(), [&](std::size_t i) { f(start(i), start(i + 1)); });
}

}  // namespace xgrad::kernels

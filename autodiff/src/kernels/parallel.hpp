#pragma once
// Kernels: the one threading policy of the element loops. A loop goes to OpenMP threads only when
// it has enough work and more than one thread is allowed: libgomp allocates and frees a thread
// team for every parallel region that runs on one thread, so such a region is never entered (a
// training step on one thread then allocates nothing).
#include <cstddef>

#include <omp.h>

namespace xgrad::kernels {

/// Below this many elements touched a loop stays on one thread (thread start-up would cost more).
inline constexpr std::size_t parallel_threshold = std::size_t(1) << 16;

/// f(i) for every i in [0, n): split statically over the threads when `work` (elements touched)
/// reaches parallel_threshold, in order on the calling thread otherwise. Iterations must be
/// independent.
template <class F>
void parallel_for(std::size_t n, std::size_t work, F&& f)
{
    if (work >= parallel_threshold && n > 1 && omp_get_max_threads() > 1) {
        const auto m = std::ptrdiff_t(n);
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t i = 0; i < m; ++i) f(std::size_t(i));
        return;
    }
    for (std::size_t i = 0; i < n; ++i) f(i);
}

}  // namespace xgrad::kernels

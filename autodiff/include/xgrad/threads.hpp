#pragma once
// Thread count of xgrad's numerical back ends, and the element-loop split for code outside the engine.
#include <cstddef>
#include <type_traits>

namespace xgrad {

/// Sets the threads used by BLAS (OpenBLAS) and by oneDNN / OpenMP kernels, process-wide; call it
/// before work starts. n must lie in [1, max_num_threads()], else std::invalid_argument (more
/// threads than CPUs can only be slower, and the back ends' pools have fixed limits).
///
/// On a machine shared with other jobs, run with OMP_WAIT_POLICY=PASSIVE in the environment: idle
/// OpenMP workers then sleep instead of spinning, and a 2-thread step no longer waits on a worker
/// the kernel has preempted for a spinning one (measured: LeNet 450 ms → 8 ms per step on 2 busy
/// vCPUs; docs/performance.md, "Threads"). libgomp reads it once, at load, so xgrad cannot set it.
void set_num_threads(int n);

/// The largest thread count set_num_threads accepts: the CPUs this process may run on (under
/// OMP_PROC_BIND / OMP_PLACES, the ones it had before OpenMP pinned the main thread).
int max_num_threads();

/// Name of the library behind float GEMMs, "oneDNN dnnl_sgemm" or "OpenBLAS cblas_sgemm": oneDNN in
/// builds with it, unless the environment variable XGRAD_SGEMM=openblas chose OpenBLAS.
const char* sgemm_backend();

/// OpenBLAS's kernel family (double GEMMs; float ones too without oneDNN), e.g. "SkylakeX". When
/// OpenBLAS does not know the CPU model (virtual machines) and OPENBLAS_CORETYPE is unset, xgrad
/// picks the family from the instruction set instead of OpenBLAS's generic fallback.
const char* blas_core();

namespace detail {
void parallel_ranges(std::size_t n, void (*fn)(void*, std::size_t, std::size_t), void* ctx);
}

/// f(begin, end) on contiguous ranges that cover [0, n) once: split over the threads of
/// set_num_threads when n reaches the size at which xgrad's own element loops gain from a second
/// thread (2^16, 2^18 with OMP_WAIT_POLICY=PASSIVE; docs/performance.md, "Threads"), else f(0, n)
/// on the calling thread. Ranges start at multiples of 16. For loops over parameters and optimizer
/// state (the optimizers use it); allocates nothing.
template <class F>
void parallel_ranges(std::size_t n, F&& f)
{
    detail::parallel_ranges(
        n, [](void* c, std::size_t b, std::size_t e) { (*static_cast<std::remove_reference_t<F>*>(c))(b, e); },
        const_cast<void*>(static_cast<const void*>(&f)));
}

/// How the loaded OpenBLAS runs its threads: "OpenMP" (Debian's libopenblas0-openmp, which the
/// build links when installed: one thread pool with oneDNN and xgrad's loops), "pthreads" (its own
/// pool), "sequential" or "unknown".
const char* blas_threading();

}  // namespace xgrad

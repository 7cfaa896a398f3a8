#pragma once
// Thread count of xgrad's numerical back ends.

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

/// How the loaded OpenBLAS runs its threads: "OpenMP" (Debian's libopenblas0-openmp, which the
/// build links when installed: one thread pool with oneDNN and xgrad's loops), "pthreads" (its own
/// pool), "sequential" or "unknown".
const char* blas_threading();

}  // namespace xgrad

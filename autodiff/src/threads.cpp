#include "xgrad/threads.hpp"

#include <fmt/core.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"

// OpenBLAS's dynamic dispatch (exported by Debian's builds; weak, so a build without it links).
extern "C" {
void gotoblas_dynamic_init() __attribute__((weak));
void gotoblas_dynamic_quit() __attribute__((weak));
int openblas_get_parallel() __attribute__((weak));
}

namespace xgrad {

namespace {

/// OpenBLAS picks its kernels by CPU model. On a virtual CPU whose model it does not know it
/// falls back to the generic Prescott kernels, 4–8× slower (measured: a 512³ sgemm at 47 ms
/// instead of 10 ms). If that happened and the user has not chosen a core with
/// OPENBLAS_CORETYPE, choose by instruction set and redo the dispatch, as OpenBLAS does at start.
bool fix_openblas_core()
{
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || std::getenv("OPENBLAS_CORETYPE")) return false;
    const char* core = openblas_get_corename();
    if (!core || std::strcmp(core, "Prescott") != 0) return false;
    __builtin_cpu_init();
    const char* better = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
    if (!better) return false;
    setenv("OPENBLAS_CORETYPE", better, 0);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    return true;
}
const bool openblas_core_fixed = fix_openblas_core();

}  // namespace

int max_num_threads()
{
    // With OMP_PROC_BIND set, libgomp pins the calling thread to one CPU at start, so its own
    // affinity says 1; omp_get_num_procs() then reports the CPUs the process had before pinning.
    if (std::getenv("OMP_PROC_BIND") || std::getenv("OMP_PLACES")) return std::max(1, omp_get_num_procs());
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, int(std::thread::hardware_concurrency()));
}

void set_num_threads(int n)
{
    const int hi = max_num_threads();
    if (n < 1 || n > hi)
        throw std::invalid_argument(fmt::format("set_num_threads: {} threads requested; allowed: 1 to {} (the CPUs "
                                                "this process may run on)", n, hi));
    openblas_set_num_threads(n);
    omp_set_num_threads(n);  // oneDNN's sgemm runs on OpenMP threads
}

const char* sgemm_backend()
{
    (void)openblas_core_fixed;
    return kernels::sgemm_on_dnnl() ? "oneDNN dnnl_sgemm" : "OpenBLAS cblas_sgemm";
}

const char* blas_core() { return openblas_get_corename(); }

void detail::parallel_ranges(std::size_t n, void (*fn)(void*, std::size_t, std::size_t), void* ctx)
{
    kernels::parallel_ranges(n, [&](std::size_t b, std::size_t e) { fn(ctx, b, e); });
}

const char* blas_threading()
{
    if (!openblas_get_parallel) return "unknown";
    switch (openblas_get_parallel()) {
        case 0: return "sequential";
        case 1: return "pthreads";
        case 2: return "OpenMP";
        default: return "unknown";
    }
}

}  // namespace xgrad

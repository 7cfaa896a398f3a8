#include "xgrad/threads.hpp"

#include <fmt/core.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "kernels/gemm.hpp"

namespace xgrad {

int max_num_threads()
{
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
#ifdef XGRAD_USE_DNNL
    return "oneDNN dnnl_sgemm";
#else
    return "OpenBLAS cblas_sgemm";
#endif
}

}  // namespace xgrad

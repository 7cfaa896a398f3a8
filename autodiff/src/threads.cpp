#include "xgrad/threads.hpp"

#include <omp.h>

#include "xgrad/detail/blas.hpp"

namespace xgrad {

void set_num_threads(int n)
{
    if (n <= 0) return;
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

#pragma once
// Thread count of xgrad's numerical back ends.

namespace xgrad {

/// Sets the threads used by BLAS (OpenBLAS's pool) and by oneDNN / OpenMP kernels, process-wide;
/// call it before work starts. n must lie in [1, max_num_threads()], else std::invalid_argument
/// (more threads than CPUs can only be slower, and the back ends' pools have fixed limits).
void set_num_threads(int n);

/// The largest thread count set_num_threads accepts: the CPUs this process may run on.
int max_num_threads();

/// Name of the library behind float GEMMs, e.g. "oneDNN dnnl_sgemm" or "OpenBLAS cblas_sgemm".
const char* sgemm_backend();

/// OpenBLAS's kernel family (double GEMMs; float ones too without oneDNN), e.g. "SkylakeX". When
/// OpenBLAS does not know the CPU model (virtual machines) and OPENBLAS_CORETYPE is unset, xgrad
/// picks the family from the instruction set instead of OpenBLAS's generic fallback.
const char* blas_core();

}  // namespace xgrad

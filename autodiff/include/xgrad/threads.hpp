#pragma once
// Thread count of xgrad's numerical back ends.

namespace xgrad {

/// Sets the threads used by BLAS (OpenBLAS's pool) and by oneDNN / OpenMP kernels. 0 leaves the
/// libraries' defaults. Call it before work starts; it is process-wide.
void set_num_threads(int n);

/// Name of the library behind float GEMMs, e.g. "oneDNN dnnl_sgemm" or "OpenBLAS cblas_sgemm".
const char* sgemm_backend();

}  // namespace xgrad

#pragma once
// Counts heap allocations (malloc family, which operator new and xsimd's aligned allocator both
// reach) while counting is on. The counting versions of malloc & co. are in alloc_count.cpp and
// interpose glibc's for the whole process.
#include <cstddef>

namespace xgrad::alloc {
/// Counting on or off (process-wide).
void count_allocations(bool on);
/// Allocations counted so far, from any code.
std::size_t allocations();
/// Attribution on or off (default off): with it on, every counted allocation walks its call stack
/// (backtrace + dladdr, microseconds each), so only untimed code should turn it on.
void attribute_allocations(bool on);
/// Of those counted with attribution on, the ones made inside the GEMM and convolution libraries
/// (libdnnl: dnnl_sgemm's packing buffer, the argument map of every primitive execution;
/// libopenblas: the buffer of its small-matrix kernels on some CPUs), none of which can be supplied
/// through their APIs, told apart by the call stack. allocations() − these = the allocations of
/// xgrad and everything else.
std::size_t blas_allocations();
}  // namespace xgrad::alloc

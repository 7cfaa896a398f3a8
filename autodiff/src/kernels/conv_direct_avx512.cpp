// The direct convolution kernels in AVX-512 vectors (16 floats). This file alone is compiled with
// -mavx512f/vl/bw/dq (autodiff/CMakeLists.txt); conv_direct.cpp calls it only on CPUs that have them.
#define XGRAD_DIRECT_ISA direct_avx512
#include "kernels/conv_direct_isa.ipp"

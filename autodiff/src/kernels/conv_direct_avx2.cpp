// The direct convolution kernels in AVX2 vectors (8 floats): the build's baseline (x86-64-v3).
#define XGRAD_DIRECT_ISA direct_avx2
#include "kernels/conv_direct_isa.ipp"

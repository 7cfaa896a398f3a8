#pragma once
// Kernels: which instruction set the runtime-dispatched kernels run (the direct convolutions, the
// σ and tanh forward). The build targets x86-64-v3 (AVX2); a few files are built a second time for
// AVX-512 and called only where the CPU has it.

namespace xgrad::kernels {

/// AVX2 (8 floats per vector), which every CPU xgrad builds for has, and AVX-512 (16 floats; F, VL,
/// BW and DQ).
enum class DirectIsa { avx2, avx512 };
bool direct_isa_supported(DirectIsa isa);
/// The widest instruction set this CPU runs, unless XGRAD_DIRECT_CONV_ISA=avx2 (read once) holds
/// the dispatched kernels to AVX2, for comparing the two.
DirectIsa widest_isa();

}  // namespace xgrad::kernels

// Kernels: σ and tanh in AVX-512 batches (kernels/activation.hpp). Built with the AVX-512 flags and
// called only where the CPU has them; listed last among the kernels, so that an inline function
// this file shares with another is linked from the other's (AVX2) copy.
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_ps(), which it then reports as maybe
// uninitialized once inlined (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "kernels/activation.hpp"

namespace xgrad::kernels::activation_avx512 {

void map(const float* in, float* out, std::size_t b, std::size_t e, Sigmoid f)
{
    map_batches<float, Sigmoid, xsimd::avx512bw>(in, out, b, e, f);
}
void map(const double* in, double* out, std::size_t b, std::size_t e, Sigmoid f)
{
    map_batches<double, Sigmoid, xsimd::avx512bw>(in, out, b, e, f);
}
void map(const float* in, float* out, std::size_t b, std::size_t e, Tanh f)
{
    map_batches<float, Tanh, xsimd::avx512bw>(in, out, b, e, f);
}
void map(const double* in, double* out, std::size_t b, std::size_t e, Tanh f)
{
    map_batches<double, Tanh, xsimd::avx512bw>(in, out, b, e, f);
}

}  // namespace xgrad::kernels::activation_avx512

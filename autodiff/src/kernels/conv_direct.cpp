// Kernels: direct float convolution for few input channels (see conv_direct.hpp): which passes
// and which instruction set, the scratch buffers of both instruction sets' kernels.
#include "kernels/conv_direct.hpp"

#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace xgrad::kernels {

// The entry points of conv_direct_isa.ipp, once per instruction set.
#define XGRAD_DIRECT_ENTRY_POINTS                                                                                  \
    void forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y);                 \
    void backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx, bool dx_acc,  \
                  float* dw, bool dw_acc, float* db, bool db_acc);
namespace direct_avx2 {
XGRAD_DIRECT_ENTRY_POINTS
}
namespace direct_avx512 {
XGRAD_DIRECT_ENTRY_POINTS
}
#undef XGRAD_DIRECT_ENTRY_POINTS

float* direct_scratch(DirectScratch slot, std::size_t n)
{
    thread_local std::array<std::vector<float>, 4> buffers;  // kept: no allocation once a shape has run
    auto& v = buffers[static_cast<std::size_t>(slot)];
    if (v.size() < n) v.resize(n);
    return v.data();
}

std::size_t* direct_offsets(std::size_t n)
{
    thread_local std::vector<std::size_t> offsets;
    if (offsets.size() < n) offsets.resize(n);
    return offsets.data();
}

bool direct_isa_supported(DirectIsa isa)
{
    if (isa == DirectIsa::avx2) return true;
    static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    return avx512;
}

DirectIsa widest_isa()
{
    static const DirectIsa isa = [] {
        const char* e = std::getenv("XGRAD_DIRECT_CONV_ISA");
        if (e && std::strcmp(e, "avx2") == 0) return DirectIsa::avx2;
        return direct_isa_supported(DirectIsa::avx512) ? DirectIsa::avx512 : DirectIsa::avx2;
    }();
    return isa;
}

bool input_grad_by_rows_shape(const DnnlConvShape& s) { return s.c >= 4 && s.c <= 8; }

DirectConvPasses direct_conv_passes(const DnnlConvShape& s)
{
    static const bool on = [] {
        const char* e = std::getenv("XGRAD_DIRECT_CONV");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    DirectConvPasses p;
    if (!on || s.channels_last || s.stride != 1 || s.dilation != 1 || s.groups != 1) return p;  // NCHW kernels
    const std::size_t taps = s.kh * s.kw;
    const bool wgrad_lanes = s.o >= 8 && s.c * taps >= 100;
    p.input_grad = s.c <= 8;
    p.forward = s.c <= 3 && taps >= 25;
    // flat dW up to 8 output channels: document 002's 1 → 8, 5 × 5 measured 1.03× oneDNN in AVX2 and
    // 1.76× in AVX-512 (188 against 330 µs at 1 thread, docs/performance.md)
    p.weight_grad = wgrad_lanes ? s.c <= 8 : (s.c <= 3 && taps >= 25 && s.o <= 8);
    return p;
}

void direct_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                           DirectIsa isa)
{
    if (isa == DirectIsa::avx512)
        direct_avx512::forward(x, w, b, s, y);
    else
        direct_avx2::forward(x, w, b, s, y);
}

void direct_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, DirectIsa isa)
{
    if (isa == DirectIsa::avx512)
        direct_avx512::backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc);
    else
        direct_avx2::backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc);
}

void direct_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y)
{
    direct_conv2d_forward(x, w, b, s, y, widest_isa());
}

void direct_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc)
{
    direct_conv2d_backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc, widest_isa());
}

std::size_t float_conv2d_kept_input_size(const DnnlConvShape& s, bool bias)
{
    return direct_conv_passes(s).forward || direct_conv_passes(s).weight_grad ? 0 : dnnl_conv2d_kept_input_size(s, bias);
}
void float_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y)
{
    float_conv2d_forward(x, w, b, s, y, nullptr);
}
void float_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                          float* x_kept)
{
    if (direct_conv_passes(s).forward)
        direct_conv2d_forward(x, w, b, s, y);
    else
        dnnl_conv2d_forward(x, w, b, s, y, x_kept);
}
void float_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                           bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc)
{
    float_conv2d_backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc, nullptr);
}
void float_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                           bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, const float* x_kept)
{
    const DirectConvPasses direct = direct_conv_passes(s);
    if (direct.input_grad == direct.weight_grad) {
        if (direct.input_grad)
            direct_conv2d_backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc);
        else
            dnnl_conv2d_backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc, x_kept);
        return;
    }
    // one pass each way (dx and dw may share a buffer only with both flags set: order-free)
    auto run = [&](bool on_direct, float* dx_, float* dw_, float* db_) {
        if (!dx_ && !dw_ && !db_) return;
        if (on_direct)
            direct_conv2d_backward(x, w, gy, s, dx_, dx_acc, dw_, dw_acc, db_, db_acc);
        else
            dnnl_conv2d_backward(x, w, gy, s, dx_, dx_acc, dw_, dw_acc, db_, db_acc, x_kept);
    };
    run(direct.input_grad, dx, nullptr, nullptr);
    run(direct.weight_grad, nullptr, dw, db);
}

}  // namespace xgrad::kernels

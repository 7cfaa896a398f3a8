// Kernels: direct float convolution for few input channels (see conv_direct.hpp).
#include "kernels/conv_direct.hpp"

#include <xsimd/xsimd.hpp>

#include <utility>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/parallel.hpp"

namespace xgrad::kernels {

namespace {

using B = xsimd::batch<float>;
constexpr std::size_t V = B::size;
// A block of outputs: OB channels × IB vectors of accumulators, IB input vectors and one
// broadcast weight: 3·3 + 3 + 1 = 13 of AVX2's 16 registers, 9 FMAs per 6 loads (2×4 measured
// 1.5× slower on LeNet's first layer).
constexpr std::size_t OB = 3, IB = 3, CHUNK = IB * V;
// Weight-gradient blocks: WB channels × TB taps of accumulators, WB gradient vectors, one input
// vector: 3·3 + 3 + 1 = 13 registers.
constexpr std::size_t WB = 3, TB = 3;

std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

/// The flat geometry of one image: planes of row length wp. Tap (a, q) of the kernel is offset
/// a·wp + q; output (i, j) is flat index i·wp + j of a plane of `lo` values.
struct Plan {
    std::size_t hp, wp, oh, ow, taps;
    std::size_t front;  // the largest tap offset, (KH − 1)·wp + KW − 1
    std::size_t lo;     // forward outputs per channel: OH·wp rounded up to whole blocks
    std::size_t lx;     // a padded input plane: every read of the forward and weight gradient
    std::size_t lj;     // input-gradient outputs per channel: Hp·wp rounded up to whole blocks
    std::size_t lq;     // a gradient plane with `front` zeros before it: every read of the input gradient
    const std::size_t* fwd_off;  // per tap: a·wp + q
    const std::size_t* bwd_off;  // per tap: front − a·wp − q

    explicit Plan(const DnnlConvShape& s)
        : hp(s.h + 2 * s.padding), wp(s.w + 2 * s.padding), oh(s.oh()), ow(s.ow()), taps(s.kh * s.kw),
          front((s.kh - 1) * wp + s.kw - 1), lo(round_up(oh * wp, CHUNK)), lx(round_up(lo + front, V)),
          lj(round_up(hp * wp, CHUNK)), lq(round_up(front + lj, V))
    {
        thread_local std::vector<std::size_t> offsets;  // the calling thread's, kept: no allocation once seen
        if (offsets.size() < 2 * taps) offsets.resize(2 * taps);
        for (std::size_t a = 0; a < s.kh; ++a)
            for (std::size_t q = 0; q < s.kw; ++q) {
                offsets[a * s.kw + q] = a * wp + q;
                offsets[taps + a * s.kw + q] = front - a * wp - q;
            }
        fwd_off = offsets.data();
        bwd_off = offsets.data() + taps;
    }
};

/// out[o][i] = bias[o] + Σ_c Σ_t wt[o·w_stride + c·taps + t] · in[c][i + off[t]] for NO output
/// channels and i in [0, len) (len a multiple of CHUNK). in: n_in planes `in_stride` apart; out:
/// NO planes `out_stride` apart.
template <std::size_t NO>
void conv_block(const float* in, std::size_t in_stride, std::size_t n_in, const std::size_t* off, std::size_t taps,
                const float* wt, std::size_t w_stride, const float* bias, float* out, std::size_t out_stride,
                std::size_t len)
{
    for (std::size_t i0 = 0; i0 < len; i0 += CHUNK) {
        B acc[NO][IB];
        for (std::size_t o = 0; o < NO; ++o)
            for (std::size_t k = 0; k < IB; ++k) acc[o][k] = B(bias ? bias[o] : 0.f);
        for (std::size_t c = 0; c < n_in; ++c) {
            const float* src = in + c * in_stride + i0;
            const float* wc = wt + c * taps;
            for (std::size_t t = 0; t < taps; ++t) {
                const float* p = src + off[t];
                B xv[IB];
                for (std::size_t k = 0; k < IB; ++k) xv[k] = B::load_unaligned(p + k * V);
                for (std::size_t o = 0; o < NO; ++o) {
                    const B wv(wc[o * w_stride + t]);
                    for (std::size_t k = 0; k < IB; ++k) acc[o][k] = xsimd::fma(wv, xv[k], acc[o][k]);
                }
            }
        }
        for (std::size_t o = 0; o < NO; ++o)
            for (std::size_t k = 0; k < IB; ++k) acc[o][k].store_unaligned(out + o * out_stride + i0 + k * V);
    }
}

/// All output channels of one image: out[o] for o in [0, n_out), in blocks of OB.
void conv_planes(const float* in, std::size_t in_stride, std::size_t n_in, const std::size_t* off, std::size_t taps,
                 const float* wt, const float* bias, std::size_t n_out, float* out, std::size_t out_stride,
                 std::size_t len)
{
    const std::size_t ws = n_in * taps;
    std::size_t o = 0;
    for (; o + OB <= n_out; o += OB)
        conv_block<OB>(in, in_stride, n_in, off, taps, wt + o * ws, ws, bias ? bias + o : nullptr, out + o * out_stride,
                       out_stride, len);
    for (; o < n_out; ++o)
        conv_block<1>(in, in_stride, n_in, off, taps, wt + o * ws, ws, bias ? bias + o : nullptr, out + o * out_stride,
                      out_stride, len);
}

/// Keeps v in a register: without this GCC folds the load into every FMA that reads it, and the
/// weight gradient's NO-fold reloads made it load-bound (1.7× slower on LeNet's first layer).
inline void in_register(B& v)
{
    auto& r = v.data;
    asm("" : "+x"(r));
}

/// dst[o·dst_stride + t] = Σ_i g[o][i] · x[i + off[t]] for NO gradient planes (`g_stride` apart)
/// and NT taps, i in [0, len) (len a multiple of V).
template <std::size_t NO, std::size_t NT>
void wgrad_block(const float* g, std::size_t g_stride, const float* x, const std::size_t* off, std::size_t len,
                 float* dst, std::size_t dst_stride)
{
    B acc[NO][NT];
    for (std::size_t o = 0; o < NO; ++o)
        for (std::size_t t = 0; t < NT; ++t) acc[o][t] = B(0.f);
    for (std::size_t i = 0; i < len; i += V) {
        B gv[NO];
        for (std::size_t o = 0; o < NO; ++o) {
            gv[o] = B::load_unaligned(g + o * g_stride + i);
            in_register(gv[o]);
        }
        for (std::size_t t = 0; t < NT; ++t) {
            B xv = B::load_unaligned(x + i + off[t]);
            in_register(xv);
            for (std::size_t o = 0; o < NO; ++o) acc[o][t] = xsimd::fma(gv[o], xv, acc[o][t]);
        }
    }
    for (std::size_t o = 0; o < NO; ++o)
        for (std::size_t t = 0; t < NT; ++t) dst[o * dst_stride + t] = xsimd::hadd(acc[o][t]);
}

using WgradFn = void (*)(const float*, std::size_t, const float*, const std::size_t*, std::size_t, float*, std::size_t);
template <std::size_t NO, std::size_t... NT>
constexpr WgradFn wgrad_fn(std::size_t nt, std::index_sequence<NT...>)
{
    constexpr WgradFn fns[] = {&wgrad_block<NO, NT + 1>...};
    return fns[nt - 1];
}

/// Per-thread scratch, kept between calls: no allocation once the shapes have been seen.
struct Scratch {
    std::vector<float> a, b;
};
Scratch& scratch()
{
    thread_local Scratch s;
    return s;
}
float* sized(std::vector<float>& v, std::size_t n)
{
    if (v.size() < n) v.resize(n);
    return v.data();
}

/// Copies image n's C channels of x (H, W) into zeroed padded planes of length lx.
void pad_input(const float* x, const DnnlConvShape& s, const Plan& p, float* xp)
{
    for (std::size_t c = 0; c < s.c; ++c) {
        float* plane = xp + c * p.lx;
        std::fill(plane, plane + p.lx, 0.f);
        const float* src = x + c * s.h * s.w;
        for (std::size_t r = 0; r < s.h; ++r)
            std::memcpy(plane + (r + s.padding) * p.wp + s.padding, src + r * s.w, s.w * sizeof(float));
    }
}

/// Copies image n's O gradient channels (OH, OW) into zeroed planes of length lq, each starting
/// `front` values in, with zeros in the wp − OW columns past every row.
void pad_grad(const float* gy, const DnnlConvShape& s, const Plan& p, float* gq)
{
    for (std::size_t o = 0; o < s.o; ++o) {
        float* plane = gq + o * p.lq;
        std::fill(plane, plane + p.lq, 0.f);
        const float* src = gy + o * p.oh * p.ow;
        for (std::size_t r = 0; r < p.oh; ++r)
            std::memcpy(plane + p.front + r * p.wp, src + r * p.ow, p.ow * sizeof(float));
    }
}

/// Σ x[i] for i in [0, n), n a multiple of V: four vector chains, so the adds do not wait on each other.
float plane_sum(const float* x, std::size_t n)
{
    B a[4] = {B(0.f), B(0.f), B(0.f), B(0.f)};
    std::size_t i = 0;
    for (; i + 4 * V <= n; i += 4 * V)
        for (std::size_t k = 0; k < 4; ++k) a[k] += B::load_unaligned(x + i + k * V);
    for (; i < n; i += V) a[0] += B::load_unaligned(x + i);
    return xsimd::hadd((a[0] + a[1]) + (a[2] + a[3]));
}

std::vector<float>& acc_buffer()
{
    thread_local std::vector<float> v;
    return v;
}

}  // namespace

DirectConvPasses direct_conv_passes(const DnnlConvShape& s)
{
    static const bool on = [] {
        const char* e = std::getenv("XGRAD_DIRECT_CONV");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    DirectConvPasses p;
    if (!on || s.stride != 1 || s.dilation != 1 || s.groups != 1 || s.c > 3) return p;
    p.input_grad = true;
    p.forward = p.weight_grad = s.kh * s.kw >= 25;
    return p;
}

void direct_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y)
{
    const Plan p(s);
    const std::size_t xs = s.c * s.h * s.w, ys = s.o * p.oh * p.ow;
    parallel_for(s.n, s.n * s.o * s.c * p.taps * p.lo, [&](std::size_t n) {
        Scratch& sc = scratch();
        float* xp = sized(sc.a, s.c * p.lx);
        float* yo = sized(sc.b, s.o * p.lo);
        pad_input(x + n * xs, s, p, xp);
        conv_planes(xp, p.lx, s.c, p.fwd_off, p.taps, w, b, s.o, yo, p.lo, p.lo);
        float* dst = y + n * ys;
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t r = 0; r < p.oh; ++r)
                std::memcpy(dst + (o * p.oh + r) * p.ow, yo + o * p.lo + r * p.wp, p.ow * sizeof(float));
    });
}

void direct_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc)
{
    const Plan p(s);
    const std::size_t xs = s.c * s.h * s.w, ys = s.o * p.oh * p.ow;
    const std::size_t nw = s.o * s.c * p.taps, part = nw + s.o;
    // Per-image partial sums of dw and db, added in image order below: the same bits on any thread count.
    float* parts = (dw || db) ? sized(acc_buffer(), s.n * part) : nullptr;
    // dX's weights: wt[c][o][t] = w[o][c][t], read at the offsets front − a·wp − q.
    thread_local std::vector<float> wt_buf;
    float* wt = nullptr;
    if (dx) {
        wt = sized(wt_buf, nw);
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t c = 0; c < s.c; ++c)
                std::copy_n(w + (o * s.c + c) * p.taps, p.taps, wt + (c * s.o + o) * p.taps);
    }
    parallel_for(s.n, s.n * s.o * s.c * p.taps * p.lo, [&](std::size_t n) {
        Scratch& sc = scratch();
        float* gq = sized(sc.a, s.o * p.lq + (dw ? s.c * p.lx : 0));
        pad_grad(gy + n * ys, s, p, gq);
        if (dw || db) {
            float* pw = parts + n * part;
            if (db)  // Σ over the padded plane: its zeros add nothing, and its length is whole vectors
                for (std::size_t o = 0; o < s.o; ++o) pw[nw + o] = plane_sum(gq + o * p.lq, p.lq);
            if (dw) {
                float* xp = gq + s.o * p.lq;
                pad_input(x + n * xs, s, p, xp);
                const float* g = gq + p.front;  // gp[o][i] = gq[o][front + i], zero past the outputs
                for (std::size_t c = 0; c < s.c; ++c)
                    for (std::size_t t0 = 0; t0 < p.taps; t0 += TB) {
                        const std::size_t nt = std::min(TB, p.taps - t0);
                        std::size_t o = 0;
                        for (; o + WB <= s.o; o += WB)
                            wgrad_fn<WB>(nt, std::make_index_sequence<TB>{})(g + o * p.lq, p.lq, xp + c * p.lx,
                                                                              p.fwd_off + t0, p.lo,
                                                                              pw + (o * s.c + c) * p.taps + t0,
                                                                              s.c * p.taps);
                        for (; o < s.o; ++o)
                            wgrad_fn<1>(nt, std::make_index_sequence<TB>{})(g + o * p.lq, p.lq, xp + c * p.lx,
                                                                             p.fwd_off + t0, p.lo,
                                                                             pw + (o * s.c + c) * p.taps + t0,
                                                                             s.c * p.taps);
                    }
            }
        }
        if (dx) {
            float* dxp = sized(sc.b, s.c * p.lj);
            conv_planes(gq, p.lq, s.o, p.bwd_off, p.taps, wt, nullptr, s.c, dxp, p.lj, p.lj);
            float* dst = dx + n * xs;
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t r = 0; r < s.h; ++r) {
                    const float* src = dxp + c * p.lj + (r + s.padding) * p.wp + s.padding;
                    float* d = dst + (c * s.h + r) * s.w;
                    if (dx_acc)
                        for (std::size_t j = 0; j < s.w; ++j) d[j] += src[j];
                    else
                        std::memcpy(d, src, s.w * sizeof(float));
                }
        }
    });
    if (!parts) return;
    // image order, whatever the threads did
    for (std::size_t n = 0; n < s.n; ++n) {
        const float* pw = parts + n * part;
        const bool first = n == 0;
        if (dw)
            for (std::size_t i = 0; i < nw; ++i) dw[i] = (first && !dw_acc) ? pw[i] : dw[i] + pw[i];
        if (db)
            for (std::size_t o = 0; o < s.o; ++o) db[o] = (first && !db_acc) ? pw[nw + o] : db[o] + pw[nw + o];
    }
}

}  // namespace xgrad::kernels

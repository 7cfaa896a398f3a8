// The direct convolution kernels, compiled once per instruction set: conv_direct_avx2.cpp and
// conv_direct_avx512.cpp include this file with XGRAD_DIRECT_ISA set to the namespace their entry
// points go in (the vector width V is xsimd's default batch of that file's flags). Everything else
// here is in an anonymous namespace: no inline function of it is shared between the two objects.
#ifndef XGRAD_DIRECT_ISA
#error "include from conv_direct_<isa>.cpp with XGRAD_DIRECT_ISA set"
#endif
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <utility>

#include "kernels/conv_direct.hpp"
#include "kernels/parallel.hpp"

namespace xgrad::kernels {

namespace {

using B = xsimd::batch<float>;
constexpr std::size_t V = B::size;
#if XSIMD_WITH_AVX512F
// AVX-512 has 32 vector registers: a block of outputs is 6 channels × 3 vectors of accumulators,
// 3 input vectors and one broadcast weight, 18 FMAs per 6 loads (LeNet's first layer in one block);
// a weight-gradient block 6 channels × 3 taps, 6 gradient vectors and one input, 18 FMAs per 9 loads.
constexpr std::size_t OB = 6, IB = 3, CHUNK = IB * V;
constexpr std::size_t WB = 6, TB = 3;
#else
// A block of outputs: OB channels × IB vectors of accumulators, IB input vectors and one
// broadcast weight: 3·3 + 3 + 1 = 13 of AVX2's 16 registers, 9 FMAs per 6 loads (2×4 measured
// 1.5× slower on LeNet's first layer).
constexpr std::size_t OB = 3, IB = 3, CHUNK = IB * V;
// Weight-gradient blocks: WB channels × TB taps of accumulators, WB gradient vectors, one input
// vector: 3·3 + 3 + 1 = 13 registers.
constexpr std::size_t WB = 3, TB = 3;
#endif
// Weight-gradient blocks by lanes: LT taps × up to 2 vectors of channels, the gradient vectors and
// one broadcast input. AVX2: 5·2 + 2 + 1 = 13 registers. AVX-512 holds 16 channels in one vector,
// so 13 taps keep 13 chains of FMAs going (5 left it latency-bound): 13·2 + 2 + 1 = 29 at most.
#if XSIMD_WITH_AVX512F
constexpr std::size_t LT = 13;
#else
constexpr std::size_t LT = 5;
#endif

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
        std::size_t* offsets = direct_offsets(2 * taps);
        for (std::size_t a = 0; a < s.kh; ++a)
            for (std::size_t q = 0; q < s.kw; ++q) {
                offsets[a * s.kw + q] = a * wp + q;
                offsets[taps + a * s.kw + q] = front - a * wp - q;
            }
        fwd_off = offsets;
        bwd_off = offsets + taps;
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

using ConvFn = void (*)(const float*, std::size_t, std::size_t, const std::size_t*, std::size_t, const float*,
                        std::size_t, const float*, float*, std::size_t, std::size_t);
template <std::size_t... NO>
constexpr ConvFn conv_fn(std::size_t no, std::index_sequence<NO...>)
{
    constexpr ConvFn fns[] = {&conv_block<NO + 1>...};
    return fns[no - 1];
}

/// All output channels of one image: out[o] for o in [0, n_out), in blocks of OB (the last one smaller).
void conv_planes(const float* in, std::size_t in_stride, std::size_t n_in, const std::size_t* off, std::size_t taps,
                 const float* wt, const float* bias, std::size_t n_out, float* out, std::size_t out_stride,
                 std::size_t len)
{
    const std::size_t ws = n_in * taps;
    for (std::size_t o = 0; o < n_out; o += OB)
        conv_fn(std::min(OB, n_out - o), std::make_index_sequence<OB>{})(in, in_stride, n_in, off, taps, wt + o * ws,
                                                                          ws, bias ? bias + o : nullptr,
                                                                          out + o * out_stride, out_stride, len);
}

/// Keeps v in a register: without this GCC folds the load into every FMA that reads it, so the
/// weight-gradient blocks loaded each vector NO or NT times (LeNet's first layer: 404 → 330 µs with it).
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
template <std::size_t NO>
WgradFn wgrad_fn_taps(std::size_t nt)
{
    return wgrad_fn<NO>(nt, std::make_index_sequence<TB>{});
}
/// The block of `no` channels (1..WB) and `nt` taps (1..TB).
template <std::size_t... NO>
WgradFn wgrad_fn(std::size_t no, std::size_t nt, std::index_sequence<NO...>)
{
    using Pick = WgradFn (*)(std::size_t);
    constexpr Pick picks[] = {&wgrad_fn_taps<NO + 1>...};
    return picks[no - 1](nt);
}

/// dst[t·dst_stride + o] = Σ_{i<oh, j<ow} gt[(i·ow + j)·gt_stride + o] · x[i·wp + j + off[t]] for
/// OV·V channels o (one vector lane each) and NT taps: the weight gradient with the output channels
/// in the vector lanes, so no lane is wasted on the plane's padding columns. Each position loads OV
/// gradient vectors and broadcasts NT inputs for NT·OV FMAs.
template <std::size_t OV, std::size_t NT>
void wgrad_lanes_block(const float* gt, std::size_t gt_stride, const float* x, const std::size_t* off, std::size_t oh,
                       std::size_t ow, std::size_t wp, float* dst, std::size_t dst_stride)
{
    B acc[NT][OV];
    for (std::size_t t = 0; t < NT; ++t)
        for (std::size_t k = 0; k < OV; ++k) acc[t][k] = B(0.f);
    for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
            const float* gr = gt + (i * ow + j) * gt_stride;
            B g[OV];
            for (std::size_t k = 0; k < OV; ++k) {
                g[k] = B::load_unaligned(gr + k * V);
                in_register(g[k]);
            }
            const float* xb = x + i * wp + j;
            for (std::size_t t = 0; t < NT; ++t) {
                const B xv(xb[off[t]]);
                for (std::size_t k = 0; k < OV; ++k) acc[t][k] = xsimd::fma(g[k], xv, acc[t][k]);
            }
        }
    for (std::size_t t = 0; t < NT; ++t)
        for (std::size_t k = 0; k < OV; ++k) acc[t][k].store_unaligned(dst + t * dst_stride + k * V);
}

using LanesFn = void (*)(const float*, std::size_t, const float*, const std::size_t*, std::size_t, std::size_t,
                         std::size_t, float*, std::size_t);
template <std::size_t OV, std::size_t... NT>
constexpr LanesFn lanes_fn(std::size_t nt, std::index_sequence<NT...>)
{
    constexpr LanesFn fns[] = {&wgrad_lanes_block<OV, NT + 1>...};
    return fns[nt - 1];
}

/// The weight gradient by output-channel lanes when the channels fill them and each transposed
/// gradient row feeds enough FMAs (C·KH·KW ≥ 100) to pay for its transposition; by flat planes
/// otherwise (bench_parallel conv, docs/performance.md).
bool weight_grad_by_lanes(const DnnlConvShape& s) { return s.o >= 8 && s.c * s.kh * s.kw >= 100; }

/// The input gradient with the input channels in the lanes of one vector (C ≤ V), scattered from
/// the outputs: for NP adjacent output positions of row i and NQ taps q0.. of kernel row a,
///   dxt[(i + a)·wp + j + q] += Σ_o gy[o][i][j] · wt[(a·KW + q)·O + o]   (a vector over c)
/// with NQ·NP accumulators, so only the positions that exist are summed (no zero padding read).
/// Each o broadcasts NP gradients and loads NQ weight vectors for NQ·NP FMAs.
template <std::size_t NP, std::size_t NQ>
void dgrad_lanes_block(const float* g, std::size_t g_stride, std::size_t n_out, const float* wt, float* dxt)
{
    B acc[NQ][NP];
    for (std::size_t q = 0; q < NQ; ++q)
        for (std::size_t k = 0; k < NP; ++k) acc[q][k] = B(0.f);
    for (std::size_t o = 0; o < n_out; ++o) {
        B gb[NP];
        for (std::size_t k = 0; k < NP; ++k) gb[k] = B(g[o * g_stride + k]);
        for (std::size_t q = 0; q < NQ; ++q) {
            B wv = B::load_unaligned(wt + (q * n_out + o) * V);
            in_register(wv);
            for (std::size_t k = 0; k < NP; ++k) acc[q][k] = xsimd::fma(gb[k], wv, acc[q][k]);
        }
    }
    // position k, tap q lands at dxt + (k + q)·V: overlapping vectors, added one after the other
    for (std::size_t q = 0; q < NQ; ++q)
        for (std::size_t k = 0; k < NP; ++k) {
            float* d = dxt + (k + q) * V;
            (B::load_unaligned(d) + acc[q][k]).store_unaligned(d);
        }
}

using DgradFn = void (*)(const float*, std::size_t, std::size_t, const float*, float*);
template <std::size_t NP, std::size_t... NQ>
constexpr DgradFn dgrad_fn(std::size_t nq, std::index_sequence<NQ...>)
{
    constexpr DgradFn fns[] = {&dgrad_lanes_block<NP, NQ + 1>...};
    return fns[nq - 1];
}

/// The input gradient with dX's rows in the vector lanes, gathered from the gradient rows: for NY
/// adjacent rows y0.. and V adjacent columns x0..,
///   dx[c][y][x] = Σ_o Σ_i Σ_q w[o][c][y + P − i][q] · gy[o][i][x + P − q]
/// over the gradient rows i that reach one of the NY rows (no zero row is read). The gradient rows
/// are stored with KW − 1 zeros before them and zeros after (gr, rows row_len apart), so each shift
/// q is one unaligned load. The weights wr[o][a + NYMAX − 1][q][c] have NYMAX − 1 zero kernel rows
/// on either side, so a gradient row that reaches only some of the NY rows needs no branch: each
/// (o, i, q) loads one vector and broadcasts NY·NC weights for as many FMAs. NYMAX = 2: 2·8
/// accumulators at most, one gradient vector.
/// NB images at once (gradient rows g_img apart, dX d_img apart): each broadcast weight feeds NB·NY
/// FMAs. LeNet's second layer (bench: dX alone, both builds in one process): NB = 1, NY = 2 (12
/// accumulators) 355 µs; NB = 2, NY = 1 353 µs; NB = 4, NY = 1 326 µs; NB = 2, NY = 2 (24
/// accumulators) 298 µs: the gradient loads, unaligned by the shift q, cost about what three
/// broadcasts do, and the zero kernel rows of NY = 2 less than either.
constexpr std::size_t NYMAX = 2;
/// Images per input-gradient call by rows: two while 2·NYMAX·C accumulators fit in 24 of the 32
/// registers (C ≤ 6).
constexpr std::size_t dgrad_rows_images(std::size_t c) { return c <= 6 ? 2 : 1; }
template <std::size_t NC, std::size_t NY, std::size_t NB>
void dgrad_rows_block(const float* gr, std::size_t o_stride, std::size_t row_len, std::size_t n_out, std::size_t i0,
                      std::size_t i1, std::size_t y0p, std::size_t ka, std::size_t kw, const float* wr, float* dst,
                      std::size_t dst_row, std::size_t dst_stride, std::size_t g_img, std::size_t d_img)
{

    B acc[NB][NY][NC];
    for (std::size_t b = 0; b < NB; ++b)
        for (std::size_t r = 0; r < NY; ++r)
            for (std::size_t c = 0; c < NC; ++c) acc[b][r][c] = B(0.f);
    for (std::size_t o = 0; o < n_out; ++o)
        for (std::size_t i = i0; i < i1; ++i) {
            const float* row = gr + o * o_stride + i * row_len;
            // kernel row of dX row y0 + r: y0p + r − i, stored NYMAX − 1 rows further
            const float* wi = wr + (o * ka + (y0p + NYMAX - 1 - i)) * kw * NC;
            auto tap = [&](std::size_t q) {
                B g[NB];
                for (std::size_t b = 0; b < NB; ++b) {
                    g[b] = B::load_unaligned(row + b * g_img - q);
                    in_register(g[b]);
                }
                for (std::size_t r = 0; r < NY; ++r) {
                    const float* wa = wi + (r * kw + q) * NC;
                    for (std::size_t c = 0; c < NC; ++c) {
                        const B wb(wa[c]);
                        for (std::size_t b = 0; b < NB; ++b) acc[b][r][c] = xsimd::fma(wb, g[b], acc[b][r][c]);
                    }
                }
            };
            if (kw == 5) {  // unrolled: a loop of 5 trips costs a mispredicted exit per gradient row
                tap(0), tap(1), tap(2), tap(3), tap(4);
            } else if (kw == 3) {
                tap(0), tap(1), tap(2);
            } else {
                for (std::size_t q = 0; q < kw; ++q) tap(q);
            }
        }
    for (std::size_t b = 0; b < NB; ++b)
        for (std::size_t r = 0; r < NY; ++r)
            for (std::size_t c = 0; c < NC; ++c)
                acc[b][r][c].store_unaligned(dst + b * d_img + c * dst_stride + r * dst_row);
}

using DgradRowsFn = void (*)(const float*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                             std::size_t, std::size_t, std::size_t, const float*, float*, std::size_t, std::size_t,
                             std::size_t, std::size_t);
template <std::size_t NY, std::size_t NB, std::size_t... NC>
constexpr DgradRowsFn dgrad_rows_fn(std::size_t nc, std::index_sequence<NC...>)
{
    constexpr DgradRowsFn fns[] = {&dgrad_rows_block<NC + 4, NY, NB>...};
    return fns[nc - 4];
}

/// The input gradient by rows where the rows fill AVX-512's lanes better than the channels do
/// (input_grad_by_rows_shape: 4–8 channels; bench_parallel conv, docs/performance.md).
bool input_grad_by_rows(const DnnlConvShape& s) { return V >= 16 && input_grad_by_rows_shape(s); }

/// The input gradient by input-channel lanes for 4 to V input channels; by flat planes (a
/// correlation over the zero-padded gradient) for fewer (bench_parallel conv, docs/performance.md).
bool input_grad_by_lanes(const DnnlConvShape& s) { return s.c > 3 && s.c <= V && !input_grad_by_rows(s); }

/// src[0, n), n < V, in a vector zero past n; nothing past n is read. AVX-512 masks the lanes;
/// AVX2's masked moves are slow on AMD (microcoded stores), so it goes value by value.
inline B load_part(const float* src, std::size_t n)
{
#if XSIMD_WITH_AVX512F
    return B(_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), src));
#else
    alignas(32) float t[V] = {};
    for (std::size_t j = 0; j < n; ++j) t[j] = src[j];
    return B::load_aligned(t);
#endif
}

/// dst[j] = v[j] for j < n, n < V; nothing past n is written.
inline void store_part(float* dst, const B& v, std::size_t n)
{
#if XSIMD_WITH_AVX512F
    _mm512_mask_storeu_ps(dst, __mmask16((1u << n) - 1), v);
#else
    alignas(32) float t[V];
    v.store_aligned(t);
    for (std::size_t j = 0; j < n; ++j) dst[j] = t[j];
#endif
}

/// dst[j] = src[j] for j < n: the rows here are 5–40 values, where a memcpy call costs more than
/// the copy (3 % of LeNet's step), and a scalar tail of up to V − 1 values as much again.
inline void copy_row(float* dst, const float* src, std::size_t n)
{
    std::size_t j = 0;
    for (; j + V <= n; j += V) B::load_unaligned(src + j).store_unaligned(dst + j);
    if (j < n) store_part(dst + j, load_part(src + j, n - j), n - j);
}

/// dst[j] = src[j] for j < n and 0 for n ≤ j < m: a row and the zeros up to the next row.
inline void copy_row_zero_tail(float* dst, const float* src, std::size_t n, std::size_t m)
{
    std::size_t j = 0;
    for (; j + V <= n; j += V) B::load_unaligned(src + j).store_unaligned(dst + j);
    if (j < n) {
        const B v = load_part(src + j, n - j);
        if (j + V > m) return store_part(dst + j, v, m - j);
        v.store_unaligned(dst + j);
        j += V;
    }
    for (; j + V <= m; j += V) B(0.f).store_unaligned(dst + j);
    if (j < m) store_part(dst + j, B(0.f), m - j);
}

/// Copies `planes` planes of rows × cols values into planes of `len` values, row r starting at
/// first + r·wp (cols ≤ wp), zeros everywhere else: each position written once (zeroing the whole
/// plane first, then copying, wrote most of it twice).
void to_padded_planes(const float* src, std::size_t planes, std::size_t rows, std::size_t cols, std::size_t len,
                      std::size_t first, std::size_t wp, float* dst)
{
    for (std::size_t c = 0; c < planes; ++c) {
        float* plane = dst + c * len;
        const float* in = src + c * rows * cols;
        copy_row_zero_tail(plane, nullptr, 0, first);
        for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t at = first + r * wp;
            copy_row_zero_tail(plane + at, in + r * cols, cols, r + 1 < rows ? wp : len - at);
        }
    }
}

#if XSIMD_WITH_AVX512F
// GCC 12's AVX-512 shuffles pass _mm512_undefined_ps() as their unused merge source, which it then
// reports as maybe uninitialized (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// r[i] = row i of a 16 × 16 block; afterwards r[j] = its column j (unpacks, then 4- and 8-lane
/// shuffles).
inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xdd);
        t[8 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xdd);
    }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// gt[q][o] = g[o][q] for `channels` planes of npos values, rows of op values (op a multiple of V,
/// zero past the channels). AVX-512 transposes 16 × 16 blocks in registers; element by element
/// it was 4 % of LeNet's step, and a gather per row no faster.
void to_position_rows(const float* g, std::size_t channels, std::size_t npos, std::size_t op, float* gt)
{
#if XSIMD_WITH_AVX512F
    for (std::size_t o0 = 0; o0 < op; o0 += V) {
        const std::size_t nc = o0 < channels ? std::min(V, channels - o0) : 0;
        for (std::size_t q0 = 0; q0 < npos; q0 += V) {
            const std::size_t nq = std::min(V, npos - q0);
            const __mmask16 m = __mmask16((1u << nq) - 1);
            __m512 r[16];
            for (std::size_t i = 0; i < V; ++i)
                r[i] = i < nc ? _mm512_maskz_loadu_ps(m, g + (o0 + i) * npos + q0) : _mm512_setzero_ps();
            transpose16(r);
            for (std::size_t j = 0; j < nq; ++j) _mm512_storeu_ps(gt + (q0 + j) * op + o0, r[j]);
        }
    }
#else
    for (std::size_t q = 0; q < npos; ++q) {
        float* row = gt + q * op;
        for (std::size_t o = 0; o < channels; ++o) row[o] = g[o * npos + q];
        std::fill(row + channels, row + op, 0.f);
    }
#endif
}

/// Image n's C channels of x (H, W) in zero-padded planes of length lx.
void pad_input(const float* x, const DnnlConvShape& s, const Plan& p, float* xp)
{
    to_padded_planes(x, s.c, s.h, s.w, p.lx, s.padding * p.wp + s.padding, p.wp, xp);
}

/// Image n's O gradient channels (OH, OW) in zeroed planes of length lq, each starting `front`
/// values in, with zeros in the wp − OW columns past every row.
void pad_grad(const float* gy, const DnnlConvShape& s, const Plan& p, float* gq)
{
    to_padded_planes(gy, s.o, p.oh, p.ow, p.lq, p.front, p.wp, gq);
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

}  // namespace

namespace XGRAD_DIRECT_ISA {

void forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y)
{
    const Plan p(s);
    const std::size_t xs = s.c * s.h * s.w, ys = s.o * p.oh * p.ow;
    parallel_for(s.n, s.n * s.o * s.c * p.taps * p.lo, [&](std::size_t n) {
        float* xp = direct_scratch(DirectScratch::image_a, s.c * p.lx);
        float* yo = direct_scratch(DirectScratch::image_b, s.o * p.lo);
        pad_input(x + n * xs, s, p, xp);
        conv_planes(xp, p.lx, s.c, p.fwd_off, p.taps, w, b, s.o, yo, p.lo, p.lo);
        float* dst = y + n * ys;
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t r = 0; r < p.oh; ++r)
                copy_row(dst + (o * p.oh + r) * p.ow, yo + o * p.lo + r * p.wp, p.ow);
    });
}

void backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                            bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc)
{
    const Plan p(s);
    const std::size_t xs = s.c * s.h * s.w, ys = s.o * p.oh * p.ow, npos = p.oh * p.ow;
    const std::size_t nw = s.o * s.c * p.taps;
    // dW by lanes: per image [C][taps][op] + db [op] (op: the channels rounded up to whole vectors);
    // by planes: [O][C][taps] + db [O], dw's own order.
    const bool lanes = dw && weight_grad_by_lanes(s);
    const std::size_t op = round_up(s.o, V);
    const std::size_t part = lanes ? (s.c * p.taps + 1) * op : nw + s.o;
    // Per-image partial sums of dw and db, added in image order below: the same bits on any thread count.
    float* parts = (dw || db) ? direct_scratch(DirectScratch::partials, (s.n + 1) * part) : nullptr;
    // dX's weights: wt[c][o][t] = w[o][c][t], read at the offsets front − a·wp − q.
    float* wt = nullptr;
    if (dx && !input_grad_by_lanes(s) && !input_grad_by_rows(s)) {
        wt = direct_scratch(DirectScratch::weights, nw);
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t c = 0; c < s.c; ++c)
                std::copy_n(w + (o * s.c + c) * p.taps, p.taps, wt + (c * s.o + o) * p.taps);
    }
    const bool dx_rows = dx && input_grad_by_rows(s);
    const std::size_t ka = s.kh + 2 * (NYMAX - 1);
    if (dx_rows) {  // wr[o][a + NYMAX − 1][q][c] = w[o][c][a][q], zero kernel rows around
        wt = direct_scratch(DirectScratch::weights, s.o * ka * s.kw * s.c);
        std::fill(wt, wt + s.o * ka * s.kw * s.c, 0.f);
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t t = 0; t < p.taps; ++t)
                    wt[((o * ka + NYMAX - 1) * s.kw + t) * s.c + c] = w[(o * s.c + c) * p.taps + t];
    }
    // dX by rows: gradient rows of row_len values, KW − 1 zeros first; dX rows of xw (whole vectors)
    const std::size_t xw = round_up(s.w, V), row_len = round_up(xw + s.padding + s.kw - 1, V);
    const bool dx_lanes = dx && input_grad_by_lanes(s);
    if (dx_lanes) {  // wt[t][o][c] = w[o][c][t], the lanes past C zero
        wt = direct_scratch(DirectScratch::weights, p.taps * s.o * V);
        std::fill(wt, wt + p.taps * s.o * V, 0.f);
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t t = 0; t < p.taps; ++t) wt[(t * s.o + o) * V + c] = w[(o * s.c + c) * p.taps + t];
    }
    // dX by rows of images n0 .. n0 + nb − 1 (nb ≤ 2), two rows at a time, the nb images in each
    // kernel call.
    auto dx_by_rows = [&](std::size_t n0, std::size_t nb) {
        const std::size_t g_img = s.o * p.oh * row_len, d_img = s.c * s.h * xw;
        float* gr = direct_scratch(DirectScratch::image_b, nb * (g_img + d_img));
        float* dxr = gr + nb * g_img;
        for (std::size_t b = 0; b < nb; ++b)
            to_padded_planes(gy + (n0 + b) * ys, s.o, p.oh, p.ow, p.oh * row_len, s.kw - 1, row_len, gr + b * g_img);
        for (std::size_t y = 0; y < s.h; y += NYMAX) {
            const std::size_t ny = std::min(NYMAX, s.h - y), yp = y + s.padding;
            // gradient rows i reaching dX rows y .. y + ny − 1: yp − KH < i ≤ yp + ny − 1, i < OH
            const std::size_t i0 = yp + 1 > s.kh ? yp + 1 - s.kh : 0, i1 = std::min(p.oh, yp + ny);
            const auto seq = std::make_index_sequence<5>{};
            const DgradRowsFn fn = nb == 2 ? (ny == 2 ? dgrad_rows_fn<2, 2>(s.c, seq) : dgrad_rows_fn<1, 2>(s.c, seq))
                                           : (ny == 2 ? dgrad_rows_fn<2, 1>(s.c, seq) : dgrad_rows_fn<1, 1>(s.c, seq));
            for (std::size_t x0 = 0; x0 < xw; x0 += V)
                fn(gr + x0 + s.padding + s.kw - 1, p.oh * row_len, row_len, s.o, i0, i1, yp, ka, s.kw, wt,
                   dxr + y * xw + x0, xw, s.h * xw, g_img, d_img);
        }
        for (std::size_t b = 0; b < nb; ++b) {
            float* dst = dx + (n0 + b) * xs;
            const float* dxb = dxr + b * d_img;
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t r = 0; r < s.h; ++r) {
                    const float* src = dxb + (c * s.h + r) * xw;
                    float* d = dst + (c * s.h + r) * s.w;
                    if (dx_acc)
                        for (std::size_t j = 0; j < s.w; ++j) d[j] += src[j];
                    else
                        copy_row(d, src, s.w);
                }
        }
    };
    auto image = [&](std::size_t n) {
        const float* gyn = gy + n * ys;
        float* pw = parts ? parts + n * part : nullptr;
        if (lanes) {
            // gt[pos][o] = gy[n, o, pos], zero in the lanes past the channels
            float* gt = direct_scratch(DirectScratch::image_a, npos * op + s.c * p.lx);
            float* xp = gt + npos * op;
            to_position_rows(gyn, s.o, npos, op, gt);
            pad_input(x + n * xs, s, p, xp);
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t t0 = 0; t0 < p.taps; t0 += LT) {
                    const std::size_t nt = std::min(LT, p.taps - t0);
                    float* dst = pw + (c * p.taps + t0) * op;
                    std::size_t o = 0;
                    for (; o + 2 * V <= op; o += 2 * V)
                        lanes_fn<2>(nt, std::make_index_sequence<LT>{})(gt + o, op, xp + c * p.lx, p.fwd_off + t0,
                                                                        p.oh, p.ow, p.wp, dst + o, op);
                    if (o < op)
                        lanes_fn<1>(nt, std::make_index_sequence<LT>{})(gt + o, op, xp + c * p.lx, p.fwd_off + t0,
                                                                        p.oh, p.ow, p.wp, dst + o, op);
                }
            if (db) {
                float* pb = pw + s.c * p.taps * op;
                for (std::size_t k = 0; k < op; k += V) {
                    B acc(0.f);
                    for (std::size_t q = 0; q < npos; ++q) acc += B::load_unaligned(gt + q * op + k);
                    acc.store_unaligned(pb + k);
                }
            }
            if (!dx) return;
        }
        if (dx_rows && (lanes || !(dw || db))) return;  // dX by rows: per pair of images, below
        if (dx_lanes) {
            // dxt[(r, col) of the padded plane][c], scattered into from every output position
            float* dxt = direct_scratch(DirectScratch::image_b, (p.hp * p.wp + 1) * V);
            std::fill(dxt, dxt + (p.hp * p.wp + 1) * V, 0.f);
            constexpr std::size_t NP = 2, QB = 5;  // 5·2 accumulators + 2 broadcasts + 1 weight vector
            for (std::size_t i = 0; i < p.oh; ++i)
                for (std::size_t a = 0; a < s.kh; ++a)
                    for (std::size_t q0 = 0; q0 < s.kw; q0 += QB) {
                        const std::size_t nq = std::min(QB, s.kw - q0);
                        const float* wa = wt + (a * s.kw + q0) * s.o * V;
                        float* row = dxt + ((i + a) * p.wp + q0) * V;
                        std::size_t j = 0;
                        for (; j + NP <= p.ow; j += NP)
                            dgrad_fn<NP>(nq, std::make_index_sequence<QB>{})(gyn + i * p.ow + j, npos, s.o, wa,
                                                                              row + j * V);
                        for (; j < p.ow; ++j)
                            dgrad_fn<1>(nq, std::make_index_sequence<QB>{})(gyn + i * p.ow + j, npos, s.o, wa,
                                                                             row + j * V);
                    }
            float* dst = dx + n * xs;
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t r = 0; r < s.h; ++r) {
                    const float* src = dxt + ((r + s.padding) * p.wp + s.padding) * V + c;
                    float* d = dst + (c * s.h + r) * s.w;
                    if (dx_acc)
                        for (std::size_t j = 0; j < s.w; ++j) d[j] += src[j * V];
                    else
                        for (std::size_t j = 0; j < s.w; ++j) d[j] = src[j * V];
                }
            if (lanes || !(dw || db)) return;
        }
        float* gq = direct_scratch(DirectScratch::image_b, s.o * p.lq + s.c * std::max(p.lx, p.lj));
        pad_grad(gyn, s, p, gq);
        if (db && !lanes)  // Σ over the padded plane: its zeros add nothing, and its length is whole vectors
            for (std::size_t o = 0; o < s.o; ++o) pw[nw + o] = plane_sum(gq + o * p.lq, p.lq);
        if (dw && !lanes) {
            float* xp = gq + s.o * p.lq;
            pad_input(x + n * xs, s, p, xp);
            const float* g = gq + p.front;  // gp[o][i] = gq[o][front + i], zero past the outputs
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t t0 = 0; t0 < p.taps; t0 += TB) {
                    const std::size_t nt = std::min(TB, p.taps - t0);
                    for (std::size_t o = 0; o < s.o; o += WB)
                        wgrad_fn(std::min(WB, s.o - o), nt, std::make_index_sequence<WB>{})(
                            g + o * p.lq, p.lq, xp + c * p.lx, p.fwd_off + t0, p.lo, pw + (o * s.c + c) * p.taps + t0,
                            s.c * p.taps);
                }
        }
        if (dx && !dx_lanes && !dx_rows) {
            float* dxp = gq + s.o * p.lq;  // the input planes' place: dW is done with them
            conv_planes(gq, p.lq, s.o, p.bwd_off, p.taps, wt, nullptr, s.c, dxp, p.lj, p.lj);
            float* dst = dx + n * xs;
            for (std::size_t c = 0; c < s.c; ++c)
                for (std::size_t r = 0; r < s.h; ++r) {
                    const float* src = dxp + c * p.lj + (r + s.padding) * p.wp + s.padding;
                    float* d = dst + (c * s.h + r) * s.w;
                    if (dx_acc)
                        for (std::size_t j = 0; j < s.w; ++j) d[j] += src[j];
                    else
                        copy_row(d, src, s.w);
                }
        }
    };
    if (dx_rows) {
        const std::size_t group = dgrad_rows_images(s.c);
        parallel_for((s.n + group - 1) / group, s.n * s.o * s.c * p.taps * p.lo, [&](std::size_t u) {
            const std::size_t n0 = group * u, nb = std::min(group, s.n - n0);
            for (std::size_t b = 0; b < nb; ++b) image(n0 + b);
            dx_by_rows(n0, nb);
        });
    } else {
        parallel_for(s.n, s.n * s.o * s.c * p.taps * p.lo, image);
    }
    if (!parts) return;
    // Σ over the images in image order, whatever the threads did, into the slot past the last image
    // (each element's sum in image order; the elements split in 8 ranges over the threads)
    float* sum = parts + s.n * part;
    parallel_for(8, s.n * part, [&](std::size_t r) {
        const std::size_t b = part * r / 8, e = part * (r + 1) / 8;
        std::copy(parts + b, parts + e, sum + b);
        for (std::size_t n = 1; n < s.n; ++n) {
            const float* pn = parts + n * part;
            for (std::size_t i = b; i < e; ++i) sum[i] += pn[i];
        }
    });
    auto put = [](float& d, float v, bool acc) { d = acc ? d + v : v; };
    if (lanes) {
        if (dw)
            for (std::size_t o = 0; o < s.o; ++o)
                for (std::size_t ct = 0; ct < s.c * p.taps; ++ct) put(dw[o * s.c * p.taps + ct], sum[ct * op + o], dw_acc);
        if (db)
            for (std::size_t o = 0; o < s.o; ++o) put(db[o], sum[s.c * p.taps * op + o], db_acc);
    } else {
        if (dw)
            for (std::size_t i = 0; i < nw; ++i) put(dw[i], sum[i], dw_acc);
        if (db)
            for (std::size_t o = 0; o < s.o; ++o) put(db[o], sum[nw + o], db_acc);
    }
}

}  // namespace XGRAD_DIRECT_ISA

}  // namespace xgrad::kernels

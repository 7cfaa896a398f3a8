// Kernels: im2col / col2im and the convolution's forward and backward (see conv.hpp).
#include "kernels/conv.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include <fmt/core.h>

#include <xsimd/xsimd.hpp>

#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"
#include "xgrad/errors.hpp"

namespace xgrad::kernels {


namespace {

/// Scratch buffers reused across calls (one set per thread; tapes are per thread).
template <class T>
std::vector<T>& scratch(int which)
{
    thread_local std::vector<T> bufs[3];
    return bufs[which];
}

template <class T>
T* sized(std::vector<T>& v, std::size_t n)
{
    if (v.size() < n) v.resize(n);
    return v.data();
}

/// Output columns j whose input column j·s − pad + q lies inside [0, w): [j0, j1).
inline void valid_cols(const ConvGeom& g, std::size_t q, std::size_t& j0, std::size_t& j1)
{
    // Both ends clamped to [0, ow]: with padding, a kernel wider than the input can have no
    // valid column at all for some q (j0 would lie past the row's end).
    auto ceil_div = [&](std::size_t a) { return a == 0 ? 0 : (a - 1) / g.s + 1; };  // no overflow for any stride
    j0 = std::min(g.ow, q < g.p ? ceil_div(g.p - q) : 0);
    j1 = g.w + g.p > q ? std::min(g.ow, ceil_div(g.w + g.p - q)) : 0;
    if (j1 < j0) j1 = j0;
}

/// cols[(c·KH + p)·KW + q][(n·OH + i)·OW + j] = X[n, c, i·s − pad + p, j·s − pad + q] (0 outside).
/// The valid column range is computed once per kernel column, so the inner loop is a plain copy;
/// rows of cols are independent, so threads split them.
template <class T>
void im2col_rows(const T* x, const ConvGeom& g, T* cols)
{
    const std::size_t L = g.l();
    parallel_for(g.k(), g.k() * L, [&](std::size_t r) {
        const std::size_t c = r / (g.kh * g.kw), p = r / g.kw % g.kh, q = r % g.kw;
        T* row = cols + r * L;
        std::size_t j0, j1;
        valid_cols(g, q, j0, j1);
        for (std::size_t n = 0; n < g.n; ++n) {
            const T* plane = x + (n * g.c + c) * g.h * g.w;
            for (std::size_t i = 0; i < g.oh; ++i) {
                T* dst = row + (n * g.oh + i) * g.ow;
                const std::ptrdiff_t ih = std::ptrdiff_t(i * g.s + p) - std::ptrdiff_t(g.p);
                if (ih < 0 || ih >= std::ptrdiff_t(g.h)) {
                    std::fill(dst, dst + g.ow, T(0));
                    continue;
                }
                const T* src = plane + std::size_t(ih) * g.w;  // column j reads src[j·s + q − pad]
                std::fill(dst, dst + j0, T(0));
                if (j0 == j1) {
                    // no input column reaches this row
                } else if (g.s == 1)
                    std::copy(src + (j0 + q - g.p), src + (j1 + q - g.p), dst + j0);
                else
                    for (std::size_t j = j0; j < j1; ++j) dst[j] = src[j * g.s + q - g.p];
                std::fill(dst + j1, dst + g.ow, T(0));
            }
        }
    });
}

/// The adjoint of im2col: dX[n, c, i·s − pad + p, j·s − pad + q] += dcols[...] (inside only).
/// One thread per input plane (c, n): planes are disjoint, so the additions never race.
template <class T>
void col2im_add(const T* cols, const ConvGeom& g, T* dx)
{
    const std::size_t L = g.l();
    parallel_for(g.c * g.n, g.k() * L, [&](std::size_t cn) {
        const std::size_t c = cn / g.n, n = cn % g.n;
        T* plane = dx + (n * g.c + c) * g.h * g.w;
        for (std::size_t p = 0; p < g.kh; ++p)
            for (std::size_t q = 0; q < g.kw; ++q) {
                const T* row = cols + ((c * g.kh + p) * g.kw + q) * L;
                std::size_t j0, j1;
                valid_cols(g, q, j0, j1);
                for (std::size_t i = 0; i < g.oh; ++i) {
                    const std::ptrdiff_t ih = std::ptrdiff_t(i * g.s + p) - std::ptrdiff_t(g.p);
                    if (ih < 0 || ih >= std::ptrdiff_t(g.h) || j0 == j1) continue;
                    const T* src = row + (n * g.oh + i) * g.ow;
                    T* dst = plane + std::size_t(ih) * g.w;
                    if (g.s == 1) {
                        T* d = dst + (j0 + q - g.p);
                        for (std::size_t j = j0; j < j1; ++j) d[j - j0] += src[j];
                    } else {
                        for (std::size_t j = j0; j < j1; ++j) dst[j * g.s + q - g.p] += src[j];
                    }
                }
            }
    });
}

// ---- stride 1, short rows: the im2col / col2im of the convolution's recorded VJPs ------------
// A row of the im2col matrix is OW values (10 in LeNet's second layer): a memmove or memset call
// per row costs more than the copy. These move whole SIMD batches inline instead. GCC recognizes
// a copy or fill loop, even of SIMD batches, and calls memmove/memset for it; an empty asm
// statement that "changes" the loop index (no instruction) hides the access pattern from it.
#define XGRAD_OPAQUE(j) asm("" : "+r"(j))

/// d[0, n) = s[0, n); d and s do not overlap.
template <class T>
inline void copy_row(T* __restrict d, const T* __restrict s, std::size_t n)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    std::size_t j = 0;
    if (n < w) {
        for (; j < n; ++j) {
            d[j] = s[j];
            XGRAD_OPAQUE(j);
        }
        return;
    }
    for (; j + w <= n; j += w) {
        B::load_unaligned(s + j).store_unaligned(d + j);
        XGRAD_OPAQUE(j);
    }
    if (j < n) B::load_unaligned(s + n - w).store_unaligned(d + n - w);  // the last batch overlaps
}

/// d[0, n) = 0.
template <class T>
inline void zero_row(T* d, std::size_t n)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    std::size_t j = 0;
    if (n < w) {
        for (; j < n; ++j) {
            d[j] = T(0);
            XGRAD_OPAQUE(j);
        }
        return;
    }
    const B z(T(0));
    for (; j + w <= n; j += w) {
        z.store_unaligned(d + j);
        XGRAD_OPAQUE(j);
    }
    if (j < n) z.store_unaligned(d + n - w);
}

/// 0, 1, …, 15: lane numbers, to mask the last batch of a row.
template <class T>
const T* lane_numbers()
{
    alignas(64) static const T lanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return lanes;
}

/// d[0, n) += s[0, n); d and s do not overlap. Each element gets exactly one addition, in the
/// same order as the scalar loop: the sums are bitwise those of col2im_add. A row's tail is the
/// last whole batch, [n − w, n), with the sum taken only in its lanes past the ones already done.
template <class T>
inline void add_row(T* __restrict d, const T* __restrict s, std::size_t n)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    std::size_t j = 0;
    if (n < w) {
        for (; j < n; ++j) {
            d[j] += s[j];
            XGRAD_OPAQUE(j);
        }
        return;
    }
    for (; j + w <= n; j += w) {
        (B::load_unaligned(d + j) + B::load_unaligned(s + j)).store_unaligned(d + j);
        XGRAD_OPAQUE(j);
    }
    if (j < n) {
        const B dv = B::load_unaligned(d + n - w), sv = B::load_unaligned(s + n - w);
        const auto fresh = B::load_unaligned(lane_numbers<T>()) >= B(T(w - (n - j)));
        xsimd::select(fresh, dv + sv, dv).store_unaligned(d + n - w);
    }
}

/// Output rows i whose input row i − pad + p lies inside [0, h) (stride 1): [i0, i1).
inline void valid_rows_s1(const ConvGeom& g, std::size_t p, std::size_t& i0, std::size_t& i1)
{
    i0 = std::min(g.oh, p < g.p ? g.p - p : 0);
    i1 = g.h + g.p > p ? std::min(g.oh, g.h + g.p - p) : 0;
    if (i1 < i0) i1 = i0;
}

/// im2col for stride 1: the same matrix as im2col_rows, rows copied by copy_row / zero_row.
template <class T>
void im2col_s1(const T* x, const ConvGeom& g, T* cols)
{
    const std::size_t L = g.l(), hw = g.oh * g.ow;
    parallel_for(g.k(), g.k() * L, [&, L, hw](std::size_t r) {
        const std::size_t C = g.c, H = g.h, W = g.w, OH = g.oh, OW = g.ow, pad = g.p, N = g.n;
        const std::size_t c = r / (g.kh * g.kw), p = r / g.kw % g.kh, q = r % g.kw;
        std::size_t j0, j1, i0, i1;
        valid_cols(g, q, j0, j1);
        valid_rows_s1(g, p, i0, i1);
        T* const row = cols + r * L;
        for (std::size_t n = 0; n < N; ++n) {
            const T* plane = x + (n * C + c) * H * W;
            T* dst = row + n * hw;
            zero_row(dst, i0 * OW);
            for (std::size_t i = i0; i < i1; ++i) {
                T* d = dst + i * OW;
                zero_row(d, j0);
                // column j reads input column j + q − pad, inside for j in [j0, j1)
                if (j1 > j0) copy_row(d + j0, plane + (i + p - pad) * W + (j0 + q - pad), j1 - j0);
                zero_row(d + j1, OW - j1);
            }
            zero_row(dst + i1 * OW, (OH - i1) * OW);
        }
    });
}

/// col2im_add for stride 1 (one thread per input plane, as there), rows added by add_row.
template <class T>
void col2im_add_s1(const T* cols, const ConvGeom& g, T* dx)
{
    const std::size_t L = g.l();
    parallel_for(g.c * g.n, g.k() * L, [&, L](std::size_t cn) {
        const std::size_t N = g.n, H = g.h, W = g.w, OW = g.ow, KH = g.kh, KW = g.kw, pad = g.p, hw = g.oh * g.ow;
        const std::size_t c = cn / N, n = cn % N;
        T* plane = dx + (n * g.c + c) * H * W;
        for (std::size_t p = 0; p < KH; ++p) {
            std::size_t i0, i1;
            valid_rows_s1(g, p, i0, i1);
            for (std::size_t q = 0; q < KW; ++q) {
                const T* row = cols + ((c * KH + p) * KW + q) * L + n * hw;
                std::size_t j0, j1;
                valid_cols(g, q, j0, j1);
                if (j0 == j1) continue;
                for (std::size_t i = i0; i < i1; ++i)
                    add_row(plane + (i + p - pad) * W + (j0 + q - pad), row + i * OW + j0, j1 - j0);
            }
        }
    });
}

#undef XGRAD_OPAQUE

}  // namespace

ConvGeom conv_geometry(const Shape& xs, const Shape& ws, const Shape* bs, std::size_t stride, std::size_t padding)
{
    const struct {
        std::size_t stride, padding;
    } o{stride, padding};
    auto fail = [&](const std::string& why) {
        return ShapeError("conv2d: input " + shape_str(xs) + ", weight " + shape_str(ws) + ": " + why);
    };
    if (xs.size() != 4) throw fail("input must be (N,C,H,W)");
    if (ws.size() != 4) throw fail("weight must be (O,C,KH,KW)");
    if (xs[1] != ws[1])
        throw fail("input has " + std::to_string(xs[1]) + " channels, weight expects " + std::to_string(ws[1]));
    if (o.stride == 0) throw fail("stride must be at least 1");
    if (ws[2] == 0 || ws[3] == 0) throw fail("kernel must be at least 1x1");
    // Padding comes from the user: keep H + 2·pad and every buffer size inside size_t.
    constexpr std::size_t max_pad = std::size_t(1) << 24;
    if (o.padding > max_pad) throw fail(fmt::format("padding {} is larger than {}", o.padding, max_pad));
    if (o.stride > max_pad) throw fail(fmt::format("stride {} is larger than {}", o.stride, max_pad));
    if (bs && (bs->size() != 1 || (*bs)[0] != ws[0]))
        throw ShapeError("conv2d: bias " + shape_str(*bs) + " vs weight " + shape_str(ws) + ": bias must be (" +
                         std::to_string(ws[0]) + ")");
    ConvGeom g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o.stride, o.padding, 0, 0};
    if (g.h + 2 * g.p < g.kh || g.w + 2 * g.p < g.kw)
        throw fail("kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " is larger than the padded input");
    g.oh = (g.h + 2 * g.p - g.kh) / g.s + 1;
    g.ow = (g.w + 2 * g.p - g.kw) / g.s + 1;
    std::size_t out = 0, cols = 0;
    // 2^32 elements (16 GiB in float) is far beyond any conv this library runs; past it a typo in
    // the padding would ask for terabytes.
    constexpr std::size_t max_elems = std::size_t(1) << 32;
    if (!checked_shape_size(Shape{g.n, g.o, g.oh, g.ow}, out) || !checked_shape_size(Shape{g.k(), g.l()}, cols) ||
        out > max_elems || cols > max_elems)
        throw fail(fmt::format("output ({},{},{},{}) or its im2col matrix ({},{}) has more than 2^32 elements", g.n, g.o,
                               g.oh, g.ow, g.k(), g.l()));
    constexpr std::size_t blas_max = std::size_t(std::numeric_limits<int>::max());  // the GEMMs' dimensions
    if (g.o > blas_max || g.k() > blas_max || g.l() > blas_max)
        throw fail(fmt::format("GEMM dimensions O={}, C·KH·KW={}, N·OH·OW={} exceed the BLAS limit of 2^31 - 1", g.o,
                               g.k(), g.l()));
    return g;
}

template <class T>
void im2col(const T* x, const ConvGeom& g, T* cols)
{
    if (g.s == 1)
        im2col_s1(x, g, cols);
    else
        im2col_rows(x, g, cols);
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, const ConvGeom& g, T* po, T* cols)
{
    if (!cols) cols = sized(scratch<T>(0), g.k() * g.l());
    im2col_rows(x, g, cols);
    conv2d_forward_cols(cols, w, bias, g, po);
}

template <class T>
void conv2d_forward_cols(const T* cols, const T* w, const T* bias, const ConvGeom& g, T* po)
{
    const std::size_t K = g.k(), L = g.l(), hw = g.oh * g.ow;
    T* y = sized(scratch<T>(1), g.o * L);
    gemm(false, false, g.o, L, K, T(1), w, K, cols, L, T(0), y, L);  // (O,K)·(K,L)
    parallel_for(g.n * g.o, g.o * L, [&](std::size_t no) {  // (n, o) planes
        const std::size_t n = no / g.o, o = no % g.o;
        const T* src = y + o * L + n * hw;
        T* dst = po + no * hw;
        const T add = bias ? bias[o] : T(0);
        for (std::size_t j = 0; j < hw; ++j) dst[j] = src[j] + add;
    });
}

namespace {

/// conv2d_backward's work; Rows: the stride-1 row kernels (copy_row, im2col_s1, col2im_add_s1),
/// for the recorded VJPs; without, the generic loops, as conv2d's first-order backward always ran.
template <bool Rows, class T>
void backward_impl(const T* x, const T* w, const T* G, const ConvGeom& g, T* dx, bool dx_acc, T* dw, bool dw_acc,
                   T* db, bool db_acc, const T* saved_cols)
{
    const std::size_t K = g.k(), L = g.l(), hw = g.oh * g.ow;
    // G (N,O,OH·OW) → Gt (O, N·OH·OW), the layout the GEMMs want
    T* gt = sized(scratch<T>(1), g.o * L);
    parallel_for(g.n * g.o, g.o * L, [&](std::size_t no) {
        const std::size_t n = no / g.o, o = no % g.o;
        if constexpr (Rows)
            copy_row(gt + o * L + n * hw, G + no * hw, hw);
        else
            std::copy_n(G + no * hw, hw, gt + o * L + n * hw);
    });
    if (db) {  // dL/db[o] = Σ_{n,i,j} G[n,o,i,j]
        for (std::size_t o = 0; o < g.o; ++o) {
            T s = 0;
            for (std::size_t j = 0; j < L; ++j) s += gt[o * L + j];
            db[o] = db_acc ? db[o] + s : s;
        }
    }
    if (dw) {  // dL/dW = Gt·colsᵀ
        const T* cols = saved_cols;
        if (!cols) {
            T* c = sized(scratch<T>(0), K * L);
            if constexpr (Rows)
                im2col_s1(x, g, c);
            else
                im2col_rows(x, g, c);
            cols = c;
        }
        gemm(false, true, g.o, K, L, T(1), gt, L, cols, L, dw_acc ? T(1) : T(0), dw, K);
    }
    if (dx) {  // dL/dX = col2im(Wᵀ·Gt)
        T* dcols = sized(scratch<T>(2), K * L);
        gemm(true, false, K, L, g.o, T(1), w, K, gt, L, T(0), dcols, L);
        if (!dx_acc) std::fill(dx, dx + g.n * g.c * g.h * g.w, T(0));  // col2im adds
        if constexpr (Rows)
            col2im_add_s1(dcols, g, dx);
        else
            col2im_add(dcols, g, dx);
    }
}

}  // namespace

template <class T>
void conv2d_backward(const T* x, const T* w, const T* G, const ConvGeom& g, T* dx, bool dx_acc, T* dw, bool dw_acc,
                     T* db, bool db_acc, const T* saved_cols)
{
    backward_impl<false>(x, w, G, g, dx, dx_acc, dw, dw_acc, db, db_acc, saved_cols);
}

template <class T>
void conv2d_backward_rows(const T* x, const T* w, const T* G, const ConvGeom& g, T* dx, bool dx_acc, T* dw,
                          bool dw_acc, const T* saved_cols)
{
    if (g.s == 1)
        backward_impl<true>(x, w, G, g, dx, dx_acc, dw, dw_acc, static_cast<T*>(nullptr), false, saved_cols);
    else
        backward_impl<false>(x, w, G, g, dx, dx_acc, dw, dw_acc, static_cast<T*>(nullptr), false, saved_cols);
}

template void im2col(const float*, const ConvGeom&, float*);
template void im2col(const double*, const ConvGeom&, double*);
template void conv2d_backward_rows(const float*, const float*, const float*, const ConvGeom&, float*, bool, float*,
                                   bool, const float*);
template void conv2d_backward_rows(const double*, const double*, const double*, const ConvGeom&, double*, bool, double*,
                                   bool, const double*);
template void conv2d_forward(const float*, const float*, const float*, const ConvGeom&, float*, float*);
template void conv2d_forward(const double*, const double*, const double*, const ConvGeom&, double*, double*);
template void conv2d_forward_cols(const float*, const float*, const float*, const ConvGeom&, float*);
template void conv2d_forward_cols(const double*, const double*, const double*, const ConvGeom&, double*);
template void conv2d_backward(const float*, const float*, const float*, const ConvGeom&, float*, bool, float*, bool,
                              float*, bool, const float*);
template void conv2d_backward(const double*, const double*, const double*, const ConvGeom&, double*, bool, double*, bool,
                              double*, bool, const double*);

}  // namespace xgrad::kernels

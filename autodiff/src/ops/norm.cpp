// Normalization: batch_norm (training mode) and layer_norm, one fused kernel each way.
#include "xgrad/ops/norm.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../op_util.hpp"
#include "kernels/parallel.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {

void check_eps(const char* name, double eps)
{
    if (!(eps >= 0) || !std::isfinite(eps))
        throw std::invalid_argument(fmt::format("{}: eps must be finite and non-negative, got {}", name, eps));
}

/// Σ_{i<n} f(i) in independent lanes of T (so the compiler can vectorize the sum, which it may not
/// reorder itself), the lanes and the tail added up in double.
template <class T, class F>
double lane_sum(std::size_t n, F f)
{
    constexpr std::size_t lanes = 64 / sizeof(T);  // 16 floats, 8 doubles: two AVX-512 / four AVX registers
    T acc[lanes] = {};
    std::size_t i = 0;
    for (; i + lanes <= n; i += lanes)
        for (std::size_t l = 0; l < lanes; ++l) acc[l] += f(i + l);
    double s = 0;
    for (; i < n; ++i) s += double(f(i));
    for (std::size_t l = 0; l < lanes; ++l) s += double(acc[l]);
    return s;
}

/// G ⊙ [Y > 0] of one row of n values (relu_mask's expression) in a buffer of the calling thread
/// (L1-sized for the rows of convolution nets), for batch_norm_relu's two backward passes. A loop of
/// its own, with restrict pointers: written into lane_sum's lanes, the select was miscompiled by GCC
/// 12 at -O3 (x86-64-v3: a 16-element sum of 45 came out 24); written into the input-gradient loop,
/// it compiled to scalar branches (resnet_b64's step 28 → 36 ms).
template <class T>
const T* masked_row(const T* __restrict g, const T* __restrict y, std::size_t n)
{
    thread_local std::vector<T> row;
    if (row.size() < n) row.resize(n);
    T* __restrict out = row.data();
    for (std::size_t i = 0; i < n; ++i) out[i] = y[i] > T(0) ? g[i] : T(0);
    return out;
}

/// Per-(image or block of images, channel) partial sums of batch norm's passes, `count` doubles, kept
/// per thread (no allocation once shapes are stable). The passes run in memory order, image by image
/// or block by block (each thread its own), and the partial sums are added in that order: the same bits on any thread
/// count, and the same bits as summing channel by channel. Channel by channel, each channel's rows
/// are N short runs far apart, which the prefetchers serve badly: in memory order the forward took
/// 0.6–0.7× the time (64×16×28×28 and 64×64×7×7, data not in cache; docs/performance.md).
double* batch_norm_partials(std::size_t count)
{
    thread_local std::vector<double> v;
    if (v.size() < count) v.resize(count);
    return v.data();
}

/// The channels-last sums (the forward's moments, the backward's Σ G and Σ G·(x − μ)) go over blocks of
/// whole images, about 512 rows of C values each: a 7 × 7 image is 49 rows, and per image the set-up
/// per chunk of channels, the lanes added in double and the moments combined cost about as much as
/// the rows (64×7×7×64, forward: 85 → 47 µs; 64×14×14×32: 99 → 90; docs/performance.md). The
/// elementwise passes (Y, dX) stay image by image: they go over the rows once per chunk of channels,
/// and a block past L1 then fetches each line twice. Block b holds images [b·n/count, (b+1)·n/count);
/// count depends on the shape only (the same bits on any thread count) and is a multiple of 4 where it
/// can be, so that 2 and 4 threads get equal shares. 28 × 28 images stay one per block.
struct ImageBlocks {
    std::size_t n = 0, inner = 0, count = 0;
    std::size_t first(std::size_t b) const { return b * n / count; }  // the block's first image
    std::size_t rows(std::size_t b) const { return (first(b + 1) - first(b)) * inner; }
};

ImageBlocks image_blocks(std::size_t n, std::size_t inner)
{
    std::size_t count = (n * inner + 511) / 512;
    count = std::min(std::max<std::size_t>((count + 3) / 4 * 4, 1), n);
    return {n, inner, count};
}

/// Per-channel coefficients of a channels-last pass, `count` values of T, kept per thread.
template <class T>
T* channel_coefficients(std::size_t count)
{
    thread_local std::vector<T> v;
    if (v.size() < count) v.resize(count);
    return v.data();
}

/// Channels-last passes: rows of C values, each pass a loop over the rows and, inside, over chunks of
/// L channels (one fixed-length loop the compiler vectorizes), the remaining C mod L one at a time.
template <class T>
constexpr std::size_t chunk_lanes = 64 / sizeof(T);

/// out1[c] = Σ_r d and out2[c] = Σ_r d², d = f(r, c), for c < cols over `rows` rows, as double. Each
/// chunk of L channels in two accumulators of L lanes of T per sum, taking rows in turn (the chain of
/// dependent adds split two ways), added in double at the end; the remaining channels in double.
template <class T, class F>
void column_moments(std::size_t rows, std::size_t cols, double* out1, double* out2, F f)
{
    constexpr std::size_t L = chunk_lanes<T>;
    std::size_t c0 = 0;
    for (; c0 + L <= cols; c0 += L) {
        T a0[L] = {}, a1[L] = {}, q0[L] = {}, q1[L] = {};
        std::size_t r = 0;
        for (; r + 2 <= rows; r += 2)
            for (std::size_t l = 0; l < L; ++l) {
                const T d0 = f(r, c0 + l), d1 = f(r + 1, c0 + l);
                a0[l] += d0, q0[l] += d0 * d0;
                a1[l] += d1, q1[l] += d1 * d1;
            }
        for (; r < rows; ++r)
            for (std::size_t l = 0; l < L; ++l) {
                const T d0 = f(r, c0 + l);
                a0[l] += d0, q0[l] += d0 * d0;
            }
        for (std::size_t l = 0; l < L; ++l) {
            out1[c0 + l] = double(a0[l]) + double(a1[l]);
            out2[c0 + l] = double(q0[l]) + double(q1[l]);
        }
    }
    for (; c0 < cols; ++c0) {
        double t = 0, q = 0;
        for (std::size_t r = 0; r < rows; ++r) {
            const double d = double(f(r, c0));
            t += d, q += d * d;
        }
        out1[c0] = t, out2[c0] = q;
    }
}

/// (x − μ)·scale + shift as one fused multiply-add, written out: every forward variant (plain, relu,
/// residual) then rounds alike, whatever the compiler would contract, and the fused ops stay bit for
/// bit the composed ones.
template <class T>
inline T normalized(T x, T mu, T scale, T shift)
{
    return std::fma(x - mu, scale, shift);
}

/// f(i, l, cv) for every element i = r·cols + c (r < rows, c < cols), chunk by chunk of L channels,
/// the rows inside: cv[k][l] = coef[k][c], the chunk's per-channel values copied into local arrays
/// first so that they stay in registers across the rows (read from memory for every row, the
/// channels-last pass took 1.3–1.5× the NCHW one's time).
template <class T, std::size_t K, class F>
void for_columns(std::size_t rows, std::size_t cols, const std::array<const T*, K>& coef, F f)
{
    constexpr std::size_t L = chunk_lanes<T>;
    for (std::size_t c0 = 0; c0 < cols; c0 += L) {
        const std::size_t w = std::min(L, cols - c0);
        T cv[K][L] = {};
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t l = 0; l < w; ++l) cv[k][l] = coef[k][c0 + l];
        if (w == L)
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t l = 0; l < L; ++l) f(r * cols + c0 + l, l, cv);
        else
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t l = 0; l < w; ++l) f(r * cols + c0 + l, l, cv);
    }
}

/// The channels-last backward's sums over one block's `rows` rows of `cols` channels, in one pass:
/// pg[c] = Σ_r G'[r,c] and pgx[c] = Σ_r G'[r,c]·(X[r,c] − μ_c), G' = G ⊙ [Y > 0] with Relu (else G),
/// and with Ds (1: store, 2: add) G' written to ds. With FromX the mask is the forward's own test,
/// fma(X − μ, scale, shift) > 0, recomputed from X (read anyway) instead of read from Y: one stream of
/// three fewer; the same bits, an FMA rounds once wherever it runs (batch_norm_relu, no residual). Explicit batches: the mask is a select in
/// registers (a masked copy of the image, 50 KB, went through L2: 1.3× the NCHW pass's time), and
/// GCC vectorized the select into a sum wrongly before (masked_row). Two batches of channels at a
/// time, two rows in turn; the lanes added in double.
template <class T, bool Relu, int Ds, bool FromX = false>
void cl_backward_sums(std::size_t rows, std::size_t cols, const T* __restrict g, const T* __restrict y,
                      const T* __restrict x, const T* __restrict mu, double* pg, double* pgx, T* __restrict ds,
                      const T* __restrict scale = nullptr, const T* __restrict shift = nullptr)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t W = B::size;
    const B zero(T(0));
    // G' at i; xm = X − μ there, sc and sh the channels' scale and shift (FromX)
    auto grad = [&](std::size_t i, const B& xm, const B& sc, const B& sh) {
        B gv = B::load_unaligned(g + i);
        if constexpr (Relu && FromX) gv = xsimd::select(xsimd::fma(xm, sc, sh) > zero, gv, zero);
        if constexpr (Relu && !FromX) gv = xsimd::select(B::load_unaligned(y + i) > zero, gv, zero);
        if constexpr (Ds == 1) gv.store_unaligned(ds + i);
        if constexpr (Ds == 2) (B::load_unaligned(ds + i) + gv).store_unaligned(ds + i);
        return gv;
    };
    auto coef = [&](const T* p, std::size_t c) { return FromX ? B::load_unaligned(p + c) : zero; };
    auto finish = [&](std::size_t c, const B& s0, const B& s1, const B& t0, const B& t1) {
        alignas(64) T a[W], b[W], u[W], v[W];
        s0.store_aligned(a), s1.store_aligned(b), t0.store_aligned(u), t1.store_aligned(v);
        for (std::size_t l = 0; l < W; ++l) {
            pg[c + l] = double(a[l]) + double(b[l]);
            pgx[c + l] = double(u[l]) + double(v[l]);
        }
    };
    std::size_t c0 = 0;
    for (; c0 + 2 * W <= cols; c0 += 2 * W) {
        const B m0 = B::load_unaligned(mu + c0), m1 = B::load_unaligned(mu + c0 + W);
        const B a0 = coef(scale, c0), a1 = coef(scale, c0 + W), b0 = coef(shift, c0), b1 = coef(shift, c0 + W);
        B s00 = zero, s01 = zero, s10 = zero, s11 = zero, t00 = zero, t01 = zero, t10 = zero, t11 = zero;
        std::size_t r = 0;
        for (; r + 2 <= rows; r += 2) {
            const std::size_t i = r * cols + c0, j = i + cols;
            const B x0 = B::load_unaligned(x + i) - m0, x1 = B::load_unaligned(x + i + W) - m1,
                    z0 = B::load_unaligned(x + j) - m0, z1 = B::load_unaligned(x + j + W) - m1;
            const B g0 = grad(i, x0, a0, b0), g1 = grad(i + W, x1, a1, b1), h0 = grad(j, z0, a0, b0),
                    h1 = grad(j + W, z1, a1, b1);
            s00 += g0, s01 += g1, s10 += h0, s11 += h1;
            t00 = xsimd::fma(g0, x0, t00), t01 = xsimd::fma(g1, x1, t01);
            t10 = xsimd::fma(h0, z0, t10), t11 = xsimd::fma(h1, z1, t11);
        }
        if (r < rows) {
            const std::size_t i = r * cols + c0;
            const B x0 = B::load_unaligned(x + i) - m0, x1 = B::load_unaligned(x + i + W) - m1;
            const B g0 = grad(i, x0, a0, b0), g1 = grad(i + W, x1, a1, b1);
            s00 += g0, s01 += g1;
            t00 = xsimd::fma(g0, x0, t00), t01 = xsimd::fma(g1, x1, t01);
        }
        finish(c0, s00, s10, t00, t10);
        finish(c0 + W, s01, s11, t01, t11);
    }
    for (; c0 + W <= cols; c0 += W) {
        const B m0 = B::load_unaligned(mu + c0);
        const B a0 = coef(scale, c0), b0 = coef(shift, c0);
        B s0 = zero, s1 = zero, t0 = zero, t1 = zero;
        std::size_t r = 0;
        for (; r + 2 <= rows; r += 2) {
            const std::size_t i = r * cols + c0, j = i + cols;
            const B x0 = B::load_unaligned(x + i) - m0, z0 = B::load_unaligned(x + j) - m0;
            const B g0 = grad(i, x0, a0, b0), h0 = grad(j, z0, a0, b0);
            s0 += g0, s1 += h0;
            t0 = xsimd::fma(g0, x0, t0), t1 = xsimd::fma(h0, z0, t1);
        }
        if (r < rows) {
            const std::size_t i = r * cols + c0;
            const B x0 = B::load_unaligned(x + i) - m0;
            const B g0 = grad(i, x0, a0, b0);
            s0 += g0, t0 = xsimd::fma(g0, x0, t0);
        }
        finish(c0, s0, s1, t0, t1);
    }
    for (; c0 < cols; ++c0) {  // the last cols mod W channels, one at a time in double
        double s = 0, t = 0;
        for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t i = r * cols + c0;
            T gv = g[i];
            if constexpr (Relu && FromX) gv = normalized(x[i], mu[c0], scale[c0], shift[c0]) > T(0) ? gv : T(0);
            if constexpr (Relu && !FromX) gv = y[i] > T(0) ? gv : T(0);
            if constexpr (Ds == 1) ds[i] = gv;
            if constexpr (Ds == 2) ds[i] += gv;
            s += double(gv), t += double(gv * (x[i] - mu[c0]));
        }
        pg[c0] = s, pgx[c0] = t;
    }
}

/// The channels-last input gradient of `rows` rows (one image): D[r,c] (= or +=) k_c·(G'[r,c] − a_c − (X[r,c] − μ_c)·s_c),
/// G' as in cl_backward_sums; in batches of channels, the coefficients in registers across the rows.
template <class T, bool Relu, bool Add, bool FromX = false>
void cl_backward_dx(std::size_t rows, std::size_t cols, const T* __restrict g, const T* __restrict y,
                    const T* __restrict x, const T* __restrict k, const T* __restrict a, const T* __restrict s,
                    const T* __restrict mu, T* __restrict d, const T* __restrict scale = nullptr,
                    const T* __restrict shift = nullptr)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t W = B::size;
    const B zero(T(0));
    std::size_t c0 = 0;
    for (; c0 + W <= cols; c0 += W) {
        const B kv = B::load_unaligned(k + c0), av = B::load_unaligned(a + c0), sv = B::load_unaligned(s + c0),
                mv = B::load_unaligned(mu + c0);
        const B scv = FromX ? B::load_unaligned(scale + c0) : zero, shv = FromX ? B::load_unaligned(shift + c0) : zero;
        for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t i = r * cols + c0;
            B gv = B::load_unaligned(g + i);
            const B xm = B::load_unaligned(x + i) - mv;
            if constexpr (Relu && FromX) gv = xsimd::select(xsimd::fma(xm, scv, shv) > zero, gv, zero);
            if constexpr (Relu && !FromX) gv = xsimd::select(B::load_unaligned(y + i) > zero, gv, zero);
            const B v = kv * xsimd::fnma(xm, sv, gv - av);
            if constexpr (Add) (B::load_unaligned(d + i) + v).store_unaligned(d + i);
            else v.store_unaligned(d + i);
        }
    }
    for (; c0 < cols; ++c0)
        for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t i = r * cols + c0;
            T gv = g[i];
            if constexpr (Relu && FromX) gv = normalized(x[i], mu[c0], scale[c0], shift[c0]) > T(0) ? gv : T(0);
            if constexpr (Relu && !FromX) gv = y[i] > T(0) ? gv : T(0);
            const T v = k[c0] * std::fma(-(x[i] - mu[c0]), s[c0], gv - a[c0]);
            if constexpr (Add) d[i] += v;
            else d[i] = v;
        }
}

/// One block's channel means μ̃_c = T(Σ/rows) from its sums (the centres of its second pass), into
/// `centre` (as double) and a per-thread array of T, returned.
template <class T>
T* block_means(const double* sums, std::size_t channels, std::size_t rows, double* centre)
{
    thread_local std::vector<T> mu;
    if (mu.size() < channels) mu.resize(channels);
    for (std::size_t c = 0; c < channels; ++c) {
        mu[c] = T(sums[c] / double(rows));
        centre[c] = double(mu[c]);
    }
    return mu.data();
}

/// The batch statistics from each block's moments about its own centre μ̃_b (Chan et al.'s pairwise
/// update): with r_b = Σ (x − μ̃_b) and q_b = Σ (x − μ̃_b)² over block b's k_b = rows(b) values of a
/// channel, M = Σ_b (k_b·μ̃_b + r_b) / m and Σ (x − M)² = Σ_b q_b + 2·(μ̃_b − M)·r_b + k_b·(μ̃_b − M)².
/// Exact for any centres, so a rounded first-pass mean costs nothing; each block is read from memory
/// once, its second pass finding it in cache.
template <class T, class Rows>
void combine_moments(std::size_t n, std::size_t channels, Rows rows, const double* r, const double* sq,
                     const double* centre, T* mean, double* var)
{
    double m = 0;
    for (std::size_t b = 0; b < n; ++b) m += double(rows(b));
    for (std::size_t c = 0; c < channels; ++c) {
        double t = 0;
        for (std::size_t b = 0; b < n; ++b) t += double(rows(b)) * centre[b * channels + c] + r[b * channels + c];
        const double mu = t / m;
        double q = 0;
        for (std::size_t b = 0; b < n; ++b) {
            const std::size_t i = b * channels + c;
            const double d = centre[i] - mu, k = double(rows(b));
            q += sq[i] + 2 * d * r[i] + k * d * d;
        }
        mean[c] = T(mu);
        var[c] = q / m;
    }
}

/// The options' weight and bias absent: no affine map. relu: Y = max(batch norm, 0), its mask applied
/// to G where the passes read it (Y > 0 exactly where the normalized value is). residual (with relu and
/// the affine map only): Y = max(batch norm + residual, 0), the residual's gradient G ⊙ [Y > 0].
/// channels_last: X (N,*,C), the channel the last axis; each image is then `inner` rows of C values,
/// the passes go over blocks of images (ImageBlocks) and add a row into C partial sums at once
/// (vectorized over the channels).
template <class T>
Var<T> batch_norm_impl(const Var<T>& x, const BatchNormFuncOptions<T>& o)
{
    const bool affine = o.weight().has_value(), res = o.residual().has_value(), relu = o.relu(),
               channels_last = o.channels_last();
    const char* name = res ? (channels_last ? "batch_norm_add_relu_channels_last" : "batch_norm_add_relu")
                     : channels_last ? (relu ? "batch_norm_relu_channels_last" : "batch_norm_channels_last")
                                     : (relu ? "batch_norm_relu" : "batch_norm");
    if (affine != o.bias().has_value())
        throw std::invalid_argument(fmt::format("{}: weight and bias must be given together (the affine map), got {} "
                                                "without {}", name, affine ? "weight" : "bias", affine ? "bias" : "weight"));
    if (res && (!relu || !affine))
        throw std::invalid_argument(fmt::format("{}: a residual is fused only with relu and the affine map "
                                                "(relu(γ·x̂ + β + residual)); got relu {}, {}", name, relu,
                                                affine ? "weight and bias" : "no weight and bias"));
    const Var<T>* weight = affine ? &*o.weight() : nullptr;
    const Var<T>* bias = affine ? &*o.bias() : nullptr;
    const Var<T>* residual = res ? &*o.residual() : nullptr;
    Tensor<T>* batch_mean = o.batch_mean();
    Tensor<T>* batch_var = o.batch_var();
    const double eps = o.eps();
    const Var<T> inputs[4] = {x, affine ? *weight : x, affine ? *bias : x, res ? *residual : x};
    OpBuilder<T> op(name, inputs, res ? 4 : affine ? 3 : 1);
    const Shape& xs = x.shape();
    if (xs.size() < 2)
        throw ShapeError(fmt::format("{}: input {} must have rank 2 or more, {}", name, shape_str(xs),
                                     channels_last ? "(N,*,C)" : "(N,C,*)"));
    const std::size_t caxis = channels_last ? xs.size() - 1 : 1;
    const std::size_t n = xs[0], channels = xs[caxis];
    std::size_t inner = 1;
    for (std::size_t a = 1; a < xs.size(); ++a)
        if (a != caxis) inner *= xs[a];
    if (affine && (weight->shape() != Shape{channels} || bias->shape() != Shape{channels}))
        throw ShapeError(fmt::format("{}: input {} has {} channels, but weight {} and bias {} must be ({})", name,
                                     shape_str(xs), channels, shape_str(weight->shape()), shape_str(bias->shape()),
                                     channels));
    if (res && residual->shape() != xs)
        throw ShapeError(fmt::format("{}: residual {} must have the input's shape {}", name, shape_str(residual->shape()),
                                     shape_str(xs)));
    const std::size_t m = n * inner;
    if (m < 2)
        throw std::invalid_argument(fmt::format(
            "{}: expected more than 1 value per channel in training mode, got input {}", name, shape_str(xs)));
    check_eps(name, eps);

    // saved: row 0 the channel means, row 1 the inverse standard deviations (for the backward)
    Tensor<T>& st = op.saved();
    st.resize(Shape{2, channels});
    T* mean_p = st.data();
    T* inv_p = st.data() + channels;
    if (batch_mean) batch_mean->resize(Shape{channels});
    if (batch_var) batch_var->resize(Shape{channels});
    op.value().resize(xs);
    const T* xp = x.value().data();
    T* yp = op.value().data();
    const T* gam = affine ? weight->value().data() : nullptr;
    const T* bet = affine ? bias->value().data() : nullptr;
    const T* sp = res ? residual->value().data() : nullptr;
    const std::size_t nc = n * channels, work = nc * inner;
    const ImageBlocks blocks = channels_last ? image_blocks(n, inner) : ImageBlocks{};
    // per (block or image, channel): the deviations' sum and squares about its mean, that mean; per channel the variance
    const std::size_t parts = channels_last ? blocks.count : n;  // rows of partial sums, per block or image
    double* part = batch_norm_partials(3 * parts * channels + channels);
    double* sq = part + parts * channels;
    double* cen = sq + parts * channels;
    double* var_d = cen + parts * channels;
    if (channels_last) {
        // the same passes over each block's rows of C values, the sums per (block, channel)
        kernels::parallel_for(blocks.count, work, [&](std::size_t b) {
            const std::size_t rows = blocks.rows(b);
            const T* __restrict blk = xp + blocks.first(b) * inner * channels;
            double* sb = part + b * channels;
            // the first pass only picks the centres (any centre is exact below); its squares are dropped
            column_moments<T>(rows, channels, sb, sq + b * channels,
                              [blk, channels](std::size_t r, std::size_t c) { return blk[r * channels + c]; });
            T* mu = block_means<T>(sb, channels, rows, cen + b * channels);
            column_moments<T>(rows, channels, sb, sq + b * channels,
                              [blk, mu, channels](std::size_t r, std::size_t c) { return blk[r * channels + c] - mu[c]; });
        });
        combine_moments<T>(blocks.count, channels, [&blocks](std::size_t b) { return blocks.rows(b); }, part, sq, cen,
                           mean_p, var_d);
        T* scale = channel_coefficients<T>(2 * channels);
        T* shift = scale + channels;
        for (std::size_t c = 0; c < channels; ++c) {
            const double var = var_d[c];
            inv_p[c] = T(1 / std::sqrt(var + eps));
            if (batch_mean) (*batch_mean)(c) = mean_p[c];
            if (batch_var) (*batch_var)(c) = T(var);
            scale[c] = affine ? gam[c] * inv_p[c] : inv_p[c];
            shift[c] = affine ? bet[c] : T(0);
        }
        const ImageBlocks images{n, inner, n};  // one image each
        kernels::parallel_for(images.count, work, [&](std::size_t b) {
            const std::size_t at = images.first(b) * inner * channels, rows = images.rows(b);
            const T* __restrict xr = xp + at;
            T* __restrict yr = yp + at;
            const std::array<const T*, 3> coef{mean_p, scale, shift};  // μ, scale, shift
            if (res) {  // add_relu's expression on batch norm's value
                const T* __restrict sr = sp + at;
                for_columns<T>(rows, channels, coef, [=](std::size_t i, std::size_t l, const auto& cv) {
                    const T y = normalized(xr[i], cv[0][l], cv[1][l], cv[2][l]);
                    const T v = y + sr[i];
                    yr[i] = v < T(0) ? T(0) : v;
                });
            } else if (relu)  // relu's own expression: NaN stays NaN
                for_columns<T>(rows, channels, coef, [=](std::size_t i, std::size_t l, const auto& cv) {
                    const T v = normalized(xr[i], cv[0][l], cv[1][l], cv[2][l]);
                    yr[i] = v < T(0) ? T(0) : v;
                });
            else
                for_columns<T>(rows, channels, coef, [=](std::size_t i, std::size_t l, const auto& cv) {
                    yr[i] = normalized(xr[i], cv[0][l], cv[1][l], cv[2][l]);
                });
        });
    } else {
    // per (image, channel) row, in cache: the sum, then the squares about the row's mean; rows summed
    // in lanes of T, the rows' sums in double
    kernels::parallel_for(n, work, [&](std::size_t b) {
        for (std::size_t c = 0; c < channels; ++c) {
            const T* row = xp + (b * channels + c) * inner;
            const std::size_t k = b * channels + c;
            const T mu = T(lane_sum<T>(inner, [row](std::size_t i) { return row[i]; }) / double(inner));
            cen[k] = double(mu);
            part[k] = lane_sum<T>(inner, [row, mu](std::size_t i) { return row[i] - mu; });
            sq[k] = lane_sum<T>(inner, [row, mu](std::size_t i) { return (row[i] - mu) * (row[i] - mu); });
        }
    });
    combine_moments<T>(n, channels, [inner](std::size_t) { return inner; }, part, sq, cen, mean_p, var_d);
    for (std::size_t c = 0; c < channels; ++c) {
        const double var = var_d[c];
        inv_p[c] = T(1 / std::sqrt(var + eps));
        if (batch_mean) (*batch_mean)(c) = mean_p[c];
        if (batch_var) (*batch_var)(c) = T(var);
    }
    kernels::parallel_for(n, work, [&](std::size_t b) {
        for (std::size_t c = 0; c < channels; ++c) {
            const T mean_t = mean_p[c], scale = affine ? gam[c] * inv_p[c] : inv_p[c], shift = affine ? bet[c] : T(0);
            const std::size_t at = (b * channels + c) * inner;
            if (res)  // add_relu's expression on batch norm's value
                for (std::size_t i = 0; i < inner; ++i) {
                    const T y = normalized(xp[at + i], mean_t, scale, shift);
                    const T v = y + sp[at + i];
                    yp[at + i] = v < T(0) ? T(0) : v;
                }
            else if (relu)  // relu's own expression: NaN stays NaN
                for (std::size_t i = 0; i < inner; ++i) {
                    const T v = normalized(xp[at + i], mean_t, scale, shift);
                    yp[at + i] = v < T(0) ? T(0) : v;
                }
            else
                for (std::size_t i = 0; i < inner; ++i) yp[at + i] = normalized(xp[at + i], mean_t, scale, shift);
        }
    });
    }
    const std::size_t rank = xs.size();
    return op.finish_both([n, channels, inner, rank, caxis, eps, affine, relu, channels_last, res](auto& c) {
        const std::size_t m = n * inner;
        if constexpr (is_graph_backward_v<decltype(c)>) {
            // The same VJP as recorded ops; the statistics are recomputed so that they are differentiated.
            std::vector<int> axes;
            for (std::size_t a = 0; a < rank; ++a)
                if (a != caxis) axes.push_back(int(a));
            std::vector<std::ptrdiff_t> ks(rank, 1);
            ks[caxis] = std::ptrdiff_t(channels);
            const Var<T> x = c.input(0);
            // relu: G ⊙ [Y > 0], the mask a constant (relu'' = 0)
            const Var<T> g = relu ? c.grad() * c.constant(xt::eval(xt::cast<T>(c.value().value() > T(0)))) : c.grad();
            if (res && c.needs(3)) c.accumulate(3, g);
            const Var<T> d = x - mean(x, axes, true);
            const Var<T> inv = pow(mean(square(d), axes, true) + T(eps), T(-0.5));
            const Var<T> xh = d * inv;
            const Var<T> sg = sum(g, axes, true), sgx = sum(g * xh, axes, true);
            if (c.needs(0)) {
                const Var<T> k = affine ? reshape(c.input(1), ks) * inv : inv;
                c.accumulate(0, k * (g - sg / T(m) - xh * (sgx / T(m))));
            }
            if (affine) {
                c.accumulate(1, reshape(sgx, {std::ptrdiff_t(channels)}));
                c.accumulate(2, reshape(sg, {std::ptrdiff_t(channels)}));
            }
        } else {
            const T* xp = c.input(0).data();
            const T* g = c.grad().data();
            const T* y = c.value().data();
            const T* mean_p = c.saved().data();
            const T* inv_p = mean_p + channels;
            const T* gam = affine ? c.input(1).data() : nullptr;
            const InputGrad<T> dx = c.input_grad(0);
            const InputGrad<T> dw = affine ? c.input_grad(1) : InputGrad<T>{};
            const InputGrad<T> db = affine ? c.input_grad(2) : InputGrad<T>{};
            InputGrad<T> dx_ = dx;
            InputGrad<T> ds = res ? c.input_grad(3) : InputGrad<T>{};
            // x and the residual one Var (one buffer): zeroed now, both added (the residual's first)
            if (ds && dx_ && ds.buffer == dx_.buffer) {
                if (!dx_.accumulate) std::fill(dx_.buffer->begin(), dx_.buffer->end(), T(0));
                dx_.accumulate = ds.accumulate = true;
            }
            // the residual's gradient G ⊙ [Y > 0], from the masked rows of the sums' pass
            auto write_ds = [&ds](std::size_t at, const T* masked, std::size_t len) {
                T* __restrict o = ds.data() + at;
                if (ds.accumulate)
                    for (std::size_t i = 0; i < len; ++i) o[i] += masked[i];
                else
                    for (std::size_t i = 0; i < len; ++i) o[i] = masked[i];
            };
            const std::size_t nc = n * channels, work = 2 * nc * inner;
            // per channel: k, a, is of the input gradient's pass (below); the forward's scale and shift
            T* coefs = channel_coefficients<T>(5 * channels);
            T* mscale = coefs + 3 * channels;
            T* mshift = coefs + 4 * channels;
            // batch_norm_relu channels-last: the mask from x (the forward's fma), not read from y
            const bool from_x = channels_last && relu && !res;
            if (from_x)
                for (std::size_t ch = 0; ch < channels; ++ch) {
                    mscale[ch] = affine ? gam[ch] * inv_p[ch] : inv_p[ch];
                    mshift[ch] = affine ? c.input(2).data()[ch] : T(0);
                }
            const ImageBlocks blocks = channels_last ? image_blocks(n, inner) : ImageBlocks{};
            const ImageBlocks images{n, inner, n};  // one image each, for dX
            const std::size_t parts = channels_last ? blocks.count : n;  // rows of partial sums, per block or image
            double* pg = batch_norm_partials(2 * parts * channels + 2 * channels);  // Σ g, Σ g·(x − μ) per part, then per channel
            double* pgx = pg + parts * channels;
            double* sg = pgx + parts * channels;  // per channel: Σ g, Σ g·x̂ = inv·Σ g·(x − μ)
            double* sgx = sg + channels;
            if (channels_last)
                kernels::parallel_for(blocks.count, work, [&](std::size_t b) {
                    const std::size_t at = blocks.first(b) * inner * channels;
                    const auto sums = relu ? (!ds ? (from_x ? cl_backward_sums<T, true, 0, true> : cl_backward_sums<T, true, 0>)
                                              : ds.accumulate ? cl_backward_sums<T, true, 2> : cl_backward_sums<T, true, 1>)
                                           : cl_backward_sums<T, false, 0>;  // (a residual comes with relu)
                    sums(blocks.rows(b), channels, g + at, y + at, xp + at, mean_p, pg + b * channels, pgx + b * channels,
                         ds ? ds.data() + at : nullptr, mscale, mshift);
                });
            else
            kernels::parallel_for(n, work, [&](std::size_t b) {
                for (std::size_t ch = 0; ch < channels; ++ch) {
                    const std::size_t at = (b * channels + ch) * inner;
                    const T* gr = g + at;
                    const T* xr = xp + at;
                    const T mu = mean_p[ch];
                    if (relu) gr = masked_row(gr, y + at, inner);
                    if (ds) write_ds(at, gr, inner);
                    pg[b * channels + ch] = lane_sum<T>(inner, [gr](std::size_t i) { return gr[i]; });
                    pgx[b * channels + ch] = lane_sum<T>(inner, [gr, xr, mu](std::size_t i) { return gr[i] * (xr[i] - mu); });
                }
            });
            for (std::size_t ch = 0; ch < channels; ++ch) {
                double a = 0, ax = 0;
                for (std::size_t b = 0; b < parts; ++b) a += pg[b * channels + ch], ax += pgx[b * channels + ch];
                sg[ch] = a;
                sgx[ch] = ax * double(inv_p[ch]);
                // weight and bias may be one Var (one buffer): dw then db, each channel once
                if (dw) dw.data()[ch] = (dw.accumulate ? dw.data()[ch] : T(0)) + T(sgx[ch]);
                if (db) db.data()[ch] = (db.accumulate ? db.data()[ch] : T(0)) + T(sg[ch]);
            }
            if (!dx_) return;
            T* d = dx_.data();
            if (channels_last) {
                // per channel: k = γ·inv, a = Σg/M, is = inv·Σg·x̂/M
                T* k = coefs;
                T* a = k + channels;
                T* is = a + channels;
                for (std::size_t ch = 0; ch < channels; ++ch) {
                    const T inv = inv_p[ch];
                    k[ch] = affine ? gam[ch] * inv : inv;
                    a[ch] = T(sg[ch] / double(m));
                    is[ch] = inv * T(sgx[ch] / double(m));
                }
                const auto dx_pass =
                    relu ? (from_x ? (dx_.accumulate ? cl_backward_dx<T, true, true, true> : cl_backward_dx<T, true, false, true>)
                                   : (dx_.accumulate ? cl_backward_dx<T, true, true> : cl_backward_dx<T, true, false>))
                         : (dx_.accumulate ? cl_backward_dx<T, false, true> : cl_backward_dx<T, false, false>);
                kernels::parallel_for(images.count, work, [&](std::size_t b) {
                    const std::size_t at = images.first(b) * inner * channels;
                    dx_pass(images.rows(b), channels, g + at, y + at, xp + at, k, a, is, mean_p, d + at, mscale, mshift);
                });
                return;
            }
            kernels::parallel_for(n, work, [&](std::size_t b) {
                for (std::size_t ch = 0; ch < channels; ++ch) {
                    const T mu = mean_p[ch], inv = inv_p[ch];
                    const T k = affine ? gam[ch] * inv : inv, a = T(sg[ch] / double(m)), s = T(sgx[ch] / double(m));
                    const T is = inv * s;
                    const std::size_t at = (b * channels + ch) * inner;
                    const T* gr = relu ? masked_row(g + at, y + at, inner) : g + at;
                    const T* xr = xp + at;
                    T* dr = d + at;
                    if (dx_.accumulate)
                        for (std::size_t i = 0; i < inner; ++i) dr[i] += k * (gr[i] - a - (xr[i] - mu) * is);
                    else
                        for (std::size_t i = 0; i < inner; ++i) dr[i] = k * (gr[i] - a - (xr[i] - mu) * is);
                }
            });
        }
    });
}

template <class T>
Var<T> layer_norm_impl(const Var<T>& x, const Shape& normalized_shape, const Var<T>* weight, const Var<T>* bias,
                       double eps)
{
    const bool affine = weight != nullptr;
    const Var<T> inputs[3] = {x, affine ? *weight : x, affine ? *bias : x};
    OpBuilder<T> op("layer_norm", inputs, affine ? 3 : 1);
    const Shape& xs = x.shape();
    const std::size_t k = normalized_shape.size();
    if (k == 0) throw std::invalid_argument(fmt::format("layer_norm: normalized_shape is empty (input {})", shape_str(xs)));
    if (xs.size() < k || !std::equal(normalized_shape.begin(), normalized_shape.end(), xs.end() - std::ptrdiff_t(k)))
        throw ShapeError(fmt::format("layer_norm: input {} does not end with normalized_shape {}", shape_str(xs),
                                     shape_str(normalized_shape)));
    if (affine && (weight->shape() != normalized_shape || bias->shape() != normalized_shape))
        throw ShapeError(fmt::format("layer_norm: weight {} and bias {} must have normalized_shape {} (input {})",
                                     shape_str(weight->shape()), shape_str(bias->shape()), shape_str(normalized_shape),
                                     shape_str(xs)));
    check_eps("layer_norm", eps);
    std::size_t m = 1;
    for (std::size_t v : normalized_shape) m *= v;
    const std::size_t rows = m == 0 ? 0 : x.size() / m;

    Tensor<T>& st = op.saved();  // row 0 the means, row 1 the inverse standard deviations
    st.resize(Shape{2, rows});
    T* mean_p = st.data();
    T* inv_p = st.data() + rows;
    op.value().resize(xs);
    const T* xp = x.value().data();
    T* yp = op.value().data();
    const T* gam = affine ? weight->value().data() : nullptr;
    const T* bet = affine ? bias->value().data() : nullptr;
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = xp + r * m;
        double s = 0, q = 0;
        for (std::size_t i = 0; i < m; ++i) s += row[i];
        const double mu = s / double(m);
        for (std::size_t i = 0; i < m; ++i) q += (row[i] - mu) * (row[i] - mu);
        const T mean_t = T(mu), inv = T(1 / std::sqrt(q / double(m) + eps));
        mean_p[r] = mean_t;
        inv_p[r] = inv;
        T* out = yp + r * m;
        if (affine)
            for (std::size_t i = 0; i < m; ++i) out[i] = (row[i] - mean_t) * inv * gam[i] + bet[i];
        else
            for (std::size_t i = 0; i < m; ++i) out[i] = (row[i] - mean_t) * inv;
    }
    return op.finish_both([rows, m, k, eps, affine](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            std::vector<int> axes;
            for (std::size_t a = 0; a < k; ++a) axes.push_back(-int(k - a));
            const Var<T> x = c.input(0), g = c.grad();
            const Var<T> d = x - mean(x, axes, true);
            const Var<T> inv = pow(mean(square(d), axes, true) + T(eps), T(-0.5));
            const Var<T> xh = d * inv;
            if (c.needs(0)) {
                const Var<T> gh = affine ? g * c.input(1) : g;
                c.accumulate(0, inv * (gh - mean(gh, axes, true) - xh * mean(gh * xh, axes, true)));
            }
            if (affine) {
                c.accumulate(1, g * xh);  // summed over the leading axes to γ's shape
                c.accumulate(2, g);
            }
        } else {
            const T* xp = c.input(0).data();
            const T* g = c.grad().data();
            const T* mean_p = c.saved().data();
            const T* inv_p = mean_p + rows;
            const T* gam = affine ? c.input(1).data() : nullptr;
            const InputGrad<T> dx = c.input_grad(0);
            if (dx) {
                T* d = dx.data();
                for (std::size_t r = 0; r < rows; ++r) {
                    const T mu = mean_p[r], inv = inv_p[r];
                    const T* xr = xp + r * m;
                    const T* gr = g + r * m;
                    double s1 = 0, s2 = 0;
                    for (std::size_t i = 0; i < m; ++i) {
                        const T gh = affine ? gr[i] * gam[i] : gr[i];
                        s1 += gh;
                        s2 += gh * ((xr[i] - mu) * inv);
                    }
                    const T a = T(s1 / double(m)), s = T(s2 / double(m));
                    T* dr = d + r * m;
                    for (std::size_t i = 0; i < m; ++i) {
                        const T gh = affine ? gr[i] * gam[i] : gr[i];
                        const T v = inv * (gh - a - (xr[i] - mu) * inv * s);
                        dr[i] = dx.accumulate ? dr[i] + v : v;
                    }
                }
            }
            if (!affine) return;
            // After dx: x, weight and bias may share one buffer (x of normalized_shape given twice).
            const InputGrad<T> dw = c.input_grad(1);
            if (dw && !dw.accumulate) std::fill(dw.buffer->begin(), dw.buffer->end(), T(0));
            const InputGrad<T> db = c.input_grad(2);
            if (db && !db.accumulate) std::fill(db.buffer->begin(), db.buffer->end(), T(0));
            if (!dw && !db) return;
            for (std::size_t r = 0; r < rows; ++r) {
                const T mu = mean_p[r], inv = inv_p[r];
                const T* xr = xp + r * m;
                const T* gr = g + r * m;
                if (dw)
                    for (std::size_t i = 0; i < m; ++i) dw.data()[i] += gr[i] * ((xr[i] - mu) * inv);
                if (db)
                    for (std::size_t i = 0; i < m; ++i) db.data()[i] += gr[i];
            }
        }
    });
}

}  // namespace

template <class T>
Var<T> batch_norm(const Var<T>& x, const BatchNormFuncOptions<T>& options)
{
    return batch_norm_impl(x, options);
}

template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, const Var<T>& weight, const Var<T>& bias, double eps)
{
    return layer_norm_impl(x, normalized_shape, &weight, &bias, eps);
}

template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, double eps)
{
    return layer_norm_impl<T>(x, normalized_shape, nullptr, nullptr, eps);
}

#define XGRAD_INSTANTIATE(T)                                                                                  \
    template Var<T> batch_norm(const Var<T>&, const BatchNormFuncOptions<T>&);                                \
    template Var<T> layer_norm(const Var<T>&, const Shape&, const Var<T>&, const Var<T>&, double);           \
    template Var<T> layer_norm(const Var<T>&, const Shape&, double);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

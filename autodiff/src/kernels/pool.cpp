// Kernels: pooling loops over contiguous planes (see pool.hpp).
#include "kernels/pool.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "kernels/activation.hpp"
#include "kernels/parallel.hpp"
#include "xgrad/errors.hpp"

namespace xgrad::kernels {


PoolGeom pool_geometry(const char* op, const Shape& xs, std::size_t k, std::size_t s)
{
    if (xs.size() != 4) throw ShapeError(fmt::format("{}: input {} must be (N,C,H,W)", op, shape_str(xs)));
    if (k == 0) throw ShapeError(fmt::format("{}: input {}: kernel size must be at least 1, got 0", op, shape_str(xs)));
    if (s == 0) s = k;
    if (xs[2] < k || xs[3] < k)
        throw ShapeError(fmt::format("{}: kernel {} is larger than the input {}", op, k, shape_str(xs)));
    return {xs[0] * xs[1], xs[2], xs[3], k, s, (xs[2] - k) / s + 1, (xs[3] - k) / s + 1};
}

namespace {

// The 2×2, stride-2 loops of one plane, in functions of their own: with restrict pointers and the
// backward's overwrite-or-add as a template argument GCC vectorizes them (in a lambda the flag,
// captured by reference, was reloaded every element). LeNet's two pool layers, timed call by call
// against the lambdas: forward 28.0 → 24.0 and 17.2 → 12.1 µs, backward 26.4 → 22.7 and 21.4 →
// 14.8 µs (docs/performance.md). Same sums in the same order: the same bits.
template <class T>
void avg2x2_plane(const T* __restrict in, std::size_t w, std::size_t oh, std::size_t ow, T scale, T* __restrict out)
{
    for (std::size_t i = 0; i < oh; ++i) {
        const T* r0 = in + 2 * i * w;
        const T* r1 = r0 + w;
        T* o = out + i * ow;
        for (std::size_t j = 0; j < ow; ++j) o[j] = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * scale;
    }
}

template <bool Add, class T>
void avg2x2_plane_backward(const T* __restrict gin, std::size_t w, std::size_t oh, std::size_t ow, T scale,
                           T* __restrict d)
{
    for (std::size_t i = 0; i < oh; ++i) {
        T* r0 = d + 2 * i * w;
        T* r1 = r0 + w;
        const T* gi = gin + i * ow;
        for (std::size_t j = 0; j < ow; ++j) {
            const T v = gi[j] * scale;
            if constexpr (Add)
                r0[2 * j] += v, r0[2 * j + 1] += v, r1[2 * j] += v, r1[2 * j + 1] += v;
            else
                r0[2 * j] = v, r0[2 * j + 1] = v, r1[2 * j] = v, r1[2 * j + 1] = v;
        }
    }
}

/// One plane's average pooling: any window and stride, 2×2 of stride 2 through the fast loop.
template <class T>
void avg_plane(const T* plane, const PoolGeom& g, T scale, T* out)
{
    if (g.k == 2 && g.s == 2) {  // the common 2×2 case: two input rows per output row, no inner loops
        avg2x2_plane(plane, g.w, g.oh, g.ow, scale, out);
        return;
    }
    for (std::size_t i = 0; i < g.oh; ++i)
        for (std::size_t j = 0; j < g.ow; ++j) {
            T s = 0;
            for (std::size_t a = 0; a < g.k; ++a) {
                const T* row = plane + (i * g.s + a) * g.w + j * g.s;
                for (std::size_t b = 0; b < g.k; ++b) s += row[b];
            }
            out[i * g.ow + j] = s * scale;
        }
}

/// 2×2 windows of stride 2 that tile the plane write each of its elements once.
bool tiles(const PoolGeom& g) { return g.k == 2 && g.s == 2 && g.h == 2 * g.oh && g.w == 2 * g.ow; }

/// One plane's dX of average pooling: d (+)= G / k² over each window. `set` (only where the windows
/// tile the plane) overwrites d; otherwise d holds a gradient, or zeros, to add to.
template <class T>
void avg_plane_backward(const T* gp, const PoolGeom& g, T scale, T* d, bool set)
{
    if (g.k == 2 && g.s == 2) {
        if (set)
            avg2x2_plane_backward<false>(gp, g.w, g.oh, g.ow, scale, d);
        else
            avg2x2_plane_backward<true>(gp, g.w, g.oh, g.ow, scale, d);
        return;
    }
    for (std::size_t i = 0; i < g.oh; ++i)
        for (std::size_t j = 0; j < g.ow; ++j) {
            const T v = gp[i * g.ow + j] * scale;
            for (std::size_t a = 0; a < g.k; ++a) {
                T* row = d + (i * g.s + a) * g.w + j * g.s;
                for (std::size_t b = 0; b < g.k; ++b) row[b] += v;
            }
        }
}

/// A thread's scratch plane of n elements, grown once: no allocation per step.
template <class T>
T* scratch(std::size_t n)
{
    thread_local std::vector<T> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

}  // namespace

template <class T>
void avg_pool2d_forward(const T* p, const PoolGeom& g, T* q)
{
    const T scale = T(1) / T(g.k * g.k);
    parallel_for(g.planes, g.planes * g.h * g.w,
                 [&](std::size_t pl) { avg_plane(p + pl * g.h * g.w, g, scale, q + pl * g.oh * g.ow); });
}

template <class T>
void avg_pool2d_backward(const T* G, const PoolGeom& g, T* d, bool acc)
{
    // dL/dX[window] += G / k² for every window containing the element. 2×2 windows of stride 2
    // that tile the input write each element once, so overwriting needs no zero fill there;
    // other windows may overlap or skip elements: add into zeros.
    const bool set = !acc && tiles(g);
    if (!acc && !set) std::fill(d, d + g.planes * g.h * g.w, T(0));
    const T scale = T(1) / T(g.k * g.k);
    parallel_for(g.planes, g.planes * g.h * g.w, [&](std::size_t pl) {
        avg_plane_backward(G + pl * g.oh * g.ow, g, scale, d + pl * g.h * g.w, set);
    });
}

template <class T>
void activation_avg_pool2d_forward(Activation act, const T* x, const PoolGeom& g, T* y, T* kept)
{
    const T scale = T(1) / T(g.k * g.k);
    const std::size_t hw = g.h * g.w;
    const std::size_t cost = act == Activation::sigmoid || act == Activation::tanh ? exp_cost : 1;
    parallel_for(g.planes, g.planes * hw * cost, [&](std::size_t pl) {
        T* a = kept ? kept + pl * hw : scratch<T>(hw);
        activation_range(act, x + pl * hw, a, 0, hw);
        avg_plane(a, g, scale, y + pl * g.oh * g.ow);
    });
}

template <class T>
void activation_avg_pool2d_backward(Activation act, const T* G, const T* x, const T* kept, const PoolGeom& g, T* d,
                                    bool acc)
{
    const T scale = T(1) / T(g.k * g.k);
    const std::size_t hw = g.h * g.w;
    const bool set = tiles(g);
    parallel_for(g.planes, g.planes * hw, [&](std::size_t pl) {
        T* dp = scratch<T>(hw);  // this plane's dX of the pooling: the activation's G
        if (!set) std::fill(dp, dp + hw, T(0));
        avg_plane_backward(G + pl * g.oh * g.ow, g, scale, dp, set);
        activation_backward_range(act, dp, x + pl * hw, kept ? kept + pl * hw : nullptr, d + pl * hw, 0, hw, acc);
    });
}

template void avg_pool2d_forward(const float*, const PoolGeom&, float*);
template void avg_pool2d_forward(const double*, const PoolGeom&, double*);
template void avg_pool2d_backward(const float*, const PoolGeom&, float*, bool);
template void avg_pool2d_backward(const double*, const PoolGeom&, double*, bool);
template void activation_avg_pool2d_forward(Activation, const float*, const PoolGeom&, float*, float*);
template void activation_avg_pool2d_forward(Activation, const double*, const PoolGeom&, double*, double*);
template void activation_avg_pool2d_backward(Activation, const float*, const float*, const float*, const PoolGeom&,
                                             float*, bool);
template void activation_avg_pool2d_backward(Activation, const double*, const double*, const double*, const PoolGeom&,
                                             double*, bool);

template <class T>
void max_pool2d_forward(const T* p, const PoolGeom& g, T* q, std::size_t* arg)
{
    // the first maximum in row-major window order wins (NaN only where it comes first)
    if (g.k == 2 && g.s == 2) {  // the common 2×2 case, unrolled
        parallel_for(g.planes, g.planes * g.h * g.w, [&](std::size_t pl) {
            const T* plane = p + pl * g.h * g.w;
            for (std::size_t i = 0; i < g.oh; ++i) {
                const std::size_t r0 = 2 * i * g.w, r1 = r0 + g.w, o0 = (pl * g.oh + i) * g.ow;
                for (std::size_t j = 0; j < g.ow; ++j) {
                    std::size_t best = r0 + 2 * j;
                    if (plane[r0 + 2 * j + 1] > plane[best]) best = r0 + 2 * j + 1;
                    if (plane[r1 + 2 * j] > plane[best]) best = r1 + 2 * j;
                    if (plane[r1 + 2 * j + 1] > plane[best]) best = r1 + 2 * j + 1;
                    q[o0 + j] = plane[best];
                    arg[o0 + j] = best;
                }
            }
        });
        return;
    }
    parallel_for(g.planes, g.planes * g.h * g.w, [&](std::size_t pl) {
        const T* plane = p + pl * g.h * g.w;
        for (std::size_t i = 0; i < g.oh; ++i)
            for (std::size_t j = 0; j < g.ow; ++j) {
                std::size_t best = i * g.s * g.w + j * g.s;
                for (std::size_t a = 0; a < g.k; ++a)
                    for (std::size_t b = 0; b < g.k; ++b) {
                        const std::size_t at = (i * g.s + a) * g.w + j * g.s + b;
                        if (plane[at] > plane[best]) best = at;
                    }
                const std::size_t o = (pl * g.oh + i) * g.ow + j;
                q[o] = plane[best];
                arg[o] = best;
            }
    });
}

template <class T>
void max_pool2d_backward(const T* G, const std::size_t* arg, const PoolGeom& g, T* d, bool acc)
{
    // each plane's maxima lie in that plane: planes are independent
    const std::size_t per = g.oh * g.ow, hw = g.h * g.w;
    parallel_for(g.planes, g.planes * hw, [&](std::size_t pl) {
        T* plane = d + pl * hw;
        if (!acc) std::fill(plane, plane + hw, T(0));
        for (std::size_t o = 0; o < per; ++o) plane[arg[pl * per + o]] += G[pl * per + o];
    });
}

template void max_pool2d_forward(const float*, const PoolGeom&, float*, std::size_t*);
template void max_pool2d_forward(const double*, const PoolGeom&, double*, std::size_t*);
template void max_pool2d_backward(const float*, const std::size_t*, const PoolGeom&, float*, bool);
template void max_pool2d_backward(const double*, const std::size_t*, const PoolGeom&, double*, bool);

}  // namespace xgrad::kernels

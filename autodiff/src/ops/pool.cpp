// 2-D max and average pooling as loops over contiguous planes.
#include "xgrad/ops/pool.hpp"

#include <vector>

#include "xgrad/detail/kernels.hpp"
#include "../op_util.hpp"

namespace xgrad {

namespace detail {

PoolGeom pool_geometry(const char* op, const Shape& xs, std::size_t k, std::size_t s)
{
    if (xs.size() != 4) throw ShapeError(std::string(op) + ": input " + shape_str(xs) + " must be (N,C,H,W)");
    if (k == 0) throw ShapeError(std::string(op) + ": input " + shape_str(xs) + ": kernel size must be at least 1, got 0");
    if (s == 0) s = k;
    if (xs[2] < k || xs[3] < k)
        throw ShapeError(std::string(op) + ": kernel " + std::to_string(k) + " is larger than the input " +
                         shape_str(xs));
    return {xs[0] * xs[1], xs[2], xs[3], k, s, (xs[2] - k) / s + 1, (xs[3] - k) / s + 1};
}

constexpr std::size_t parallel_threshold = std::size_t(1) << 16;  // elements; below, one thread

template <class T>
void avg_pool2d_forward(const T* p, const PoolGeom& g, T* q)
{
    const T scale = T(1) / T(g.k * g.k);
    if (g.k == 2 && g.s == 2) {  // the common 2×2 case: two input rows per output row, no inner loops
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w >= parallel_threshold)
        for (std::size_t pl = 0; pl < g.planes; ++pl)
            for (std::size_t i = 0; i < g.oh; ++i) {
                const T* r0 = p + pl * g.h * g.w + 2 * i * g.w;
                const T* r1 = r0 + g.w;
                T* out = q + (pl * g.oh + i) * g.ow;
                for (std::size_t j = 0; j < g.ow; ++j)
                    out[j] = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * scale;
            }
        return;
    }
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w >= parallel_threshold)
    for (std::size_t pl = 0; pl < g.planes; ++pl) {
        const T* plane = p + pl * g.h * g.w;
        for (std::size_t i = 0; i < g.oh; ++i)
            for (std::size_t j = 0; j < g.ow; ++j) {
                T s = 0;
                for (std::size_t a = 0; a < g.k; ++a) {
                    const T* row = plane + (i * g.s + a) * g.w + j * g.s;
                    for (std::size_t b = 0; b < g.k; ++b) s += row[b];
                }
                q[(pl * g.oh + i) * g.ow + j] = s * scale;
            }
    }
}

template <class T>
void avg_pool2d_backward_add(const T* G, const PoolGeom& g, T* d)
{
    // dL/dX[window] += G / k² for every window containing the element
    const T scale = T(1) / T(g.k * g.k);
    if (g.k == 2 && g.s == 2) {
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w >= parallel_threshold)
        for (std::size_t pl = 0; pl < g.planes; ++pl)
            for (std::size_t i = 0; i < g.oh; ++i) {
                T* r0 = d + pl * g.h * g.w + 2 * i * g.w;
                T* r1 = r0 + g.w;
                const T* gin = G + (pl * g.oh + i) * g.ow;
                for (std::size_t j = 0; j < g.ow; ++j) {
                    const T v = gin[j] * scale;
                    r0[2 * j] += v, r0[2 * j + 1] += v, r1[2 * j] += v, r1[2 * j + 1] += v;
                }
            }
        return;
    }
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w >= parallel_threshold)
    for (std::size_t pl = 0; pl < g.planes; ++pl) {
        T* plane = d + pl * g.h * g.w;
        for (std::size_t i = 0; i < g.oh; ++i)
            for (std::size_t j = 0; j < g.ow; ++j) {
                const T v = G[(pl * g.oh + i) * g.ow + j] * scale;
                for (std::size_t a = 0; a < g.k; ++a) {
                    T* row = plane + (i * g.s + a) * g.w + j * g.s;
                    for (std::size_t b = 0; b < g.k; ++b) row[b] += v;
                }
            }
    }
}

template void avg_pool2d_forward(const float*, const PoolGeom&, float*);
template void avg_pool2d_forward(const double*, const PoolGeom&, double*);
template void avg_pool2d_backward_add(const float*, const PoolGeom&, float*);
template void avg_pool2d_backward_add(const double*, const PoolGeom&, double*);

}  // namespace detail

namespace {
/// Shared start of both pooling ops: geometry (ShapeError naming the op), the node, its output shape.
template <class T>
OpBuilder<T> begin_pool(const char* name, const Var<T>& x, std::size_t kernel, std::size_t stride, detail::PoolGeom& g)
{
    const Shape& xs = x.shape();
    g = detail::pool_geometry(name, xs, kernel, stride);
    auto op = detail::tape_of(x).begin_op(name, {x});
    op.value().resize(Shape{xs[0], xs[1], g.oh, g.ow});
    return op;
}
}  // namespace

template <class T>
Var<T> max_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride)
{
    detail::PoolGeom g;
    auto op = begin_pool("max_pool2d", x, kernel, stride, g);
    const Tensor<T>& xv = x.value();
    Tensor<T>& out = op.value();
    std::vector<std::uint32_t> arg(out.size());  // flat input offset within the plane
    const T* p = xv.data();
    T* q = out.data();
    for (std::size_t pl = 0; pl < g.planes; ++pl) {
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
                arg[o] = std::uint32_t(best);
            }
    }
    return op.finish([g, arg = std::move(arg)](BackwardContext<T>& c) {
        // dL/dX = G routed to the position of each window's maximum
        bool fresh;
        Tensor<T>& gx = c.grad_buffer(0, fresh);
        detail::zero_if_fresh(gx, fresh);
        const T* G = c.grad().data();
        T* d = gx.data();
        const std::size_t per = g.oh * g.ow;
        for (std::size_t pl = 0; pl < g.planes; ++pl)
            for (std::size_t o = 0; o < per; ++o) d[pl * g.h * g.w + arg[pl * per + o]] += G[pl * per + o];
    });
}

template <class T>
Var<T> avg_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride)
{
    detail::PoolGeom g;
    auto op = begin_pool("avg_pool2d", x, kernel, stride, g);
    detail::avg_pool2d_forward(x.value().data(), g, op.value().data());
    return op.finish([g](BackwardContext<T>& c) {
        // dL/dX = G / k² spread over each window
        bool fresh;
        Tensor<T>& gx = c.grad_buffer(0, fresh);
        detail::zero_if_fresh(gx, fresh);
        detail::avg_pool2d_backward_add(c.grad().data(), g, gx.data());
    });
}

#define XGRAD_INSTANTIATE(T)                                              \
    template Var<T> max_pool2d(const Var<T>&, std::size_t, std::size_t);  \
    template Var<T> avg_pool2d(const Var<T>&, std::size_t, std::size_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

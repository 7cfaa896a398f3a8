// 2-D max and average pooling as loops over contiguous planes.
#include "xgrad/ops/pool.hpp"

#include <fmt/format.h>

#include "../op_util.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "kernels/pool.hpp"

namespace xgrad {

namespace {

/// dX of avg_pool2d as an op: Y (x_shape) = G / k² spread over each k×k window (added where windows
/// overlap). G (N,C,OH,OW).   dG = avg_pool2d(GY, k, s): the two ops are each other's VJP.
template <class T>
Var<T> avg_pool2d_backward(const Var<T>& g, const Shape& x_shape, std::size_t kernel, std::size_t stride)
{
    auto op = begin_op("avg_pool2d_backward", {g});
    const kernels::PoolGeom geo = kernels::pool_geometry("avg_pool2d_backward", x_shape, kernel, stride);
    const Shape want{x_shape[0], x_shape[1], geo.oh, geo.ow};
    if (g.shape() != want)
        throw ShapeError(fmt::format("avg_pool2d_backward: gradient {} vs pooled output {} of input {}",
                                     shape_str(g.shape()), shape_str(want), shape_str(x_shape)));
    op.value().resize(x_shape);
    kernels::avg_pool2d_backward(g.value().data(), geo, op.value().data(), false);
    return op.finish_both([geo](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, avg_pool2d(c.grad(), geo.k, geo.s));
        } else {
            const InputGrad<T> dg = c.input_grad(0);
            if (!dg.accumulate) {
                kernels::avg_pool2d_forward(c.grad().data(), geo, dg.data());
            } else {
                thread_local Tensor<T> tmp;
                tmp.resize(c.input(0).shape());
                kernels::avg_pool2d_forward(c.grad().data(), geo, tmp.data());
                *dg.buffer += tmp;
            }
        }
    });
}

}  // namespace

/// Y[n,c,i,j] = max over the k×k window at (i·s, j·s).   dX = G routed to each window's (first) max
/// (recorded: scatter_add_flat of G to the maxima's flat positions)
template <class T>
Var<T> max_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride)
{
    auto op = begin_op("max_pool2d", {x});
    const Shape& xs = x.shape();
    const kernels::PoolGeom g = kernels::pool_geometry("max_pool2d", xs, kernel, stride);
    op.value().resize(Shape{xs[0], xs[1], g.oh, g.ow});
    std::vector<std::size_t>& argmax = op.saved_index();  // kept with the node: no allocation per step
    argmax.resize(op.value().size());
    kernels::max_pool2d_forward(x.value().data(), g, op.value().data(), argmax.data());
    return op.finish_both([g](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            // argmax holds offsets within a plane: flat positions in X are plane·H·W + offset
            const std::vector<std::size_t>& arg = c.saved_index();
            const std::size_t per = g.oh * g.ow;
            std::vector<std::size_t> pos(arg.size());
            for (std::size_t i = 0; i < arg.size(); ++i) pos[i] = (i / per) * g.h * g.w + arg[i];
            c.accumulate(0, detail::scatter_add_flat(c.grad(), pos, c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            kernels::max_pool2d_backward(c.grad().data(), c.saved_index().data(), g, dx.data(), dx.accumulate);
        }
    });
}

/// Y[n,c,i,j] = mean over the k×k window at (i·s, j·s).  dX = G / k² spread over each window
/// (recorded: the op avg_pool2d_backward, whose VJP is avg_pool2d)
template <class T>
Var<T> avg_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride)
{
    auto op = begin_op("avg_pool2d", {x});
    const Shape& xs = x.shape();
    const kernels::PoolGeom g = kernels::pool_geometry("avg_pool2d", xs, kernel, stride);
    op.value().resize(Shape{xs[0], xs[1], g.oh, g.ow});
    kernels::avg_pool2d_forward(x.value().data(), g, op.value().data());
    return op.finish_both([g](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, avg_pool2d_backward(c.grad(), c.input(0).shape(), g.k, g.s));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            kernels::avg_pool2d_backward(c.grad().data(), g, dx.data(), dx.accumulate);
        }
    });
}

/// Y = avg_pool2d(act(X), k, s) as one op, X (N,C,H,W): relu(X) is made a plane at a time in cache
/// and never stored; σ(X) and tanh(X) are kept for the backward, never read back forward.
///   dX = act'(X) ⊙ P(G), P the pooling's dX (G / k² spread over each window); act' from X (relu's
///   mask) or from the kept act(X) (σ(1 − σ), 1 − tanh²). The same bits as the two ops.
/// (recorded: avg_pool2d_backward, then the activation's VJP as ops)
template <class T>
Var<T> activation_avg_pool2d(const Var<T>& x, Activation act, std::size_t kernel, std::size_t stride)
{
    if (act == Activation::identity) return avg_pool2d(x, kernel, stride);
    auto op = begin_op("activation_avg_pool2d", {x});
    const Shape& xs = x.shape();
    const kernels::PoolGeom g = kernels::pool_geometry("activation_avg_pool2d", xs, kernel, stride);
    op.value().resize(Shape{xs[0], xs[1], g.oh, g.ow});
    // relu's backward needs only X; sigmoid's and tanh's keep act(X) (recomputing the exponentials
    // cost more than reading it back: document 002's CNN, 0.69 → 0.77 ms a step)
    T* kept = nullptr;
    if (act != Activation::relu) {
        op.saved().resize(xs);
        kept = op.saved().data();
    }
    kernels::activation_avg_pool2d_forward(act, x.value().data(), g, op.value().data(), kept);
    // one closure for both sweeps: two would capture the geometry twice, past the node's inline
    // closure buffer (one allocation a step)
    return op.finish_both([g, act](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> x = c.input(0);
            const Var<T> p = avg_pool2d_backward(c.grad(), x.shape(), g.k, g.s);
            switch (act) {
                case Activation::relu: c.accumulate(0, detail::relu_backward(p, x)); return;
                case Activation::sigmoid: {
                    const Var<T> y = sigmoid(x);
                    c.accumulate(0, p * (y * (T(1) - y)));
                    return;
                }
                case Activation::tanh: {
                    const Var<T> y = tanh(x);
                    c.accumulate(0, p * (T(1) - y * y));
                    return;
                }
                case Activation::identity: c.accumulate(0, p); return;
            }
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx) return;
            const T* kept = act == Activation::relu ? nullptr : c.saved().data();
            kernels::activation_avg_pool2d_backward(act, c.grad().data(), c.input(0).data(), kept, g, dx.data(),
                                                    dx.accumulate);
        }
    });
}

#define XGRAD_INSTANTIATE(T)                                                                      \
    template Var<T> max_pool2d(const Var<T>&, std::size_t, std::size_t);                          \
    template Var<T> avg_pool2d(const Var<T>&, std::size_t, std::size_t);                          \
    template Var<T> activation_avg_pool2d(const Var<T>&, Activation, std::size_t, std::size_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

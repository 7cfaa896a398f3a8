// 2-D max and average pooling as loops over contiguous planes.
#include "xgrad/ops/pool.hpp"

#include "../op_util.hpp"
#include "kernels/pool.hpp"

namespace xgrad {



/// Y[n,c,i,j] = max over the k×k window at (i·s, j·s).   dX = G routed to each window's (first) max
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
    return op.finish([g](BackwardContext<T>& c) {
        const InputGrad<T> dx = c.input_grad(0);
        kernels::max_pool2d_backward(c.grad().data(), c.saved_index().data(), g, dx.data(), dx.accumulate);
    });
}

/// Y[n,c,i,j] = mean over the k×k window at (i·s, j·s).  dX = G / k² spread over each window
template <class T>
Var<T> avg_pool2d(const Var<T>& x, std::size_t kernel, std::size_t stride)
{
    auto op = begin_op("avg_pool2d", {x});
    const Shape& xs = x.shape();
    const kernels::PoolGeom g = kernels::pool_geometry("avg_pool2d", xs, kernel, stride);
    op.value().resize(Shape{xs[0], xs[1], g.oh, g.ow});
    kernels::avg_pool2d_forward(x.value().data(), g, op.value().data());
    return op.finish([g](BackwardContext<T>& c) {
        const InputGrad<T> dx = c.input_grad(0);
        kernels::avg_pool2d_backward(c.grad().data(), g, dx.data(), dx.accumulate);
    });
}

#define XGRAD_INSTANTIATE(T)                                              \
    template Var<T> max_pool2d(const Var<T>&, std::size_t, std::size_t);  \
    template Var<T> avg_pool2d(const Var<T>&, std::size_t, std::size_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

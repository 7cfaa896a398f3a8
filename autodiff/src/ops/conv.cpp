// 2-D convolution: im2col over the whole batch, then one GEMM (forward) or two (backward).
#include "xgrad/ops/conv.hpp"

#include "../op_util.hpp"
#include "kernels/conv.hpp"

namespace xgrad {

namespace {

template <class T>
Var<T> conv2d_impl(const Var<T>& x, const Var<T>& w, const Var<T>* b, Conv2dOptions options)
{
    const Var<T> ins[3] = {x, w, b ? *b : w};
    const std::size_t n_in = b ? 3 : 2;
    OpBuilder<T> op("conv2d", ins, n_in);
    const Tensor<T>& xv = x.value();
    const Tensor<T>& wv = w.value();
    const kernels::ConvGeom g =
        kernels::conv_geometry(xv.shape(), wv.shape(), b ? &b->shape() : nullptr, options.stride(), options.padding());
    Tensor<T>& out = op.value();
    out.resize(Shape{g.n, g.o, g.oh, g.ow});
    // Keep the im2col matrix for dW only if the backward will run.
    T* cols = nullptr;
    if (op.requires_grad()) {
        op.saved().resize(Shape{g.k(), g.l()});
        cols = op.saved().data();
    }
    kernels::conv2d_forward(xv.data(), wv.data(), b ? b->value().data() : nullptr, g, out.data(), cols);
    return op.finish([g, n_in](BackwardContext<T>& c) {
        // dL/dX = col2im(Wᵀ·G), dL/dW = G·colsᵀ, dL/db = Σ G
        InputGrad<T> dx = c.input_grad(0), dw = c.input_grad(1);
        const InputGrad<T> db = n_in == 3 ? c.input_grad(2) : InputGrad<T>{};
        // The same Var as two inputs (conv2d(x, x)) has one buffer, unwritten only for the first
        // handle: zero it now, so the kernel adds both products into it in any order.
        if (dx && dx.buffer == dw.buffer) {  // (x and b, or w and b, can never be one Var: their ranks differ)
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            dx.accumulate = dw.accumulate = true;
        }
        kernels::conv2d_backward(c.input(0).data(), c.input(1).data(), c.grad().data(), g, dx.data(), dx.accumulate,
                                 dw.data(), dw.accumulate, db.data(), db.accumulate, c.saved().data());
    });
}

}  // namespace

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, Conv2dOptions options)
{
    return conv2d_impl(x, w, &b, options);
}

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, Conv2dOptions options)
{
    return conv2d_impl<T>(x, w, nullptr, options);
}

#define XGRAD_INSTANTIATE(T)                                                           \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Var<T>&, Conv2dOptions); \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, Conv2dOptions);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

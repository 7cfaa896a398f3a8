// 2-D convolution: float on oneDNN's convolution primitives (kernels/conv_dnnl), double by im2col
// over the whole batch and GEMMs; and the two internal ops its VJPs are recorded with (double
// backward), each the others' VJP.
#include "xgrad/ops/conv.hpp"

#include <fmt/format.h>

#include <type_traits>

#include "../op_util.hpp"
#include "kernels/conv.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/conv_dnnl.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {

// The convolution's bilinear family, closed under differentiation (x (N,C,H,W), w (O,C,KH,KW),
// g (N,O,OH,OW), all with one stride and padding):
//   conv2d(x, w)                     VJP  dx = conv2d_input_grad(g, w),    dw = conv2d_weight_grad(x, g)
//   conv2d_input_grad(g, w) (x's shape)   dg = conv2d(gg, w),              dw = conv2d_weight_grad(gg, g)
//   conv2d_weight_grad(x, g) (w's shape)  dx = conv2d_input_grad(g, gw),   dg = conv2d(x, gw)
template <class T>
Var<T> conv2d_input_grad(const Var<T>& g, const Var<T>& w, const Shape& x_shape, std::size_t stride,
                         std::size_t padding);
template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& g, const Shape& w_shape, std::size_t stride,
                          std::size_t padding, const Tensor<T>* cols = nullptr);

/// Checks that g is the gradient of the convolution's output (N,O,OH,OW).
void check_output_grad(const char* op, const kernels::ConvGeom& geo, const Shape& gs)
{
    const Shape want{geo.n, geo.o, geo.oh, geo.ow};
    if (gs != want)
        throw ShapeError(fmt::format("{}: gradient {} vs convolution output {} (stride {}, padding {})", op,
                                     shape_str(gs), shape_str(want), geo.s, geo.p));
}

/// y = conv2d(x, w) without bias into `out` (overwritten), or added to it.
/// `cols`, if not null, is x's im2col matrix, already built.
template <class T>
void conv_into(const T* x, const T* w, const kernels::ConvGeom& geo, T* out, bool acc, const T* cols = nullptr)
{
    auto conv = [&](T* y) {
        if (cols)
            kernels::conv2d_forward_cols<T>(cols, w, nullptr, geo, y);
        else
            kernels::conv2d_forward<T>(x, w, nullptr, geo, y);
    };
    if (!acc) {
        conv(out);
        return;
    }
    thread_local Tensor<T> tmp;  // reused: no allocation once shapes are stable
    tmp.resize(Shape{geo.n, geo.o, geo.oh, geo.ow});
    conv(tmp.data());
    for (std::size_t i = 0; i < tmp.size(); ++i) out[i] += tmp.data()[i];
}

/// float convolutions run on oneDNN's convolution primitives when the build has them; double
/// (which oneDNN does not convolve) and builds without oneDNN use im2col + GEMM.
template <class T>
bool use_dnnl()
{
    if constexpr (std::is_same_v<T, float>)
        return kernels::dnnl_conv_available();
    else
        return false;
}
// Only reached with T = float (use_dnnl); the casts let the double instantiation compile.
template <class T>
float* float_ptr(T* p)
{
    return reinterpret_cast<float*>(p);
}
template <class T>
const float* float_ptr(const T* p)
{
    return reinterpret_cast<const float*>(p);
}
kernels::DnnlConvShape dnnl_shape(const kernels::ConvGeom& g, bool channels_last = false)
{
    kernels::DnnlConvShape s{g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.s, g.p};
    s.channels_last = channels_last;
    return s;
}

// Channels-last activations (N,H,W,C) and the NCHW ones of the convolution family.
template <class T>
Var<T> to_nchw(const Var<T>& x)
{
    return permute(x, {0, 3, 1, 2});
}
template <class T>
Var<T> to_nhwc(const Var<T>& x)
{
    return permute(x, {0, 2, 3, 1});
}

/// Checks a channels-last input's rank before it is permuted (the permute's own error would not
/// name conv2d).
void check_channels_last_rank(const Shape& xs, const Shape& ws)
{
    if (xs.size() != 4)
        throw ShapeError(fmt::format("conv2d (channels_last): input {} and weight {}: need X (N,H,W,C) and W (O,C,KH,KW)",
                                     shape_str(xs), shape_str(ws)));
}

/// conv_into on oneDNN (float): y = conv2d(x, w) without bias into `out`, or added to it.
template <class T>
void dnnl_conv_into(const T* x, const T* w, const kernels::ConvGeom& geo, T* out, bool acc)
{
    if (!acc) {
        kernels::float_conv2d_forward(float_ptr(x), float_ptr(w), nullptr, dnnl_shape(geo), float_ptr(out));
        return;
    }
    thread_local Tensor<T> tmp;  // reused: no allocation once shapes are stable
    tmp.resize(Shape{geo.n, geo.o, geo.oh, geo.ow});
    kernels::float_conv2d_forward(float_ptr(x), float_ptr(w), nullptr, dnnl_shape(geo), float_ptr(tmp.data()));
    for (std::size_t i = 0; i < tmp.size(); ++i) out[i] += tmp.data()[i];
}

template <class T>
Var<T> conv2d_impl(const Var<T>& x, const Var<T>& w, const Var<T>* b, Conv2dOptions options)
{
    const Var<T> ins[3] = {x, w, b ? *b : w};
    const std::size_t n_in = b ? 3 : 2;
    OpBuilder<T> op("conv2d", ins, n_in);
    const Tensor<T>& xv = x.value();
    const Tensor<T>& wv = w.value();
    const bool cl = options.channels_last();  // only on oneDNN (conv2d sends the rest through permutes)
    if (cl) check_channels_last_rank(xv.shape(), wv.shape());
    const Shape& xs = xv.shape();
    const kernels::ConvGeom g = [&] {
        if (!cl) return kernels::conv_geometry(xs, wv.shape(), b ? &b->shape() : nullptr, options.stride(), options.padding());
        try {
            return kernels::conv_geometry(Shape{xs[0], xs[3], xs[1], xs[2]}, wv.shape(), b ? &b->shape() : nullptr,
                                          options.stride(), options.padding());
        } catch (const ShapeError& e) {
            throw ShapeError(fmt::format("conv2d (channels_last): input (N,H,W,C) {}, as NCHW: {}", shape_str(xs), e.what()));
        }
    }();
    Tensor<T>& out = op.value();
    out.resize(cl ? Shape{g.n, g.oh, g.ow, g.o} : Shape{g.n, g.o, g.oh, g.ow});
    const bool dnnl = use_dnnl<T>();
    if (cl && !dnnl) throw std::logic_error("conv2d: channels_last reached the kernel without oneDNN");
    if (dnnl) {
        // x as oneDNN's forward reorders it (a strided 1 × 1's samples of x), kept in this node's saved()
        // for the weight gradient
        float* kept = nullptr;
        if (op.requires_grad() && (w.requires_grad() || (b && b->requires_grad()))) {  // (read by dW and db only)
            const std::size_t nk = kernels::float_conv2d_kept_input_size(dnnl_shape(g, cl), b != nullptr);
            if (nk) {
                op.saved().resize(Shape{nk});
                kept = float_ptr(op.saved().data());
            }
        }
        kernels::float_conv2d_forward(float_ptr(xv.data()), float_ptr(wv.data()), b ? float_ptr(b->value().data()) : nullptr,
                                     dnnl_shape(g, cl), float_ptr(out.data()), kept);
    } else {
        // Keep the im2col matrix for dW only if the backward will run.
        T* cols = nullptr;
        if (op.requires_grad()) {
            op.saved().resize(Shape{g.k(), g.l()});
            cols = op.saved().data();
        }
        kernels::conv2d_forward(xv.data(), wv.data(), b ? b->value().data() : nullptr, g, out.data(), cols);
    }
    return op.finish_both([g, n_in, dnnl, cl](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            // dX = conv2d_input_grad(G, W), dW = conv2d_weight_grad(X, G), db = Σ_{n,i,j} G
            const Var<T> G = c.grad(), X = c.input(0), W = c.input(1);
            if (cl) {  // the same through permutes
                const Var<T> Gc = to_nchw(G);
                if (c.needs(0)) c.accumulate(0, to_nhwc(conv2d_input_grad(Gc, W, Shape{g.n, g.c, g.h, g.w}, g.s, g.p)));
                if (c.needs(1)) c.accumulate(1, conv2d_weight_grad(to_nchw(X), Gc, W.shape(), g.s, g.p));
                if (n_in == 3 && c.needs(2)) c.accumulate(2, sum(G, {0, 1, 2}));
                return;
            }
            if (c.needs(0)) c.accumulate(0, conv2d_input_grad(G, W, X.shape(), g.s, g.p));
            // X's im2col matrix is this node's saved() (without oneDNN): the recorded dW reads it
            // instead of rebuilding it
            if (c.needs(1)) c.accumulate(1, conv2d_weight_grad(X, G, W.shape(), g.s, g.p, dnnl ? nullptr : &c.saved()));
            if (n_in == 3 && c.needs(2)) c.accumulate(2, sum(G, {0, 2, 3}));
        } else {
            // dL/dX = col2im(Wᵀ·G), dL/dW = G·colsᵀ, dL/db = Σ G
            InputGrad<T> dx = c.input_grad(0), dw = c.input_grad(1);
            const InputGrad<T> db = n_in == 3 ? c.input_grad(2) : InputGrad<T>{};
            // The same Var as two inputs (conv2d(x, x)) has one buffer, unwritten only for the first
            // handle: zero it now, so the kernel adds both products into it in any order.
            if (dx && dx.buffer == dw.buffer) {  // (x and b, or w and b, can never be one Var: their ranks differ)
                if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
                dx.accumulate = dw.accumulate = true;
            }
            if (dnnl) {
                const T* kept = c.saved().size() ? c.saved().data() : nullptr;
                kernels::float_conv2d_backward(float_ptr(c.input(0).data()), float_ptr(c.input(1).data()),
                                              float_ptr(c.grad().data()), dnnl_shape(g, cl), float_ptr(dx.data()),
                                              dx.accumulate, float_ptr(dw.data()), dw.accumulate, float_ptr(db.data()),
                                              db.accumulate, float_ptr(kept));
                return;
            }
            kernels::conv2d_backward(c.input(0).data(), c.input(1).data(), c.grad().data(), g, dx.data(),
                                     dx.accumulate, dw.data(), dw.accumulate, db.data(), db.accumulate,
                                     c.saved().data());
        }
    });
}

/// dX of a convolution as an op (the transposed convolution): Y = col2im(Wᵀ·G), of shape x_shape.
/// G (N,O,OH,OW), W (O,C,KH,KW).   dG = conv2d(GY, W),  dW = conv2d_weight_grad(GY, G)
template <class T>
Var<T> conv2d_input_grad(const Var<T>& g, const Var<T>& w, const Shape& x_shape, std::size_t stride,
                         std::size_t padding)
{
    auto op = begin_op("conv2d_input_grad", {g, w});
    const kernels::ConvGeom geo = kernels::conv_geometry(x_shape, w.shape(), nullptr, stride, padding);
    check_output_grad("conv2d_input_grad", geo, g.shape());
    op.value().resize(x_shape);
    // float on oneDNN as conv2d's first-order backward, so both give the same numbers
    const bool dnnl = use_dnnl<T>();
    if (dnnl)
        kernels::float_conv2d_backward(nullptr, float_ptr(w.value().data()), float_ptr(g.value().data()), dnnl_shape(geo),
                                      float_ptr(op.value().data()), false, nullptr, false, nullptr, false);
    else
        kernels::conv2d_backward_rows<T>(nullptr, w.value().data(), g.value().data(), geo, op.value().data(), false,
                                         nullptr, false);
    return op.finish_both([geo, dnnl](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> GY = c.grad(), G = c.input(0), W = c.input(1);
            if (c.needs(0)) c.accumulate(0, conv2d(GY, W, Conv2dOptions().stride(geo.s).padding(geo.p)));
            if (c.needs(1)) c.accumulate(1, conv2d_weight_grad(GY, G, W.shape(), geo.s, geo.p));
        } else if (dnnl) {
            const T* gy = c.grad().data();
            if (const InputGrad<T> dg = c.input_grad(0)) dnnl_conv_into(gy, c.input(1).data(), geo, dg.data(), dg.accumulate);
            if (const InputGrad<T> dw = c.input_grad(1))
                kernels::float_conv2d_backward(float_ptr(gy), nullptr, float_ptr(c.input(0).data()), dnnl_shape(geo),
                                              nullptr, false, float_ptr(dw.data()), dw.accumulate, nullptr, false);
        } else {
            const T* gy = c.grad().data();
            // GY's im2col matrix, built once: dG = W·cols and dW = Gt·colsᵀ both read it
            thread_local Tensor<T> gy_cols;  // reused: no allocation once shapes are stable
            gy_cols.resize(Shape{geo.k(), geo.l()});
            const T* cols = gy_cols.data();
            kernels::im2col(gy, geo, gy_cols.data());
            // one at a time: G and W given as one Var share a buffer (the second call accumulates)
            if (const InputGrad<T> dg = c.input_grad(0)) conv_into(gy, c.input(1).data(), geo, dg.data(), dg.accumulate, cols);
            if (const InputGrad<T> dw = c.input_grad(1))
                kernels::conv2d_backward_rows<T>(gy, nullptr, c.input(0).data(), geo, nullptr, false, dw.data(),
                                                 dw.accumulate, cols);
        }
    });
}

/// dW of a convolution as an op: Y = G·im2col(X)ᵀ, of shape w_shape. X (N,C,H,W), G (N,O,OH,OW).
/// dX = conv2d_input_grad(G, GY),  dG = conv2d(X, GY)
/// `cols`: X's im2col matrix kept by the conv2d node this gradient belongs to (it lives as long as
/// this node: both are on one tape until clear()), or null to rebuild it.
template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& g, const Shape& w_shape, std::size_t stride,
                          std::size_t padding, const Tensor<T>* cols)
{
    auto op = begin_op("conv2d_weight_grad", {x, g});
    const kernels::ConvGeom geo = kernels::conv_geometry(x.shape(), w_shape, nullptr, stride, padding);
    check_output_grad("conv2d_weight_grad", geo, g.shape());
    const T* xcols = cols && cols->size() == geo.k() * geo.l() ? cols->data() : nullptr;
    op.value().resize(w_shape);
    const bool dnnl = use_dnnl<T>();  // as in conv2d_input_grad
    if (dnnl)
        kernels::float_conv2d_backward(float_ptr(x.value().data()), nullptr, float_ptr(g.value().data()), dnnl_shape(geo),
                                      nullptr, false, float_ptr(op.value().data()), false, nullptr, false);
    else
        kernels::conv2d_backward_rows<T>(x.value().data(), nullptr, g.value().data(), geo, nullptr, false,
                                         op.value().data(), false, xcols);
    return op.finish_both([geo, xcols, dnnl](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> GY = c.grad(), X = c.input(0), G = c.input(1);
            if (c.needs(0)) c.accumulate(0, conv2d_input_grad(G, GY, X.shape(), geo.s, geo.p));
            if (c.needs(1)) c.accumulate(1, conv2d(X, GY, Conv2dOptions().stride(geo.s).padding(geo.p)));
        } else if (dnnl) {
            const T* gy = c.grad().data();
            if (const InputGrad<T> dx = c.input_grad(0))
                kernels::float_conv2d_backward(nullptr, float_ptr(gy), float_ptr(c.input(1).data()), dnnl_shape(geo),
                                              float_ptr(dx.data()), dx.accumulate, nullptr, false, nullptr, false);
            if (const InputGrad<T> dg = c.input_grad(1)) dnnl_conv_into(c.input(0).data(), gy, geo, dg.data(), dg.accumulate);
        } else {
            const T* gy = c.grad().data();
            if (const InputGrad<T> dx = c.input_grad(0))
                kernels::conv2d_backward_rows<T>(nullptr, gy, c.input(1).data(), geo, dx.data(), dx.accumulate,
                                                 nullptr, false);
            if (const InputGrad<T> dg = c.input_grad(1)) conv_into(c.input(0).data(), gy, geo, dg.data(), dg.accumulate, xcols);
        }
    });
}

/// conv2d with dilation or groups, composed of recorded ops (see the header): W's taps scattered
/// d apart into a zero kernel, then one dense conv2d per channel group, joined along the channels.
template <class T>
Var<T> conv2d_composed(const Var<T>& x, const Var<T>& w, const Var<T>* b, const Conv2dOptions& o)
{
    const std::size_t d = o.dilation(), groups = o.groups();
    if (d == 0 || groups == 0)
        throw std::invalid_argument(fmt::format("conv2d: dilation and groups must be >= 1, got dilation {}, groups {}", d, groups));
    const Shape &xs = x.shape(), &ws = w.shape();
    if (xs.size() != 4 || ws.size() != 4)
        throw ShapeError(fmt::format("conv2d: input {} and weight {}: need X (N,C,H,W) and W (O,C/groups,KH,KW)",
                                     shape_str(xs), shape_str(ws)));
    const std::size_t c = xs[1], o_ch = ws[0];
    if (c % groups != 0 || o_ch % groups != 0 || ws[1] * groups != c)
        throw ShapeError(fmt::format("conv2d: input {} and weight {} with groups {}: need C and O divisible by "
                                     "groups and W (O, C/groups, KH, KW)",
                                     shape_str(xs), shape_str(ws), groups));
    if (b && b->shape() != Shape{o_ch})
        throw ShapeError(fmt::format("conv2d: bias {} for weight {}: need ({})", shape_str(b->shape()), shape_str(ws), o_ch));
    Var<T> wd = w;
    if (d > 1) {
        const std::size_t kh = ws[2], kw = ws[3], dh = d * (kh - 1) + 1, dw = d * (kw - 1) + 1;
        std::vector<std::size_t> at(w.value().size());
        std::size_t k = 0;
        for (std::size_t oc = 0; oc < ws[0] * ws[1]; ++oc)
            for (std::size_t p = 0; p < kh; ++p)
                for (std::size_t q = 0; q < kw; ++q) at[k++] = (oc * dh + p * d) * dw + q * d;
        wd = detail::scatter_add_flat(w, at, Shape{ws[0], ws[1], dh, dw});
    }
    const Conv2dOptions dense = Conv2dOptions().stride(o.stride()).padding(o.padding());
    Var<T> y;
    if (groups == 1) {
        y = conv2d_impl<T>(x, wd, nullptr, dense);
    } else {
        const auto cg = std::ptrdiff_t(c / groups), og = std::ptrdiff_t(o_ch / groups);
        std::vector<Var<T>> blocks;
        blocks.reserve(groups);
        for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(groups); ++i)
            blocks.push_back(conv2d_impl<T>(slice(x, 1, i * cg, (i + 1) * cg), slice(wd, 0, i * og, (i + 1) * og),
                                            nullptr, dense));
        y = concatenate(blocks, 1);
    }
    return b ? y + reshape(*b, {1, std::ptrdiff_t(o_ch), 1, 1}) : y;
}

/// Every conv2d: channels-last on oneDNN's NHWC kernels when it can, else through permutes.
template <class T>
Var<T> conv2d_any(const Var<T>& x, const Var<T>& w, const Var<T>* b, Conv2dOptions options)
{
    const bool dense = options.dilation() == 1 && options.groups() == 1;
    if (options.channels_last() && !(dense && use_dnnl<T>())) {
        check_channels_last_rank(x.shape(), w.shape());
        return to_nhwc(conv2d_any(to_nchw(x), w, b, options.channels_last(false)));
    }
    return dense ? conv2d_impl(x, w, b, options) : conv2d_composed(x, w, b, options);
}

}  // namespace

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const Var<T>& b, Conv2dOptions options)
{
    return conv2d_any(x, w, &b, options);
}

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, Conv2dOptions options)
{
    return conv2d_any<T>(x, w, nullptr, options);
}

#define XGRAD_INSTANTIATE(T)                                                           \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Var<T>&, Conv2dOptions); \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, Conv2dOptions);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

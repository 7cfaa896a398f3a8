// Every public op of xgrad (autodiff/include/xgrad/ops/*.hpp, and nn's trace_scatter_loss) as a
// module function with the C++ name. Second operands may be arrays (constants on the first's tape).
#include <xgrad/nn/losses.hpp>

#include "common.hpp"

namespace xgrad::python {

namespace {

// A Var, or anything NumPy can read, made a constant on `like`'s tape.
PyVar as_var(py::handle h, const PyVar& like)
{
    if (py::isinstance<PyVar>(h)) return h.cast<PyVar>();
    return constant_like(like, h);
}

// Two operands of which at least one is a Var; the other may be an array (a constant on its tape).
std::pair<PyVar, PyVar> operands(py::handle a, py::handle b)
{
    if (py::isinstance<PyVar>(a)) {
        PyVar va = a.cast<PyVar>();
        return {va, as_var(b, va)};
    }
    if (!py::isinstance<PyVar>(b)) throw py::type_error("xgrad: one of the two operands must be an xgrad.Var");
    PyVar vb = b.cast<PyVar>();
    return {constant_like(vb, a), vb};
}

std::vector<int> axes_of(py::handle axis)
{
    if (py::isinstance<py::int_>(axis)) return {axis.cast<int>()};
    return axis.cast<std::vector<int>>();
}

Shape shape_arg(py::handle s)
{
    Shape r;
    if (py::isinstance<py::int_>(s)) {
        r.push_back(s.cast<std::size_t>());
        return r;
    }
    for (auto d : s) {
        const long v = d.cast<long>();
        if (v < 0) throw py::value_error("xgrad: shape entries must be >= 0");
        r.push_back(static_cast<std::size_t>(v));
    }
    return r;
}

Reduction reduction_of(const std::string& r)
{
    if (r == "mean") return Reduction::mean;
    if (r == "sum") return Reduction::sum;
    if (r == "half_sum") return Reduction::half_sum;
    throw py::value_error("xgrad: reduction must be 'mean', 'sum' or 'half_sum', got '" + r + "'");
}

template <class T>
using VarT = Var<T>;

}  // namespace

void init_ops(py::module_& m)
{
    using py::arg;
#define XGRAD_UNARY(NAME, DOC)                                                                            \
    m.def(#NAME, [](const PyVar& x) { return x.map([](const auto& v) { return xgrad::NAME(v); }); }, arg("x"), DOC)
    XGRAD_UNARY(neg, "-x");
    XGRAD_UNARY(exp, "exp(x), elementwise");
    XGRAD_UNARY(log, "log(x), elementwise");
    XGRAD_UNARY(sqrt, "sqrt(x), elementwise");
    XGRAD_UNARY(abs, "|x|, elementwise");
    XGRAD_UNARY(square, "x², elementwise");
    XGRAD_UNARY(sigmoid, "1/(1 + exp(-x))");
    XGRAD_UNARY(tanh, "tanh(x)");
    XGRAD_UNARY(relu, "max(x, 0)");
    XGRAD_UNARY(transpose, "swaps the last two axes");
    XGRAD_UNARY(sin, "sin(x), elementwise");
    XGRAD_UNARY(cos, "cos(x), elementwise");
    XGRAD_UNARY(log1p, "log(1 + x), accurate near 0");
    XGRAD_UNARY(expm1, "exp(x) - 1, accurate near 0");
    XGRAD_UNARY(softplus, "log(1 + exp(x)), without overflow");
    XGRAD_UNARY(silu, "x * sigmoid(x)");
#undef XGRAD_UNARY
    m.def("gelu", [](const PyVar& x, const std::string& approximate) {
        return x.map([&](const auto& v) { return xgrad::gelu(v, approximate); });
    }, arg("x"), arg("approximate") = "none", "x * Phi(x); approximate='tanh' for the tanh form");
    m.def("leaky_relu", [](const PyVar& x, double slope) {
        return x.map([&](const auto& v) { return xgrad::leaky_relu(v, slope); });
    }, arg("x"), arg("negative_slope") = 0.01);
    m.def("elu", [](const PyVar& x, double alpha) { return x.map([&](const auto& v) { return xgrad::elu(v, alpha); }); },
          arg("x"), arg("alpha") = 1.0);
    m.def("clamp", [](const PyVar& x, double lo, double hi) {
        return x.map([&](const auto& v) { return xgrad::clamp(v, lo, hi); });
    }, arg("x"), arg("min"), arg("max"));
    m.def("where", [](py::object cond, py::object a, py::object b) {
        const auto ab = operands(a, b);
        const PyVar c = as_var(cond, ab.first);  // a bool array becomes a 0/1 constant
        return map2(ab.first, ab.second, [&](const auto& x, const auto& y) {
            using T = typename std::decay_t<decltype(x.value())>::value_type;
            return xgrad::where(c.template get<T>(), x, y);
        });
    }, arg("condition"), arg("a"), arg("b"), "condition ? a : b elementwise (condition: bool/0-1 array or Var)");
    m.def("logsumexp", [](const PyVar& x, py::object axis, bool keepdims) {
        const auto axes = axes_of(axis);
        return x.map([&](const auto& v) { return xgrad::logsumexp(v, axes, keepdims); });
    }, arg("x"), arg("axis"), arg("keepdims") = false);
    m.def("var", [](const PyVar& x, py::object axis, int correction, bool keepdims) {
        const auto axes = axes_of(axis);
        return x.map([&](const auto& v) { return xgrad::var(v, axes, correction, keepdims); });
    }, arg("x"), arg("axis"), arg("correction") = 1, arg("keepdims") = false);
    m.def("std", [](const PyVar& x, py::object axis, int correction, bool keepdims) {
        const auto axes = axes_of(axis);
        return x.map([&](const auto& v) { return xgrad::std(v, axes, correction, keepdims); });
    }, arg("x"), arg("axis"), arg("correction") = 1, arg("keepdims") = false);

#define XGRAD_BINARY(NAME, RELEASE)                                                                       \
    m.def(#NAME, [](py::object a, py::object b) {                                                        \
        const auto ab = operands(a, b);                                                                  \
        return map2(ab.first, ab.second, [](const auto& x, const auto& y) {                             \
            if (RELEASE) {                                                                               \
                py::gil_scoped_release nogil;                                                           \
                return xgrad::NAME(x, y);                                                                \
            }                                                                                            \
            return xgrad::NAME(x, y);                                                                    \
        });                                                                                              \
    }, arg("a"), arg("b"))
    XGRAD_BINARY(add, false);
    XGRAD_BINARY(sub, false);
    XGRAD_BINARY(mul, false);
    XGRAD_BINARY(div, false);
    XGRAD_BINARY(matmul, true);
    XGRAD_BINARY(maximum, false);
    XGRAD_BINARY(minimum, false);
    XGRAD_BINARY(add_relu, false);
#undef XGRAD_BINARY

#define XGRAD_SCALAR(NAME, FIRST, SECOND)                                                                 \
    m.def(#NAME, [](const PyVar& x, double s) {                                                          \
        return x.map([&](const auto& v) {                                                                \
            using T = typename std::decay_t<decltype(v.value())>::value_type;                            \
            const T t = T(s);                                                                            \
            return xgrad::NAME(FIRST, SECOND);                                                           \
        });                                                                                              \
    }, arg("x"), arg("s"))
    XGRAD_SCALAR(add_scalar, v, t);
    XGRAD_SCALAR(mul_scalar, v, t);
    XGRAD_SCALAR(div_scalar, v, t);
#undef XGRAD_SCALAR
    m.def("rsub_scalar", [](double s, const PyVar& x) {
        return x.map([&](const auto& v) { return xgrad::rsub_scalar(static_cast<typename std::decay_t<decltype(v.value())>::value_type>(s), v); });
    }, arg("s"), arg("x"));
    m.def("rdiv_scalar", [](double s, const PyVar& x) {
        return x.map([&](const auto& v) { return xgrad::rdiv_scalar(static_cast<typename std::decay_t<decltype(v.value())>::value_type>(s), v); });
    }, arg("s"), arg("x"));
    m.def("pow", [](const PyVar& x, double p) { return x.map([&](const auto& v) { return xgrad::pow(v, p); }); },
          arg("x"), arg("p"));

    m.def("softmax", [](const PyVar& x, int axis) { return x.map([&](const auto& v) { return xgrad::softmax(v, axis); }); },
          arg("x"), arg("axis") = -1);
    m.def("log_softmax", [](const PyVar& x, int axis) { return x.map([&](const auto& v) { return xgrad::log_softmax(v, axis); }); },
          arg("x"), arg("axis") = -1);

    m.def("sum", [](const PyVar& x, py::object axis, bool keepdims) {
        if (axis.is_none()) {
            if (keepdims) throw py::value_error("xgrad: sum: keepdims needs an axis");
            return x.map([](const auto& v) { return xgrad::sum(v); });
        }
        const auto axes = axes_of(axis);
        return x.map([&](const auto& v) { return xgrad::sum(v, axes, keepdims); });
    }, arg("x"), arg("axis") = py::none(), arg("keepdims") = false, "Σ over all elements (0-d) or over `axis` (int or list).");
    m.def("mean", [](const PyVar& x, py::object axis, bool keepdims) {
        if (axis.is_none()) {
            if (keepdims) throw py::value_error("xgrad: mean: keepdims needs an axis");
            return x.map([](const auto& v) { return xgrad::mean(v); });
        }
        const auto axes = axes_of(axis);
        return x.map([&](const auto& v) { return xgrad::mean(v, axes, keepdims); });
    }, arg("x"), arg("axis") = py::none(), arg("keepdims") = false);
    m.def("max", [](const PyVar& x, int axis, bool keepdims) { return x.map([&](const auto& v) { return xgrad::max(v, axis, keepdims); }); },
          arg("x"), arg("axis"), arg("keepdims") = false);
    m.def("sum_to", [](const PyVar& x, py::object shape) {
        const Shape s = shape_arg(shape);
        return x.map([&](const auto& v) { return xgrad::sum_to(v, s); });
    }, arg("x"), arg("shape"));
    m.def("broadcast_to", [](const PyVar& x, py::object shape) {
        const Shape s = shape_arg(shape);
        return x.map([&](const auto& v) { return xgrad::broadcast_to(v, s); });
    }, arg("x"), arg("shape"));

    m.def("reshape", [](const PyVar& x, std::vector<std::ptrdiff_t> shape) {
        return x.map([&](const auto& v) { return xgrad::reshape(v, shape); });
    }, arg("x"), arg("shape"));
    m.def("flatten", [](const PyVar& x, int start_dim) { return x.map([&](const auto& v) { return xgrad::flatten(v, start_dim); }); },
          arg("x"), arg("start_dim") = 1);
    m.def("permute", [](const PyVar& x, std::vector<std::size_t> perm) {
        return x.map([&](const auto& v) { return xgrad::permute(v, perm); });
    }, arg("x"), arg("perm"));
    m.def("slice", [](const PyVar& x, int axis, std::ptrdiff_t start, std::ptrdiff_t stop, std::ptrdiff_t step) {
        return x.map([&](const auto& v) { return xgrad::slice(v, axis, start, stop, step); });
    }, arg("x"), arg("axis"), arg("start"), arg("stop"), arg("step") = 1);
    m.def("concatenate", [](const std::vector<PyVar>& xs, int axis) {
        if (xs.empty()) throw py::value_error("xgrad: concatenate: needs at least one Var");
        std::vector<Var<float>> vf;
        std::vector<Var<double>> vd;
        for (const auto& x : xs) {
            if (x.dbl != xs[0].dbl) throw py::type_error("xgrad: concatenate: Vars of different precisions");
            if (x.dbl) vd.push_back(x.d);
            else vf.push_back(x.f);
        }
        if (xs[0].dbl) return PyVar(xs[0].tape, xgrad::concatenate(vd, axis));
        return PyVar(xs[0].tape, xgrad::concatenate(vf, axis));
    }, arg("xs"), arg("axis") = 0);
    m.def("unsqueeze", [](const PyVar& x, int dim) { return x.map([&](const auto& v) { return xgrad::unsqueeze(v, dim); }); },
          arg("x"), arg("dim"), "x with a size-1 axis inserted at dim (negative counts from the end)");
    m.def("squeeze", [](const PyVar& x, int dim) { return x.map([&](const auto& v) { return xgrad::squeeze(v, dim); }); },
          arg("x"), arg("dim"), "x without axis dim, which must have size 1");
    m.def("expand", [](const PyVar& x, std::vector<std::ptrdiff_t> shape) {
        return x.map([&](const auto& v) { return xgrad::expand(v, shape); });
    }, arg("x"), arg("shape"), "x broadcast to shape (size-1 axes repeat, new leading axes; -1 keeps a size)");
    m.def("pad", [](const PyVar& x, std::vector<std::ptrdiff_t> pads, double value) {
        return x.map([&](const auto& v) { return xgrad::pad(v, pads, value); });
    }, arg("x"), arg("pads"), arg("value") = 0.0,
          "constant padding, pads as torch.nn.functional.pad: (left, right) pairs from the last axis backwards");
    m.def("stack", [](const std::vector<PyVar>& xs, int axis) {
        if (xs.empty()) throw py::value_error("xgrad: stack: needs at least one Var");
        std::vector<Var<float>> vf;
        std::vector<Var<double>> vd;
        for (const auto& x : xs) {
            if (x.dbl != xs[0].dbl) throw py::type_error("xgrad: stack: Vars of different precisions");
            if (x.dbl) vd.push_back(x.d);
            else vf.push_back(x.f);
        }
        if (xs[0].dbl) return PyVar(xs[0].tape, xgrad::stack(vd, axis));
        return PyVar(xs[0].tape, xgrad::stack(vf, axis));
    }, arg("xs"), arg("axis") = 0, "xs (one shape) stacked along a new axis");
    m.def("embedding", [](const PyVar& weight, py::object indices, std::optional<std::int64_t> padding_idx) {
        const IndexTensor i = to_index(indices);
        return weight.map([&](const auto& w) { return xgrad::embedding(w, i, padding_idx); });
    }, arg("weight"), arg("indices"), arg("padding_idx") = py::none(),
          "rows of weight (num_embeddings, dim) at integer indices of any shape; padding_idx's row gets no gradient");
    m.def("gather", [](const PyVar& x, int axis, py::object index) {
        const IndexTensor i = to_index(index);
        return x.map([&](const auto& v) { return xgrad::gather(v, axis, i); });
    }, arg("x"), arg("axis"), arg("index"));
    m.def("pick", [](const PyVar& x, py::object labels) {
        const IndexTensor l = to_index(labels);
        return x.map([&](const auto& v) { return xgrad::pick(v, l); });
    }, arg("x"), arg("labels"));
    m.def("one_hot", [](const TapePtr& t, py::object labels, std::size_t num_classes) {
        const IndexTensor l = to_index(labels);
        if (t->resolve(DType::none) == DType::f32) return PyVar(t, xgrad::one_hot(t->get<float>(), l, num_classes));
        return PyVar(t, xgrad::one_hot(t->get<double>(), l, num_classes));
    }, arg("tape"), arg("labels"), arg("num_classes"));

    m.def("linear", [](const PyVar& x, py::object w, py::object b) {
        const PyVar wv = as_var(w, x);
        if (b.is_none())
            return map2(x, wv, [](const auto& xv, const auto& ww) {
                py::gil_scoped_release nogil;
                return xgrad::linear(xv, ww);
            });
        const PyVar bv = as_var(b, x);
        if (bv.dbl != x.dbl) throw py::type_error("xgrad: linear: Vars of different precisions");
        if (x.dbl) {
            py::gil_scoped_release nogil;
            return PyVar(x.tape, xgrad::linear(x.d, wv.get<double>(), bv.d));
        }
        py::gil_scoped_release nogil;
        return PyVar(x.tape, xgrad::linear(x.f, wv.get<float>(), bv.f));
    }, arg("x"), arg("w"), arg("b") = py::none(), "x·Wᵀ + b with W (out, in), as torch.nn.functional.linear.");

    m.def("conv2d", [](const PyVar& x, py::object w, py::object b, std::size_t stride, std::size_t padding,
                       std::size_t dilation, std::size_t groups, bool channels_last) {
        const PyVar wv = as_var(w, x);
        const Conv2dOptions o =
            Conv2dOptions().stride(stride).padding(padding).dilation(dilation).groups(groups).channels_last(channels_last);
        if (b.is_none())
            return map2(x, wv, [&](const auto& xv, const auto& ww) {
                py::gil_scoped_release nogil;
                return xgrad::conv2d(xv, ww, o);
            });
        const PyVar bv = as_var(b, x);
        if (x.dbl) {
            const auto& w2 = wv.get<double>();
            const auto& b2 = bv.get<double>();
            py::gil_scoped_release nogil;
            return PyVar(x.tape, xgrad::conv2d(x.d, w2, b2, o));
        }
        const auto& w2 = wv.get<float>();
        const auto& b2 = bv.get<float>();
        py::gil_scoped_release nogil;
        return PyVar(x.tape, xgrad::conv2d(x.f, w2, b2, o));
    }, arg("x"), arg("w"), arg("b") = py::none(), arg("stride") = 1, arg("padding") = 0, arg("dilation") = 1,
          arg("groups") = 1, arg("channels_last") = false,
          "2-D convolution, NCHW: x (N,C,H,W), w (O,C/groups,KH,KW), b (O) or None; channels_last: x (N,H,W,C) and "
          "the result (N,OH,OW,O), w unchanged.");

    // batch_norm / layer_norm: weight and bias both given or both None (the affine part)
    auto affine = [](const PyVar& x, py::object w, py::object b, const char* op) {
        if (w.is_none() != b.is_none())
            throw py::value_error(std::string("xgrad: ") + op + ": give both weight and bias, or neither");
        return w.is_none() ? std::pair<PyVar, PyVar>{x, x} : std::pair<PyVar, PyVar>{as_var(w, x), as_var(b, x)};
    };
    m.def("batch_norm", [affine](const PyVar& x, py::object w, py::object b, double eps, bool cl, bool relu,
                                 py::object residual) {
        const bool has = !w.is_none();
        const std::pair<PyVar, PyVar> wb = affine(x, w, b, "batch_norm");
        const PyVar rv = residual.is_none() ? x : as_var(residual, x);
        auto run = [&](auto tag, const auto& xv, const auto& wv, const auto& bv, const auto& r) {
            using T = decltype(tag);
            auto o = xgrad::BatchNormFuncOptions<T>().eps(eps).channels_last(cl).relu(relu);
            if (has) o.weight(wv).bias(bv);
            if (!residual.is_none()) o.residual(r);
            py::gil_scoped_release nogil;
            return PyVar(x.tape, xgrad::batch_norm(xv, o));
        };
        if (x.dbl) return run(double{}, x.d, wb.first.get<double>(), wb.second.get<double>(), rv.get<double>());
        return run(float{}, x.f, wb.first.get<float>(), wb.second.get<float>(), rv.get<float>());
    }, arg("x"), arg("weight") = py::none(), arg("bias") = py::none(), arg("eps") = 1e-5, arg("channels_last") = false,
          arg("relu") = false, arg("residual") = py::none(),
          "training-mode batch norm over all axes but 1 of x (N,C,...): (x - mean_c)/sqrt(var_c + eps)·weight + bias; "
          "channels_last: the channel the last axis, x (N,...,C); relu: max(·, 0) in the same op (the same values and "
          "gradients as relu after it); residual (with relu, weight and bias): relu(batch_norm(x) + residual) as one op");
    m.def("layer_norm", [affine](const PyVar& x, std::vector<std::size_t> normalized_shape, py::object w, py::object b,
                                 double eps) {
        const bool has = !w.is_none();
        const auto [wv, bv] = affine(x, w, b, "layer_norm");
        const Shape ns(normalized_shape.begin(), normalized_shape.end());
        if (x.dbl) {
            const auto &w2 = wv.get<double>(), &b2 = bv.get<double>();
            py::gil_scoped_release nogil;
            return PyVar(x.tape, has ? xgrad::layer_norm(x.d, ns, w2, b2, eps) : xgrad::layer_norm(x.d, ns, eps));
        }
        const auto &w2 = wv.get<float>(), &b2 = bv.get<float>();
        py::gil_scoped_release nogil;
        return PyVar(x.tape, has ? xgrad::layer_norm(x.f, ns, w2, b2, eps) : xgrad::layer_norm(x.f, ns, eps));
    }, arg("x"), arg("normalized_shape"), arg("weight") = py::none(), arg("bias") = py::none(), arg("eps") = 1e-5,
          "layer norm over the trailing axes normalized_shape of x, then ·weight + bias");
    m.def("max_pool2d", [](const PyVar& x, std::size_t kernel, py::object stride) {
        const std::size_t s = stride.is_none() ? 0 : stride.cast<std::size_t>();
        return x.map([&](const auto& v) {
            py::gil_scoped_release nogil;
            return xgrad::max_pool2d(v, kernel, s);
        });
    }, arg("x"), arg("kernel_size"), arg("stride") = py::none());
    m.def("avg_pool2d", [](const PyVar& x, std::size_t kernel, py::object stride) {
        const std::size_t s = stride.is_none() ? 0 : stride.cast<std::size_t>();
        return x.map([&](const auto& v) {
            py::gil_scoped_release nogil;
            return xgrad::avg_pool2d(v, kernel, s);
        });
    }, arg("x"), arg("kernel_size"), arg("stride") = py::none());
    m.def("activation_avg_pool2d", [](const PyVar& x, const std::string& activation, std::size_t kernel, py::object stride) {
        const std::size_t s = stride.is_none() ? 0 : stride.cast<std::size_t>();
        Activation a = Activation::identity;
        if (activation == "relu") a = Activation::relu;
        else if (activation == "sigmoid") a = Activation::sigmoid;
        else if (activation == "tanh") a = Activation::tanh;
        else if (activation != "identity")
            throw py::value_error("activation_avg_pool2d: activation must be 'relu', 'sigmoid', 'tanh' or 'identity', got '" +
                                  activation + "'");
        return x.map([&](const auto& v) {
            py::gil_scoped_release nogil;
            return xgrad::activation_avg_pool2d(v, a, kernel, s);
        });
    }, arg("x"), arg("activation"), arg("kernel_size"), arg("stride") = py::none(),
       "avg_pool2d(activation(x)) as one op: the same values and gradients, bit for bit, without storing activation(x).");

    m.def("cross_entropy", [](const PyVar& logits, py::object labels, const std::string& reduction) {
        const IndexTensor l = to_index(labels);
        const Reduction r = reduction_of(reduction);
        return logits.map([&](const auto& v) { return xgrad::cross_entropy(v, l, r); });
    }, arg("logits"), arg("labels"), arg("reduction") = "mean", "Softmax cross-entropy from logits (B,C) and integer labels (B).");
    m.def("nll_loss", [](const PyVar& logp, py::object labels, const std::string& reduction) {
        const IndexTensor l = to_index(labels);
        const Reduction r = reduction_of(reduction);
        return logp.map([&](const auto& v) { return xgrad::nll_loss(v, l, r); });
    }, arg("log_probs"), arg("labels"), arg("reduction") = "mean");
    m.def("mse_loss", [](py::object y, py::object target, const std::string& reduction) {
        const Reduction r = reduction_of(reduction);
        const auto yt = operands(y, target);
        return map2(yt.first, yt.second, [&](const auto& a, const auto& b) { return xgrad::mse_loss(a, b, r); });
    }, arg("y"), arg("target"), arg("reduction") = "mean", "Σ(y − target)² with the reduction's factor (mean, sum, half_sum).");
    m.def("trace_scatter_loss", [](const PyVar& y, py::object labels, double gamma) {
        const IndexTensor l = to_index(labels);
        return y.map([&](const auto& v) { return xgrad::nn::trace_scatter_loss(v, l, gamma); });
    }, arg("y"), arg("labels"), arg("gamma"), "½γ (tr S_w − tr S_b) over the rows of y (B,D).");
}

}  // namespace xgrad::python

// xgrad.Tape and xgrad.Var: leaves from NumPy arrays, backward, values and gradients as NumPy views,
// and Var's operators with Vars, Python/NumPy scalars and arrays on either side.
#include "common.hpp"

namespace xgrad::python {

PyVar constant_like(const PyVar& v, py::handle obj)
{
    const DType want = dtype_of(obj);
    const DType have = v.dbl ? DType::f64 : DType::f32;
    if (want != DType::none && want != have)
        throw py::type_error(std::string("xgrad: cannot combine a ") + dtype_name(have) + " Var with a " +
                             dtype_name(want) + " array (one precision per tape: convert it with .astype(np." +
                             dtype_name(have) + "))");
    if (v.dbl) return PyVar(v.tape, v.d.tape().constant(to_tensor<double>(obj)));
    return PyVar(v.tape, v.f.tape().constant(to_tensor<float>(obj)));
}

namespace {

template <class Leaf>
PyVar make_leaf(const TapePtr& t, py::handle a, Leaf&& leaf)
{
    if (t->resolve(dtype_of(a)) == DType::f32) return PyVar(t, leaf(t->get<float>(), to_tensor<float>(a)));
    return PyVar(t, leaf(t->get<double>(), to_tensor<double>(a)));
}

// Values are read-only views that keep the C++ tape alive; a borrowed tape (inside gradcheck, hvp,
// ...) dies with the call, so its values are copied.
py::object value_of(const PyVar& v)
{
    if (v.tape->borrowed) return v.dbl ? copy(v.d.value()) : copy(v.f.value());
    return v.dbl ? view(v.d.value(), keeper(v.tape->own_d), false) : view(v.f.value(), keeper(v.tape->own_f), false);
}

py::object grad_of(const PyVar& v)
{
    if (v.tape->borrowed) return v.dbl ? copy(v.d.grad()) : copy(v.f.grad());
    return v.dbl ? view(v.d.grad(), keeper(v.tape->own_d), false) : view(v.f.grad(), keeper(v.tape->own_f), false);
}

// clear() keeps the nodes' memory for the next step, which would overwrite (or free, on a new shape)
// what NumPy views still show. So when views are alive, the cleared C++ tape is left to them and the
// Python tape continues on a fresh one; in a training loop that keeps no views, nothing changes.
/// Returns whether a fresh C++ tape took the old one's place.
template <class T>
bool clear_tape(std::shared_ptr<Tape<T>>& own, Tape<T>*& raw)
{
    if (!own) {
        if (raw) raw->clear();
        return false;
    }
    own->clear();
    if (own.use_count() > 1) {
        auto fresh = std::make_shared<Tape<T>>();
        fresh->set_grad_enabled(own->grad_enabled());
        fresh->set_retain_grad(own->retain_grad());
        fresh->set_anomaly_detection(own->anomaly_detection());
        own = std::move(fresh);
        raw = own.get();
        return true;
    }
    return false;
}

/// xgrad.Profiler: an xgrad::Profiler on the Python tape's current C++ tape, following it to the
/// next one; close() (or leaving a `with` block) keeps the last reports and detaches.
struct PyProfiler {
    TapePtr tape;
    std::unique_ptr<Profiler<float>> f;
    std::unique_ptr<Profiler<double>> d;
    bool closed = false;
    ProfileReport by_op, by_layer;  // what close() kept

    explicit PyProfiler(TapePtr t) : tape(std::move(t))
    {
        tape->check_alive();
        if (tape->borrowed) throw std::logic_error("xgrad: Profiler: this tape belongs to a call (gradcheck, hvp, ...)");
        if (tape->on_new_tape) throw std::logic_error("xgrad: Profiler: this tape already has a profiler attached");
        follow();
        tape->on_new_tape = [this] { follow(); };
    }
    ~PyProfiler() { close(); }
    void follow()
    {
        if (tape->f && f) f->attach(*tape->f);
        if (tape->f && !f) f = std::make_unique<Profiler<float>>(*tape->f);
        if (tape->d && d) d->attach(*tape->d);
        if (tape->d && !d) d = std::make_unique<Profiler<double>>(*tape->d);
    }
    ProfileReport report(bool layers) const
    {
        if (closed) return layers ? by_layer : by_op;
        const ProfileGroup g = layers ? ProfileGroup::scope_and_op : ProfileGroup::op;
        return f ? f->report(g) : d ? d->report(g) : ProfileReport{};
    }
    void reset()
    {
        if (closed) throw std::logic_error("xgrad: Profiler: reset() after close()");
        if (f) f->reset();
        if (d) d->reset();
    }
    void close()
    {
        if (closed) return;
        by_op = report(false);
        by_layer = report(true);
        closed = true;
        f.reset();
        d.reset();
        if (tape) tape->on_new_tape = nullptr;
    }
};

/// The report as Python objects, with ProfileReport::json()'s fields (one place defines them).
py::object report_dict(const ProfileReport& r) { return py::module_::import("json").attr("loads")(r.json()); }

py::tuple shape_of(const PyVar& v)
{
    const Shape& s = v.dbl ? v.d.shape() : v.f.shape();
    py::tuple t(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
    return t;
}

std::string repr(const PyVar& v)
{
    if (!(v.dbl ? v.d.valid() : v.f.valid())) return "<xgrad.Var (invalid: its tape was cleared or destroyed)>";
    const Shape& s = v.dbl ? v.d.shape() : v.f.shape();
    return std::string("<xgrad.Var ") + (v.dbl ? v.d.op() : v.f.op()) + " " + shape_str(s) + " " +
           (v.dbl ? "float64" : "float32") + ((v.dbl ? v.d.requires_grad() : v.f.requires_grad()) ? " requires_grad" : "") +
           ">";
}

struct NoGrad {
    TapePtr tape;
    bool prev = true;
    void set(bool on)
    {
        tape->check_alive();
        tape->grad_enabled = on;
        if (tape->f) tape->f->set_grad_enabled(on);
        if (tape->d) tape->d->set_grad_enabled(on);
    }
};

bool grad_enabled(const PyTape& t) { return t.f ? t.f->grad_enabled() : t.d ? t.d->grad_enabled() : t.grad_enabled; }

// Scalar operands: Python float/int and NumPy scalars, converted to the Var's precision.
template <class Fn>
void def_scalar_ops(py::class_<PyVar>& c, const char* name, const char* rname, Fn op)
{
    c.def(name, [op](const PyVar& a, const PyVar& b) { return map2(a, b, [&](const auto& x, const auto& y) { return op(x, y); }); },
          py::is_operator());
    c.def(name, [op](const PyVar& a, double s) {
        return a.map([&](const auto& x) {
            using T = typename std::decay_t<decltype(x.value())>::value_type;
            return op(x, T(s));
        });
    }, py::is_operator());
    c.def(name, [op](const PyVar& a, py::object arr) {
        const PyVar b = constant_like(a, arr);
        return map2(a, b, [&](const auto& x, const auto& y) { return op(x, y); });
    }, py::is_operator());
    c.def(rname, [op](const PyVar& a, double s) {
        return a.map([&](const auto& x) {
            using T = typename std::decay_t<decltype(x.value())>::value_type;
            return op(T(s), x);
        });
    }, py::is_operator());
    c.def(rname, [op](const PyVar& a, py::object arr) {
        const PyVar b = constant_like(a, arr);
        return map2(b, a, [&](const auto& x, const auto& y) { return op(x, y); });
    }, py::is_operator());
}

}  // namespace

void clear_py_tape(PyTape& t)
{
    t.check_alive();
    const bool fresh_f = clear_tape(t.own_f, t.f);
    const bool fresh_d = clear_tape(t.own_d, t.d);
    if ((fresh_f || fresh_d) && t.on_new_tape) t.on_new_tape();
}

void init_tape(py::module_& m)
{
    py::class_<PyProfiler>(m, "Profiler",
                           "Times each op's forward and each node's backward on one tape (xgrad::Profiler), per op or "
                           "per layer; follows the tape across clear(). Use as a context manager or call close().")
        .def(py::init([](const TapePtr& t) { return std::make_unique<PyProfiler>(t); }), py::arg("tape"))
        .def("reset", &PyProfiler::reset, "Forgets the times so far (after warm-up steps); the wall clock restarts.")
        .def("report", [](const PyProfiler& p, bool by_layer) { return report_dict(p.report(by_layer)); },
             py::arg("by_layer") = false,
             "dict: wall_seconds, sweeps (backward calls), op_seconds, rows (op, scope, forward_calls, backward_calls, "
             "forward_seconds, backward_seconds), largest total first.")
        .def("table", [](const PyProfiler& p, bool by_layer, std::size_t max_rows) { return p.report(by_layer).table(max_rows); },
             py::arg("by_layer") = false, py::arg("max_rows") = 0, "The report as text: µs per step (per backward sweep).")
        .def("close", &PyProfiler::close, "Stops timing; the reports keep what was measured.")
        .def("__enter__", [](PyProfiler& p) { return &p; }, py::return_value_policy::reference)
        .def("__exit__", [](PyProfiler& p, py::args) { p.close(); });

    py::class_<NoGrad>(m, "_NoGrad")
        .def("__enter__", [](NoGrad& g) {
            g.prev = grad_enabled(*g.tape);
            g.set(false);
            return &g;
        }, py::return_value_policy::reference)
        .def("__exit__", [](NoGrad& g, py::args) { g.set(g.prev); });

    py::class_<PyTape, TapePtr>(m, "Tape", "A record of ops (a Wengert list). Its precision is the first array's dtype.")
        .def(py::init([] { return std::make_shared<PyTape>(); }))
        .def("variable", [](const TapePtr& t, py::object a) {
            return make_leaf(t, a, [](auto& tape, const auto& v) { return tape.variable(v); });
        }, py::arg("value"), "A leaf that requires grad (a copy of the array).")
        .def("constant", [](const TapePtr& t, py::object a) {
            return make_leaf(t, a, [](auto& tape, const auto& v) { return tape.constant(v); });
        }, py::arg("value"), "A leaf that does not require grad (a copy of the array).")
        .def("detach", [](const TapePtr&, const PyVar& v) {
            return v.map([](const auto& x) { return x.tape().detach(x); });
        }, py::arg("v"))
        .def("backward", [](const TapePtr& t, const PyVar& loss, py::object seed) {
            t->check_alive();
            if (seed.is_none()) {
                py::gil_scoped_release nogil;
                if (loss.dbl) loss.d.tape().backward(loss.d);
                else loss.f.tape().backward(loss.f);
                return;
            }
            if (loss.dbl) {
                const Tensor<double> s = to_tensor<double>(seed);
                py::gil_scoped_release nogil;
                loss.d.tape().backward(loss.d, s);
            } else {
                const Tensor<float> s = to_tensor<float>(seed);
                py::gil_scoped_release nogil;
                loss.f.tape().backward(loss.f, s);
            }
        }, py::arg("loss"), py::arg("seed") = py::none(),
             "Reverse sweep from a one-element loss (or any output with an explicit seed).")
        .def("clear", [](PyTape& t) { clear_py_tape(t); }, "Forgets every node (all Vars become invalid) and keeps the memory for the next step; NumPy views "
           "of values and gradients taken before stay valid.")
        .def("observe", [](const TapePtr& t, const std::string& name, py::object var) {
            t->check_alive();
            const PyVar& v = var.cast<const PyVar&>();
            if (v.tape.get() != t.get()) throw std::logic_error("xgrad: observe: the Var '" + name + "' is on another tape");
            if (v.dbl) v.d.tape().observe(name, v.d);
            else v.f.tape().observe(name, v.f);
            return var;
        }, py::arg("name"), py::arg("var"),
             "Names a Var of the model for xgrad.diagnose (a name used twice is an error); returns the Var.")
        .def("no_grad", [](const TapePtr& t) { return NoGrad{t}; }, "with tape.no_grad(): ops are recorded without backward.")
        .def("__len__", [](const PyTape& t) { return t.f ? t.f->size() : t.d ? t.d->size() : 0; })
        .def_property_readonly("capacity", [](const PyTape& t) { return t.f ? t.f->capacity() : t.d ? t.d->capacity() : 0; },
                               "Node slots allocated (kept across clear()).")
        .def_property_readonly("dtype", [](const PyTape& t) -> py::object {
            if (t.dtype == DType::none) return py::none();
            return py::dtype(dtype_name(t.dtype));
        })
        .def_property("grad_enabled", [](const PyTape& t) { return grad_enabled(t); },
                      [](const TapePtr& t, bool on) { NoGrad{t}.set(on); })
        .def_property("retain_grad", [](const PyTape& t) { return t.f ? t.f->retain_grad() : t.d ? t.d->retain_grad() : false; },
                      [](PyTape& t, bool on) {
                          if (t.dtype == DType::none) t.resolve(DType::none);
                          if (t.f) t.f->set_retain_grad(on);
                          if (t.d) t.d->set_retain_grad(on);
                      })
        .def_property("anomaly_detection", [](const PyTape& t) { return t.f ? t.f->anomaly_detection() : t.d ? t.d->anomaly_detection() : false; },
                      [](PyTape& t, bool on) {
                          if (t.dtype == DType::none) t.resolve(DType::none);
                          if (t.f) t.f->set_anomaly_detection(on);
                          if (t.d) t.d->set_anomaly_detection(on);
                      });

    py::class_<PyVar> var(m, "Var", "A value recorded on a tape.");
    var.def_property_readonly("value", &value_of, "The value: a read-only NumPy view (no copy).")
        .def_property_readonly("grad", &grad_of, "The gradient from the latest backward (read-only view).")
        .def_property_readonly("shape", &shape_of)
        .def_property_readonly("ndim", [](const PyVar& v) { return v.dbl ? v.d.dim() : v.f.dim(); })
        .def_property_readonly("size", [](const PyVar& v) { return v.dbl ? v.d.size() : v.f.size(); })
        .def_property_readonly("dtype", [](const PyVar& v) { return py::dtype(v.dbl ? "float64" : "float32"); })
        .def_property_readonly("requires_grad", [](const PyVar& v) { return v.dbl ? v.d.requires_grad() : v.f.requires_grad(); })
        .def_property_readonly("op", [](const PyVar& v) { return std::string(v.dbl ? v.d.op() : v.f.op()); })
        .def_property_readonly("tape", [](const PyVar& v) { return v.tape; })
        .def_property_readonly("valid", [](const PyVar& v) { return v.dbl ? v.d.valid() : v.f.valid(); })
        .def("item", [](const PyVar& v) { return v.dbl ? v.d.item() : double(v.f.item()); })
        .def("numpy", [](const PyVar& v) { return v.dbl ? copy(v.d.value()) : copy(v.f.value()); }, "A copy of the value.")
        .def("__float__", [](const PyVar& v) { return v.dbl ? v.d.item() : double(v.f.item()); })
        .def("__repr__", &repr)
        .def("__neg__", [](const PyVar& a) { return a.map([](const auto& x) { return -x; }); })
        .def("__pos__", [](const PyVar& a) { return a; });
    // NumPy defers to Var's reflected operators (array + var → Var.__radd__), not elementwise objects.
    var.attr("__array_ufunc__") = py::none();

    def_scalar_ops(var, "__add__", "__radd__", [](const auto& a, const auto& b) { return a + b; });
    def_scalar_ops(var, "__sub__", "__rsub__", [](const auto& a, const auto& b) { return a - b; });
    def_scalar_ops(var, "__mul__", "__rmul__", [](const auto& a, const auto& b) { return a * b; });
    def_scalar_ops(var, "__truediv__", "__rtruediv__", [](const auto& a, const auto& b) { return a / b; });
    var.def("__pow__", [](const PyVar& a, double p) { return a.map([&](const auto& x) { return xgrad::pow(x, p); }); },
            py::is_operator());
    var.def("__matmul__", [](const PyVar& a, const PyVar& b) {
        return map2(a, b, [](const auto& x, const auto& y) {
            py::gil_scoped_release nogil;
            return xgrad::matmul(x, y);
        });
    }, py::is_operator());
    var.def("__matmul__", [](const PyVar& a, py::object arr) {
        const PyVar b = constant_like(a, arr);
        return map2(a, b, [](const auto& x, const auto& y) {
            py::gil_scoped_release nogil;
            return xgrad::matmul(x, y);
        });
    }, py::is_operator());
    var.def("__rmatmul__", [](const PyVar& a, py::object arr) {
        const PyVar b = constant_like(a, arr);
        return map2(b, a, [](const auto& x, const auto& y) {
            py::gil_scoped_release nogil;
            return xgrad::matmul(x, y);
        });
    }, py::is_operator());
}

}  // namespace xgrad::python

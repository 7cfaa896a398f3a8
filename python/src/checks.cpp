// Gradient checks, higher-order derivatives and the hand-vs-tape comparison: the C++ functions
// themselves, called with Python functions of Vars. Their tapes live on the C++ stack, so the
// Python Tape the function sees is a borrowed one, detached when the call returns.
#include "common.hpp"

namespace xgrad::python {

namespace {

template <class T>
class Borrowed {
public:
    Borrowed() = default;
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    ~Borrowed()
    {
        for (auto& p : tapes_) p.second->detach();
    }
    TapePtr get(Tape<T>& t)
    {
        for (auto& p : tapes_)
            if (p.first == &t) return p.second;
        tapes_.emplace_back(&t, std::make_shared<PyTape>(t));
        return tapes_.back().second;
    }

private:
    std::vector<std::pair<Tape<T>*, TapePtr>> tapes_;
};

template <class T>
const Var<T>& result_var(const py::object& r, const char* who)
{
    if (!py::isinstance<PyVar>(r))
        throw py::type_error(std::string("xgrad.") + who + ": f must return an xgrad.Var, got " +
                             std::string(py::str(py::type::of(r))));
    return r.cast<const PyVar&>().get<T>();
}

std::vector<Tensor<double>> tensors64(const std::vector<py::object>& arrays)
{
    std::vector<Tensor<double>> r;
    for (const auto& a : arrays) r.push_back(to_tensor<double>(a));
    return r;
}

GradcheckOptions gc_options(double eps, double atol, double rtol, std::uint64_t seed, py::object names)
{
    GradcheckOptions o;
    o.eps(eps).atol(atol).rtol(rtol).seed(seed);
    if (!names.is_none()) o.input_names(names.cast<std::vector<std::string>>());
    return o;
}

template <class Check>
GradcheckReport run_check(Check check, py::function f, const std::vector<py::object>& inputs, const GradcheckOptions& o)
{
    Borrowed<double> tapes;
    auto fn = [&](const std::vector<Var<double>>& vs) -> Var<double> {
        py::tuple args(vs.size());
        for (std::size_t i = 0; i < vs.size(); ++i) args[i] = py::cast(PyVar(tapes.get(vs[i].tape()), vs[i]));
        py::object r = f(*args);
        return result_var<double>(r, "gradcheck");
    };
    return check(fn, tensors64(inputs), o);
}

py::list shape_list(const Shape& s) { return py::cast(std::vector<std::size_t>(s.begin(), s.end())); }

py::dict gradcheck_dict(const GradcheckReport& r)
{
    py::dict d;
    d["passed"] = r.ok;
    d["vacuous"] = r.vacuous;
    d["output_op"] = r.output_op;
    py::list ins;
    for (const auto& i : r.inputs) {
        py::dict e;
        e["name"] = i.name;
        e["shape"] = shape_list(i.shape);
        e["max_abs_error"] = i.max_abs_error;
        e["max_rel_error"] = i.max_rel_error;
        e["worst_index"] = i.worst_index;
        e["worst_analytic"] = i.worst_analytic;
        e["worst_numeric"] = i.worst_numeric;
        e["failures"] = i.failures;
        ins.append(e);
    }
    d["inputs"] = ins;
    py::list ms;
    for (const auto& m : r.mismatches) {
        py::dict e;
        e["input"] = m.input;
        e["input_name"] = m.input_name;
        e["index"] = m.index;
        e["analytic"] = m.analytic;
        e["numeric"] = m.numeric;
        e["abs_error"] = m.abs_error;
        ms.append(e);
    }
    d["mismatches"] = ms;
    return d;
}

py::dict comparison_dict(const ComparisonReport& r)
{
    py::dict d;
    d["passed"] = r.all_pass();
    py::list es;
    for (const auto& c : r.entries) {
        py::dict e;
        e["name"] = c.name;
        e["shape"] = shape_list(c.shape);
        e["hand_shape"] = shape_list(c.hand_shape);
        e["max_abs_error"] = c.max_abs_error;
        e["max_rel_error"] = c.max_rel_error;
        e["worst_index"] = c.worst_index;
        e["worst_automatic"] = c.worst_automatic;
        e["worst_hand"] = c.worst_hand;
        e["passed"] = c.pass;
        e["diagnosis"] = c.diagnosis;
        es.append(e);
    }
    d["entries"] = es;
    return d;
}

NamedTensors named(const py::dict& d)
{
    NamedTensors r;
    for (auto item : d) r.emplace_back(item.first.cast<std::string>(), to_tensor<double>(item.second));
    return r;
}

CompareOptions cmp_options(double rtol, double atol, std::size_t batch_size)
{
    return CompareOptions().rtol(rtol).atol(atol).batch_size(batch_size);
}

std::vector<std::pair<std::string, Var<double>>> named_vars(const py::dict& d, const char* what)
{
    std::vector<std::pair<std::string, Var<double>>> r;
    for (auto item : d) {
        if (!py::isinstance<PyVar>(item.second))
            throw py::type_error(std::string("xgrad.compare_gradients: ") + what + " must map names to float64 Vars");
        r.emplace_back(item.first.cast<std::string>(), item.second.cast<const PyVar&>().get<double>());
    }
    return r;
}

// hvp, hessian, jacobian, jvp for T = float or double, with f a Python function of one Var.
template <class T>
struct Higher {
    static py::object hvp(py::function f, py::object x, py::object v)
    {
        Borrowed<T> tapes;
        auto fn = [&](const Var<T>& xv) { return result_var<T>(f(PyVar(tapes.get(xv.tape()), xv)), "hvp"); };
        return copy(xgrad::hvp<T>(fn, to_tensor<T>(x), to_tensor<T>(v)));
    }
    static py::object hessian(py::function f, py::object x)
    {
        Borrowed<T> tapes;
        auto fn = [&](const Var<T>& xv) { return result_var<T>(f(PyVar(tapes.get(xv.tape()), xv)), "hessian"); };
        return copy(xgrad::hessian<T>(fn, to_tensor<T>(x)));
    }
    static py::object jacobian(py::function f, py::object x)
    {
        Borrowed<T> tapes;
        auto fn = [&](const Var<T>& xv) { return result_var<T>(f(PyVar(tapes.get(xv.tape()), xv)), "jacobian"); };
        return copy(xgrad::jacobian<T>(fn, to_tensor<T>(x)));
    }
    static py::object jvp(py::function f, py::object x, py::object v)
    {
        Borrowed<T> tapes;
        auto fn = [&](const Var<T>& xv) { return result_var<T>(f(PyVar(tapes.get(xv.tape()), xv)), "jvp"); };
        auto r = xgrad::jvp<T>(fn, to_tensor<T>(x), to_tensor<T>(v));
        return py::make_tuple(copy(r.first), copy(r.second));
    }
};

template <class T>
py::list grad_impl(const PyVar& out, const std::vector<PyVar>& ins, py::object grad_output, GradOptions o)
{
    std::vector<Var<T>> vs;
    for (const auto& v : ins) vs.push_back(v.get<T>());
    const Var<T>& y = out.get<T>();
    std::vector<Var<T>> gs;
    if (grad_output.is_none()) {
        py::gil_scoped_release nogil;
        gs = xgrad::grad(y, vs, o);
    } else {
        const PyVar go = py::isinstance<PyVar>(grad_output) ? grad_output.cast<PyVar>() : constant_like(out, grad_output);
        const Var<T>& g = go.get<T>();
        py::gil_scoped_release nogil;
        gs = xgrad::grad(y, vs, g, o);
    }
    py::list r;
    for (const auto& g : gs) r.append(PyVar(out.tape, g));
    return r;
}

}  // namespace

void init_checks(py::module_& m)
{
    using py::arg;
    py::class_<GradcheckReport>(m, "GradcheckReport")
        .def_property_readonly("passed", [](const GradcheckReport& r) { return r.ok; })
        .def_readonly("vacuous", &GradcheckReport::vacuous)
        .def_readonly("output_op", &GradcheckReport::output_op)
        .def("__bool__", [](const GradcheckReport& r) { return r.ok; })
        .def("__str__", &GradcheckReport::summary)
        .def("__repr__", [](const GradcheckReport& r) { return std::string("<xgrad.GradcheckReport ") + (r.ok ? "passed" : "FAILED") + ">"; })
        .def("to_dict", &gradcheck_dict);

    m.def("gradcheck", [](py::function f, const std::vector<py::object>& inputs, double eps, double atol, double rtol,
                          std::uint64_t seed, py::object names) {
        return run_check([](auto& fn, auto x, const auto& o) { return xgrad::gradcheck(fn, x, o); }, f, inputs,
                         gc_options(eps, atol, rtol, seed, names));
    }, arg("f"), arg("inputs"), arg("eps") = 1e-6, arg("atol") = 1e-8, arg("rtol") = 1e-6, arg("seed") = 0x5eed,
          arg("input_names") = py::none(),
          "Compares the tape's uᵀJ with central finite differences, in float64. f(*vars) -> Var.");
    m.def("gradgradcheck", [](py::function f, const std::vector<py::object>& inputs, double eps, double atol, double rtol,
                              std::uint64_t seed, py::object names) {
        return run_check([](auto& fn, auto x, const auto& o) { return xgrad::gradgradcheck(fn, x, o); }, f, inputs,
                         gc_options(eps, atol, rtol, seed, names));
    }, arg("f"), arg("inputs"), arg("eps") = 1e-6, arg("atol") = 1e-8, arg("rtol") = 1e-6, arg("seed") = 0x5eed,
          arg("input_names") = py::none(), "Second derivatives against finite differences of the gradient.");

    m.def("hvp", [](py::function f, py::object x, py::object v) {
        return with_dtype_of(x, [&](auto t) { return Higher<decltype(t)>::hvp(f, x, v); });
    }, arg("f"), arg("x"), arg("v"), "H(x)·v for f: Var -> one-element Var (x's dtype decides the precision).");
    m.def("hessian", [](py::function f, py::object x) {
        return with_dtype_of(x, [&](auto t) { return Higher<decltype(t)>::hessian(f, x); });
    }, arg("f"), arg("x"), "The Hessian of f, shape x.shape + x.shape.");
    m.def("jacobian", [](py::function f, py::object x) {
        return with_dtype_of(x, [&](auto t) { return Higher<decltype(t)>::jacobian(f, x); });
    }, arg("f"), arg("x"), "The Jacobian of f, shape f(x).shape + x.shape.");
    m.def("jvp", [](py::function f, py::object x, py::object v) {
        return with_dtype_of(x, [&](auto t) { return Higher<decltype(t)>::jvp(f, x, v); });
    }, arg("f"), arg("x"), arg("v"), "(f(x), J(x)·v).");

    m.def("grad", [](const PyVar& output, py::object inputs, py::object grad_output, bool create_graph, bool allow_unused) {
        std::vector<PyVar> ins;
        if (py::isinstance<PyVar>(inputs)) ins.push_back(inputs.cast<PyVar>());
        else ins = inputs.cast<std::vector<PyVar>>();
        const GradOptions o{create_graph, allow_unused};
        return output.dbl ? grad_impl<double>(output, ins, grad_output, o) : grad_impl<float>(output, ins, grad_output, o);
    }, arg("output"), arg("inputs"), arg("grad_output") = py::none(), arg("create_graph") = false,
          arg("allow_unused") = false,
          "d output / d inputs as a list of Vars; with create_graph=True they can be differentiated again.");

    py::class_<ComparisonReport>(m, "ComparisonReport")
        .def_property_readonly("passed", &ComparisonReport::all_pass)
        .def("__bool__", &ComparisonReport::all_pass)
        .def("__str__", &ComparisonReport::table)
        .def("__repr__", [](const ComparisonReport& r) { return std::string("<xgrad.ComparisonReport ") + (r.all_pass() ? "passed" : "FAILED") + ">"; })
        .def("to_dict", &comparison_dict)
        .def_property_readonly("diagnoses", [](const ComparisonReport& r) {
            py::dict d;
            for (const auto& e : r.entries) d[py::str(e.name)] = e.diagnosis;
            return d;
        });

    m.def("_compare_arrays", [](py::dict automatic, py::dict hand, double rtol, double atol, std::size_t batch_size, py::object terms) {
        std::vector<std::pair<std::string, NamedTensors>> t;
        if (!terms.is_none())
            for (auto item : terms.cast<py::dict>()) t.emplace_back(item.first.cast<std::string>(), named(item.second.cast<py::dict>()));
        return compare_gradients(named(automatic), named(hand), cmp_options(rtol, atol, batch_size), t);
    });
    m.def("_compare_tape", [](py::dict loss_terms, py::dict wrt, py::dict hand, double rtol, double atol, std::size_t batch_size) {
        const auto terms = named_vars(loss_terms, "loss terms");
        if (terms.empty()) throw py::value_error("xgrad.compare_gradients: no loss term");
        return compare_gradients(terms[0].second.tape(), terms, named_vars(wrt, "wrt"), named(hand),
                                 cmp_options(rtol, atol, batch_size));
    });
    m.def("diagnose_gradient", [](py::object automatic, py::object hand, double rtol, double atol, std::size_t batch_size, py::object terms) {
        std::vector<std::pair<std::string, Tensor<double>>> t;
        if (!terms.is_none())
            for (auto item : terms.cast<py::dict>()) t.emplace_back(item.first.cast<std::string>(), to_tensor<double>(item.second));
        return diagnose_gradient(to_tensor<double>(automatic), to_tensor<double>(hand), cmp_options(rtol, atol, batch_size), t);
    }, arg("automatic"), arg("hand"), arg("rtol") = 1e-10, arg("atol") = 1e-14, arg("batch_size") = 0, arg("terms") = py::none(),
          "What relation, if any, holds between a hand gradient and the automatic one that differ.");
}

}  // namespace xgrad::python

// xgrad.diagnose: a hand derivation in NumPy checked against the tape, quantity by quantity (the C++
// xgrad::diagnose). The model is a Python function of the float64 Tape that diagnose() makes on its
// stack, seen from Python as a borrowed Tape (detached when the call returns); the hand derivation
// is a Python function of a HandDerivation handle, also detached on return. The C++ work runs
// without the GIL; both callbacks take it back.
#include <xgrad/diagnose.hpp>

#include <cmath>

#include "common.hpp"

namespace xgrad::python {

namespace {

/// The HandDerivation diagnose() passes to `hand`, for the length of that call only.
struct PyHand {
    HandDerivation* h = nullptr;
    HandDerivation& get() const
    {
        if (!h) throw std::logic_error("xgrad: this HandDerivation belonged to a diagnose() call that has returned");
        return *h;
    }
};
using HandPtr = std::shared_ptr<PyHand>;

py::tuple shape_tuple(const Shape& s)
{
    py::tuple t(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
    return t;
}

py::object follows_from(const QuantityCheck& q)
{
    if (q.follows_from.empty()) return py::none();
    return py::str(q.follows_from);
}

const QuantityCheck& quantity(const DiagnosisReport& r, const std::string& label)
{
    for (const auto& q : r.quantities)
        if (q.label == label) return q;
    std::string have;
    for (const auto& q : r.quantities) have += (have.empty() ? "" : ", ") + q.label;
    throw py::key_error("xgrad.DiagnosisReport: no quantity '" + label + "' (there are: " + have + ")");
}

py::dict hypothesis_dict(const Hypothesis& h)
{
    py::dict d;
    d["kind"] = h.kind;
    d["explanation"] = h.explanation;
    d["residual"] = h.residual;
    return d;
}

py::dict quantity_dict(const QuantityCheck& q)
{
    py::dict d;
    d["label"] = q.label;
    d["name"] = q.name;
    d["is_grad"] = q.is_grad;
    d["where"] = q.where;
    d["hand_shape"] = shape_tuple(q.hand_shape);
    d["tape_shape"] = shape_tuple(q.tape_shape);
    d["max_rel_error"] = q.max_rel_error;
    d["verdict"] = std::string(to_string(q.verdict));
    d["follows_from"] = follows_from(q);
    py::list hs;
    for (const auto& h : q.hypotheses) hs.append(hypothesis_dict(h));
    d["hypotheses"] = hs;
    d["pattern"] = q.pattern;
    return d;
}

py::dict report_dict(const DiagnosisReport& r)
{
    py::dict d;
    d["ok"] = r.ok();
    d["mistakes"] = py::cast(r.mistakes());
    d["not_given"] = py::cast(r.not_given);
    py::list qs;
    for (const auto& q : r.quantities) qs.append(quantity_dict(q));
    d["quantities"] = qs;
    return d;
}

DiagnosisReport run_diagnose(py::function model, py::function hand, const DiagnoseOptions& o)
{
    std::vector<std::shared_ptr<PyTape>> tapes;  // the borrowed tapes, detached on return
    std::vector<HandPtr> hands;
    auto model_fn = [&](Tape<double>& t) -> Var<double> {
        py::gil_scoped_acquire gil;
        auto pt = std::make_shared<PyTape>(t);
        tapes.push_back(pt);
        py::object r = model(pt);
        if (!py::isinstance<PyVar>(r))
            throw py::type_error("xgrad.diagnose: model(tape) must return the loss as an xgrad.Var, got " +
                                 std::string(py::str(py::type::of(r))));
        const PyVar& v = r.cast<const PyVar&>();
        if (v.tape.get() != pt.get())
            throw py::value_error("xgrad.diagnose: model(tape) must build the loss on the tape it is given");
        return v.get<double>();
    };
    auto hand_fn = [&](HandDerivation& h) {
        py::gil_scoped_acquire gil;
        auto ph = std::make_shared<PyHand>();
        ph->h = &h;
        hands.push_back(ph);
        try {
            hand(ph);
        } catch (...) {
            ph->h = nullptr;
            throw;
        }
        ph->h = nullptr;
    };
    struct Detach {
        std::vector<std::shared_ptr<PyTape>>& tapes;
        ~Detach()
        {
            for (auto& t : tapes) t->detach();
        }
    } detach{tapes};
    py::gil_scoped_release nogil;
    return diagnose(model_fn, hand_fn, o);
}

}  // namespace

void init_diagnose(py::module_& m)
{
    using py::arg;

    py::class_<PyHand, HandPtr>(m, "HandDerivation",
                                "What diagnose() passes to the hand derivation: give each quantity as it is computed "
                                "and go on with the array returned.")
        .def("value", [](const PyHand& h, const std::string& name, py::object a, py::object formula, py::object rtol) {
            if (formula.is_none()) return copy(h.get().value(name, to_tensor<double>(a)));
            return copy(h.get().value(name, to_tensor<double>(a), to_tensor<double>(formula),
                                      rtol.is_none() ? NAN : rtol.cast<double>()));
        }, arg("name"), arg("hand"), arg("formula") = py::none(), arg("rtol") = py::none(),
             "The hand value of the Var observed under `name`; returns the array to continue with (float64): yours, "
             "or the tape's when diagnose() checks whether later quantities follow from an earlier mistake. With "
             "`formula`, `hand` is a printed number (NaN where not printed) and `formula` what its own formula gives "
             "from the values before it; `rtol` is how many digits it was printed with.")
        .def("grad", [](const PyHand& h, const std::string& name, py::object a, py::object formula, py::object rtol) {
            if (formula.is_none()) return copy(h.get().grad(name, to_tensor<double>(a)));
            return copy(h.get().grad(name, to_tensor<double>(a), to_tensor<double>(formula),
                                     rtol.is_none() ? NAN : rtol.cast<double>()));
        }, arg("name"), arg("hand"), arg("formula") = py::none(), arg("rtol") = py::none(),
             "The hand gradient dL/d(name) of an observed Var or a Parameter of that name; returns the array to "
             "continue with. `formula` and `rtol` as for value().");

    py::class_<Hypothesis>(m, "Hypothesis", "One explanation of a disagreement, fitted to the numbers.")
        .def_readonly("kind", &Hypothesis::kind)
        .def_readonly("explanation", &Hypothesis::explanation)
        .def_readonly("residual", &Hypothesis::residual, "‖hand − candidate‖ relative to ‖hand‖ (0: a perfect fit).")
        .def("to_dict", &hypothesis_dict)
        .def("__repr__", [](const Hypothesis& h) { return "<xgrad.Hypothesis " + h.kind + ": " + h.explanation + ">"; });

    py::class_<QuantityCheck>(m, "QuantityCheck", "One quantity of the hand derivation against the tape.")
        .def_readonly("label", &QuantityCheck::label, "'z2' for a value, 'dL/dz2' for a gradient.")
        .def_readonly("name", &QuantityCheck::name)
        .def_readonly("is_grad", &QuantityCheck::is_grad)
        .def_readonly("where", &QuantityCheck::where, "The op that made it on the tape and its scope.")
        .def_property_readonly("hand_shape", [](const QuantityCheck& q) { return shape_tuple(q.hand_shape); })
        .def_property_readonly("tape_shape", [](const QuantityCheck& q) { return shape_tuple(q.tape_shape); })
        .def_readonly("max_rel_error", &QuantityCheck::max_rel_error, "max|hand − tape| / max|tape| (inf for a shape mismatch).")
        .def_property_readonly("verdict", [](const QuantityCheck& q) { return std::string(to_string(q.verdict)); },
                               "'ok', 'MISTAKE', 'follows', 'SHAPE MISMATCH' or 'UNMATCHED'.")
        .def_property_readonly("follows_from", &follows_from, "For 'follows': the label of the mistake; else None.")
        .def_readonly("hypotheses", &QuantityCheck::hypotheses, "For mistakes: the fitted explanations, best first.")
        .def_readonly("pattern", &QuantityCheck::pattern, "For a mistake no hypothesis fits: where the elements differ.")
        .def("to_dict", &quantity_dict)
        .def("__repr__", [](const QuantityCheck& q) {
            std::string s = "<xgrad.QuantityCheck " + q.label + ": " + to_string(q.verdict);
            if (!q.follows_from.empty()) s += " " + q.follows_from;
            if (!q.hypotheses.empty()) s += " (" + q.hypotheses[0].kind + ")";
            return s + ">";
        });

    py::class_<DiagnosisReport>(m, "DiagnosisReport", "A hand derivation against the tape: str(report) is the table.")
        .def_property_readonly("ok", &DiagnosisReport::ok, "Every quantity matched and agrees.")
        .def("__bool__", &DiagnosisReport::ok)
        .def_property_readonly("mistakes", &DiagnosisReport::mistakes,
                               "The labels of the independent mistakes (MISTAKE or SHAPE MISMATCH), in order.")
        .def_readonly("quantities", &DiagnosisReport::quantities, "In the order the hand derivation gave them.")
        .def_readonly("not_given", &DiagnosisReport::not_given, "Observed names the hand derivation did not give.")
        .def_readonly("dot", &DiagnosisReport::dot, "The recorded model as Graphviz, coloured by verdict.")
        .def("at", &quantity, arg("label"), "The quantity of that label; KeyError if there is none.")
        .def("__getitem__", &quantity, arg("label"))
        .def("__contains__", [](const DiagnosisReport& r, const std::string& label) {
            for (const auto& q : r.quantities)
                if (q.label == label) return true;
            return false;
        })
        .def("__len__", [](const DiagnosisReport& r) { return r.quantities.size(); })
        .def("table", &DiagnosisReport::table)
        .def("json", &DiagnosisReport::json, "The C++ report's JSON text.")
        .def("to_dict", &report_dict,
             "{'ok', 'mistakes', 'not_given', 'quantities': [{'label', 'name', 'is_grad', 'where', 'hand_shape', "
             "'tape_shape', 'max_rel_error', 'verdict', 'follows_from', 'hypotheses': [{'kind', 'explanation', "
             "'residual'}], 'pattern'}]}")
        .def("__str__", &DiagnosisReport::table)
        .def("__repr__", [](const DiagnosisReport& r) {
            const auto ms = r.mistakes();
            if (r.ok()) return std::string("<xgrad.DiagnosisReport ok>");
            std::string s = "<xgrad.DiagnosisReport mistakes:";
            for (const auto& l : ms) s += " " + l;
            return s + ">";
        });

    m.def("diagnose", [](py::function model, py::function hand, double rtol, double fit_tol, std::size_t max_hypotheses) {
        return run_diagnose(model, hand, DiagnoseOptions().rtol(rtol).fit_tol(fit_tol).max_hypotheses(max_hypotheses));
    }, arg("model"), arg("hand"), arg("rtol") = 1e-8, arg("fit_tol") = 1e-6, arg("max_hypotheses") = 3,
          "model(tape) builds the model on a float64 Tape, names its quantities with tape.observe(name, var) and "
          "returns the scalar loss; hand(h) gives the hand derivation's quantities with h.value(name, array) and "
          "h.grad(name, array), continuing with the arrays they return. Returns a DiagnosisReport.");
}

}  // namespace xgrad::python

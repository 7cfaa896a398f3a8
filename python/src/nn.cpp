// xgrad.nn: the C++ layers, optimizers, schedules, weight files and IDX data. A Python module owns
// its C++ module until a container (Sequential) adopts it; it then points into the container and
// keeps the container alive. Layers without parameters get their precision from their input.
#include <functional>

#include <xgrad/nn.hpp>

#include "common.hpp"

namespace xgrad::python {

namespace {

DType dtype_arg(py::handle obj)
{
    if (obj.is_none()) return DType::none;
    const py::dtype dt = py::dtype::from_args(py::reinterpret_borrow<py::object>(obj));
    if (dt.kind() == 'f' && dt.itemsize() == 4) return DType::f32;
    if (dt.kind() == 'f' && dt.itemsize() == 8) return DType::f64;
    throw py::type_error("xgrad.nn: dtype must be float32 or float64");
}

struct PyModule;
using ModulePtr = std::shared_ptr<PyModule>;

struct PyModule {
    std::unique_ptr<nn::Module<float>> own_f;
    std::unique_ptr<nn::Module<double>> own_d;
    nn::Module<float>* f = nullptr;
    nn::Module<double>* d = nullptr;
    // Stateless layers are made for the precision they first meet.
    std::function<std::unique_ptr<nn::Module<float>>()> make_f;
    std::function<std::unique_ptr<nn::Module<double>>()> make_d;
    ModulePtr owner;     // the container that owns *f / *d, if any
    std::vector<py::object> keep;  // Python functions of Lambdas in it, kept alive with the C++ module
    std::string name;

    virtual ~PyModule() = default;  // polymorphic: pybind11 returns a borrowed layer as its own class
    DType dtype() const { return f ? DType::f32 : d ? DType::f64 : DType::none; }
    void ensure(DType t)
    {
        const DType have = dtype();
        if (have != DType::none) {
            if (t != DType::none && t != have)
                throw py::type_error("xgrad.nn: " + name + " is a " + dtype_name(have) + " module, got " + dtype_name(t) +
                                     " (make it with dtype=np." + dtype_name(t) + ")");
            return;
        }
        if (t == DType::f64) {
            own_d = make_d();
            d = own_d.get();
        } else {
            own_f = make_f();
            f = own_f.get();
        }
    }
    template <class T>
    nn::Module<T>& get()
    {
        ensure(std::is_same_v<T, float> ? DType::f32 : DType::f64);
        if constexpr (std::is_same_v<T, float>) return *f;
        else return *d;
    }
    template <class T>
    std::unique_ptr<nn::Module<T>> release()
    {
        if (owner) throw std::logic_error("xgrad.nn: " + name + " already belongs to a container");
        if constexpr (std::is_same_v<T, float>) {
            if (!own_f) throw std::logic_error("xgrad.nn: " + name + " cannot be moved into a container");
            return std::move(own_f);
        } else {
            if (!own_d) throw std::logic_error("xgrad.nn: " + name + " cannot be moved into a container");
            return std::move(own_d);
        }
    }
};

// One per layer class, so that Python sees the C++ names.
#define XGRAD_LAYER(NAME) \
    struct Py##NAME : PyModule {}
XGRAD_LAYER(Linear);
XGRAD_LAYER(Conv2d);
XGRAD_LAYER(MaxPool2d);
XGRAD_LAYER(AvgPool2d);
XGRAD_LAYER(Flatten);
XGRAD_LAYER(Dropout);
XGRAD_LAYER(Sigmoid);
XGRAD_LAYER(Tanh);
XGRAD_LAYER(ReLU);
XGRAD_LAYER(Softmax);
XGRAD_LAYER(LogSoftmax);
XGRAD_LAYER(Lambda);
XGRAD_LAYER(Sequential);
XGRAD_LAYER(BatchNorm1d);
XGRAD_LAYER(BatchNorm2d);
XGRAD_LAYER(LayerNorm);
XGRAD_LAYER(Embedding);
XGRAD_LAYER(GELU);
XGRAD_LAYER(SiLU);
XGRAD_LAYER(LeakyReLU);
XGRAD_LAYER(ELU);
XGRAD_LAYER(Softplus);
XGRAD_LAYER(Identity);
XGRAD_LAYER(AdaptiveAvgPool2d);
XGRAD_LAYER(LSTM);
XGRAD_LAYER(GRU);
XGRAD_LAYER(MultiheadAttention);
XGRAD_LAYER(TransformerEncoderLayer);
#undef XGRAD_LAYER
struct PyMLP : PySequential {};

/// Fills a module's factories: both precisions (stateless) or the one asked for.
template <class P, template <class> class M, class... Args>
std::shared_ptr<P> make_module(const std::string& name, DType fixed, Args... args)
{
    auto p = std::make_shared<P>();
    p->name = name;
    p->make_f = [=] { return std::unique_ptr<nn::Module<float>>(new M<float>(args...)); };
    p->make_d = [=] { return std::unique_ptr<nn::Module<double>>(new M<double>(args...)); };
    if (fixed != DType::none) p->ensure(fixed);
    return p;
}

struct PyParameter {
    ModulePtr module;  // keeps the Parameter alive
    Parameter<float>* f = nullptr;
    Parameter<double>* d = nullptr;
};

template <class T>
std::vector<std::pair<std::string, Parameter<T>*>> named_params(PyModule& m)
{
    return m.get<T>().named_parameters();
}

py::list parameters(const ModulePtr& m)
{
    py::list r;
    if (m->dtype() == DType::f64)
        for (auto* p : m->d->parameters()) r.append(PyParameter{m, nullptr, p});
    else if (m->dtype() == DType::f32)
        for (auto* p : m->f->parameters()) r.append(PyParameter{m, p, nullptr});
    return r;
}

py::list named_parameters(const ModulePtr& m)
{
    py::list r;
    if (m->dtype() == DType::f64)
        for (auto& [n, p] : m->d->named_parameters()) r.append(py::make_tuple(n, PyParameter{m, nullptr, p}));
    else if (m->dtype() == DType::f32)
        for (auto& [n, p] : m->f->named_parameters()) r.append(py::make_tuple(n, PyParameter{m, p, nullptr}));
    return r;
}

template <class T>
py::dict state_dict_impl(nn::Module<T>& m)
{
    py::dict d;
    for (auto& [n, t] : nn::state_dict(m)) d[py::str(n)] = copy(*t);
    return d;
}

template <class T>
void load_state_dict_impl(nn::Module<T>& m, const py::dict& sd, bool strict)
{
    // All checked before anything is written: the module is unchanged on error.
    const auto state = nn::state_dict(m);  // parameters and buffers, PyTorch's names
    std::vector<std::pair<Tensor<T>*, Tensor<T>>> staged;
    std::vector<std::string> problems;
    for (auto& [n, p] : state) {
        if (!sd.contains(n)) {
            if (strict) problems.push_back("missing '" + n + "'");
            continue;
        }
        py::object a = sd[py::str(n)];
        const DType dt = dtype_of(a);
        const DType want = std::is_same_v<T, float> ? DType::f32 : DType::f64;
        if (dt != DType::none && dt != want)
            problems.push_back("'" + n + "' is " + dtype_name(dt) + ", the module is " + dtype_name(want));
        Tensor<T> t = to_tensor<T>(a);
        if (t.shape() != p->shape())
            problems.push_back("'" + n + "' has shape " + shape_str(t.shape()) + ", the module's " + shape_str(p->shape()));
        staged.emplace_back(p, std::move(t));
    }
    if (strict)
        for (auto item : sd) {
            const std::string k = item.first.cast<std::string>();
            bool found = false;
            for (auto& np : state) found = found || np.first == k;
            if (!found) problems.push_back("unexpected '" + k + "'");
        }
    if (!problems.empty()) {
        std::string msg = "xgrad.nn: load_state_dict:";
        for (const auto& e : problems) msg += " " + e + ";";
        msg.pop_back();
        throw py::value_error(msg);
    }
    // In place, as nn::load_weights: NumPy views of the parameters stay valid.
    for (auto& [p, t] : staged) std::copy(t.begin(), t.end(), p->data());
}

// The Python tape of the forward in progress on this thread: a Lambda's function gets its Var on it.
thread_local TapePtr current_tape;

template <class T>
std::function<Var<T>(const Var<T>&)> lambda_fn(PyObject* f)
{
    return [f](const Var<T>& x) {
        py::gil_scoped_acquire gil;
        if (!current_tape || (current_tape->d != static_cast<void*>(&x.tape()) && current_tape->f != static_cast<void*>(&x.tape())))
            throw std::logic_error("xgrad.nn.Lambda: called outside a forward from Python (e.g. in gradcheck_module); "
                                   "a Lambda's Python function needs the Python tape");
        py::object r = py::reinterpret_borrow<py::function>(f)(PyVar(current_tape, x));
        if (!py::isinstance<PyVar>(r)) throw py::type_error("xgrad.nn.Lambda: the function must return an xgrad.Var");
        return r.cast<const PyVar&>().get<T>();
    };
}

/// Runs fn() (a C++ forward) with `tape` as the current Python tape and without the GIL.
template <class F>
auto on_tape(const TapePtr& tape, F&& fn)
{
    TapePtr prev = current_tape;
    current_tape = tape;
    py::gil_scoped_release nogil;  // a Lambda takes it back to call Python
    try {
        auto r = fn();
        current_tape = prev;
        return r;
    } catch (...) {
        current_tape = prev;
        throw;
    }
}

template <class T>
py::object forward_impl(PyModule& m, const PyVar& x)
{
    nn::Module<T>& mod = m.get<T>();
    const Var<T>& xv = x.get<T>();
    const Var<T> y = on_tape(x.tape, [&] { return mod.forward(xv); });
    return py::cast(PyVar(x.tape, y));
}

/// The C++ layer behind a Python module, as its own type (the module's precision is x's).
template <template <class> class L, class T>
L<T>& layer_as(PyModule& m)
{
    auto* l = dynamic_cast<L<T>*>(&m.get<T>());
    if (!l) throw std::logic_error("xgrad.nn: " + m.name + " is not this layer type");
    return *l;
}

template <class T>
py::object lstm_call(PyModule& m, const PyVar& x, const py::object& hx)
{
    auto& l = layer_as<nn::LSTM, T>(m);
    std::optional<std::tuple<Var<T>, Var<T>>> state;
    if (!hx.is_none()) {
        const auto pair = hx.cast<std::pair<PyVar, PyVar>>();
        state = std::make_tuple(pair.first.get<T>(), pair.second.get<T>());
    }
    const auto r = on_tape(x.tape, [&] { return l.forward(x.get<T>(), state); });
    const auto& [out, hc] = r;
    return py::make_tuple(PyVar(x.tape, out),
                          py::make_tuple(PyVar(x.tape, std::get<0>(hc)), PyVar(x.tape, std::get<1>(hc))));
}

template <class T>
py::object gru_call(PyModule& m, const PyVar& x, const py::object& hx)
{
    auto& l = layer_as<nn::GRU, T>(m);
    std::optional<Var<T>> state;
    if (!hx.is_none()) state = hx.cast<const PyVar&>().get<T>();
    const auto r = on_tape(x.tape, [&] { return l.forward(x.get<T>(), state); });
    return py::make_tuple(PyVar(x.tape, std::get<0>(r)), PyVar(x.tape, std::get<1>(r)));
}

template <class T>
py::object mha_call(PyModule& m, const PyVar& q, const PyVar& k, const PyVar& v, const py::object& mask,
                    bool need_weights, bool is_causal)
{
    auto& l = layer_as<nn::MultiheadAttention, T>(m);
    const std::optional<Tensor<T>> mk = mask.is_none() ? std::nullopt : std::optional<Tensor<T>>(to_tensor<T>(mask));
    const auto r = on_tape(q.tape, [&] {
        return l.forward(q.get<T>(), k.get<T>(), v.get<T>(), mk ? &*mk : nullptr, need_weights, is_causal);
    });
    return py::make_tuple(PyVar(q.tape, std::get<0>(r)), need_weights ? py::cast(PyVar(q.tape, std::get<1>(r))) : py::none());
}

template <class T>
py::object encoder_call(PyModule& m, const PyVar& x, const py::object& mask, bool is_causal)
{
    auto& l = layer_as<nn::TransformerEncoderLayer, T>(m);
    const std::optional<Tensor<T>> mk = mask.is_none() ? std::nullopt : std::optional<Tensor<T>>(to_tensor<T>(mask));
    const Var<T> y = on_tape(x.tape, [&] { return l.forward(x.get<T>(), mk ? &*mk : nullptr, is_causal); });
    return py::cast(PyVar(x.tape, y));
}

template <class T>
py::list named_buffers_of(const ModulePtr& m, nn::Module<T>& mod)
{
    py::list r;
    py::object owner = py::cast(m);
    for (auto& [n, b] : mod.named_buffers()) r.append(py::make_tuple(n, view(*b, owner, true)));
    return r;
}

// ---- optimizers: the C++ options are built in one function per optimizer ----

nn::SGDOptions sgd_options(double lr, double momentum, bool nesterov, double weight_decay)
{
    return nn::SGDOptions(lr).momentum(momentum).nesterov(nesterov).weight_decay(weight_decay);
}

/// Adam's and AdamW's options (AdamW decouples the decay itself).
nn::AdamOptions adam_options(double lr, std::pair<double, double> betas, double eps, double weight_decay)
{
    return nn::AdamOptions(lr).betas(betas.first, betas.second).eps(eps).weight_decay(weight_decay);
}

struct PyOptimizer {
    std::unique_ptr<nn::Optimizer<float>> f;
    std::unique_ptr<nn::Optimizer<double>> d;
    py::list params;  // keeps the modules alive
    template <class Fn>
    auto apply(Fn&& fn)
    {
        return f ? fn(*f) : fn(*d);
    }
};
struct PySGD : PyOptimizer {};
struct PyAdam : PyOptimizer {};
struct PyAdamW : PyAdam {};

/// The parameters of a list (or of module.parameters()), all of one precision.
template <class Opt, class MakeF, class MakeD>
std::shared_ptr<Opt> make_optimizer(py::object params, MakeF make_f, MakeD make_d)
{
    auto o = std::make_shared<Opt>();
    if (py::hasattr(params, "parameters") && !py::isinstance<py::list>(params)) params = params.attr("parameters")();
    o->params = py::list(params);
    std::vector<Parameter<float>*> pf;
    std::vector<Parameter<double>*> pd;
    for (auto h : o->params) {
        const auto& p = h.template cast<const PyParameter&>();
        if (p.f) pf.push_back(p.f);
        else pd.push_back(p.d);
    }
    if (!pf.empty() && !pd.empty()) throw py::type_error("xgrad.nn: an optimizer's parameters must share one precision");
    if (!pd.empty()) o->d = make_d(pd);
    else o->f = make_f(pf);
    return o;
}

nn::Activation activation_of(const std::string& s)
{
    if (s == "identity") return nn::Activation::identity;
    if (s == "sigmoid") return nn::Activation::sigmoid;
    if (s == "tanh") return nn::Activation::tanh;
    if (s == "relu") return nn::Activation::relu;
    throw py::value_error("xgrad.nn: activation must be 'identity', 'sigmoid', 'tanh' or 'relu', got '" + s + "'");
}

/// f(the Sequential of the module's precision).
template <class F>
auto on_sequential(PySequential& self, F f)
{
    return self.d ? f(static_cast<nn::Sequential<double>&>(*self.d)) : f(static_cast<nn::Sequential<float>&>(*self.f));
}

template <class T>
void adopt(nn::Sequential<T>& seq, const ModulePtr& owner, PyModule& child)
{
    child.ensure(std::is_same_v<T, float> ? DType::f32 : DType::f64);
    seq.add(child.release<T>());
    child.owner = owner;
    owner->keep.insert(owner->keep.end(), child.keep.begin(), child.keep.end());
    child.make_f = nullptr;
    child.make_d = nullptr;
}

// A borrowed layer of a container (net[i]): a plain Module handle that keeps the container alive.
template <class T>
ModulePtr borrowed_layer(nn::Module<T>& m)
{
    // The Python class of the layer where it has attributes of its own (weight, bias).
    ModulePtr p;
    if (dynamic_cast<nn::Linear<T>*>(&m)) p = std::make_shared<PyLinear>();
    else if (dynamic_cast<nn::Conv2d<T>*>(&m)) p = std::make_shared<PyConv2d>();
    else if (dynamic_cast<nn::Sequential<T>*>(&m)) p = std::make_shared<PySequential>();
    else p = std::make_shared<PyModule>();
    if constexpr (std::is_same_v<T, float>) p->f = &m;
    else p->d = &m;
    p->name = m.describe();
    return p;
}

py::object layer_at(const ModulePtr& seq, std::size_t i)
{
    ModulePtr p = seq->dtype() == DType::f64 ? borrowed_layer(static_cast<nn::Sequential<double>&>(*seq->d)[i])
                                             : borrowed_layer(static_cast<nn::Sequential<float>&>(*seq->f)[i]);
    p->owner = seq;
    return py::cast(p);
}

template <class T>
py::object param_or_none(const ModulePtr& m, Parameter<T>* p)
{
    if (!p) return py::none();
    if constexpr (std::is_same_v<T, float>) return py::cast(PyParameter{m, p, nullptr});
    else return py::cast(PyParameter{m, nullptr, p});
}

template <template <class> class L>
py::object layer_param(const ModulePtr& m, bool weight)
{
    if (m->dtype() == DType::f64) {
        auto* l = dynamic_cast<L<double>*>(m->d);
        if (!l) throw std::logic_error("xgrad.nn: not this layer type");
        return param_or_none<double>(m, weight ? &l->weight() : l->bias());
    }
    auto* l = dynamic_cast<L<float>*>(m->f);
    if (!l) throw std::logic_error("xgrad.nn: not this layer type");
    return param_or_none<float>(m, weight ? &l->weight() : l->bias());
}


/// Module.parameter(name): the C++ lookup, with KeyError (a name lookup) instead of IndexError.
template <class T>
py::object parameter_named(const ModulePtr& m, nn::Module<T>& mod, const std::string& name)
{
    try {
        return param_or_none<T>(m, &mod.parameter(name));
    } catch (const std::out_of_range& e) {
        throw py::key_error(e.what());
    }
}

template <class T>
py::object child_named(const ModulePtr& m, nn::Module<T>& mod, const std::string& name)
{
    nn::Module<T>* c = nullptr;
    try {
        c = &mod.child(name);
    } catch (const std::out_of_range& e) {
        throw py::key_error(e.what());
    }
    ModulePtr p = borrowed_layer(*c);
    p->owner = m;
    return py::cast(p);
}

template <class T>
py::list named_children_of(const ModulePtr& m, nn::Module<T>& mod)
{
    py::list r;
    for (auto& [n, c] : mod.named_children()) {
        ModulePtr p = borrowed_layer(*c);
        p->owner = m;
        r.append(py::make_tuple(n, py::cast(p)));
    }
    return r;
}

// ---- training helpers (train.hpp) ----

/// (images, labels) from Python: images (N, ...) converted to float32 and flattened per row,
/// labels (N) integers.
nn::Dataset dataset_of(py::handle obj)
{
    if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj))
        throw py::type_error("xgrad.nn: a dataset is a pair (images, labels), as nn.load_idx_dataset returns");
    py::sequence sq = py::reinterpret_borrow<py::sequence>(obj);
    if (sq.size() != 2) throw py::type_error("xgrad.nn: a dataset is a pair (images, labels)");
    nn::Dataset d;
    d.images = to_tensor<float>(sq[0]);
    d.labels = to_index(sq[1]);
    if (d.images.dimension() < 1 || d.labels.dimension() != 1 || d.images.shape()[0] != d.labels.size())
        throw py::value_error("xgrad.nn: the dataset's images " + shape_str(d.images.shape()) + " and labels " +
                              shape_str(d.labels.shape()) + " must have one row per label");
    const Shape s = d.images.shape();
    std::size_t cols = 1;
    for (std::size_t i = 1; i < s.size(); ++i) cols *= s[i];
    if (s.size() == 3) d.rows = s[1], d.cols = s[2];
    else d.rows = 1, d.cols = cols;
    d.images.reshape({s[0], cols});
    return d;
}

py::array labels_array(const IndexTensor& y)
{
    py::array_t<std::int64_t> r(static_cast<py::ssize_t>(y.size()));
    for (std::size_t i = 0; i < y.size(); ++i) r.mutable_data()[i] = static_cast<std::int64_t>(y(i));
    return r;
}

/// forward(tape, inputs) and loss(output, labels) as the C++ callbacks, on the Python tape `t`.
template <class T>
nn::BatchForward<T> batch_forward(const TapePtr& t, const py::function& forward)
{
    return [t, &forward](Tape<T>&, const Tensor<T>& inputs) -> Var<T> {
        py::gil_scoped_acquire gil;
        py::object r = forward(t, copy(inputs));
        if (!py::isinstance<PyVar>(r)) throw py::type_error("xgrad.nn: forward(tape, inputs) must return an xgrad.Var");
        return r.cast<const PyVar&>().get<T>();
    };
}

template <class T>
nn::BatchLoss<T> batch_loss(const TapePtr& t, const py::function& loss)
{
    return [t, &loss](const Var<T>& out, const IndexTensor& labels) -> Var<T> {
        py::gil_scoped_acquire gil;
        py::object r = loss(PyVar(t, out), labels_array(labels));
        if (!py::isinstance<PyVar>(r)) throw py::type_error("xgrad.nn: loss(output, labels) must return an xgrad.Var");
        return r.cast<const PyVar&>().get<T>();
    };
}

template <class T>
nn::EpochStats train_epoch_impl(const TapePtr& t, nn::Optimizer<T>& opt, const nn::Dataset& data, const py::function& forward,
                                const py::function& loss, const nn::EpochOptions& o, const py::object& on_step)
{
    t->resolve(std::is_same_v<T, float> ? DType::f32 : DType::f64);
    clear_py_tape(*t);  // views of earlier steps keep their memory; the loop clears the tape after each step
    Tape<T>& tape = t->get<T>();
    nn::StepCallback cb;
    if (!on_step.is_none())
        cb = [&on_step](std::size_t step, std::size_t steps, std::size_t samples, double mean_loss) {
            py::gil_scoped_acquire gil;
            on_step(step, steps, samples, mean_loss);
        };
    const auto fw = batch_forward<T>(t, forward);
    const auto ls = batch_loss<T>(t, loss);
    py::gil_scoped_release nogil;
    return nn::train_epoch(tape, opt, data, fw, ls, o, cb);
}

struct PyEvaluation {
    double loss = 0, accuracy = 0;
    py::object outputs;
};

template <class T>
PyEvaluation evaluate_impl(const TapePtr& t, nn::Module<T>& model, const nn::Dataset& data, const py::function& forward,
                           const py::function& loss, std::size_t batch_size, bool keep_outputs)
{
    t->resolve(std::is_same_v<T, float> ? DType::f32 : DType::f64);
    clear_py_tape(*t);
    Tape<T>& tape = t->get<T>();
    const auto fw = batch_forward<T>(t, forward);
    const auto ls = batch_loss<T>(t, loss);
    nn::Evaluation<T> e;
    {
        py::gil_scoped_release nogil;
        e = nn::evaluate(model, tape, data, fw, ls, batch_size, keep_outputs);
    }
    return {e.loss, e.accuracy, keep_outputs ? py::object(copy(e.outputs)) : py::object(py::none())};
}

template <class T>
py::object confusion_impl(py::object outputs, const IndexTensor& labels, std::size_t c)
{
    const auto m = nn::confusion_matrix(to_tensor<T>(outputs), labels, c);
    py::array_t<std::int64_t> r({static_cast<py::ssize_t>(m.shape()[0]), static_cast<py::ssize_t>(m.shape()[1])});
    for (std::size_t i = 0; i < m.size(); ++i) r.mutable_data()[i] = static_cast<std::int64_t>(m.data()[i]);
    return r;
}

}  // namespace

void init_nn(py::module_& m, py::module_& parent)
{
    using py::arg;
    py::class_<PyParameter>(m, "Parameter", "A weight: value and accumulated gradient as writable NumPy views.")
        .def_property("value",
                      [](py::object self) {
                          auto& p = self.cast<PyParameter&>();
                          return p.f ? view(p.f->value(), self, true) : view(p.d->value(), self, true);
                      },
                      [](PyParameter& p, py::object a) {
                          if (p.f) {
                              Tensor<float> t = to_tensor<float>(a);
                              if (t.shape() != p.f->value().shape())
                                  throw ShapeError("Parameter.value: " + shape_str(t.shape()) + " vs " + shape_str(p.f->value().shape()));
                              std::copy(t.begin(), t.end(), p.f->value().data());  // in place: views stay valid
                          } else {
                              Tensor<double> t = to_tensor<double>(a);
                              if (t.shape() != p.d->value().shape())
                                  throw ShapeError("Parameter.value: " + shape_str(t.shape()) + " vs " + shape_str(p.d->value().shape()));
                              std::copy(t.begin(), t.end(), p.d->value().data());
                          }
                      })
        .def_property_readonly("grad", [](py::object self) {
            auto& p = self.cast<PyParameter&>();
            return p.f ? view(p.f->grad(), self, true) : view(p.d->grad(), self, true);
        })
        .def_property_readonly("shape", [](const PyParameter& p) {
            const Shape& s = p.f ? p.f->shape() : p.d->shape();
            return py::tuple(py::cast(std::vector<std::size_t>(s.begin(), s.end())));
        })
        .def_property_readonly("dtype", [](const PyParameter& p) { return py::dtype(p.f ? "float32" : "float64"); })
        .def_property_readonly("name", [](const PyParameter& p) { return p.f ? p.f->name() : p.d->name(); })
        .def("zero_grad", [](PyParameter& p) { p.f ? p.f->zero_grad() : p.d->zero_grad(); });

    // tape.param(p): the parameter on a tape, no copy; backward adds into p.grad.
    py::object tape_cls = parent.attr("Tape");
    tape_cls.attr("param") = py::cpp_function(
        [](const TapePtr& t, const PyParameter& p) {
            if (p.f) {
                t->resolve(DType::f32);
                return PyVar(t, t->get<float>().param(*p.f));
            }
            t->resolve(DType::f64);
            return PyVar(t, t->get<double>().param(*p.d));
        },
        py::name("param"), py::is_method(tape_cls), arg("parameter"),
        "The parameter on this tape without a copy; backward adds into its .grad.");

    py::class_<PyModule, ModulePtr>(m, "Module")
        .def("__call__", [](const ModulePtr& self, const PyVar& x) {
            return x.dbl ? forward_impl<double>(*self, x) : forward_impl<float>(*self, x);
        }, arg("x"))
        .def("forward", [](const ModulePtr& self, const PyVar& x) {
            return x.dbl ? forward_impl<double>(*self, x) : forward_impl<float>(*self, x);
        }, arg("x"))
        .def("parameters", &parameters)
        .def("named_parameters", &named_parameters)
        .def("parameter", [](const ModulePtr& self, const std::string& name) {
            if (self->dtype() == DType::f64) return parameter_named(self, *self->d, name);
            if (self->dtype() == DType::f32) return parameter_named(self, *self->f, name);
            throw py::key_error("xgrad.nn: " + self->name + " has no parameters");
        }, arg("name"), "The parameter of that dotted name ('0.weight'); KeyError listing the names otherwise.")
        .def("child", [](const ModulePtr& self, const std::string& name) {
            if (self->dtype() == DType::f64) return child_named(self, *self->d, name);
            if (self->dtype() == DType::f32) return child_named(self, *self->f, name);
            throw py::key_error("xgrad.nn: " + self->name + " has no submodules");
        }, arg("name"), "The direct submodule of that name (it keeps this module alive); KeyError otherwise.")
        .def("named_children", [](const ModulePtr& self) {
            if (self->dtype() == DType::f64) return named_children_of(self, *self->d);
            if (self->dtype() == DType::f32) return named_children_of(self, *self->f);
            return py::list();
        }, "[(name, submodule)] of the direct submodules, in registration order.")
        .def("zero_grad", [](PyModule& self) {
            if (self.f) self.f->zero_grad();
            if (self.d) self.d->zero_grad();
        })
        .def("train", [](PyModule& self, bool on) {
            if (self.f) self.f->train(on);
            if (self.d) self.d->train(on);
        }, arg("mode") = true)
        .def("eval", [](PyModule& self) {
            if (self.f) self.f->eval();
            if (self.d) self.d->eval();
        })
        .def_property_readonly("training", [](PyModule& self) {
            return self.f ? self.f->is_training() : self.d ? self.d->is_training() : true;
        })
        .def_property_readonly("dtype", [](PyModule& self) -> py::object {
            if (self.dtype() == DType::none) return py::none();
            return py::dtype(dtype_name(self.dtype()));
        })
        .def("num_parameters", [](PyModule& self) -> std::size_t {
            return self.f ? self.f->num_parameters() : self.d ? self.d->num_parameters() : 0;
        })
        .def("named_buffers", [](const ModulePtr& self) -> py::list {
            if (self->dtype() == DType::f64) return named_buffers_of(self, *self->d);
            if (self->dtype() == DType::f32) return named_buffers_of(self, *self->f);
            return py::list();
        }, "(name, writable NumPy view) of every buffer (BatchNorm's running statistics), PyTorch's names.")
        .def("state_dict", [](PyModule& self) -> py::dict {
            if (self.dtype() == DType::f64) return state_dict_impl(*self.d);
            if (self.dtype() == DType::f32) return state_dict_impl(*self.f);
            return py::dict();
        }, "name -> NumPy copy of each parameter and buffer, under PyTorch's state-dict names and order.")
        .def("load_state_dict", [](PyModule& self, py::dict sd, bool strict) {
            if (self.dtype() == DType::f64) load_state_dict_impl(*self.d, sd, strict);
            else if (self.dtype() == DType::f32) load_state_dict_impl(*self.f, sd, strict);
        }, arg("state_dict"), arg("strict") = true)
        .def("save_weights", [](PyModule& self, const std::string& path) {
            if (self.dtype() == DType::f64) nn::save_weights(*self.d, path);
            else nn::save_weights(self.get<float>(), path);
        }, arg("path"), "Writes the parameters as safetensors (the C++ format, readable by PyTorch).")
        .def("load_weights", [](PyModule& self, const std::string& path) {
            if (self.dtype() == DType::f64) nn::load_weights(*self.d, path);
            else nn::load_weights(self.get<float>(), path);
        }, arg("path"))
        .def("__repr__", [](PyModule& self) {
            std::string s = self.f ? self.f->describe() : self.d ? self.d->describe() : self.name;
            return "<xgrad.nn." + s + (self.dtype() == DType::none ? "" : std::string(" ") + dtype_name(self.dtype())) + ">";
        });

    m.def("save_weights", [](PyModule& self, const std::string& path) {
        if (self.dtype() == DType::f64) nn::save_weights(*self.d, path);
        else nn::save_weights(self.get<float>(), path);
    }, arg("module"), arg("path"));
    m.def("load_weights", [](PyModule& self, const std::string& path) {
        if (self.dtype() == DType::f64) nn::load_weights(*self.d, path);
        else nn::load_weights(self.get<float>(), path);
    }, arg("module"), arg("path"));

    py::class_<PyLinear, PyModule, std::shared_ptr<PyLinear>>(m, "Linear")
        .def(py::init([](std::size_t in, std::size_t out, bool bias, std::optional<std::uint64_t> seed, py::object dtype) {
            const DType t = dtype_arg(dtype) == DType::none ? DType::f32 : dtype_arg(dtype);
            return make_module<PyLinear, nn::Linear>("Linear", t, in, out, bias, seed);
        }), arg("in_features"), arg("out_features"), arg("bias") = true, arg("seed") = py::none(), arg("dtype") = py::none(),
             "Without a seed the weights come from the process-wide generator (nn.init.manual_seed).")
        .def_property_readonly("weight", [](const std::shared_ptr<PyLinear>& s) { return layer_param<nn::Linear>(s, true); })
        .def_property_readonly("bias", [](const std::shared_ptr<PyLinear>& s) { return layer_param<nn::Linear>(s, false); });
    py::class_<PyConv2d, PyModule, std::shared_ptr<PyConv2d>>(m, "Conv2d")
        .def(py::init([](std::size_t in, std::size_t out, std::size_t k, std::size_t stride, std::size_t padding, bool bias,
                         std::size_t dilation, std::size_t groups, std::optional<std::uint64_t> seed, py::object dtype) {
            const DType t = dtype_arg(dtype) == DType::none ? DType::f32 : dtype_arg(dtype);
            const Conv2dOptions o =
                Conv2dOptions(in, out, k).stride(stride).padding(padding).bias(bias).dilation(dilation).groups(groups);
            return make_module<PyConv2d, nn::Conv2d>("Conv2d", t, o, seed);
        }), arg("in_channels"), arg("out_channels"), arg("kernel_size"), arg("stride") = 1, arg("padding") = 0,
             arg("bias") = true, arg("dilation") = 1, arg("groups") = 1, arg("seed") = py::none(), arg("dtype") = py::none())
        .def_property_readonly("weight", [](const std::shared_ptr<PyConv2d>& s) { return layer_param<nn::Conv2d>(s, true); })
        .def_property_readonly("bias", [](const std::shared_ptr<PyConv2d>& s) { return layer_param<nn::Conv2d>(s, false); });
    py::class_<PyMaxPool2d, PyModule, std::shared_ptr<PyMaxPool2d>>(m, "MaxPool2d")
        .def(py::init([](std::size_t k, py::object stride, py::object dtype) {
            const std::size_t s = stride.is_none() ? 0 : stride.cast<std::size_t>();
            return make_module<PyMaxPool2d, nn::MaxPool2d>("MaxPool2d", dtype_arg(dtype), k, s);
        }), arg("kernel_size"), arg("stride") = py::none(), arg("dtype") = py::none());
    py::class_<PyAvgPool2d, PyModule, std::shared_ptr<PyAvgPool2d>>(m, "AvgPool2d")
        .def(py::init([](std::size_t k, py::object stride, py::object dtype) {
            const std::size_t s = stride.is_none() ? 0 : stride.cast<std::size_t>();
            return make_module<PyAvgPool2d, nn::AvgPool2d>("AvgPool2d", dtype_arg(dtype), k, s);
        }), arg("kernel_size"), arg("stride") = py::none(), arg("dtype") = py::none());
    py::class_<PyFlatten, PyModule, std::shared_ptr<PyFlatten>>(m, "Flatten")
        .def(py::init([](int start_dim, py::object dtype) {
            return make_module<PyFlatten, nn::Flatten>("Flatten", dtype_arg(dtype), start_dim);
        }), arg("start_dim") = 1, arg("dtype") = py::none());
    py::class_<PyDropout, PyModule, std::shared_ptr<PyDropout>>(m, "Dropout")
        .def(py::init([](double p, std::optional<std::uint64_t> seed, py::object dtype) {
            // drawn now (not when the precision is known at the first forward): construction order decides
            const std::optional<std::uint64_t> s = nn::init::seed_or_next(seed);
            return make_module<PyDropout, nn::Dropout>("Dropout", dtype_arg(dtype), p, s);
        }), arg("p") = 0.5, arg("seed") = py::none(), arg("dtype") = py::none());
    py::class_<PySigmoid, PyModule, std::shared_ptr<PySigmoid>>(m, "Sigmoid")
        .def(py::init([](py::object dtype) { return make_module<PySigmoid, nn::Sigmoid>("Sigmoid", dtype_arg(dtype)); }),
             arg("dtype") = py::none());
    py::class_<PyTanh, PyModule, std::shared_ptr<PyTanh>>(m, "Tanh")
        .def(py::init([](py::object dtype) { return make_module<PyTanh, nn::Tanh>("Tanh", dtype_arg(dtype)); }),
             arg("dtype") = py::none());
    py::class_<PyReLU, PyModule, std::shared_ptr<PyReLU>>(m, "ReLU")
        .def(py::init([](py::object dtype) { return make_module<PyReLU, nn::ReLU>("ReLU", dtype_arg(dtype)); }),
             arg("dtype") = py::none());
    py::class_<PySoftmax, PyModule, std::shared_ptr<PySoftmax>>(m, "Softmax")
        .def(py::init([](int dim, py::object dtype) { return make_module<PySoftmax, nn::Softmax>("Softmax", dtype_arg(dtype), dim); }),
             arg("dim") = -1, arg("dtype") = py::none());
    py::class_<PyLogSoftmax, PyModule, std::shared_ptr<PyLogSoftmax>>(m, "LogSoftmax")
        .def(py::init([](int dim, py::object dtype) {
            return make_module<PyLogSoftmax, nn::LogSoftmax>("LogSoftmax", dtype_arg(dtype), dim);
        }), arg("dim") = -1, arg("dtype") = py::none());
    py::class_<PyLambda, PyModule, std::shared_ptr<PyLambda>>(m, "Lambda")
        .def(py::init([](const std::string& name, py::function fn, py::object dtype) {
            auto p = std::make_shared<PyLambda>();
            p->name = name;
            p->keep.push_back(fn);
            PyObject* f = fn.ptr();  // kept alive by p->keep, which outlives the C++ module
            p->make_f = [name, f] { return std::unique_ptr<nn::Module<float>>(new nn::Lambda<float>(name, lambda_fn<float>(f))); };
            p->make_d = [name, f] { return std::unique_ptr<nn::Module<double>>(new nn::Lambda<double>(name, lambda_fn<double>(f))); };
            if (dtype_arg(dtype) != DType::none) p->ensure(dtype_arg(dtype));
            return p;
        }), arg("name"), arg("fn"), arg("dtype") = py::none(), "A module from a Python function of one Var.");

    py::class_<PySequential, PyModule, std::shared_ptr<PySequential>>(m, "Sequential")
        .def(py::init([](py::args mods, py::object dtype) {
            DType t = dtype_arg(dtype);
            for (auto h : mods) {
                auto& c = h.cast<PyModule&>();
                if (t == DType::none) t = c.dtype();
            }
            if (t == DType::none) t = DType::f32;
            auto p = std::make_shared<PySequential>();
            p->name = "Sequential";
            if (t == DType::f64) {
                p->own_d = std::make_unique<nn::Sequential<double>>();
                p->d = p->own_d.get();
            } else {
                p->own_f = std::make_unique<nn::Sequential<float>>();
                p->f = p->own_f.get();
            }
            for (auto h : mods) {
                auto c = h.cast<ModulePtr>();
                if (t == DType::f64) adopt(static_cast<nn::Sequential<double>&>(*p->d), p, *c);
                else adopt(static_cast<nn::Sequential<float>&>(*p->f), p, *c);
            }
            return p;
        }), arg("dtype") = py::none())
        .def("append", [](const std::shared_ptr<PySequential>& self, const ModulePtr& c) {
            if (self->dtype() == DType::f64) adopt(static_cast<nn::Sequential<double>&>(*self->d), self, *c);
            else adopt(static_cast<nn::Sequential<float>&>(*self->f), self, *c);
            return self;
        }, arg("module"))
        .def("__len__", [](PySequential& self) { return on_sequential(self, [](auto& s) { return s.size(); }); })
        .def("fuse_batch_norm_relu", [](PySequential& self) {
            return on_sequential(self, [](auto& s) { return s.fuse_batch_norm_relu(); });
        }, "Runs each BatchNorm1d/BatchNorm2d that a ReLU directly follows as one op with it (train mode), "
           "the same values and gradients bit for bit; returns the number of pairs. Layers, names and "
           "state dict unchanged.")
        .def("fuse_activation_pool", [](PySequential& self) {
            return on_sequential(self, [](auto& s) { return s.fuse_activation_pool(); });
        }, "Runs each ReLU, Sigmoid or Tanh that an AvgPool2d directly follows as one op with it "
           "(activation_avg_pool2d), the same values and gradients bit for bit; returns the number of pairs. "
           "Layers, names and state dict unchanged.")
        .def("__getitem__", [](const std::shared_ptr<PySequential>& self, long i) {
            const long n = static_cast<long>(self->d ? static_cast<nn::Sequential<double>&>(*self->d).size()
                                                     : static_cast<nn::Sequential<float>&>(*self->f).size());
            if (i < 0) i += n;
            if (i < 0) throw py::index_error("xgrad.nn.Sequential: index out of range");
            return layer_at(self, static_cast<std::size_t>(i));
        });
    auto fixed = [](py::object dtype) { return dtype_arg(dtype) == DType::none ? DType::f32 : dtype_arg(dtype); };
    py::class_<PyBatchNorm1d, PyModule, std::shared_ptr<PyBatchNorm1d>>(m, "BatchNorm1d")
        .def(py::init([fixed](std::size_t c, double eps, std::optional<double> momentum, bool affine, bool track, py::object dtype) {
            const auto o = nn::BatchNormOptions(c).eps(eps).momentum(momentum).affine(affine).track_running_stats(track);
            return make_module<PyBatchNorm1d, nn::BatchNorm1d>("BatchNorm1d", fixed(dtype), o);
        }), arg("num_features"), arg("eps") = 1e-5, arg("momentum") = 0.1, arg("affine") = true,
             arg("track_running_stats") = true, arg("dtype") = py::none());
    py::class_<PyBatchNorm2d, PyModule, std::shared_ptr<PyBatchNorm2d>>(m, "BatchNorm2d")
        .def(py::init([fixed](std::size_t c, double eps, std::optional<double> momentum, bool affine, bool track, py::object dtype) {
            const auto o = nn::BatchNormOptions(c).eps(eps).momentum(momentum).affine(affine).track_running_stats(track);
            return make_module<PyBatchNorm2d, nn::BatchNorm2d>("BatchNorm2d", fixed(dtype), o);
        }), arg("num_features"), arg("eps") = 1e-5, arg("momentum") = 0.1, arg("affine") = true,
             arg("track_running_stats") = true, arg("dtype") = py::none());
    py::class_<PyLayerNorm, PyModule, std::shared_ptr<PyLayerNorm>>(m, "LayerNorm")
        .def(py::init([fixed](py::object shape, double eps, bool affine, py::object dtype) {
            std::vector<std::size_t> ns;
            if (py::isinstance<py::int_>(shape)) ns.push_back(shape.cast<std::size_t>());
            else ns = shape.cast<std::vector<std::size_t>>();
            const auto o = nn::LayerNormOptions(ns).eps(eps).elementwise_affine(affine);
            return make_module<PyLayerNorm, nn::LayerNorm>("LayerNorm", fixed(dtype), o);
        }), arg("normalized_shape"), arg("eps") = 1e-5, arg("elementwise_affine") = true, arg("dtype") = py::none());
    py::class_<PyEmbedding, PyModule, std::shared_ptr<PyEmbedding>>(m, "Embedding")
        .def(py::init([fixed](std::size_t num, std::size_t dim, std::optional<std::int64_t> padding_idx,
                              std::optional<std::uint64_t> seed, py::object dtype) {
            return make_module<PyEmbedding, nn::Embedding>("Embedding", fixed(dtype),
                                                          nn::EmbeddingOptions(num, dim).padding_idx(padding_idx), seed);
        }), arg("num_embeddings"), arg("embedding_dim"), arg("padding_idx") = py::none(), arg("seed") = py::none(),
             arg("dtype") = py::none(), "Call it with the indices as a Var of whole numbers (tape.constant(indices)).");
    py::class_<PyGELU, PyModule, std::shared_ptr<PyGELU>>(m, "GELU")
        .def(py::init([](const std::string& approximate, py::object dtype) {
            return make_module<PyGELU, nn::GELU>("GELU", dtype_arg(dtype), nn::GELUOptions().approximate(approximate));
        }), arg("approximate") = "none", arg("dtype") = py::none());
    py::class_<PySiLU, PyModule, std::shared_ptr<PySiLU>>(m, "SiLU")
        .def(py::init([](py::object dtype) { return make_module<PySiLU, nn::SiLU>("SiLU", dtype_arg(dtype)); }),
             arg("dtype") = py::none());
    py::class_<PyLeakyReLU, PyModule, std::shared_ptr<PyLeakyReLU>>(m, "LeakyReLU")
        .def(py::init([](double slope, py::object dtype) {
            return make_module<PyLeakyReLU, nn::LeakyReLU>("LeakyReLU", dtype_arg(dtype), nn::LeakyReLUOptions().negative_slope(slope));
        }), arg("negative_slope") = 0.01, arg("dtype") = py::none());
    py::class_<PyELU, PyModule, std::shared_ptr<PyELU>>(m, "ELU")
        .def(py::init([](double alpha, py::object dtype) {
            return make_module<PyELU, nn::ELU>("ELU", dtype_arg(dtype), nn::ELUOptions().alpha(alpha));
        }), arg("alpha") = 1.0, arg("dtype") = py::none());
    py::class_<PySoftplus, PyModule, std::shared_ptr<PySoftplus>>(m, "Softplus")
        .def(py::init([](double beta, double threshold, py::object dtype) {
            return make_module<PySoftplus, nn::Softplus>("Softplus", dtype_arg(dtype),
                                                        nn::SoftplusOptions().beta(beta).threshold(threshold));
        }), arg("beta") = 1.0, arg("threshold") = 20.0, arg("dtype") = py::none());
    py::class_<PyIdentity, PyModule, std::shared_ptr<PyIdentity>>(m, "Identity")
        .def(py::init([](py::object dtype) { return make_module<PyIdentity, nn::Identity>("Identity", dtype_arg(dtype)); }),
             arg("dtype") = py::none());
    py::class_<PyAdaptiveAvgPool2d, PyModule, std::shared_ptr<PyAdaptiveAvgPool2d>>(m, "AdaptiveAvgPool2d")
        .def(py::init([](py::object size, py::object dtype) {
            std::vector<std::size_t> hw;
            if (py::isinstance<py::int_>(size)) hw = {size.cast<std::size_t>(), size.cast<std::size_t>()};
            else hw = size.cast<std::vector<std::size_t>>();
            if (hw.size() != 2) throw py::value_error("xgrad.nn.AdaptiveAvgPool2d: output_size is an int or a pair");
            return make_module<PyAdaptiveAvgPool2d, nn::AdaptiveAvgPool2d>("AdaptiveAvgPool2d", dtype_arg(dtype),
                                                                          nn::AdaptiveAvgPool2dOptions({hw[0], hw[1]}));
        }), arg("output_size"), arg("dtype") = py::none());

    const char* rnn_doc = "Called as torch.nn's: lstm(x, (h0, c0)) -> (output, (h_n, c_n)); gru(x, h0) -> (output, h_n).";
    auto rnn_options = [](std::size_t in, std::size_t hidden, std::size_t layers, bool bias, bool batch_first, double dropout) {
        return nn::RNNOptionsBase(in, hidden).num_layers(layers).bias(bias).batch_first(batch_first).dropout(dropout);
    };
    py::class_<PyLSTM, PyModule, std::shared_ptr<PyLSTM>>(m, "LSTM", rnn_doc)
        .def(py::init([=](std::size_t in, std::size_t hidden, std::size_t layers, bool bias, bool batch_first, double dropout,
                          std::optional<std::uint64_t> seed, py::object dtype) {
            return make_module<PyLSTM, nn::LSTM>("LSTM", fixed(dtype), rnn_options(in, hidden, layers, bias, batch_first, dropout), seed);
        }), arg("input_size"), arg("hidden_size"), arg("num_layers") = 1, arg("bias") = true, arg("batch_first") = false,
             arg("dropout") = 0.0, arg("seed") = py::none(), arg("dtype") = py::none())
        .def("__call__", [](const ModulePtr& self, const PyVar& x, py::object hx) {
            return x.dbl ? lstm_call<double>(*self, x, hx) : lstm_call<float>(*self, x, hx);
        }, arg("x"), arg("hx") = py::none());
    py::class_<PyGRU, PyModule, std::shared_ptr<PyGRU>>(m, "GRU", rnn_doc)
        .def(py::init([=](std::size_t in, std::size_t hidden, std::size_t layers, bool bias, bool batch_first, double dropout,
                          std::optional<std::uint64_t> seed, py::object dtype) {
            return make_module<PyGRU, nn::GRU>("GRU", fixed(dtype), rnn_options(in, hidden, layers, bias, batch_first, dropout), seed);
        }), arg("input_size"), arg("hidden_size"), arg("num_layers") = 1, arg("bias") = true, arg("batch_first") = false,
             arg("dropout") = 0.0, arg("seed") = py::none(), arg("dtype") = py::none())
        .def("__call__", [](const ModulePtr& self, const PyVar& x, py::object hx) {
            return x.dbl ? gru_call<double>(*self, x, hx) : gru_call<float>(*self, x, hx);
        }, arg("x"), arg("hx") = py::none());
    py::class_<PyMultiheadAttention, PyModule, std::shared_ptr<PyMultiheadAttention>>(m, "MultiheadAttention")
        .def(py::init([fixed](std::size_t e, std::size_t heads, double dropout, bool bias, bool batch_first,
                              std::optional<std::uint64_t> seed, py::object dtype) {
            const auto o = nn::MultiheadAttentionOptions(e, heads).dropout(dropout).bias(bias).batch_first(batch_first);
            return make_module<PyMultiheadAttention, nn::MultiheadAttention>("MultiheadAttention", fixed(dtype), o, seed);
        }), arg("embed_dim"), arg("num_heads"), arg("dropout") = 0.0, arg("bias") = true, arg("batch_first") = false,
             arg("seed") = py::none(), arg("dtype") = py::none())
        .def("__call__", [](const ModulePtr& self, const PyVar& q, const PyVar& k, const PyVar& v, py::object attn_mask,
                            bool need_weights, bool is_causal) {
            return q.dbl ? mha_call<double>(*self, q, k, v, attn_mask, need_weights, is_causal)
                         : mha_call<float>(*self, q, k, v, attn_mask, need_weights, is_causal);
        }, arg("query"), arg("key"), arg("value"), arg("attn_mask") = py::none(), arg("need_weights") = true,
           arg("is_causal") = false, "(output, attention weights averaged over the heads, or None)");
    py::class_<PyTransformerEncoderLayer, PyModule, std::shared_ptr<PyTransformerEncoderLayer>>(m, "TransformerEncoderLayer")
        .def(py::init([fixed](std::size_t d_model, std::size_t nhead, std::size_t dim_ff, double dropout, const std::string& act,
                              double eps, bool batch_first, bool norm_first, std::optional<std::uint64_t> seed, py::object dtype) {
            const auto o = nn::TransformerEncoderLayerOptions(d_model, nhead).dim_feedforward(dim_ff).dropout(dropout)
                               .activation(act).layer_norm_eps(eps).batch_first(batch_first).norm_first(norm_first);
            return make_module<PyTransformerEncoderLayer, nn::TransformerEncoderLayer>("TransformerEncoderLayer", fixed(dtype), o, seed);
        }), arg("d_model"), arg("nhead"), arg("dim_feedforward") = 2048, arg("dropout") = 0.1, arg("activation") = "relu",
             arg("layer_norm_eps") = 1e-5, arg("batch_first") = false, arg("norm_first") = false, arg("seed") = py::none(),
             arg("dtype") = py::none())
        .def("__call__", [](const ModulePtr& self, const PyVar& x, py::object src_mask, bool is_causal) {
            return x.dbl ? encoder_call<double>(*self, x, src_mask, is_causal) : encoder_call<float>(*self, x, src_mask, is_causal);
        }, arg("src"), arg("src_mask") = py::none(), arg("is_causal") = false);

    py::class_<PyMLP, PySequential, std::shared_ptr<PyMLP>>(m, "MLP")
        .def(py::init([](std::vector<std::size_t> sizes, const std::string& hidden, const std::string& output,
                         std::optional<std::uint64_t> seed, py::object dtype) {
            const DType t = dtype_arg(dtype) == DType::none ? DType::f32 : dtype_arg(dtype);
            auto p = std::make_shared<PyMLP>();
            p->name = "MLP";
            if (t == DType::f64) {
                p->own_d = std::make_unique<nn::MLP<double>>(sizes, activation_of(hidden), activation_of(output), seed);
                p->d = p->own_d.get();
            } else {
                p->own_f = std::make_unique<nn::MLP<float>>(sizes, activation_of(hidden), activation_of(output), seed);
                p->f = p->own_f.get();
            }
            return p;
        }), arg("sizes"), arg("hidden") = "relu", arg("output") = "identity", arg("seed") = py::none(), arg("dtype") = py::none());

    // ---- optimizers and schedules ----
    py::class_<PyOptimizer, std::shared_ptr<PyOptimizer>>(m, "Optimizer")
        .def("step", [](PyOptimizer& o) {
            py::gil_scoped_release nogil;
            o.apply([](auto& opt) { opt.step(); return 0; });
        })
        .def("zero_grad", [](PyOptimizer& o) { o.apply([](auto& opt) { opt.zero_grad(); return 0; }); })
        .def_property("lr", [](PyOptimizer& o) { return o.apply([](auto& opt) { return opt.lr(); }); },
                      [](PyOptimizer& o, double lr) { o.apply([&](auto& opt) { opt.set_lr(lr); return 0; }); })
        .def_property("steps", [](PyOptimizer& o) { return o.apply([](auto& opt) { return opt.steps(); }); },
                      [](PyOptimizer& o, std::size_t s) { o.apply([&](auto& opt) { opt.set_steps(s); return 0; }); })
        .def_readonly("params", &PyOptimizer::params);
    py::class_<PySGD, PyOptimizer, std::shared_ptr<PySGD>>(m, "SGD")
        .def(py::init([](py::object params, double lr, double momentum, bool nesterov, double weight_decay) {
            const nn::SGDOptions o = sgd_options(lr, momentum, nesterov, weight_decay);
            return make_optimizer<PySGD>(
                params, [&](auto p) { return std::make_unique<nn::SGD<float>>(p, o); },
                [&](auto p) { return std::make_unique<nn::SGD<double>>(p, o); });
        }), arg("params"), arg("lr") = 0.01, arg("momentum") = 0.0, arg("nesterov") = false, arg("weight_decay") = 0.0);
    py::class_<PyAdam, PyOptimizer, std::shared_ptr<PyAdam>>(m, "Adam")
        .def(py::init([](py::object params, double lr, std::pair<double, double> betas, double eps, double weight_decay) {
            const nn::AdamOptions o = adam_options(lr, betas, eps, weight_decay);
            return make_optimizer<PyAdam>(
                params, [&](auto p) { return std::make_unique<nn::Adam<float>>(p, o); },
                [&](auto p) { return std::make_unique<nn::Adam<double>>(p, o); });
        }), arg("params"), arg("lr") = 1e-3, arg("betas") = std::make_pair(0.9, 0.999), arg("eps") = 1e-8,
             arg("weight_decay") = 0.0);
    py::class_<PyAdamW, PyAdam, std::shared_ptr<PyAdamW>>(m, "AdamW")
        .def(py::init([](py::object params, double lr, std::pair<double, double> betas, double eps, double weight_decay) {
            const nn::AdamOptions o = adam_options(lr, betas, eps, weight_decay);
            return make_optimizer<PyAdamW>(
                params, [&](auto p) { return std::make_unique<nn::AdamW<float>>(p, o); },
                [&](auto p) { return std::make_unique<nn::AdamW<double>>(p, o); });
        }), arg("params"), arg("lr") = 1e-3, arg("betas") = std::make_pair(0.9, 0.999), arg("eps") = 1e-8,
             arg("weight_decay") = 0.01);
    py::class_<nn::StepLR>(m, "StepLR")
        .def(py::init<double, int, double>(), arg("base_lr"), arg("step_size"), arg("gamma") = 0.1)
        .def("lr", &nn::StepLR::lr, arg("epoch"));
    py::class_<nn::CosineLR>(m, "CosineLR")
        .def(py::init<double, int, double>(), arg("base_lr"), arg("total_epochs"), arg("min_lr") = 0.0)
        .def("lr", &nn::CosineLR::lr, arg("epoch"));

    m.def("scatter_traces", [](py::object y, py::object labels) {
        const IndexTensor l = to_index(labels);
        const nn::ScatterTraces t = dtype_of(y) == DType::f32 ? nn::scatter_traces(to_tensor<float>(y), l)
                                                              : nn::scatter_traces(to_tensor<double>(y), l);
        return py::make_tuple(t.within, t.between);
    }, arg("y"), arg("labels"), "(tr S_w, tr S_b) of the rows of y, for monitoring.");

    // ---- data ----
    m.def("read_idx", [](const std::string& path) {
        nn::IdxArray a = nn::read_idx(path);
        py::array_t<std::uint8_t> r(std::vector<py::ssize_t>(a.dims.begin(), a.dims.end()));
        if (!a.data.empty()) std::memcpy(r.mutable_data(), a.data.data(), a.data.size());
        return r;
    }, arg("path"), "An IDX file of unsigned bytes (plain or gzip) as a uint8 array.");
    m.def("load_idx_dataset", [](const std::string& dir, const std::string& prefix, const std::string& hint) {
        nn::Dataset d;
        {
            py::gil_scoped_release nogil;
            d = nn::load_idx_dataset(dir, prefix, hint);
        }
        return py::make_tuple(copy(d.images), copy(d.labels));
    }, arg("dir"), arg("prefix"), arg("fetch_hint") = "",
          "(images (N, H·W) float32 in [0, 1], labels (N) int64) from <dir>/<prefix>-images-idx3-ubyte[.gz] & co.");
    m.def("epoch_order", [](std::size_t n, std::uint64_t seed, std::size_t epoch) {
        const auto o = nn::epoch_order(n, seed, epoch);
        py::array_t<std::int64_t> r(static_cast<py::ssize_t>(o.size()));
        for (std::size_t i = 0; i < o.size(); ++i) r.mutable_data()[i] = static_cast<std::int64_t>(o[i]);
        return r;
    }, arg("n"), arg("seed"), arg("epoch"), "The seeded shuffle of epoch `epoch` (the C++ examples' order).");
    // ---- init: the process-wide seed of layers made without one ----
    auto init = m.def_submodule("init", "The process-wide generator layers made without a seed draw from");
    init.def("manual_seed", &nn::init::manual_seed, arg("seed"),
             "Seeds the generator that layers made without a seed draw their seeds from (initially 0).");
    init.def("next_seed", &nn::init::next_seed, "The next seed of that generator (what a layer without a seed uses).");

    // ---- training helpers ----
    py::class_<nn::EpochStats>(m, "EpochStats", "Mean loss per sample and accuracy over an epoch.")
        .def_readonly("loss", &nn::EpochStats::loss)
        .def_readonly("accuracy", &nn::EpochStats::accuracy)
        .def("__repr__", [](const nn::EpochStats& e) {
            return "<xgrad.nn.EpochStats loss " + std::to_string(e.loss) + " accuracy " + std::to_string(e.accuracy) + ">";
        });
    py::class_<PyEvaluation>(m, "Evaluation", "Mean loss per sample, accuracy and (keep_outputs) the outputs (N, C).")
        .def_readonly("loss", &PyEvaluation::loss)
        .def_readonly("accuracy", &PyEvaluation::accuracy)
        .def_readonly("outputs", &PyEvaluation::outputs)
        .def("__repr__", [](const PyEvaluation& e) {
            return "<xgrad.nn.Evaluation loss " + std::to_string(e.loss) + " accuracy " + std::to_string(e.accuracy) + ">";
        });
    m.def("train_epoch", [](const TapePtr& tape, PyOptimizer& opt, py::object dataset, py::function forward, py::function loss,
                            std::size_t batch_size, bool shuffle, std::uint64_t seed, std::size_t epoch, py::object on_step) {
        const nn::Dataset data = dataset_of(dataset);
        const nn::EpochOptions o = nn::EpochOptions().batch_size(batch_size).shuffle(shuffle).seed(seed).epoch(epoch);
        if (opt.d) return train_epoch_impl<double>(tape, *opt.d, data, forward, loss, o, on_step);
        return train_epoch_impl<float>(tape, *opt.f, data, forward, loss, o, on_step);
    }, arg("tape"), arg("optimizer"), arg("dataset"), arg("forward"), arg("loss"), arg("batch_size") = 64,
          arg("shuffle") = true, arg("seed") = 1, arg("epoch") = 0, arg("on_step") = py::none(),
          "One pass over dataset = (images, labels) in mini-batches: zero_grad, out = forward(tape, inputs), "
          "l = loss(out, labels), backward, step, tape.clear(). on_step(step, steps, samples, mean_loss) after each "
          "step. Returns EpochStats (mean loss per sample, training accuracy). The optimizer's precision is the tape's.");
    m.def("evaluate", [](const ModulePtr& model, const TapePtr& tape, py::object dataset, py::function forward, py::function loss,
                         std::size_t batch_size, bool keep_outputs) {
        const nn::Dataset data = dataset_of(dataset);
        if (model->dtype() == DType::f64) return evaluate_impl<double>(tape, *model->d, data, forward, loss, batch_size, keep_outputs);
        return evaluate_impl<float>(tape, model->get<float>(), data, forward, loss, batch_size, keep_outputs);
    }, arg("model"), arg("tape"), arg("dataset"), arg("forward"), arg("loss"), arg("batch_size") = 1000,
          arg("keep_outputs") = false,
          "The model over the dataset in eval mode without backward; its mode is restored afterwards. Returns "
          "Evaluation (loss, accuracy, outputs).");
    m.def("accuracy", [](py::object outputs, py::object labels) {
        const IndexTensor l = to_index(labels);
        return dtype_of(outputs) == DType::f32 ? nn::accuracy(to_tensor<float>(outputs), l) : nn::accuracy(to_tensor<double>(outputs), l);
    }, arg("outputs"), arg("labels"), "The fraction of rows whose largest output (the first on ties) is at the label.");
    m.def("confusion_matrix", [](py::object outputs, py::object labels, std::size_t num_classes) {
        const IndexTensor l = to_index(labels);
        return dtype_of(outputs) == DType::f32 ? confusion_impl<float>(outputs, l, num_classes)
                                                : confusion_impl<double>(outputs, l, num_classes);
    }, arg("outputs"), arg("labels"), arg("num_classes") = 0, "(C, C) counts: entry (t, p) = rows labelled t predicted p.");

    // ---- gradcheck of a float64 module ----
    m.def("gradcheck_module", [](const ModulePtr& module, py::object x, py::object loss, double eps, double atol, double rtol,
                                 std::uint64_t seed) {
        if (module->dtype() != DType::f64)
            throw py::type_error("xgrad.nn.gradcheck_module: the module must be float64 (make it with dtype=np.float64)");
        GradcheckOptions o;
        o.eps(eps).atol(atol).rtol(rtol).seed(seed);
        const Tensor<double> xv = to_tensor<double>(x);
        if (loss.is_none()) return nn::gradcheck_module(*module->d, xv, o);
        std::vector<std::shared_ptr<PyTape>> tapes;
        auto fn = [&](const Var<double>& y) -> Var<double> {
            std::shared_ptr<PyTape> pt;
            for (auto& t : tapes)
                if (t->d == &y.tape()) pt = t;
            if (!pt) tapes.push_back(pt = std::make_shared<PyTape>(y.tape()));
            py::object r = loss(PyVar(pt, y));
            if (!py::isinstance<PyVar>(r)) throw py::type_error("xgrad.nn.gradcheck_module: loss must return an xgrad.Var");
            return r.cast<const PyVar&>().get<double>();
        };
        struct Detach {
            std::vector<std::shared_ptr<PyTape>>& t;
            ~Detach() { for (auto& p : t) p->detach(); }
        } detach{tapes};
        return nn::gradcheck_module(*module->d, xv, fn, o);
    }, arg("module"), arg("x"), arg("loss") = py::none(), arg("eps") = 1e-6, arg("atol") = 1e-8, arg("rtol") = 1e-6,
          arg("seed") = 0x5eed,
          "The tape's gradients of every parameter and of the input against central differences (float64 modules; "
          "loss(y) optional, a Python function of the output). Returns a GradcheckReport.");
}

}  // namespace xgrad::python

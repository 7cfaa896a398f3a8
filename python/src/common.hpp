#pragma once
// Shared by the binding TUs: the Python-side tape and Var, NumPy <-> Tensor conversion, and the
// float/double dispatch. A Python Tape holds one C++ tape whose precision the first array decides.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <xgrad/autodiff.hpp>

namespace xgrad::python {

namespace py = pybind11;

enum class DType { none, f32, f64 };

inline const char* dtype_name(DType d) { return d == DType::f32 ? "float32" : d == DType::f64 ? "float64" : "none"; }

/// The Python Tape. Owns its C++ tape, or borrows one that xgrad::gradcheck, hvp & co made on their
/// stack (then `detach()` is called when they return, and the Python object refuses to be used).
struct PyTape {
    // shared: NumPy views of values and gradients hold the C++ tape too (see clear()).
    std::shared_ptr<Tape<float>> own_f;
    std::shared_ptr<Tape<double>> own_d;
    Tape<float>* f = nullptr;
    Tape<double>* d = nullptr;
    DType dtype = DType::none;
    bool borrowed = false;
    bool grad_enabled = true;  // applied when the C++ tape is made
    // Set by an xgrad.Profiler: called whenever this Python tape starts a C++ tape (its first array,
    // or clear() while NumPy views keep the old one), so that the profile follows it.
    std::function<void()> on_new_tape;

    PyTape() = default;
    explicit PyTape(Tape<float>& t) : f(&t), dtype(DType::f32), borrowed(true) {}
    explicit PyTape(Tape<double>& t) : d(&t), dtype(DType::f64), borrowed(true) {}

    void detach() { f = nullptr, d = nullptr; }
    void check_alive() const
    {
        if (borrowed && !f && !d)
            throw std::logic_error("xgrad: this Tape belonged to a call (gradcheck, hvp, ...) that has returned");
    }
    /// Fixes the precision (first array) or checks that `want` matches it.
    DType resolve(DType want)
    {
        check_alive();
        if (dtype == DType::none) {
            dtype = want == DType::none ? DType::f64 : want;
            if (dtype == DType::f32) {
                own_f = std::make_shared<Tape<float>>();
                f = own_f.get();
                f->set_grad_enabled(grad_enabled);
            } else {
                own_d = std::make_shared<Tape<double>>();
                d = own_d.get();
                d->set_grad_enabled(grad_enabled);
            }
            if (on_new_tape) on_new_tape();
            return dtype;
        }
        if (want != DType::none && want != dtype)
            throw py::type_error(std::string("xgrad: this tape holds ") + dtype_name(dtype) + " values, got a " +
                                 dtype_name(want) + " array (one precision per tape: convert it with .astype(np." +
                                 dtype_name(dtype) + "), or use another Tape)");
        return dtype;
    }
    template <class T>
    Tape<T>& get()
    {
        check_alive();
        if constexpr (std::is_same_v<T, float>) {
            if (!f) throw std::logic_error("xgrad: not a float32 tape");
            return *f;
        } else {
            if (!d) throw std::logic_error("xgrad: not a float64 tape");
            return *d;
        }
    }
};
using TapePtr = std::shared_ptr<PyTape>;

/// The Python Var: a C++ Var of either precision and the tape that keeps its memory alive.
struct PyVar {
    TapePtr tape;
    Var<float> f;
    Var<double> d;
    bool dbl = false;

    PyVar() = default;
    PyVar(TapePtr t, const Var<float>& v) : tape(std::move(t)), f(v), dbl(false) {}
    PyVar(TapePtr t, const Var<double>& v) : tape(std::move(t)), d(v), dbl(true) {}

    template <class T>
    const Var<T>& get() const
    {
        if constexpr (std::is_same_v<T, float>) {
            if (dbl) throw py::type_error("xgrad: expected a float32 Var, got a float64 one");
            return f;
        } else {
            if (!dbl) throw py::type_error("xgrad: expected a float64 Var, got a float32 one");
            return d;
        }
    }
    /// fn(Var<T>) -> Var<T>, for either precision.
    template <class F>
    PyVar map(F&& fn) const
    {
        if (dbl) return PyVar(tape, fn(d));
        return PyVar(tape, fn(f));
    }
};

/// Two Vars of one precision (else TypeError): fn(Var<T>, Var<T>) -> Var<T>.
template <class F>
PyVar map2(const PyVar& a, const PyVar& b, F&& fn)
{
    if (a.dbl != b.dbl)
        throw py::type_error(std::string("xgrad: cannot combine a ") + (a.dbl ? "float64" : "float32") + " Var with a " +
                             (b.dbl ? "float64" : "float32") + " Var (one precision per tape)");
    if (a.dbl) return PyVar(a.tape, fn(a.d, b.d));
    return PyVar(a.tape, fn(a.f, b.f));
}

/// The precision a NumPy array asks for: float32/float64 decide; anything else (ints, lists) none.
/// float16 and complex are refused.
inline DType dtype_of(py::handle obj)
{
    if (!py::isinstance<py::array>(obj)) return DType::none;
    const py::dtype dt = py::reinterpret_borrow<py::array>(obj).dtype();
    if (dt.kind() == 'f') {
        if (dt.itemsize() == 4) return DType::f32;
        if (dt.itemsize() == 8) return DType::f64;
        throw py::type_error("xgrad: float" + std::to_string(dt.itemsize() * 8) +
                             " arrays are not supported (use float32 or float64)");
    }
    if (dt.kind() == 'c') throw py::type_error("xgrad: complex arrays are not supported");
    return DType::none;
}

/// A copy of any array-like (any strides, any numeric dtype) as a Tensor<T>.
template <class T>
Tensor<T> to_tensor(py::handle obj)
{
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!a) throw py::error_already_set();
    Shape s;
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(static_cast<std::size_t>(a.shape(i)));
    Tensor<T> t = Tensor<T>::from_shape(s);
    if (a.size() > 0) std::memcpy(t.data(), a.data(), static_cast<std::size_t>(a.size()) * sizeof(T));
    return t;
}

/// Integer labels or indices; float arrays are refused (a silent truncation would hide a bug).
inline IndexTensor to_index(py::handle obj)
{
    if (py::isinstance<py::array>(obj)) {
        const char k = py::reinterpret_borrow<py::array>(obj).dtype().kind();
        if (k != 'i' && k != 'u' && k != 'b')
            throw py::type_error("xgrad: labels and indices must be an integer array");
    }
    return to_tensor<Index>(obj);
}

inline std::vector<py::ssize_t> np_shape(const Shape& s) { return std::vector<py::ssize_t>(s.begin(), s.end()); }

/// A NumPy array over t's memory (no copy), kept alive by `base`.
template <class T>
py::array view(const Tensor<T>& t, py::handle base, bool writeable)
{
    const auto shape = np_shape(t.shape());
    std::vector<py::ssize_t> strides(shape.size());
    py::ssize_t st = sizeof(T);
    for (std::size_t i = shape.size(); i-- > 0;) {
        strides[i] = st;
        st *= shape[i];
    }
    if (t.size() == 0) return py::array_t<T>(shape);  // no memory to share
    py::array a(py::dtype::of<T>(), shape, strides, t.data(), base);
    if (!writeable) py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return a;
}

/// A Python object that keeps a C++ tape alive (the base of NumPy views of its memory).
template <class T>
py::object keeper(const std::shared_ptr<Tape<T>>& t)
{
    auto* p = new std::shared_ptr<Tape<T>>(t);
    return py::capsule(p, [](void* q) { delete static_cast<std::shared_ptr<Tape<T>>*>(q); });
}

/// A NumPy copy of t.
template <class T>
py::array copy(const Tensor<T>& t)
{
    py::array_t<T> a(np_shape(t.shape()));
    if (t.size() > 0) std::memcpy(a.mutable_data(), t.data(), t.size() * sizeof(T));
    return a;
}

/// tape.clear(): when NumPy views of the tape's memory are alive, they keep the cleared C++ tape and
/// the Python tape continues on a fresh one.
void clear_py_tape(PyTape& t);

/// A constant on v's tape from a scalar or an array-like (of v's precision, else TypeError).
PyVar constant_like(const PyVar& v, py::handle obj);

/// Dispatch on the precision of a NumPy input (float32 → T = float, else double).
template <class F>
py::object with_dtype_of(py::handle x, F&& fn)
{
    if (dtype_of(x) == DType::f32) return fn(float{});
    return fn(double{});
}

void init_tape(py::module_& m);
void init_ops(py::module_& m);
void init_checks(py::module_& m);
void init_diagnose(py::module_& m);
void init_nn(py::module_& nn, py::module_& parent);

}  // namespace xgrad::python

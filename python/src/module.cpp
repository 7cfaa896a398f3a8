// The extension module xgrad._xgrad (the package python/xgrad re-exports it). Error mapping:
// xgrad::ShapeError → xgrad.ShapeError (a ValueError), AnomalyError → xgrad.AnomalyError (a
// RuntimeError), std::invalid_argument → ValueError, std::out_of_range → IndexError, other misuse
// (std::logic_error, std::runtime_error) → RuntimeError: pybind11's own translations do the rest.
#include <xgrad/nn/data.hpp>
#include <xgrad/nn/serialize.hpp>

#include "common.hpp"

PYBIND11_MODULE(_xgrad, m)
{
    namespace xp = xgrad::python;
    m.doc() = "xgrad: tape-based reverse-mode automatic differentiation (C++17) from Python";
    pybind11::register_exception<xgrad::ShapeError>(m, "ShapeError", PyExc_ValueError);
    pybind11::register_exception<xgrad::AnomalyError>(m, "AnomalyError", PyExc_RuntimeError);
    pybind11::register_exception<xgrad::nn::WeightFileError>(m, "WeightFileError", PyExc_RuntimeError);
    pybind11::register_exception<xgrad::nn::DataError>(m, "DataError", PyExc_RuntimeError);
    m.def("set_num_threads", &xgrad::set_num_threads, pybind11::arg("n"), "Threads of the GEMMs and kernels (OpenBLAS, OpenMP).");
    m.def("max_num_threads", &xgrad::max_num_threads);
    m.def("sgemm_backend", [] { return std::string(xgrad::sgemm_backend()); });
    xp::init_tape(m);
    xp::init_ops(m);
    xp::init_checks(m);
    xp::init_diagnose(m);
    auto nn = m.def_submodule("nn", "Layers, losses, optimizers, weight files and data (xgrad::nn)");
    xp::init_nn(nn, m);
}

#pragma once
// Higher-order differentiation: gradients as Vars (differentiable again), Hessian-vector
// products, Hessians, Jacobians and Jacobian-vector products. How the backward is recorded and
// what it costs: docs/higher_order.md.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/errors.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

struct GradOptions {
    /// Record the backward sweep as ops on the tape, so the gradients can be differentiated again.
    bool create_graph = false;
    /// An input the output does not depend on gets a zero gradient instead of an error.
    bool allow_unused = false;
};

/// d output / d inputs (seed 1, so output has one element). The results are Vars on the output's
/// tape: with create_graph, differentiable again (grad of grad, double backpropagation); without,
/// constants. Parameters' accumulated grad() and the Vars' grad() are left untouched.
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, GradOptions options = {})
{
    return detail::grad(output, inputs, static_cast<const Var<T>*>(nullptr), options);
}

/// The same with an explicit cotangent grad_output (output's shape): the vector-Jacobian products
/// grad_outputᵀ · d output / d input. grad_output may itself be a Var that requires grad.
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>& grad_output,
                         GradOptions options = {})
{
    return detail::grad(output, inputs, &grad_output, options);
}

namespace detail {

template <class T, class F>
Var<T> call_on(F& f, Tape<T>& tape, const Var<T>& x, const char* who)
{
    Var<T> y = f(x);
    if (!y.valid() || &y.tape() != &tape)
        throw std::logic_error(std::string("xgrad: ") + who + ": f must return a Var recorded on the tape of its argument");
    return y;
}

template <class T>
Tensor<T> zeros_of(const Shape& s)
{
    Tensor<T> z = Tensor<T>::from_shape(s);
    z.fill(T(0));
    return z;
}

template <class T>
Shape concat_shapes(const Shape& a, const Shape& b)
{
    Shape s(a);
    s.insert(s.end(), b.begin(), b.end());
    return s;
}

/// Row j of `out` (rows of x.size() values) = ∂y_j/∂x: one backward from y per element, seed e_j.
template <class T>
void rows_by_backward(Tape<T>& tape, const Var<T>& y, const Var<T>& x, Tensor<T>& out)
{
    const std::size_t n = x.size();
    Tensor<T> seed = zeros_of<T>(y.shape());
    for (std::size_t j = 0; j < seed.size(); ++j) {
        seed.data()[j] = T(1);
        tape.backward(y, seed);
        seed.data()[j] = T(0);
        std::copy(x.grad().data(), x.grad().data() + n, out.data() + j * n);
    }
}

}  // namespace detail

/// H(x)·v for a scalar function f: Var → one-element Var, with the shape of x. One forward, one
/// recorded backward, one backward over both (reverse over reverse); about 3 gradients' work.
template <class T, class F>
Tensor<T> hvp(F&& f, const Tensor<T>& x, const Tensor<T>& v)
{
    if (v.shape() != x.shape())
        throw ShapeError("hvp: v " + shape_str(v.shape()) + " vs x " + shape_str(x.shape()) +
                         ": v must have x's shape");
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = detail::call_on(f, tape, xv, "hvp");
    if (y.size() != 1)
        throw std::logic_error("xgrad: hvp: f must return a one-element Var, got shape " + shape_str(y.shape()));
    if (!y.requires_grad()) return detail::zeros_of<T>(x.shape());
    const Var<T> g = grad(y, {xv}, GradOptions{true, true})[0];
    if (!g.requires_grad()) return detail::zeros_of<T>(x.shape());  // f is affine in x
    tape.backward(g, v);
    return xv.grad();
}

/// The Hessian of a scalar function f: Var → one-element Var, shape x.shape ++ x.shape. One
/// recorded backward, then one backward over it per element of x.
template <class T, class F>
Tensor<T> hessian(F&& f, const Tensor<T>& x)
{
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = detail::call_on(f, tape, xv, "hessian");
    if (y.size() != 1)
        throw std::logic_error("xgrad: hessian: f must return a one-element Var, got shape " + shape_str(y.shape()));
    Tensor<T> h = detail::zeros_of<T>(detail::concat_shapes<T>(x.shape(), x.shape()));
    if (!y.requires_grad()) return h;
    const Var<T> g = grad(y, {xv}, GradOptions{true, true})[0];
    if (!g.requires_grad()) return h;
    detail::rows_by_backward(tape, g, xv, h);
    return h;
}

/// The Jacobian of f: Var → Var, shape f(x).shape ++ x.shape; one backward per output element.
template <class T, class F>
Tensor<T> jacobian(F&& f, const Tensor<T>& x)
{
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = detail::call_on(f, tape, xv, "jacobian");
    Tensor<T> jac = detail::zeros_of<T>(detail::concat_shapes<T>(y.shape(), x.shape()));
    if (!y.requires_grad()) return jac;
    detail::rows_by_backward(tape, y, xv, jac);
    return jac;
}

/// (f(x), J(x)·v) for f: Var → Var, by the double-VJP trick: g(u) = uᵀJ is recorded as a function
/// of a cotangent u, and J·v = d(g(u)·v)/du.
template <class T, class F>
std::pair<Tensor<T>, Tensor<T>> jvp(F&& f, const Tensor<T>& x, const Tensor<T>& v)
{
    if (v.shape() != x.shape())
        throw ShapeError("jvp: v " + shape_str(v.shape()) + " vs x " + shape_str(x.shape()) +
                         ": v must have x's shape");
    Tape<T> tape;
    const Var<T> xv = tape.variable(x);
    const Var<T> y = detail::call_on(f, tape, xv, "jvp");
    if (!y.requires_grad()) return {y.value(), detail::zeros_of<T>(y.shape())};
    const Var<T> u = tape.variable(detail::zeros_of<T>(y.shape()));
    const Var<T> g = grad(y, {xv}, u, GradOptions{true, true})[0];
    if (!g.requires_grad()) return {y.value(), detail::zeros_of<T>(y.shape())};
    tape.backward(g, v);
    return {y.value(), u.grad()};
}

}  // namespace xgrad

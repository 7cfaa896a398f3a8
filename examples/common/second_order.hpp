#pragma once
// Second-order tools over a network's parameters, built on xgrad::grad(create_graph): the
// Hessian-vector product of a loss w.r.t. every parameter (xgrad::hvp takes one Tensor; a model's
// parameters are many), and the Lanczos iteration for the extreme eigenvalues of that Hessian.
// Shared by the hessian_spectrum and newton_cg examples.
#include <functional>
#include <vector>

#include "xgrad/autodiff.hpp"

namespace xgrad::examples {

/// A flat vector over all parameters (in the order of ParamHvp::parameters()), in double.
using FlatVector = std::vector<double>;

/// The parameter leaves (tape.param nodes) recorded on `tape` so far, in creation order.
std::vector<Var<float>> parameter_leaves(Tape<float>& tape);

/// H·v for H the Hessian of a recorded scalar loss w.r.t. the parameters it uses. The
/// constructor records the gradient g = ∂loss/∂θ with create_graph (one recorded backward); each
/// product then records s = Σ_k ⟨g_k, v_k⟩ and runs tape.backward(s), whose result lands in the
/// parameters' grad(): ∂s/∂θ = H·v. About two gradients' work per product; the forward pass and
/// the recorded gradient are shared by all products on the same tape. The tape grows by a few
/// nodes per product; the Parameters' grad() buffers are overwritten.
class ParamHvp {
public:
    ParamHvp(Tape<float>& tape, const Var<float>& loss);
    std::size_t size() const { return n_; }
    const std::vector<Parameter<float>*>& parameters() const { return params_; }
    /// ∂loss/∂θ, flattened.
    const FlatVector& gradient() const { return grad_flat_; }
    /// H·v (v has size()); counts the products made.
    FlatVector operator()(const FlatVector& v);
    std::size_t products() const { return products_; }

private:
    Tape<float>& tape_;
    std::vector<Parameter<float>*> params_;
    std::vector<Var<float>> grads_;
    FlatVector grad_flat_;
    std::size_t n_ = 0;
    std::size_t products_ = 0;
};

/// Flattens / unflattens the parameters' values.
FlatVector flatten_values(const std::vector<Parameter<float>*>& params);
void add_to_values(const std::vector<Parameter<float>*>& params, const FlatVector& delta, double scale);

double dot(const FlatVector& a, const FlatVector& b);
double norm(const FlatVector& a);

struct LanczosResult {
    std::vector<double> eigenvalues;  ///< the k largest Ritz values, largest first
    std::vector<double> residuals;    ///< ‖H·y − θ·y‖ estimates |β_m · s_m| for each
    std::size_t steps = 0;            ///< Lanczos steps (= Hessian-vector products)
};

/// The k largest eigenvalues of a symmetric operator of dimension n by `steps` Lanczos steps with
/// full reorthogonalization, from a random start vector drawn with `seed`.
LanczosResult lanczos_top(const std::function<FlatVector(const FlatVector&)>& op, std::size_t n, std::size_t k,
                          std::size_t steps, std::uint64_t seed);

/// Eigenvalues and eigenvectors (columns of `vectors`, row-major m×m) of a symmetric m×m matrix
/// by cyclic Jacobi rotations.
void symmetric_eigen(std::vector<double> a, std::size_t m, std::vector<double>& values, std::vector<double>& vectors);

}  // namespace xgrad::examples

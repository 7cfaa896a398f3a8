#pragma once
// xgrad side of the second-order workloads of docs/benchmarks.md (h. hvp_*, i. double_backprop_mlp),
// shared by bench_xgrad (timed) and xgrad_soak (memory over 10,000 steps), so both run the same step.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "xgrad/nn.hpp"

namespace xgrad::bench {

/// Hessian-vector products of the mean cross-entropy of a network with respect to all its
/// parameters, v = one fixed direction per parameter, drawn once from U(−1, 1):
///   forward, g = grad(loss, params, create_graph), s = Σ_k sum(g_k ⊙ v_k), tape.backward(s).
/// One recorded backward and one backward over both (reverse over reverse); Hv lands in the
/// parameters' grad(), which step() zeroes first. The tape is cleared at the end of every step.
template <class T>
class ParamHvp {
public:
    ParamHvp(nn::Module<T>& net, unsigned seed) : net_(net), params_(net.parameters())
    {
        for (std::size_t k = 0; k < params_.size(); ++k)
            dirs_.push_back(rand_uniform<T>(params_[k]->value().shape(), seed + unsigned(k), T(-1), T(1)));
    }

    /// One HVP at (x, y); returns the loss.
    T step(Tape<T>& tape, const Tensor<T>& x, const IndexTensor& y)
    {
        net_.zero_grad();
        const Var<T> loss = cross_entropy(net_(tape.borrow(x)), y);
        // The parameters' leaves of this forward (the layers record tape.param() themselves), in tape order.
        vars_.clear();
        dir_of_.clear();
        for (std::uint32_t i = 0; i < std::uint32_t(tape.size()); ++i) {
            const Var<T> v = tape.at(i);
            if (Parameter<T>* p = v.parameter()) {
                vars_.push_back(v);
                dir_of_.push_back(&direction(p));
            }
        }
        const std::vector<Var<T>> g = grad(loss, vars_, GradOptions{true});
        Var<T> dot = sum(g[0] * tape.borrow(*dir_of_[0]));
        for (std::size_t k = 1; k < g.size(); ++k) dot = dot + sum(g[k] * tape.borrow(*dir_of_[k]));
        const T l = loss.item();
        tape.backward(dot);
        tape.clear();
        return l;
    }

    /// The first-order gradient of the same loss (the baseline HVP time is compared with): zero the
    /// parameters' gradients, forward, backward. Returns the loss.
    T gradient(Tape<T>& tape, const Tensor<T>& x, const IndexTensor& y)
    {
        net_.zero_grad();
        const Var<T> loss = cross_entropy(net_(tape.borrow(x)), y);
        const T l = loss.item();
        tape.backward(loss);
        tape.clear();
        return l;
    }

    /// Check of step() against central differences of the gradient, (∇L(θ + εv) − ∇L(θ − εv)) / 2ε:
    /// ‖Hv − fd‖ / ‖fd‖ over all parameters. Leaves the parameters as they were (up to rounding).
    /// Meaningful in double with a small ε only: a ReLU network's gradient jumps at the kinks a
    /// larger step crosses by far more than ε·Hv.
    double check(Tape<T>& tape, const Tensor<T>& x, const IndexTensor& y, T eps)
    {
        step(tape, x, y);
        std::vector<Tensor<T>> hv, plus;
        for (auto* p : params_) hv.push_back(p->grad());
        auto shift = [&](T s) {
            for (std::size_t k = 0; k < params_.size(); ++k) params_[k]->value() += s * dirs_[k];
        };
        shift(eps);
        gradient(tape, x, y);
        for (auto* p : params_) plus.push_back(p->grad());
        shift(-2 * eps);
        gradient(tape, x, y);
        shift(eps);
        double num = 0, den = 0;
        for (std::size_t k = 0; k < params_.size(); ++k) {
            const Tensor<T>& minus = params_[k]->grad();
            for (std::size_t i = 0; i < hv[k].size(); ++i) {
                const double fd = (double(plus[k].data()[i]) - double(minus.data()[i])) / (2.0 * double(eps));
                num += (double(hv[k].data()[i]) - fd) * (double(hv[k].data()[i]) - fd);
                den += fd * fd;
            }
        }
        return std::sqrt(num / den);
    }

    const std::vector<Parameter<T>*>& parameters() const { return params_; }
    /// The directions v, one per parameter in parameters()' order (bench_xgrad loads libtorch's into them).
    std::vector<Tensor<T>>& directions() { return dirs_; }

private:
    const Tensor<T>& direction(const Parameter<T>* p) const
    {
        for (std::size_t k = 0; k < params_.size(); ++k)
            if (params_[k] == p) return dirs_[k];
        throw std::logic_error("ParamHvp: the forward used a parameter that is not the network's");
    }

    nn::Module<T>& net_;
    std::vector<Parameter<T>*> params_;
    std::vector<Tensor<T>> dirs_;
    std::vector<Var<T>> vars_;
    std::vector<const Tensor<T>*> dir_of_;
};

}  // namespace xgrad::bench

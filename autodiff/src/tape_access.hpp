#pragma once
// Internal: friend access to a tape's record for the checking tools. Not installed.
#include <functional>
#include <utility>
#include <vector>

#include "xgrad/op.hpp"

namespace xgrad {

namespace detail {

/// The internals the checking tools need (check_nodes, diagnose): node storage, input lists, op
/// hooks, one node's VJP alone.
template <class T>
struct TapeAccess {
    static Node<T>& node(Tape<T>& t, std::uint32_t i) { return t.nodes_[i]; }
    static std::uint32_t input(Tape<T>& t, std::uint32_t i, std::size_t k) { return t.inputs_[t.nodes_[i].input_begin_ + k]; }
    static std::uint32_t input_count(Tape<T>& t, std::uint32_t i) { return t.nodes_[i].input_count_; }
    static Tensor<T>& mutable_value(Tape<T>& t, std::uint32_t j)
    {
        Node<T>& n = t.nodes_[j];
        // Parameters and tape-owned values are mutable; borrowed constants never require grad.
        if (Parameter<T>* p = n.grad_.parameter()) return p->value();
        return n.value_;
    }
    /// `before(i)` runs when node i is reserved (inputs known, output not computed yet), `after(i)`
    /// when it is finished. Empty functions remove them.
    static void set_op_hooks(Tape<T>& t, std::function<void(std::uint32_t)> before, std::function<void(std::uint32_t)> after)
    {
        t.before_op_ = std::move(before);
        t.after_op_ = std::move(after);
    }
    /// Attaches a profiler's log (null detaches); returns the one attached before.
    static ProfileLog* exchange_profile(Tape<T>& t, ProfileLog* log) { return std::exchange(t.profile_, log); }
    /// Runs node i's backward alone with cotangent u; returns the gradient it sends to each input.
    static std::vector<Tensor<T>> isolated_vjp(Tape<T>& t, std::uint32_t i, const Tensor<T>& u)
    {
        Node<T>& n = t.nodes_[i];
        std::vector<std::pair<Parameter<T>*, Tensor<T>>> saved;
        for (std::uint32_t k = 0; k < n.input_count_; ++k) {
            Node<T>& in = t.nodes_[input(t, i, k)];
            in.grad_.restart(t.grad_pool_, false);
            if (Parameter<T>* p = in.grad_.parameter()) {
                saved.emplace_back(p, p->grad());
                p->zero_grad();
            }
        }
        n.grad_.restart(t.grad_pool_, false);
        bool acc = false;
        xt::noalias(n.grad_.open(u.shape(), t.grad_pool_, acc)) = u;
        BackwardContext<T> ctx(t, n, i);
        n.backward_(ctx);
        std::vector<Tensor<T>> out;
        for (std::uint32_t k = 0; k < n.input_count_; ++k) {
            const Node<T>& in = t.nodes_[input(t, i, k)];
            const Tensor<T>* g = in.grad_.get();
            out.push_back(g ? *g : Tensor<T>(xt::zeros<T>(in.value().shape())));
        }
        for (auto& [p, g] : saved) p->grad() = g;
        return out;
    }
};

}  // namespace detail

}  // namespace xgrad

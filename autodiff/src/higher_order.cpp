// The recorded sweep of grad(..., create_graph): Tape members that need ops (add, sum_to), so they
// live above the ops layer, not in tape.cpp.
#include <limits>

#include <fmt/format.h>

#include "xgrad/higher_order.hpp"
#include "xgrad/op.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"

namespace xgrad {

namespace {
constexpr std::uint32_t no_grad_var = std::numeric_limits<std::uint32_t>::max();

/// Sets a flag for a scope and restores it on exit (also when an op throws).
struct FlagRestore {
    bool& flag;
    bool old;
    FlagRestore(bool& f, bool v) : flag(f), old(f) { f = v; }
    ~FlagRestore() { flag = old; }
};
}  // namespace

template <class T>
std::vector<Var<T>> Tape<T>::differentiate(const Var<T>& output, const std::vector<Var<T>>& inputs,
                                           const Var<T>* grad_output, const GradOptions& options)
{
    check(output, "grad");
    for (const Var<T>& v : inputs) check(v, "grad");
    const Shape& os = nodes_[output.index_].value().shape();
    if (grad_output) {
        check(*grad_output, "grad");
        if (grad_output->shape() != os)
            throw ShapeError(fmt::format("grad: grad_output {} vs output {}: the cotangent must have the output's shape",
                                         shape_str(grad_output->shape()), shape_str(os)));
    } else if (shape_size(os) != 1) {
        throw std::logic_error(fmt::format("xgrad: grad() without grad_output needs a one-element output, got shape {}",
                                           shape_str(os)));
    }
    if (!nodes_[output.index_].requires_grad_)
        throw std::logic_error(fmt::format("xgrad: grad(): the output ('{}') does not depend on anything that requires "
                                           "grad", nodes_[output.index_].op_));
    auto unused = [&](std::size_t k) {
        if (!options.allow_unused)
            throw std::logic_error(fmt::format("xgrad: grad(): input {} (Var #{} '{}') is not used to compute the output; "
                                               "pass GradOptions{{create_graph, /*allow_unused=*/true}} to get zeros",
                                               k, inputs[k].index_, nodes_[inputs[k].index_].op_));
    };
    std::vector<Var<T>> result;
    result.reserve(inputs.size());

    if (!options.create_graph) {
        // The plain sweep into the nodes' own buffers: parameters' accumulated grads are left alone
        // (their nodes write a buffer of their own for this sweep), intermediates are retained.
        std::vector<Parameter<T>*> params(output.index_ + 1, nullptr);
        for (std::uint32_t i = 0; i <= output.index_; ++i)
            if ((params[i] = nodes_[i].grad_.parameter())) nodes_[i].grad_.bind(nullptr);
        struct Rebind {
            Tape& t;
            std::vector<Parameter<T>*>& p;
            ~Rebind()
            {
                for (std::uint32_t i = 0; i < p.size(); ++i)
                    if (p[i]) t.nodes_[i].grad_.bind(p[i]);
            }
        } rebind{*this, params};
        {
            FlagRestore keep(retain_grad_, true);
            if (grad_output)
                backward(output, grad_output->value());
            else
                backward(output);
        }
        std::vector<Tensor<T>> values;
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            const detail::GradSlot<T>& slot = nodes_[inputs[k].index_].grad_;
            if (const Tensor<T>* g = slot.get())
                values.push_back(*g);
            else {
                unused(k);
                values.push_back(detail::zeros_of<T>(inputs[k].shape()));
            }
        }
        for (auto& v : values) result.push_back(constant(v));
        return result;
    }

    // The recorded sweep: the same reverse loop, each VJP run as ops appended to the tape (after
    // `from`, so the loop never meets them); graph_grads_[j] is node j's gradient so far.
    const std::uint32_t from = output.index_;
    graph_grads_.assign(from + 1, no_grad_var);
    if (grad_output) {
        graph_grads_[from] = grad_output->index_;
    } else {
        Tensor<T> one = Tensor<T>::from_shape(os);
        one.fill(T(1));
        graph_grads_[from] = constant(one).index_;
    }
    FlagRestore record(grad_enabled_, true);
    for (std::uint32_t i = from + 1; i-- > 0;) {
        const std::uint32_t gi = graph_grads_[i];
        detail::Node<T>& n = nodes_[i];
        if (gi == no_grad_var || !n.requires_grad_ || !n.backward_) continue;
        if (!n.backward_.has_second())
            throw std::logic_error(fmt::format("double backward not implemented for {}", n.op_));
        GraphBackwardContext<T> ctx(*this, i, var(gi));
        n.backward_(ctx);
    }
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        const std::uint32_t gi = graph_grads_[inputs[k].index_];
        if (gi != no_grad_var) {
            result.push_back(var(gi));
        } else {
            unused(k);
            result.push_back(constant(detail::zeros_of<T>(inputs[k].shape())));
        }
    }
    graph_grads_.clear();
    return result;
}

template <class T>
void Tape<T>::accumulate_graph(std::uint32_t j, const Var<T>& g)
{
    const detail::Node<T>& n = nodes_[j];
    if (!n.requires_grad_) return;
    check(g, "accumulate");
    Var<T> gj = g;
    if (g.shape() != n.value().shape()) gj = sum_to(g, n.value().shape());
    std::uint32_t& slot = graph_grads_[j];
    slot = slot == no_grad_var ? gj.index_ : add(var(slot), gj).index_;
}

namespace detail {
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>* grad_output,
                         const GradOptions& options)
{
    return output.tape().differentiate(output, inputs, grad_output, options);
}
template std::vector<Var<float>> grad(const Var<float>&, const std::vector<Var<float>>&, const Var<float>*,
                                      const GradOptions&);
template std::vector<Var<double>> grad(const Var<double>&, const std::vector<Var<double>>&, const Var<double>*,
                                       const GradOptions&);
}  // namespace detail


#define XGRAD_INSTANTIATE(T)                                                                                   \
    template std::vector<Var<T>> Tape<T>::differentiate(const Var<T>&, const std::vector<Var<T>>&, const Var<T>*, \
                                                        const GradOptions&);                                    \
    template void Tape<T>::accumulate_graph(std::uint32_t, const Var<T>&);                                       \
    template class GraphBackwardContext<T>;
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad

#pragma once
// Writing an op: the API the library's own ops are written with (docs/custom_ops.md).
//
//     /// y = x·σ(x)   dx = g·(σ + y·(1 − σ))
//     template <class T>
//     Var<T> swish(const Var<T>& x)
//     {
//         auto op = begin_op("swish", {x});                    // checks x, reserves the node
//         op.value().resize(x.shape());                        // forward, in the node's buffer
//         xt::noalias(op.value()) = x.value() / (T(1) + xt::exp(-x.value()));
//         return op.finish([](BackwardContext<T>& c) {         // backward, run by tape.backward()
//             auto s = T(1) / (T(1) + xt::exp(-c.input(0)));
//             c.accumulate(0, c.grad() * (s + c.value() * (T(1) - s)));
//         });
//     }
//
// The closure is stored in the node (up to detail::closure_capacity bytes of captures without
// allocating); larger state belongs in op.saved() / op.saved_index(), buffers kept with the node
// and reused from step to step.
//
// Higher order (xgrad/higher_order.hpp): grad(..., create_graph) runs each op's VJP as recorded
// ops, through a GraphBackwardContext, where grad(), input(k) and value() are Vars. An op supports
// it when its VJP is also given in that form: finish(vjp, vjp_as_ops), two closures, or
// finish_both(vjp), one closure taking `auto& c` whose body reads the same for tensors and Vars:
//
//         return op.finish_both([](auto& c) { c.accumulate(0, c.grad() * c.value()); });  // exp
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

/// Where the gradient of one input goes during a backward step: a buffer of the input's shape,
/// and whether it already holds a gradient. Every kernel that writes a gradient takes both.
template <class T>
struct InputGrad {
    Tensor<T>* buffer = nullptr;  ///< null when the input needs no gradient
    bool accumulate = false;      ///< true: add into *buffer; false: it holds garbage, overwrite it
    explicit operator bool() const { return buffer != nullptr; }
    T* data() const { return buffer ? buffer->data() : nullptr; }
    /// For GEMM-style kernels computing C = α·op(A)·op(B) + β·C.
    T beta() const { return accumulate ? T(1) : T(0); }
};

/// What an op's backward closure sees: the gradient of its output, its inputs' values, and the
/// ways to write its inputs' gradients.
template <class T>
class BackwardContext {
public:
    /// dL/d(output), with the output's shape.
    const Tensor<T>& grad() const { return node_.grad_.buffer(); }
    /// The output value.
    const Tensor<T>& value() const { return node_.value(); }
    /// What the forward stored with OpBuilder::saved() / saved_index().
    const Tensor<T>& saved() const { return node_.saved_; }
    const std::vector<std::size_t>& saved_index() const { return node_.saved_index_; }
    std::size_t num_inputs() const { return node_.input_count_; }
    /// Value of input k.
    const Tensor<T>& input(std::size_t k) const { return in(k).value(); }
    /// Whether input k wants a gradient.
    bool needs(std::size_t k) const { return in(k).requires_grad_; }

    /// grad(input k) += e, where e (a tensor or an xtensor expression) has input k's shape or the
    /// op's broadcast output shape, which is summed back to the input's (the one place that undoes
    /// broadcasting). Does nothing if input k needs no gradient.
    template <class E>
    void accumulate(std::size_t k, E&& e)
    {
        if (!needs(k)) return;
        const Shape& target = input(k).shape();
        const auto& es = e.shape();
        if (es.size() == target.size() && std::equal(es.begin(), es.end(), target.begin())) {
            InputGrad<T> g = input_grad(k);
            if (g.accumulate)
                xt::noalias(*g.buffer) += std::forward<E>(e);
            else
                xt::noalias(*g.buffer) = std::forward<E>(e);
        } else if constexpr (std::is_same_v<std::decay_t<E>, Tensor<T>>) {
            accumulate_reduced(k, e);
        } else {
            thread_local Tensor<T> full;  // evaluated once, reused: no allocation in steady state
            full.resize(es);
            xt::noalias(full) = std::forward<E>(e);
            accumulate_reduced(k, full);
        }
    }

    /// Input k's gradient buffer (input k's shape) for kernels that write it themselves (BLAS with
    /// beta, scatter loops); empty if input k needs no gradient. The same Var given as two inputs
    /// has one buffer: the first call reports it unwritten, the second as accumulating.
    InputGrad<T> input_grad(std::size_t k)
    {
        detail::Node<T>& n = in(k);
        if (!n.requires_grad_) return {};
        InputGrad<T> g;
        g.buffer = &n.grad_.open(n.value().shape(), tape_.grad_pool_, g.accumulate);
        return g;
    }

    /// The op's name and its position on the tape (for messages).
    const char* op() const { return node_.op_; }
    std::uint32_t position() const { return index_; }

private:
    friend class Tape<T>;
    friend struct detail::TapeAccess<T>;
    BackwardContext(Tape<T>& tape, detail::Node<T>& node, std::uint32_t index) : tape_(tape), node_(node), index_(index)
    {
    }
    detail::Node<T>& in(std::size_t k) const { return tape_.nodes_[tape_.inputs_[node_.input_begin_ + k]]; }
    /// Sums `full` (the op's broadcast output shape) down to input k's shape into its gradient.
    void accumulate_reduced(std::size_t k, const Tensor<T>& full);

    Tape<T>& tape_;
    detail::Node<T>& node_;
    std::uint32_t index_;
};

/// What an op's VJP sees in the recorded sweep of grad(..., {.create_graph = true}): the same
/// questions as BackwardContext, answered with Vars on the tape, so that the gradients it
/// accumulates are themselves differentiable.
template <class T>
class GraphBackwardContext {
public:
    /// dL/d(output), a Var of the output's shape.
    const Var<T>& grad() const { return grad_; }
    /// The output, as a Var.
    Var<T> value() const { return tape_.var(index_); }
    /// Input k, as a Var.
    Var<T> input(std::size_t k) const { return tape_.var(tape_.inputs_[node().input_begin_ + k]); }
    bool needs(std::size_t k) const { return tape_.nodes_[tape_.inputs_[node().input_begin_ + k]].requires_grad_; }
    std::size_t num_inputs() const { return node().input_count_; }
    const Tensor<T>& saved() const { return node().saved_; }
    const std::vector<std::size_t>& saved_index() const { return node().saved_index_; }
    /// grad(input k) += g, a Var of input k's shape or of the op's broadcast output shape (summed
    /// back by the recorded op sum_to). Does nothing if input k needs no gradient.
    void accumulate(std::size_t k, const Var<T>& g) { tape_.accumulate_graph(tape_.inputs_[node().input_begin_ + k], g); }
    /// A constant on the tape holding `e` (a tensor or an xtensor expression): masks, signs.
    template <class E>
    Var<T> constant(E&& e) const
    {
        return tape_.adopt_constant(Tensor<T>(std::forward<E>(e)));
    }
    Tape<T>& tape() const { return tape_; }
    const char* op() const { return node().op_; }
    std::uint32_t position() const { return index_; }

private:
    friend class Tape<T>;
    GraphBackwardContext(Tape<T>& tape, std::uint32_t index, Var<T> grad) : tape_(tape), index_(index), grad_(grad) {}
    // By index, not reference: the VJP records new nodes while it runs.
    const detail::Node<T>& node() const { return tape_.nodes_[index_]; }

    Tape<T>& tape_;
    std::uint32_t index_;
    Var<T> grad_;
};

/// Whether a VJP closure taking `auto& c` runs in the recorded sweep: `if constexpr
/// (is_graph_backward_v<decltype(c)>)` lets one closure (one set of captures) hold both forms.
template <class C>
struct is_graph_backward : std::false_type {};
template <class T>
struct is_graph_backward<GraphBackwardContext<T>> : std::true_type {};
template <class C>
inline constexpr bool is_graph_backward_v = is_graph_backward<std::decay_t<C>>::value;

/// One op being recorded. The constructor checks that every input is a live Var of one tape
/// (std::logic_error naming the op and the input otherwise) and reserves the output node; the op
/// then checks shapes, writes its output into value(), and calls finish(backward). If it throws
/// before finish(), the destructor takes the node off the tape again.
template <class T>
class OpBuilder {
public:
    OpBuilder(const char* op, std::initializer_list<Var<T>> inputs) : OpBuilder(op, inputs.begin(), inputs.size()) {}
    OpBuilder(const char* op, const Var<T>* inputs, std::size_t n_inputs);
    OpBuilder(OpBuilder&& o) noexcept : tape_(o.tape_), node_(o.node_), index_(o.index_), open_(o.open_) { o.open_ = false; }
    OpBuilder(const OpBuilder&) = delete;
    OpBuilder& operator=(const OpBuilder&) = delete;
    OpBuilder& operator=(OpBuilder&&) = delete;
    ~OpBuilder()
    {
        if (open_) tape_->undo_op(index_);
    }

    /// The output: resize and fill it.
    Tensor<T>& value() { return node_->value_; }
    /// Buffers the op may fill for its backward, kept with the node and reused across steps (so
    /// nothing is allocated once shapes are stable). BackwardContext::saved() reads them.
    Tensor<T>& saved() { return node_->saved_; }
    std::vector<std::size_t>& saved_index() { return node_->saved_index_; }
    /// Whether the backward will ever run (some input requires grad and grad mode is on): ops
    /// skip saving state when it will not.
    bool requires_grad() const { return node_->requires_grad_; }
    Tape<T>& tape() const { return *tape_; }

    /// Stores the backward closure (only if requires_grad()) and returns the output Var. Such an
    /// op has first derivatives only: grad(..., create_graph) through it throws std::logic_error
    /// "double backward not implemented for <op>".
    template <class F>
    Var<T> finish(F&& backward)
    {
        static_assert(std::is_invocable_v<F&, BackwardContext<T>&>, "the backward closure takes a BackwardContext<T>&");
        if (node_->requires_grad_) node_->backward_.emplace(std::forward<F>(backward));
        return close();
    }
    /// Two closures for the two sweeps: `backward` on tensors (BackwardContext, fast), and
    /// `backward_as_ops` recording the same VJP with Var ops (GraphBackwardContext), so that the
    /// gradient can be differentiated again.
    template <class F, class G>
    Var<T> finish(F&& backward, G&& backward_as_ops)
    {
        static_assert(std::is_invocable_v<F&, BackwardContext<T>&>, "the backward closure takes a BackwardContext<T>&");
        static_assert(std::is_invocable_v<G&, GraphBackwardContext<T>&>,
                      "the recorded backward closure takes a GraphBackwardContext<T>&");
        struct Both {
            std::decay_t<F> f;
            std::decay_t<G> g;
            void operator()(BackwardContext<T>& c) { f(c); }
            void operator()(GraphBackwardContext<T>& c) { g(c); }
        };
        if (node_->requires_grad_)
            node_->backward_.emplace_both(Both{std::forward<F>(backward), std::forward<G>(backward_as_ops)});
        return close();
    }
    /// One closure `[](auto& c) {...}` serving both sweeps: its body is compiled once with
    /// tensors (BackwardContext) and once with Vars (GraphBackwardContext).
    template <class F>
    Var<T> finish_both(F&& vjp)
    {
        if (node_->requires_grad_) node_->backward_.emplace_both(std::forward<F>(vjp));
        return close();
    }

private:
    Var<T> close()
    {
        open_ = false;
        return tape_->finish_op(index_);
    }

    Tape<T>* tape_;
    detail::Node<T>* node_;
    std::uint32_t index_;
    bool open_ = true;
};

/// Starts recording op `op` on its inputs' tape: `auto op = begin_op("swish", {x});`.
template <class T>
OpBuilder<T> begin_op(const char* op, std::initializer_list<Var<T>> inputs)
{
    return OpBuilder<T>(op, inputs);
}

template <class T>
OpBuilder<T>::OpBuilder(const char* op, const Var<T>* inputs, std::size_t n_inputs)
{
    if (n_inputs == 0)
        throw std::logic_error(std::string("xgrad: ") + op + ": an op needs at least one input Var (its tape)");
    if (!inputs[0].tape_) throw std::logic_error(std::string("xgrad: ") + op + ": input 0 is an empty Var");
    tape_ = &inputs[0].tape();  // checks that the tape is alive before touching it
    index_ = tape_->begin_op(op, inputs, n_inputs);
    node_ = &tape_->nodes_[index_];
}

extern template class BackwardContext<float>;
extern template class BackwardContext<double>;
extern template class GraphBackwardContext<float>;
extern template class GraphBackwardContext<double>;

}  // namespace xgrad

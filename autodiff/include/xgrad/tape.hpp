#pragma once
// The tape (a Wengert list), its handles (Var) and parameters.
//
// Why backward needs no topological sort: an op can only take Vars that already exist, so every
// node is recorded after all of its inputs. Creation order is therefore a topological order, and
// one reverse loop over the record visits each node after every node that consumes it, i.e. after
// its gradient is complete. No recursion, so a 100,000-op chain costs no stack.
//
// Memory: nodes live in a std::deque (stable addresses) and are never destroyed by clear(); their
// value and gradient buffers are kept, so the next training step with the same shapes resizes
// them in place and allocates nothing.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <vector>

#include "xgrad/errors.hpp"
#include "xgrad/inline_function.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad {

template <class T>
class Tape;
template <class T>
class Var;
namespace detail {
template <class T>
struct TapeAccess;
}
template <class T>
class BackwardContext;

/// A value that outlives tapes (a weight). `tape.param(p)` puts it on a tape without copying;
/// backward adds its gradient into grad(), where it accumulates until zero_grad().
template <class T>
class Parameter {
public:
    Parameter() = default;
    explicit Parameter(Tensor<T> value, std::string name = {})
        : value_(std::move(value)), grad_(xt::zeros<T>(value_.shape())), name_(std::move(name))
    {
    }

    Tensor<T>& value() { return value_; }
    const Tensor<T>& value() const { return value_; }
    Tensor<T>& grad() { sync_grad_shape(); return grad_; }
    const Tensor<T>& grad() const { return grad_; }
    const Shape& shape() const { return value_.shape(); }
    std::size_t size() const { return value_.size(); }
    const std::string& name() const { return name_; }
    void set_name(std::string n) { name_ = std::move(n); }

    /// Sets the gradient to zero in place (keeps the buffer).
    void zero_grad()
    {
        sync_grad_shape();
        std::fill(grad_.begin(), grad_.end(), T(0));
    }

private:
    friend class BackwardContext<T>;
    // The value may have been replaced (loading weights); keep grad's shape in step with it.
    void sync_grad_shape()
    {
        if (grad_.shape() != value_.shape()) {
            grad_.resize(value_.shape());
            std::fill(grad_.begin(), grad_.end(), T(0));
        }
    }

    Tensor<T> value_;
    Tensor<T> grad_;
    std::string name_;
};

namespace detail {

template <class T>
struct Node {
    Tensor<T> value_;                       // owned value (unused when borrowed_ is set)
    Tensor<T> grad_;                        // gradient of the loss w.r.t. this node
    Tensor<T> saved_;                       // op-specific state for backward (e.g. im2col columns)
    const Tensor<T>* borrowed_ = nullptr;   // value owned elsewhere (borrow() or a Parameter)
    Parameter<T>* param_ = nullptr;         // gradient goes to this parameter
    const char* op_ = "";
    std::uint32_t input_begin_ = 0;
    std::uint32_t input_count_ = 0;
    std::uint32_t scope_ = 0;               // index into the tape's scope names (0: none)
    bool requires_grad_ = false;
    bool has_grad_ = false;
    bool grad_released_ = false;            // its gradient went back to the pool during backward
    InlineFunction<void(BackwardContext<T>&), 112> backward_;  // conv2d captures ~100 bytes

    const Tensor<T>& value() const { return borrowed_ ? *borrowed_ : value_; }
};

/// Adds a gradient computed at a broadcast output shape into a buffer of an input's shape
/// (summing leading axes and axes where the input has size 1; zeroing the buffer first if
/// `fresh`). The one place broadcasting is undone.
template <class T>
void sum_to(const Tensor<T>& full, const Shape& target, T* dst, bool fresh, const char* op);

template <class T>
void check_finite_or_throw(const Tensor<T>& t, const std::string& what);

/// Whether a Var's tape is still alive, answered without touching the tape (which may be gone).
/// Each tape owns a slot holding its current generation; clear() and the tape's destruction bump
/// it, and a freed slot is reused with the generation it reached, so a (slot, generation) pair
/// never comes back. A check is one relaxed load: as cheap as reading the tape's own counter.
class TapeSlots {
public:
    static constexpr std::uint32_t max_slots = 1u << 16;  // tapes alive at once (256 KiB of counters)
    /// Current generation of a slot.
    static std::uint32_t current(std::uint32_t slot) { return generations_[slot].load(std::memory_order_relaxed); }
    /// Takes a free slot for a new tape; returns it, with its first generation in `generation`.
    static std::uint32_t acquire(std::uint32_t& generation);
    /// Starts a new generation of a live slot (tape.clear()); returns it.
    static std::uint32_t advance(std::uint32_t slot);
    /// Ends the slot's last generation and frees it (tape destroyed).
    static void release(std::uint32_t slot);
    /// Why (slot, generation) is no longer current: "its tape was cleared" or "its tape was destroyed".
    static const char* why_stale(std::uint32_t slot, std::uint32_t generation);

private:
    static std::atomic<std::uint32_t> generations_[max_slots];
};

}  // namespace detail

// The ops behind Var's operators (defined in ops/elementwise.cpp).
template <class T> Var<T> add(const Var<T>&, const Var<T>&);
template <class T> Var<T> sub(const Var<T>&, const Var<T>&);
template <class T> Var<T> mul(const Var<T>&, const Var<T>&);
template <class T> Var<T> div(const Var<T>&, const Var<T>&);
template <class T> Var<T> neg(const Var<T>&);
template <class T> Var<T> add_scalar(const Var<T>&, T);
template <class T> Var<T> mul_scalar(const Var<T>&, T);
template <class T> Var<T> div_scalar(const Var<T>&, T);
template <class T> Var<T> rsub_scalar(T, const Var<T>&);
template <class T> Var<T> rdiv_scalar(T, const Var<T>&);

/// A cheap handle (tape pointer, index, generation) to a value recorded on a tape.
/// Copy it freely. It is invalidated by tape.clear(); using it afterwards throws std::logic_error.
template <class T>
class Var {
public:
    Var() = default;

    const Tensor<T>& value() const { return node().value(); }
    /// Gradient from the latest backward(); zeros if backward did not reach this Var.
    /// Throws std::logic_error if the Var does not require grad (a constant, or made under NoGrad).
    const Tensor<T>& grad() const;
    const Shape& shape() const { return node().value().shape(); }
    std::size_t dim() const { return shape().size(); }
    std::size_t size() const { return node().value().size(); }
    /// The single value of a one-element Var.
    T item() const;
    bool requires_grad() const { return node().requires_grad_; }
    /// Name of the op that produced this Var ("variable", "constant", "param" for leaves).
    const char* op() const { return node().op_; }
    std::uint32_t index() const { return index_; }
    /// The Parameter behind a tape.param() leaf, else nullptr.
    Parameter<T>* parameter() const { return node().param_; }
    Tape<T>& tape() const;
    bool valid() const;

    friend Var operator+(const Var& a, const Var& b) { return add(a, b); }
    friend Var operator-(const Var& a, const Var& b) { return sub(a, b); }
    friend Var operator*(const Var& a, const Var& b) { return mul(a, b); }
    friend Var operator/(const Var& a, const Var& b) { return div(a, b); }
    friend Var operator-(const Var& a) { return neg(a); }
    friend Var operator+(const Var& a, T s) { return add_scalar(a, s); }
    friend Var operator+(T s, const Var& a) { return add_scalar(a, s); }
    friend Var operator-(const Var& a, T s) { return add_scalar(a, -s); }
    friend Var operator-(T s, const Var& a) { return rsub_scalar(s, a); }
    friend Var operator*(const Var& a, T s) { return mul_scalar(a, s); }
    friend Var operator*(T s, const Var& a) { return mul_scalar(a, s); }
    friend Var operator/(const Var& a, T s) { return div_scalar(a, s); }
    friend Var operator/(T s, const Var& a) { return rdiv_scalar(s, a); }

private:
    friend class Tape<T>;
    friend class BackwardContext<T>;
    Var(Tape<T>* t, std::uint32_t i, std::uint32_t slot, std::uint32_t g)
        : tape_(t), index_(i), slot_(slot), generation_(g)
    {
    }
    detail::Node<T>& node() const;

    Tape<T>* tape_ = nullptr;  // only dereferenced once slot_ says the tape is alive
    std::uint32_t index_ = 0;
    std::uint32_t slot_ = 0;
    std::uint32_t generation_ = 0;
};

/// What an op's backward closure sees: the gradient of its output, its inputs' values, and
/// accumulate(), which adds a vector-Jacobian product into an input's gradient (undoing
/// broadcasting if the product has the output's broadcast shape).
template <class T>
class BackwardContext {
public:
    BackwardContext(Tape<T>& tape, detail::Node<T>& node, std::uint32_t index)
        : tape_(tape), node_(node), index_(index)
    {
    }

    /// dL/d(output), with the output's shape.
    const Tensor<T>& grad() const { return node_.grad_; }
    /// The output value.
    const Tensor<T>& value() const { return node_.value(); }
    /// What the op stored with OpBuilder::saved() in its forward.
    const Tensor<T>& saved() const { return node_.saved_; }
    std::size_t num_inputs() const { return node_.input_count_; }
    /// Value of input k.
    const Tensor<T>& input(std::size_t k) const { return in(k).value(); }
    /// Whether input k wants a gradient.
    bool needs(std::size_t k) const { return in(k).requires_grad_; }

    /// grad(input k) += e, where e has input k's shape or the op's (broadcast) output shape.
    template <class E>
    void accumulate(std::size_t k, E&& e)
    {
        detail::Node<T>& n = in(k);
        if (!n.requires_grad_) return;
        const Shape& target = n.value().shape();
        const auto& es = e.shape();
        if (es.size() == target.size() && std::equal(es.begin(), es.end(), target.begin())) {
            bool fresh = false;
            Tensor<T>& g = buffer(n, fresh);
            if (fresh)
                xt::noalias(g) = std::forward<E>(e);
            else
                xt::noalias(g) += std::forward<E>(e);
        } else {
            bool fresh = false;
            Tensor<T>& g = buffer(n, fresh);
            if constexpr (std::is_same_v<std::decay_t<E>, Tensor<T>>) {
                detail::sum_to(e, target, g.data(), fresh, node_.op_);
            } else {
                thread_local Tensor<T> full;  // evaluated once, reused: no allocation in steady state
                full.resize(es);
                xt::noalias(full) = std::forward<E>(e);
                detail::sum_to(full, target, g.data(), fresh, node_.op_);
            }
        }
    }

    /// Direct access to input k's gradient buffer (resized to the input's shape) for kernels
    /// that write into it (BLAS with beta, scatter loops). If `fresh` is set on return the
    /// buffer holds garbage and must be assigned, not added to.
    Tensor<T>& grad_buffer(std::size_t k, bool& fresh) { return buffer(in(k), fresh); }

    const char* op() const { return node_.op_; }
    std::uint32_t position() const { return index_; }

private:
    detail::Node<T>& in(std::size_t k) const;
    Tensor<T>& buffer(detail::Node<T>& n, bool& fresh)
    {
        if (n.param_) {
            n.has_grad_ = true;
            fresh = false;
            return n.param_->grad();
        }
        fresh = !n.has_grad_;
        if (fresh) {
            tape_.take_grad_buffer(n);
            n.has_grad_ = true;
        }
        return n.grad_;
    }

    Tape<T>& tape_;
    detail::Node<T>& node_;
    std::uint32_t index_;
};

/// Builds one op's node: begin_op() validates the inputs and reserves the node, the caller
/// writes the output into value(), finish() attaches the backward closure (only if some input
/// requires grad and grad mode is on) and returns the output Var.
template <class T>
class OpBuilder {
public:
    Tensor<T>& value() { return node_->value_; }
    /// A buffer the op may fill for its backward (kept with the node, reused across steps, so
    /// nothing is allocated once shapes are stable). BackwardContext::saved() reads it.
    Tensor<T>& saved() { return node_->saved_; }

    template <class F>
    Var<T> finish(F&& backward)
    {
        if (node_->requires_grad_) node_->backward_.emplace(std::forward<F>(backward));
        return tape_->finish_op(index_);
    }

private:
    friend class Tape<T>;
    OpBuilder(Tape<T>* t, detail::Node<T>* n, std::uint32_t i) : tape_(t), node_(n), index_(i) {}
    Tape<T>* tape_;
    detail::Node<T>* node_;
    std::uint32_t index_;
};

/// A record of ops in creation order. One tape per thread; tapes share no state.
template <class T>
class Tape {
public:
    Tape();
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    /// A leaf that requires grad (copied onto the tape).
    Var<T> variable(const Tensor<T>& value);
    /// A leaf that does not require grad (copied onto the tape).
    Var<T> constant(const Tensor<T>& value);
    /// A 0-d constant.
    Var<T> constant(T value);
    /// A constant leaf that refers to `value` without copying; `value` must outlive this tape's
    /// current record (until clear()).
    Var<T> borrow(const Tensor<T>& value);
    /// A parameter on the tape (no copy); backward adds into p.grad().
    Var<T> param(Parameter<T>& p);
    /// A constant copy of v's value on this tape, cut from the graph.
    Var<T> detach(const Var<T>& v);

    /// Reverse sweep from a one-element output (seed 1).
    void backward(const Var<T>& output);
    /// Reverse sweep from any output with an explicit seed dL/d(output) of the output's shape.
    void backward(const Var<T>& output, const Tensor<T>& seed);

    /// Forgets every node (all Vars become invalid) but keeps the memory for the next step.
    void clear();
    /// Releases all memory held by cleared nodes.
    void shrink_to_fit();
    /// Number of nodes recorded since the last clear().
    std::size_t size() const { return size_; }
    /// Number of node slots allocated (reused across clear()).
    std::size_t capacity() const { return nodes_.size(); }

    bool grad_enabled() const { return grad_enabled_; }
    void set_grad_enabled(bool on) { grad_enabled_ = on; }
    /// Anomaly mode: every op checks its output (forward) and its inputs' gradients (backward)
    /// and throws AnomalyError naming the first op, and its position, that made a NaN or Inf.
    bool anomaly_detection() const { return anomaly_; }
    void set_anomaly_detection(bool on) { anomaly_ = on; }
    /// Intermediate gradients (of nodes that are neither leaves nor parameters) are handed back
    /// to a buffer pool as soon as backward has passed them on, like PyTorch's non-leaf grads, so
    /// a long graph needs only a few gradient buffers. Turn retention on to read them with grad().
    bool retain_grad() const { return retain_grad_; }
    void set_retain_grad(bool on) { retain_grad_ = on; }

    /// Op name and position of node i (for messages and tools).
    const char* op_at(std::uint32_t i) const { return nodes_.at(i).op_; }
    /// Where node i was created: the scopes open at the time, e.g. "mlp/2:Linear(256→128)".
    const std::string& scope_at(std::uint32_t i) const { return scope_names_.at(nodes_.at(i).scope_); }
    /// Opens a named scope (nested in the current one); nodes record it. Prefer ScopeGuard.
    void push_scope(const std::string& name);
    void pop_scope();

    /// Instrumentation for tools such as check_nodes: `before(i)` runs when node i is reserved
    /// (inputs known, output not computed yet), `after(i)` when it is finished. Empty to remove.
    using OpHook = std::function<void(std::uint32_t)>;
    void set_op_hooks(OpHook before, OpHook after)
    {
        before_op_ = std::move(before);
        after_op_ = std::move(after);
    }
    /// Handle to node i of the current record.
    Var<T> at(std::uint32_t i);

    /// For op authors: throws unless every input is a live Var of this tape. Call it before
    /// shape checks so a Var from another tape is reported as such.
    void validate(const char* op, const Var<T>* inputs, std::size_t n_inputs) const;
    void validate(const char* op, std::initializer_list<Var<T>> inputs) const
    {
        validate(op, inputs.begin(), inputs.size());
    }
    /// For op authors: validates the inputs (same tape, not stale) and reserves the output node.
    OpBuilder<T> begin_op(const char* op, const Var<T>* inputs, std::size_t n_inputs);
    OpBuilder<T> begin_op(const char* op, std::initializer_list<Var<T>> inputs)
    {
        return begin_op(op, inputs.begin(), inputs.size());
    }

private:
    friend class Var<T>;
    friend class BackwardContext<T>;
    friend class OpBuilder<T>;
    friend struct detail::TapeAccess<T>;

    detail::Node<T>& push(const char* op);
    Var<T> leaf(const char* op, bool requires_grad);
    Var<T> finish_op(std::uint32_t index);
    void check(const Var<T>& v, const char* what) const;
    /// Throws the logic_error for an empty or stale Var (cleared or destroyed tape).
    [[noreturn]] static void throw_unusable(const Var<T>& v, const char* what);
    void sweep(std::uint32_t from);
    void start_sweep(const Var<T>& output);
    void recycle(detail::Node<T>& n);
    void take_grad_buffer(detail::Node<T>& n);

    std::deque<detail::Node<T>> nodes_;
    std::vector<std::uint32_t> inputs_;
    // Scope names are interned once (parent, name) and kept across clear(): no allocation per step.
    std::vector<std::string> scope_names_{std::string()};
    std::vector<std::pair<std::uint32_t, std::string>> scope_keys_{{0, std::string()}};
    std::vector<std::uint32_t> scope_stack_{0};
    OpHook before_op_, after_op_;
    std::size_t size_ = 0;
    std::uint32_t slot_ = 0;        // this tape's entry in detail::TapeSlots
    std::uint32_t generation_ = 0;  // == TapeSlots::current(slot_), kept here for making Vars
    bool grad_enabled_ = true;
    bool anomaly_ = false;
    bool retain_grad_ = false;
    std::vector<Tensor<T>> grad_pool_;  // released gradient buffers, reused by size
};

/// Names the nodes recorded during its life (nested), for messages and check_nodes reports.
template <class T>
class ScopeGuard {
public:
    ScopeGuard(Tape<T>& t, const std::string& name) : tape_(t) { t.push_scope(name); }
    ~ScopeGuard() { tape_.pop_scope(); }
    ScopeGuard(const ScopeGuard&) = delete;
    ScopeGuard& operator=(const ScopeGuard&) = delete;

private:
    Tape<T>& tape_;
};

/// Turns recording of backward closures off on one tape for the life of the guard
/// (values are still computed and stored; nothing will be differentiated).
template <class T>
class NoGradGuard {
public:
    explicit NoGradGuard(Tape<T>& t) : tape_(t), prev_(t.grad_enabled()) { t.set_grad_enabled(false); }
    ~NoGradGuard() { tape_.set_grad_enabled(prev_); }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    Tape<T>& tape_;
    bool prev_;
};

// ---- inline members that need the complete Tape ----

template <class T>
detail::Node<T>& Var<T>::node() const
{
    // One load decides: a matching generation means the tape is alive and not cleared since this
    // Var was made (so index_ < size_). *tape_ is touched only after that: it may be gone.
    if (!tape_ || detail::TapeSlots::current(slot_) != generation_) Tape<T>::throw_unusable(*this, "Var");
    return tape_->nodes_[index_];
}

template <class T>
Tape<T>& Var<T>::tape() const
{
    node();
    return *tape_;
}

template <class T>
bool Var<T>::valid() const
{
    return tape_ && detail::TapeSlots::current(slot_) == generation_ && index_ < tape_->size_;
}

template <class T>
detail::Node<T>& BackwardContext<T>::in(std::size_t k) const
{
    return tape_.nodes_[tape_.inputs_[node_.input_begin_ + k]];
}

template <class T>
void Tape<T>::check(const Var<T>& v, const char* what) const
{
    // (slot, generation) pairs never repeat, so equal ones mean this very tape, not cleared since.
    if (v.tape_ == this && v.slot_ == slot_ && v.generation_ == generation_) return;
    if (v.tape_ && v.tape_ != this && detail::TapeSlots::current(v.slot_) == v.generation_)
        throw std::logic_error(std::string("xgrad: ") + what + ": Var belongs to another tape");
    throw_unusable(v, what);
}

// Explicit instantiations live in tape.cpp.
extern template class Tape<float>;
extern template class Tape<double>;
extern template class Var<float>;
extern template class Var<double>;

using Tapef = Tape<float>;
using Taped = Tape<double>;
using Varf = Var<float>;
using Vard = Var<double>;

}  // namespace xgrad

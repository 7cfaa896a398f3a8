#pragma once
// The tape (a Wengert list) and its handles: what a model writer uses. Writing a new op:
// xgrad/op.hpp. Weights: xgrad/parameter.hpp.
//
// Why backward needs no topological sort: an op can only take Vars that already exist, so every
// node is recorded after all of its inputs. Creation order is therefore a topological order, and
// one reverse loop over the record visits each node after every node that consumes it, i.e. after
// its gradient is complete. No recursion, so a 100,000-op chain costs no stack.
//
// Memory: nodes live in a std::deque (stable addresses) and are never destroyed by clear(); their
// value and gradient buffers are kept, so the next training step with the same shapes resizes
// them in place and allocates nothing.
#include <cstdint>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/detail/node.hpp"
#include "xgrad/errors.hpp"
#include "xgrad/parameter.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad {

template <class T>
class Tape;
template <class T>
class Var;
template <class T>
class OpBuilder;
struct GradOptions;
namespace detail {
struct ProfileLog;  // xgrad/detail/profile_log.hpp, written while an xgrad::Profiler is attached
// xgrad::grad (xgrad/higher_order.hpp); grad_output may be null (a seed of ones).
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>* grad_output,
                         const GradOptions& options);
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

/// A cheap handle (tape, index, generation; 24 bytes) to a value recorded on a tape. Copy it
/// freely. tape.clear() or the tape's destruction invalidates it; using it afterwards throws
/// std::logic_error saying which of the two happened.
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
    /// Position on the tape (creation order).
    std::uint32_t index() const { return index_; }
    /// The Parameter behind a tape.param() leaf, else nullptr.
    Parameter<T>* parameter() const { return node().grad_.parameter(); }
    Tape<T>& tape() const;
    /// Whether the Var can be used (made, and its tape neither cleared nor destroyed since).
    bool valid() const;

    // Scalars of any arithmetic type (0.5 on a float Var): converted to T.
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
    friend class OpBuilder<T>;
    friend class BackwardContext<T>;
    friend class GraphBackwardContext<T>;
    friend struct detail::TapeAccess<T>;
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

/// Callbacks on the plain backward() sweeps of a tape's current record, for tools that act as soon
/// as gradients are final (xgrad::distributed starts its all-reduces from them). Not called by the
/// recorded sweep (xgrad::grad). Either may be empty.
template <class T>
struct BackwardHooks {
    /// The sweep has reached the parameter leaf at tape position i (tape.param(p)): every node
    /// recorded after it has run, so this leaf's share of p.grad() is in. Called for every param leaf
    /// at or below the output, reached or not; a Parameter on the tape k times is final at its k-th call.
    std::function<void(Parameter<T>& p, std::uint32_t i)> param_ready;
    /// The sweep has ended (not called if an op's backward threw).
    std::function<void()> sweep_done;
    /// Node i's backward has run: a moment to advance other work between nodes (DDP's non-blocking
    /// all-reduces, which MPI progresses only inside MPI calls).
    std::function<void(std::uint32_t i)> node_done;
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
    /// Installs hooks on the backward() sweeps of the current record (replacing any); clear()
    /// removes them, as hooks belong to one step's record.
    void set_backward_hooks(BackwardHooks<T> hooks) { hooks_ = std::move(hooks); }
    const BackwardHooks<T>& backward_hooks() const { return hooks_; }

    /// Handle to node i of the current record (std::out_of_range past the end), for tools that
    /// walk the record.
    Var<T> at(std::uint32_t i);
    /// Where node i was created: the scopes open at the time, e.g. "mlp/2:Linear(256→128)".
    const std::string& scope_at(std::uint32_t i) const;
    /// Names a quantity of the model ("z2", "a1", "loss") for xgrad::diagnose, which matches a hand
    /// derivation's quantities to these names; returns v. A name used twice in one record throws
    /// std::logic_error. clear() forgets the names.
    Var<T> observe(const std::string& name, const Var<T>& v);
    /// The observed (name, tape position) pairs of the current record, in the order observed.
    const std::vector<std::pair<std::string, std::uint32_t>>& observed() const { return observed_; }
    /// Opens a named scope (nested in the current one); nodes record it. Prefer ScopeGuard.
    void push_scope(const std::string& name);
    void pop_scope();

private:
    friend class Var<T>;
    friend class OpBuilder<T>;
    friend class BackwardContext<T>;
    friend class GraphBackwardContext<T>;
    friend struct detail::TapeAccess<T>;
    friend std::vector<Var<T>> detail::grad<T>(const Var<T>&, const std::vector<Var<T>>&, const Var<T>*, const GradOptions&);

    detail::Node<T>& push(const char* op, Parameter<T>* param = nullptr);
    Var<T> finish_leaf(const char* op, bool requires_grad);
    Var<T> copy_leaf(const char* op, const Tensor<T>& value, bool requires_grad);
    Var<T> adopt_constant(Tensor<T>&& value);  // a constant that takes value's buffer (recorded VJPs)
    // The op-author path (OpBuilder): reserve a node after checking its inputs, finish or undo it.
    std::uint32_t begin_op(const char* op, const Var<T>* inputs, std::size_t n_inputs);
    Var<T> finish_op(std::uint32_t index);
    void undo_op(std::uint32_t index);
    void check(const Var<T>& v, const char* what) const;
    /// Throws the logic_error for an empty or stale Var (cleared or destroyed tape).
    [[noreturn]] static void throw_unusable(const Var<T>& v, const char* what);
    detail::Node<T>& start_sweep(const Var<T>& output);  // output checked by the caller
    void sweep(std::uint32_t from);
    Var<T> var(std::uint32_t index) { return Var<T>(this, index, slot_, generation_); }
    // The recorded sweep (create_graph): the gradient of node j is the Var at graph_grads_[j].
    std::vector<Var<T>> differentiate(const Var<T>& output, const std::vector<Var<T>>& inputs,
                                      const Var<T>* grad_output, const GradOptions& options);
    void accumulate_graph(std::uint32_t j, const Var<T>& g);

    std::deque<detail::Node<T>> nodes_;
    std::vector<std::uint32_t> inputs_;
    std::vector<std::uint32_t> graph_grads_;  // one entry per node during a recorded sweep
    detail::GradPool<T> grad_pool_;
    // Scope names are interned once (parent, name) and kept across clear(): no allocation per step.
    std::vector<std::string> scope_names_{std::string()};
    std::vector<std::pair<std::uint32_t, std::string>> scope_keys_{{0, std::string()}};
    std::vector<std::uint32_t> scope_stack_{0};
    std::vector<std::pair<std::string, std::uint32_t>> observed_;  // tape.observe(): checking tools only
    // Instrumentation for check_nodes (detail::TapeAccess): called when node i is reserved and finished.
    std::function<void(std::uint32_t)> before_op_, after_op_;
    BackwardHooks<T> hooks_;  // set_backward_hooks(): per record
    detail::ProfileLog* profile_ = nullptr;  // the attached xgrad::Profiler's times, if any
    std::size_t size_ = 0;
    std::uint32_t slot_ = 0;        // this tape's entry in detail::TapeSlots
    std::uint32_t generation_ = 0;  // == TapeSlots::current(slot_), kept here for making Vars
    bool grad_enabled_ = true;
    bool anomaly_ = false;
    bool retain_grad_ = false;
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

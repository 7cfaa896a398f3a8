#include "xgrad/tape.hpp"

#include <cmath>
#include <limits>
#include <mutex>

#include <fmt/core.h>

#include "kernels/reduce.hpp"
#include "xgrad/detail/profile_log.hpp"
#include "xgrad/op.hpp"

namespace xgrad {

namespace detail {

std::atomic<std::uint32_t> TapeSlots::generations_[TapeSlots::max_slots];

namespace {

/// Slot bookkeeping off the fast path: free slots, and the generation each owner started at
/// (which tells "cleared" from "destroyed" in messages).
struct SlotBook {
    std::mutex mutex;
    std::vector<std::uint32_t> free_slots;
    std::vector<std::uint32_t> first_generation = std::vector<std::uint32_t>(TapeSlots::max_slots, 0);
    std::vector<bool> in_use = std::vector<bool>(TapeSlots::max_slots, false);
    std::uint32_t used = 0;  // slots ever handed out
};
SlotBook& slot_book()
{
    static SlotBook* book = new SlotBook;  // never destroyed: tapes may die after static destruction
    return *book;
}

}  // namespace

std::uint32_t TapeSlots::acquire(std::uint32_t& generation)
{
    SlotBook& b = slot_book();
    std::lock_guard<std::mutex> lock(b.mutex);
    std::uint32_t slot;
    if (!b.free_slots.empty()) {
        slot = b.free_slots.back();
        b.free_slots.pop_back();
    } else if (b.used < max_slots) {
        slot = b.used++;
    } else {
        throw std::length_error(fmt::format("xgrad: more than {} tapes alive at once", max_slots));
    }
    b.in_use[slot] = true;
    generation = advance(slot);
    b.first_generation[slot] = generation;
    return slot;
}

std::uint32_t TapeSlots::advance(std::uint32_t slot)
{
    const std::uint32_t next = generations_[slot].load(std::memory_order_relaxed) + 1;
    generations_[slot].store(next, std::memory_order_relaxed);
    return next;
}

void TapeSlots::release(std::uint32_t slot)
{
    SlotBook& b = slot_book();
    std::lock_guard<std::mutex> lock(b.mutex);
    advance(slot);
    b.in_use[slot] = false;
    b.free_slots.push_back(slot);
}

const char* TapeSlots::why_stale(std::uint32_t slot, std::uint32_t generation)
{
    SlotBook& b = slot_book();
    std::lock_guard<std::mutex> lock(b.mutex);
    const bool same_owner = b.in_use[slot] && generation >= b.first_generation[slot];
    return same_owner ? "its tape was cleared" : "its tape was destroyed";
}

}  // namespace detail

namespace {

/// Anomaly mode: AnomalyError naming `what` and the first non-finite element.
template <class T>
void check_finite(const Tensor<T>& t, const std::string& what)
{
    const T* p = t.data();
    for (std::size_t i = 0; i < t.size(); ++i)
        if (!std::isfinite(p[i]))
            throw AnomalyError(fmt::format("xgrad anomaly: {} produced {} at element {} of a tensor of shape {}", what,
                                           std::isnan(p[i]) ? "nan" : "inf",
                                           shape_str(xt::unravel_index(i, t.shape())), shape_str(t.shape())));
}

}  // namespace

template <class T>
const Tensor<T>& Var<T>::grad() const
{
    const detail::Node<T>& n = node();
    if (!n.requires_grad_)
        throw std::logic_error(fmt::format("xgrad: grad() of Var #{} ('{}'): it does not require grad (a constant, or made "
                                           "under NoGradGuard)", index_, n.op_));
    if (n.grad_.parameter()) return n.grad_.parameter()->grad();
    switch (n.grad_.state()) {
    case detail::GradSlot<T>::State::live: return *n.grad_.get();
    case detail::GradSlot<T>::State::empty: return n.grad_.zeros(n.value().shape());  // not reached by backward
    case detail::GradSlot<T>::State::released: break;
    }
    throw std::logic_error(fmt::format("xgrad: grad() of intermediate Var #{} ('{}'): intermediate gradients are "
                                       "released during backward to save memory; call tape.set_retain_grad(true) "
                                       "before backward() to keep them", index_, n.op_));
}

template <class T>
T Var<T>::item() const
{
    const Tensor<T>& v = value();
    if (v.size() != 1)
        throw std::logic_error(fmt::format("xgrad: item() needs a one-element Var, got shape {}", shape_str(v.shape())));
    return *v.data();
}

template <class T>
Tape<T>::Tape()
{
    slot_ = detail::TapeSlots::acquire(generation_);
}

template <class T>
Tape<T>::~Tape()
{
    if (profile_) profile_->tape_ = nullptr;  // the profiler keeps its times, and detaches from nothing
    detail::TapeSlots::release(slot_);
}

template <class T>
detail::Node<T>& Tape<T>::push(const char* op, Parameter<T>* param)
{
    if (size_ >= std::numeric_limits<std::uint32_t>::max()) throw std::length_error("xgrad: tape is full (2^32 nodes)");
    if (size_ == nodes_.size()) nodes_.emplace_back();
    detail::Node<T>& n = nodes_[size_];
    n.borrowed_ = param ? &param->value() : nullptr;
    n.grad_.bind(param);
    n.op_ = op;
    n.input_begin_ = static_cast<std::uint32_t>(inputs_.size());
    n.input_count_ = 0;
    n.requires_grad_ = false;
    n.scope_ = scope_stack_.back();
    n.backward_.reset();
    return n;
}

// ---- leaves ----

template <class T>
Var<T> Tape<T>::finish_leaf(const char* op, bool requires_grad)
{
    detail::Node<T>& n = nodes_[size_];
    n.requires_grad_ = requires_grad;
    const auto index = static_cast<std::uint32_t>(size_++);
    if (anomaly_) check_finite(n.value(), fmt::format("leaf '{}' (#{} on the tape)", op, index));
    return Var<T>(this, index, slot_, generation_);
}

template <class T>
Var<T> Tape<T>::copy_leaf(const char* op, const Tensor<T>& value, bool requires_grad)
{
    detail::Node<T>& n = push(op);
    n.value_.resize(value.shape());
    xt::noalias(n.value_) = value;
    return finish_leaf(op, requires_grad);
}

template <class T>
Var<T> Tape<T>::adopt_constant(Tensor<T>&& value)
{
    push("constant").value_ = std::move(value);
    return finish_leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::variable(const Tensor<T>& value)
{
    return copy_leaf("variable", value, true);
}

template <class T>
Var<T> Tape<T>::constant(const Tensor<T>& value)
{
    return copy_leaf("constant", value, false);
}

template <class T>
Var<T> Tape<T>::constant(T value)
{
    detail::Node<T>& n = push("constant");
    n.value_.resize(Shape{});
    *n.value_.data() = value;
    return finish_leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::borrow(const Tensor<T>& value)
{
    push("constant").borrowed_ = &value;
    return finish_leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::param(Parameter<T>& p)
{
    push("param", &p);
    return finish_leaf("param", grad_enabled_);
}

template <class T>
Var<T> Tape<T>::detach(const Var<T>& v)
{
    check(v, "detach");
    return copy_leaf("detach", v.value(), false);
}

template <class T>
Var<T> Tape<T>::at(std::uint32_t i)
{
    if (i >= size_) throw std::out_of_range(fmt::format("xgrad: tape position {} >= size {}", i, size_));
    return Var<T>(this, i, slot_, generation_);
}

// ---- scopes ----

template <class T>
const std::string& Tape<T>::scope_at(std::uint32_t i) const
{
    if (i >= size_) throw std::out_of_range(fmt::format("xgrad: scope_at({}): the tape holds {} nodes", i, size_));
    return scope_names_[nodes_[i].scope_];
}

template <class T>
Var<T> Tape<T>::observe(const std::string& name, const Var<T>& v)
{
    check(v, "observe");
    for (const auto& [n, i] : observed_)
        if (n == name)
            throw std::logic_error(fmt::format("xgrad: observe: the name '{}' is already used (node {})", name, i));
    observed_.emplace_back(name, v.index());
    return v;
}

template <class T>
void Tape<T>::push_scope(const std::string& name)
{
    const std::uint32_t parent = scope_stack_.back();
    for (std::uint32_t i = 0; i < scope_keys_.size(); ++i)
        if (scope_keys_[i].first == parent && scope_keys_[i].second == name) {
            scope_stack_.push_back(i);
            return;
        }
    scope_keys_.emplace_back(parent, name);
    scope_names_.push_back(parent ? scope_names_[parent] + "/" + name : name);
    scope_stack_.push_back(std::uint32_t(scope_names_.size() - 1));
}

template <class T>
void Tape<T>::pop_scope()
{
    if (scope_stack_.size() <= 1) throw std::logic_error("xgrad: pop_scope() without a matching push_scope()");
    scope_stack_.pop_back();
}

// ---- ops (OpBuilder) ----

template <class T>
std::uint32_t Tape<T>::begin_op(const char* op, const Var<T>* inputs, std::size_t n_inputs)
{
    bool any = false;
    for (std::size_t k = 0; k < n_inputs; ++k) {
        const Var<T>& v = inputs[k];
        if (!v.tape_) throw std::logic_error(fmt::format("xgrad: {}: input {} is an empty Var", op, k));
        if (v.tape_ != this)
            throw std::logic_error(fmt::format("xgrad: {}: input {} belongs to another tape (Vars of different tapes "
                                               "cannot be mixed)", op, k));
        check(v, op);
        any = any || nodes_[v.index_].requires_grad_;
    }
    detail::Node<T>& n = push(op);
    for (std::size_t k = 0; k < n_inputs; ++k) inputs_.push_back(inputs[k].index_);
    n.input_count_ = static_cast<std::uint32_t>(n_inputs);
    n.requires_grad_ = any && grad_enabled_;
    const auto index = static_cast<std::uint32_t>(size_++);
    if (before_op_) before_op_(index);
    if (profile_) profile_->forward_begin(index);
    return index;
}

template <class T>
Var<T> Tape<T>::finish_op(std::uint32_t index)
{
    if (profile_) {
        const detail::Node<T>& n = nodes_[index];
        profile_->forward_end(index, n.op_, n.scope_, scope_names_[n.scope_]);
    }
    if (after_op_) after_op_(index);
    if (anomaly_) {
        const detail::Node<T>& n = nodes_[index];
        check_finite(n.value(), fmt::format("forward of op '{}' (#{} on the tape)", n.op_, index));
    }
    return Var<T>(this, index, slot_, generation_);
}

template <class T>
void Tape<T>::undo_op(std::uint32_t index)
{
    if (index + 1 != size_) return;  // only the last node can be taken back (nothing uses it yet)
    detail::Node<T>& n = nodes_[index];
    inputs_.resize(n.input_begin_);
    n.backward_.reset();
    --size_;
}

// ---- backward ----

template <class T>
detail::Node<T>& Tape<T>::start_sweep(const Var<T>& output)
{
    detail::Node<T>& out = nodes_[output.index_];
    if (!out.requires_grad_)
        throw std::logic_error(fmt::format("xgrad: backward(): the output ('{}') does not depend on anything that "
                                           "requires grad (use tape.variable() or tape.param() for the inputs)",
                                           out.op_));
    // Gradients of tape nodes hold the latest sweep only; parameters accumulate.
    for (std::size_t i = 0; i < size_; ++i) {
        detail::Node<T>& n = nodes_[i];
        n.grad_.restart(grad_pool_, bool(n.backward_));
    }
    return out;
}

template <class T>
void Tape<T>::backward(const Var<T>& output)
{
    check(output, "backward");
    const detail::Node<T>& o = nodes_[output.index_];
    if (o.value().size() != 1)
        throw std::logic_error(fmt::format("xgrad: backward() without a seed needs a one-element output, got shape {}; "
                                           "reduce it first (sum, mean) or pass a seed gradient of the same shape",
                                           shape_str(o.value().shape())));
    detail::Node<T>& out = start_sweep(output);
    bool acc = false;
    Tensor<T>& g = out.grad_.open(out.value().shape(), grad_pool_, acc);
    if (acc)
        g += T(1);  // a parameter as the output: its gradient accumulates like any other
    else
        std::fill(g.begin(), g.end(), T(1));
    sweep(output.index_);
}

template <class T>
void Tape<T>::backward(const Var<T>& output, const Tensor<T>& seed)
{
    check(output, "backward");
    const Shape& os = nodes_[output.index_].value().shape();
    if (seed.shape() != os)
        throw ShapeError(fmt::format("backward: seed {} vs output {}: the seed gradient must have the output's shape",
                                     shape_str(seed.shape()), shape_str(os)));
    detail::Node<T>& out = start_sweep(output);
    bool acc = false;
    Tensor<T>& g = out.grad_.open(os, grad_pool_, acc);
    if (acc)
        xt::noalias(g) += seed;
    else
        xt::noalias(g) = seed;
    sweep(output.index_);
}

template <class T>
void Tape<T>::sweep(std::uint32_t from)
{
    for (std::uint32_t i = from + 1; i-- > 0;) {
        detail::Node<T>& n = nodes_[i];
        // Every consumer of node i has a higher position, so a param leaf's share is in by now.
        if (hooks_.param_ready && n.grad_.parameter()) hooks_.param_ready(*n.grad_.parameter(), i);
        if (!n.backward_ || n.grad_.state() != detail::GradSlot<T>::State::live) continue;
        BackwardContext<T> ctx(*this, n, i);
        if (profile_) {
            const auto t0 = detail::ProfileLog::Clock::now();
            n.backward_(ctx);
            profile_->backward(n.op_, n.scope_, scope_names_[n.scope_], detail::ProfileLog::Clock::now() - t0);
        } else {
            n.backward_(ctx);
        }
        if (!retain_grad_) n.grad_.release(grad_pool_);  // passed on: the next node may take the buffer
        if (hooks_.node_done) hooks_.node_done(i);
        if (anomaly_) {
            for (std::uint32_t k = 0; k < n.input_count_; ++k) {
                const std::uint32_t j = inputs_[n.input_begin_ + k];
                const detail::Node<T>& in = nodes_[j];
                if (const Tensor<T>* g = in.grad_.get())
                    check_finite(*g, fmt::format("backward of op '{}' (#{} on the tape), gradient for its input {} "
                                                 "('{}' #{}),", n.op_, i, k, in.op_, j));
            }
        }
    }
    if (profile_) ++profile_->sweeps_;
    if (hooks_.sweep_done) hooks_.sweep_done();
}

template <class T>
void BackwardContext<T>::accumulate_reduced(std::size_t k, const Tensor<T>& full)
{
    InputGrad<T> g = input_grad(k);
    kernels::sum_to(full.data(), full.shape(), input(k).shape(), g.data(), g.accumulate, node_.op_);
}

// ---- lifetime ----

template <class T>
void Tape<T>::throw_unusable(const Var<T>& v, const char* what)
{
    const std::string prefix = std::string(what) == "Var" ? "xgrad: " : fmt::format("xgrad: {}: ", what);
    if (!v.tape_) throw std::logic_error(prefix + "use of an empty Var (default-constructed, never assigned)");
    throw std::logic_error(fmt::format("xgrad: {}: Var #{} is stale: used after {}", what, v.index_,
                                       detail::TapeSlots::why_stale(v.slot_, v.generation_)));
}

template <class T>
void Tape<T>::clear()
{
    for (std::size_t i = 0; i < size_; ++i) {
        nodes_[i].backward_.reset();  // frees what closures captured; value/grad buffers stay
        nodes_[i].borrowed_ = nullptr;
        nodes_[i].grad_.bind(nullptr);
    }
    size_ = 0;
    inputs_.clear();
    observed_.clear();
    hooks_ = BackwardHooks<T>();
    generation_ = detail::TapeSlots::advance(slot_);
}

template <class T>
void Tape<T>::shrink_to_fit()
{
    clear();
    nodes_.clear();
    nodes_.shrink_to_fit();
    grad_pool_.clear();
    inputs_.shrink_to_fit();
}

template class Tape<float>;
template class Tape<double>;
template class Var<float>;
template class Var<double>;
template class BackwardContext<float>;
template class BackwardContext<double>;

}  // namespace xgrad

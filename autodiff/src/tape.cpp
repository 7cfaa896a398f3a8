#include "xgrad/tape.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <mutex>

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
        throw std::length_error("xgrad: more than " + std::to_string(max_slots) + " tapes alive at once");
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

template <class T>
void sum_to(const Tensor<T>& full, const Shape& target, T* dst, bool fresh, const char* op)
{
    const Shape& fs = full.shape();
    bool ok = fs.size() >= target.size();
    const std::size_t lead = ok ? fs.size() - target.size() : 0;
    for (std::size_t i = 0; ok && i < target.size(); ++i) ok = target[i] == fs[lead + i] || target[i] == 1;
    if (!ok)
        throw std::logic_error(std::string("xgrad: ") + op + ": gradient of shape " + shape_str(fs) +
                               " cannot be reduced to input shape " + shape_str(target));
    if (fresh) std::fill(dst, dst + shape_size(target), T(0));
    const std::size_t n = full.size();
    if (n == 0) return;
    const std::size_t nd = fs.size();
    if (nd == 0) {
        *dst += *full.data();
        return;
    }
    // Walk the full gradient once in row-major order and map each element to its target offset:
    // target strides are 0 on the reduced axes. Shape is an inline small vector: no allocation.
    Shape tstride(nd, 0);
    {
        std::size_t st = 1;
        for (std::size_t i = target.size(); i-- > 0;) {
            tstride[lead + i] = (target[i] == 1) ? 0 : st;
            st *= target[i];
        }
    }
    const std::size_t inner = fs[nd - 1];
    const std::size_t inner_stride = tstride[nd - 1];
    Shape idx(nd, 0);
    const T* src = full.data();
    std::size_t off = 0;
    for (std::size_t base = 0; base < n; base += inner) {
        if (inner_stride == 1) {
            for (std::size_t j = 0; j < inner; ++j) dst[off + j] += src[base + j];
        } else {
            T acc = 0;
            for (std::size_t j = 0; j < inner; ++j) acc += src[base + j];
            dst[off] += acc;
        }
        for (std::size_t d = nd - 1; d-- > 0;) {  // advance the multi-index over all but the last axis
            ++idx[d];
            off += tstride[d];
            if (idx[d] < fs[d]) break;
            off -= tstride[d] * idx[d];
            idx[d] = 0;
        }
    }
}

template <class T>
void check_finite_or_throw(const Tensor<T>& t, const std::string& what)
{
    const T* p = t.data();
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (!std::isfinite(p[i])) {
            auto idx = xt::unravel_index(i, t.shape());
            std::string where;
            for (std::size_t k = 0; k < idx.size(); ++k) where += (k ? "," : "") + std::to_string(idx[k]);
            throw AnomalyError("xgrad anomaly: " + what + " produced " + (std::isnan(p[i]) ? "nan" : "inf")
                               + " at element (" + where + ") of a tensor of shape " + shape_str(t.shape()));
        }
    }
}

template void sum_to<float>(const Tensor<float>&, const Shape&, float*, bool, const char*);
template void sum_to<double>(const Tensor<double>&, const Shape&, double*, bool, const char*);
template void check_finite_or_throw<float>(const Tensor<float>&, const std::string&);
template void check_finite_or_throw<double>(const Tensor<double>&, const std::string&);

}  // namespace detail

template <class T>
const Tensor<T>& Var<T>::grad() const
{
    detail::Node<T>& n = node();
    if (!n.requires_grad_)
        throw std::logic_error(std::string("xgrad: grad() of Var #") + std::to_string(index_) + " ('" + n.op_
                               + "'): it does not require grad (a constant, or made under NoGradGuard)");
    if (n.param_) return n.param_->grad();
    if (n.grad_released_)
        throw std::logic_error(std::string("xgrad: grad() of intermediate Var #") + std::to_string(index_) + " ('" +
                               n.op_ + "'): intermediate gradients are released during backward to save memory; "
                               "call tape.set_retain_grad(true) before backward() to keep them");
    if (!n.has_grad_) {
        // Not reached by backward: its gradient is zero.
        n.grad_.resize(n.value().shape());
        std::fill(n.grad_.begin(), n.grad_.end(), T(0));
    }
    return n.grad_;
}

template <class T>
T Var<T>::item() const
{
    const Tensor<T>& v = value();
    if (v.size() != 1)
        throw std::logic_error("xgrad: item() needs a one-element Var, got shape " + shape_str(v.shape()));
    return *v.data();
}

template <class T>
detail::Node<T>& Tape<T>::push(const char* op)
{
    if (size_ >= std::numeric_limits<std::uint32_t>::max())
        throw std::length_error("xgrad: tape is full (2^32 nodes)");
    if (size_ == nodes_.size()) nodes_.emplace_back();
    detail::Node<T>& n = nodes_[size_];
    n.borrowed_ = nullptr;
    n.param_ = nullptr;
    n.op_ = op;
    n.input_begin_ = static_cast<std::uint32_t>(inputs_.size());
    n.input_count_ = 0;
    n.requires_grad_ = false;
    n.has_grad_ = false;
    n.scope_ = scope_stack_.back();
    n.backward_.reset();
    return n;
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

template <class T>
Var<T> Tape<T>::leaf(const char* op, bool requires_grad)
{
    detail::Node<T>& n = nodes_[size_ - 1];
    n.requires_grad_ = requires_grad;
    if (anomaly_)
        detail::check_finite_or_throw(n.value(), std::string("leaf '") + op + "' (#" + std::to_string(size_ - 1)
                                                     + " on the tape)");
    return Var<T>(this, static_cast<std::uint32_t>(size_ - 1), slot_, generation_);
}

template <class T>
Var<T> Tape<T>::variable(const Tensor<T>& value)
{
    detail::Node<T>& n = push("variable");
    n.value_.resize(value.shape());
    xt::noalias(n.value_) = value;
    ++size_;
    return leaf("variable", true);
}

template <class T>
Var<T> Tape<T>::constant(const Tensor<T>& value)
{
    detail::Node<T>& n = push("constant");
    n.value_.resize(value.shape());
    xt::noalias(n.value_) = value;
    ++size_;
    return leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::constant(T value)
{
    detail::Node<T>& n = push("constant");
    n.value_.resize(Shape{});
    *n.value_.data() = value;
    ++size_;
    return leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::borrow(const Tensor<T>& value)
{
    detail::Node<T>& n = push("constant");
    n.borrowed_ = &value;
    ++size_;
    return leaf("constant", false);
}

template <class T>
Var<T> Tape<T>::param(Parameter<T>& p)
{
    detail::Node<T>& n = push("param");
    n.borrowed_ = &p.value();
    n.param_ = &p;
    ++size_;
    return leaf("param", grad_enabled_);
}

template <class T>
Var<T> Tape<T>::detach(const Var<T>& v)
{
    check(v, "detach");
    const Tensor<T>& src = v.value();
    detail::Node<T>& n = push("detach");
    n.value_.resize(src.shape());
    xt::noalias(n.value_) = src;
    ++size_;
    return leaf("detach", false);
}

template <class T>
Var<T> Tape<T>::at(std::uint32_t i)
{
    if (i >= size_)
        throw std::out_of_range("xgrad: tape position " + std::to_string(i) + " >= size " + std::to_string(size_));
    return Var<T>(this, i, slot_, generation_);
}

template <class T>
void Tape<T>::validate(const char* op, const Var<T>* inputs, std::size_t n_inputs) const
{
    for (std::size_t k = 0; k < n_inputs; ++k) {
        if (!inputs[k].tape_)
            throw std::logic_error(std::string("xgrad: ") + op + ": input " + std::to_string(k) + " is an empty Var");
        if (inputs[k].tape_ != this)
            throw std::logic_error(std::string("xgrad: ") + op + ": input " + std::to_string(k)
                                   + " belongs to another tape (Vars of different tapes cannot be mixed)");
        check(inputs[k], op);
    }
}

template <class T>
OpBuilder<T> Tape<T>::begin_op(const char* op, const Var<T>* inputs, std::size_t n_inputs)
{
    validate(op, inputs, n_inputs);
    bool any = false;
    for (std::size_t k = 0; k < n_inputs; ++k) any = any || nodes_[inputs[k].index_].requires_grad_;
    detail::Node<T>& n = push(op);
    for (std::size_t k = 0; k < n_inputs; ++k) inputs_.push_back(inputs[k].index_);
    n.input_count_ = static_cast<std::uint32_t>(n_inputs);
    n.requires_grad_ = any && grad_enabled_;
    const auto index = static_cast<std::uint32_t>(size_);
    ++size_;
    if (before_op_) before_op_(index);
    return OpBuilder<T>(this, &n, index);
}

template <class T>
Var<T> Tape<T>::finish_op(std::uint32_t index)
{
    if (after_op_) after_op_(index);
    if (anomaly_) {
        const detail::Node<T>& n = nodes_[index];
        detail::check_finite_or_throw(n.value(), std::string("forward of op '") + n.op_ + "' (#"
                                                     + std::to_string(index) + " on the tape)");
    }
    return Var<T>(this, index, slot_, generation_);
}

template <class T>
void Tape<T>::backward(const Var<T>& output)
{
    check(output, "backward");
    const detail::Node<T>& n = nodes_[output.index_];
    if (n.value().size() != 1)
        throw std::logic_error("xgrad: backward() without a seed needs a one-element output, got shape "
                               + shape_str(n.value().shape())
                               + "; reduce it first (sum, mean) or pass a seed gradient of the same shape");
    start_sweep(output);
    detail::Node<T>& out = nodes_[output.index_];
    take_grad_buffer(out);
    std::fill(out.grad_.begin(), out.grad_.end(), T(1));
    out.has_grad_ = true;
    sweep(output.index_);
}

template <class T>
void Tape<T>::start_sweep(const Var<T>& output)
{
    const detail::Node<T>& out = nodes_[output.index_];
    if (!out.requires_grad_)
        throw std::logic_error(std::string("xgrad: backward(): the output ('") + out.op_ +
                               "') does not depend on anything that requires grad "
                               "(use tape.variable() or tape.param() for the inputs)");
    // Gradients of tape nodes hold the latest sweep only; parameters accumulate.
    for (std::size_t i = 0; i < size_; ++i) {
        detail::Node<T>& n = nodes_[i];
        if (n.has_grad_ && n.param_ == nullptr && n.backward_) recycle(n);  // last sweep's intermediate grads
        n.has_grad_ = false;
        n.grad_released_ = false;
    }
}

template <class T>
void Tape<T>::recycle(detail::Node<T>& n)
{
    // Every buffer put here is taken back by a later node of the same size, so the pool holds about
    // as many buffers as gradients are alive at once; the cap guards against odd graphs.
    // Small buffers stay with their node: pooling them would cost more time than it saves memory.
    if (n.grad_.size() < 1024 || grad_pool_.size() >= 256) return;
    grad_pool_.push_back(std::move(n.grad_));
    n.grad_.resize(Shape{0}, true);  // an empty, allocation-free state (a default xarray holds one element)
}

template <class T>
void Tape<T>::take_grad_buffer(detail::Node<T>& n)
{
    const std::size_t want = n.value().size();
    if (n.grad_.size() != want) {
        for (std::size_t k = 0; k < grad_pool_.size(); ++k)
            if (grad_pool_[k].size() == want) {
                n.grad_ = std::move(grad_pool_[k]);
                grad_pool_[k] = std::move(grad_pool_.back());
                grad_pool_.pop_back();
                break;
            }
    }
    n.grad_.resize(n.value().shape());
}

template <class T>
void Tape<T>::backward(const Var<T>& output, const Tensor<T>& seed)
{
    check(output, "backward");
    detail::Node<T>& out = nodes_[output.index_];
    if (seed.shape() != out.value().shape())
        throw ShapeError("backward: seed " + shape_str(seed.shape()) + " vs output " + shape_str(out.value().shape())
                         + ": the seed gradient must have the output's shape");
    start_sweep(output);
    take_grad_buffer(out);
    xt::noalias(out.grad_) = seed;
    out.has_grad_ = true;
    sweep(output.index_);
}

template <class T>
void Tape<T>::sweep(std::uint32_t from)
{
    for (std::uint32_t i = from + 1; i-- > 0;) {
        detail::Node<T>& n = nodes_[i];
        if (!n.has_grad_ || !n.backward_) continue;
        BackwardContext<T> ctx(*this, n, i);
        n.backward_(ctx);
        if (!retain_grad_) {  // its gradient has been passed on: give the buffer to the next node
            recycle(n);
            n.has_grad_ = false;
            n.grad_released_ = true;
        }
        if (anomaly_) {
            for (std::uint32_t k = 0; k < n.input_count_; ++k) {
                const std::uint32_t j = inputs_[n.input_begin_ + k];
                detail::Node<T>& in = nodes_[j];
                if (!in.requires_grad_ || !in.has_grad_) continue;
                detail::check_finite_or_throw(in.param_ ? in.param_->grad() : in.grad_,
                                              std::string("backward of op '") + n.op_ + "' (#" + std::to_string(i)
                                                  + " on the tape), gradient for its input " + std::to_string(k)
                                                  + " ('" + in.op_ + "' #" + std::to_string(j) + "),");
            }
        }
    }
}

template <class T>
void Tape<T>::throw_unusable(const Var<T>& v, const char* what)
{
    const std::string where = std::string("xgrad: ") + (std::string(what) == "Var" ? "" : std::string(what) + ": ");
    if (!v.tape_) throw std::logic_error(where + "use of an empty Var (default-constructed, never assigned)");
    throw std::logic_error(std::string("xgrad: ") + what + ": Var #" + std::to_string(v.index_) + " is stale: used after "
                           + detail::TapeSlots::why_stale(v.slot_, v.generation_));
}

template <class T>
Tape<T>::Tape()
{
    slot_ = detail::TapeSlots::acquire(generation_);
}

template <class T>
Tape<T>::~Tape()
{
    detail::TapeSlots::release(slot_);
}

template <class T>
void Tape<T>::clear()
{
    for (std::size_t i = 0; i < size_; ++i) {
        nodes_[i].backward_.reset();  // frees what closures captured; value/grad buffers stay
        nodes_[i].borrowed_ = nullptr;
        nodes_[i].param_ = nullptr;
    }
    size_ = 0;
    inputs_.clear();
    generation_ = detail::TapeSlots::advance(slot_);
}

template <class T>
void Tape<T>::shrink_to_fit()
{
    clear();
    nodes_.clear();
    nodes_.shrink_to_fit();
    grad_pool_.clear();
    grad_pool_.shrink_to_fit();
    inputs_.shrink_to_fit();
}

template class Tape<float>;
template class Tape<double>;
template class Var<float>;
template class Var<double>;

}  // namespace xgrad

#pragma once
// Internal: what a tape stores per node, its gradient buffers, and the table that tells whether a
// tape is still alive. Not part of the API; included by tape.hpp for its inline members.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "xgrad/inline_function.hpp"
#include "xgrad/parameter.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad {

template <class T>
class BackwardContext;
template <class T>
class GraphBackwardContext;

namespace detail {

/// Gradient buffers handed back during a sweep, reused by later nodes of the same size, so a long
/// graph needs about as many buffers as gradients alive at once.
template <class T>
class GradPool {
public:
    /// Takes buf's memory into the pool. Small buffers stay where they are (pooling them would
    /// cost more time than it saves memory); the cap guards against odd graphs.
    void give(Tensor<T>& buf)
    {
        if (buf.size() < 1024 || free_.size() >= 256) return;
        free_.push_back(std::move(buf));
        buf.resize(Shape{0}, true);  // an empty, allocation-free state (a default xarray holds one element)
    }
    /// Gives buf the shape `shape`, taking a pooled buffer of that size if buf is not.
    void take(Tensor<T>& buf, const Shape& shape)
    {
        const std::size_t want = shape_size(shape);
        if (buf.size() != want)
            for (std::size_t k = 0; k < free_.size(); ++k)
                if (free_[k].size() == want) {
                    buf = std::move(free_[k]);
                    free_[k] = std::move(free_.back());
                    free_.pop_back();
                    break;
                }
        buf.resize(shape);
    }
    void clear()
    {
        free_.clear();
        free_.shrink_to_fit();
    }

private:
    std::vector<Tensor<T>> free_;
};

/// The gradient of one node: the one owner of its buffer, and the buffer's one state machine.
/// An intermediate's buffer belongs to its slot (or, once released, to the tape's pool); a
/// parameter's gradient belongs to the Parameter, which accumulates across sweeps.
///
///     empty ──open()──▶ live ──release()──▶ released        (released: intermediates only)
///       ▲                                      │
///       └───────────── restart() ──────────────┘            (at the start of every sweep)
///
/// open() says whether the buffer already holds a gradient (add into it) or garbage (overwrite
/// it): every write of a gradient goes by that one answer. Reading: live → the buffer; empty →
/// zeros (backward did not reach the node); released → an error that says how to keep it.
template <class T>
class GradSlot {
public:
    enum class State : std::uint8_t { empty, live, released };

    /// A new node: no gradient yet; `p` (may be null) owns the gradient instead of the slot.
    void bind(Parameter<T>* p)
    {
        param_ = p;
        state_ = State::empty;
    }
    Parameter<T>* parameter() const { return param_; }
    State state() const { return state_; }

    /// The buffer a vector-Jacobian product goes into; `accumulate` is set when it already holds
    /// a gradient (add into it), cleared when it holds garbage (overwrite it).
    Tensor<T>& open(const Shape& shape, GradPool<T>& pool, bool& accumulate)
    {
        if (param_) {
            state_ = State::live;
            return param_->grad_for_write(accumulate);
        }
        if (state_ == State::released)  // a consumer after the release: impossible in a reverse sweep
            throw std::logic_error("xgrad: internal error: a gradient was written after its release");
        accumulate = state_ == State::live;
        if (!accumulate) {
            pool.take(buf_, shape);
            state_ = State::live;
        }
        return buf_;
    }
    /// The gradient, or nullptr when backward did not reach the node or released it.
    const Tensor<T>* get() const
    {
        if (state_ != State::live) return nullptr;
        return param_ ? &param_->grad() : &buf_;
    }
    /// An intermediate's own buffer (the output gradient an op's backward reads).
    const Tensor<T>& buffer() const { return buf_; }
    /// Zeros of `shape`, for reading a node backward did not reach (the state stays empty).
    const Tensor<T>& zeros(const Shape& shape) const
    {
        buf_.resize(shape);
        std::fill(buf_.begin(), buf_.end(), T(0));
        return buf_;
    }
    /// The gradient has been passed on: an intermediate's buffer goes back to the pool.
    void release(GradPool<T>& pool)
    {
        if (param_) return;
        pool.give(buf_);
        state_ = State::released;
    }
    /// Start of a sweep: forget the last one. A pooled node's buffer goes back to the pool; a
    /// leaf keeps its own (the same shape next time, so it is reused without the pool).
    void restart(GradPool<T>& pool, bool pooled)
    {
        if (pooled && state_ == State::live && !param_) pool.give(buf_);
        state_ = State::empty;
    }

private:
    mutable Tensor<T> buf_;  // mutable: zeros() materialises a zero gradient on read
    Parameter<T>* param_ = nullptr;
    State state_ = State::empty;
};

/// Inline capacity of a backward closure (both its sweeps' captures): captures up to this size live
/// in the node; larger ones allocate at every recording (keep large state in OpBuilder::saved()).
inline constexpr std::size_t closure_capacity = 112;

template <class T>
struct Node {
    Tensor<T> value_;                       // owned value (unused when borrowed_ is set)
    GradSlot<T> grad_;                      // dL/d(this node)
    Tensor<T> saved_;                       // op state for backward (e.g. im2col columns)
    std::vector<std::size_t> saved_index_;  // integer op state for backward (e.g. argmax positions)
    const Tensor<T>* borrowed_ = nullptr;   // value owned elsewhere (borrow() or a Parameter)
    const char* op_ = "";
    std::uint32_t input_begin_ = 0;
    std::uint32_t input_count_ = 0;
    std::uint32_t scope_ = 0;               // index into the tape's scope names (0: none)
    bool requires_grad_ = false;
    VjpClosure<BackwardContext<T>, GraphBackwardContext<T>, closure_capacity> backward_;

    const Tensor<T>& value() const { return borrowed_ ? *borrowed_ : value_; }
};

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

/// Friend access to a tape's nodes for internal tools (check_nodes).
template <class T>
struct TapeAccess;

}  // namespace detail
}  // namespace xgrad

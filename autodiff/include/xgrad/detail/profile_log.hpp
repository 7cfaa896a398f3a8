#pragma once
// Internal: what a tape writes when an xgrad::Profiler is attached (xgrad/profiler.hpp). The tape
// calls these between an op's begin and finish and around each node's backward; nothing when no
// profiler is attached (one null test per op).
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace xgrad::detail {

struct ProfileLog {
    using Clock = std::chrono::steady_clock;

    /// One (op, scope) pair: op names are the string literals ops record, scopes the tape's ids.
    struct Entry {
        const char* op_key;
        std::uint32_t scope_id;
        std::string op, scope;  // copied once, when the pair is first seen
        std::size_t forward_calls = 0, backward_calls = 0;
        Clock::duration forward{}, backward{};
    };

    void forward_begin(std::uint32_t index)
    {
        if (index >= started_.size()) started_.resize(std::size_t(index) + 1 + started_.size() / 2);
        started_[index] = Clock::now();
    }
    void forward_end(std::uint32_t index, const char* op, std::uint32_t scope_id, const std::string& scope)
    {
        if (index >= started_.size()) return;  // begun before the profiler was attached
        const Clock::duration d = Clock::now() - started_[index];
        Entry& e = entry(op, scope_id, scope);
        ++e.forward_calls;
        e.forward += d;
    }
    void backward(const char* op, std::uint32_t scope_id, const std::string& scope, Clock::duration d)
    {
        Entry& e = entry(op, scope_id, scope);
        ++e.backward_calls;
        e.backward += d;
    }
    void reset()
    {
        entries_.clear();
        sweeps_ = 0;
        since_ = Clock::now();
    }

    std::vector<Entry> entries_;
    std::size_t sweeps_ = 0;  // backward() sweeps since reset (xgrad::grad without create_graph runs one too)
    Clock::time_point since_ = Clock::now();
    void* tape_ = nullptr;  // the attached tape; null once it is destroyed

private:
    Entry& entry(const char* op, std::uint32_t scope_id, const std::string& scope)
    {
        // A model has a few dozen (op, scope) pairs: a linear scan from the last hit is cheaper than hashing.
        for (std::size_t k = 0; k < entries_.size(); ++k) {
            Entry& e = entries_[(last_ + k) % entries_.size()];
            if (e.op_key == op && e.scope_id == scope_id) {
                last_ = (last_ + k) % entries_.size();
                return e;
            }
        }
        entries_.push_back(Entry{op, scope_id, op, scope});
        last_ = entries_.size() - 1;
        return entries_.back();
    }

    std::vector<Clock::time_point> started_;  // by node index: when its forward began
    std::size_t last_ = 0;
};

}  // namespace xgrad::detail

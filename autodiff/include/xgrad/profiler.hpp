#pragma once
// Where a step's time goes, op by op: the wall time of each op's forward and of each node's
// backward on one tape, summed over the steps profiled (like torch.autograd.profiler's
// key_averages()). Times are the calling thread's wall clock, so an op split over threads counts
// its parallel region, waits included: profile at 1 and at 2 threads and compare op by op to see
// which ops do not scale.
//
//   xgrad::Profiler<float> prof(tape);
//   for (...) step();             // warm up
//   prof.reset();
//   for (...) step();
//   std::cout << prof.report().table();
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace xgrad {

template <class T>
class Tape;
namespace detail {
struct ProfileLog;
}

/// One row of a profile: an op, or an op within one scope (a layer, e.g. "net/0:Conv2d(1→6, 5×5)").
struct OpProfile {
    std::string op;
    std::string scope;  // empty when grouped by op only
    std::size_t forward_calls = 0;
    std::size_t backward_calls = 0;
    double forward_seconds = 0;
    double backward_seconds = 0;
    double total_seconds() const { return forward_seconds + backward_seconds; }
};

enum class ProfileGroup { op, scope_and_op };

/// A profile since the profiler was attached or last reset.
struct ProfileReport {
    std::vector<OpProfile> rows;  // largest total time first
    double wall_seconds = 0;      // since attach or reset, ops or not (optimizer steps, data, ...)
    std::size_t sweeps = 0;       // backward() sweeps (also those of xgrad::grad without create_graph): the steps, in a training loop
    double op_seconds() const;    // the sum of the rows
    /// A text table: per step (per sweep) when there were sweeps, else totals; `max_rows` 0 = all.
    std::string table(std::size_t max_rows = 0) const;
    /// The rows and totals as JSON (seconds, not per step).
    std::string json() const;
};

/// Times the ops recorded on one tape, and their backward in plain backward() sweeps, from
/// construction until destruction. One profiler per tape at a time (std::logic_error otherwise).
/// It may outlive the tape: it keeps what it measured. A recorded sweep (xgrad::grad with
/// create_graph) shows as the ops it records, in the forward column.
template <class T>
class Profiler {
public:
    explicit Profiler(Tape<T>& tape);
    ~Profiler();
    Profiler(const Profiler&) = delete;
    Profiler& operator=(const Profiler&) = delete;

    /// Moves to another tape, keeping the times so far (std::logic_error if that tape has a
    /// profiler already): for a program that starts a new tape but wants one profile.
    void attach(Tape<T>& tape);
    /// Forgets the times so far (after warm-up steps, say); the wall clock restarts.
    void reset();
    ProfileReport report(ProfileGroup by = ProfileGroup::op) const;

private:
    std::unique_ptr<detail::ProfileLog> log_;
};

extern template class Profiler<float>;
extern template class Profiler<double>;

}  // namespace xgrad

#pragma once
// DistributedDataParallel: data-parallel training of any nn::Module on MPI, as torch's
// DistributedDataParallel. Every rank holds a replica, runs forward and backward on its own shard of
// the batch; the gradients are averaged across ranks by all-reduces that start during the backward
// sweep, bucket by bucket, as soon as a bucket's gradients are final (Tape's BackwardHooks).
#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include <mpi.h>

#include "xgrad/nn/module.hpp"
#include "xgrad/options.hpp"

namespace xgrad::distributed {

class DataParallelOptions {
public:
    /// Bytes of gradient per all-reduce (torch's bucket_cap_mb, 25 MiB). A bucket closes once it
    /// holds at least this many bytes, so 1 gives one parameter per bucket and SIZE_MAX one bucket.
    XGRAD_ARG(std::size_t, bucket_cap_bytes) = std::size_t(25) << 20;
    /// The processes that train together (duplicated: the wrapper's traffic never mixes with yours).
    XGRAD_ARG(MPI_Comm, comm) = MPI_COMM_WORLD;
    /// forward() checks that every rank's input has rank 0's shape (one small all-reduce per step;
    /// a differing rank makes every rank throw std::invalid_argument naming both shapes).
    XGRAD_ARG(bool, check_input_shapes) = true;
    /// forward() first copies rank 0's buffers (BatchNorm's running statistics) to every rank, as
    /// torch's broadcast_buffers: the replicas' buffers stay rank 0's between steps.
    XGRAD_ARG(bool, broadcast_buffers) = true;
};

template <class T>
class DistributedDataParallel {
public:
    using Clock = std::chrono::steady_clock;

    /// Wraps `module` (not owned; it must outlive the wrapper). Collective: every rank of the
    /// communicator makes one. Checks that every rank's parameters and buffers have rank 0's count
    /// and shapes (else every rank throws std::invalid_argument naming the first differing rank's
    /// value and rank 0's), then copies rank 0's parameters and buffers to all ranks.
    explicit DistributedDataParallel(nn::Module<T>& module, DataParallelOptions options = {});
    ~DistributedDataParallel();
    DistributedDataParallel(const DistributedDataParallel&) = delete;
    DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

    /// The module's forward. When the tape records gradients, first checks that x has rank 0's shape
    /// on every rank (check_input_shapes) and copies rank 0's buffers (broadcast_buffers); collective.
    /// When, moreover, synchronization is on (outside no_sync()), installs the backward hooks that start each bucket's all-reduce during the next
    /// tape.backward() (which counts the module's parameter leaves on the complete record first, so
    /// loss terms recorded after forward, such as a weight penalty, are waited for).
    Var<T> forward(const Var<T>& x);
    Var<T> operator()(const Var<T>& x) { return forward(x); }

    /// Any other forward of the module (torch's DDP forwards any arguments): `run()` records the
    /// module's forward on `tape` from whatever it takes (token ids, carried states, several inputs)
    /// and returns the output; around it, the same checks, buffer copy and hooks as forward(x), with
    /// `input_shape` the shape every rank must share. Collective, like forward(x).
    template <class Run>
    Var<T> forward_with(Tape<T>& tape, const Shape& input_shape, Run&& run)
    {
        before_forward(tape, input_shape);
        Var<T> y = run();
        after_forward(tape, y);
        return y;
    }

    /// Waits for every bucket's all-reduce (starting those the sweep did not reach) and writes the
    /// averaged gradients back into the parameters. Call after backward, before the optimizer step.
    /// Nothing to do after a forward under no_sync().
    void finish_gradient_synchronization();

    /// While the returned guard lives, forward() installs no hooks: gradients accumulate locally
    /// (gradient accumulation); the first backward after it averages the accumulated sums.
    class NoSyncGuard {
    public:
        explicit NoSyncGuard(DistributedDataParallel& d) : d_(d), prev_(d.sync_) { d.sync_ = false; }
        ~NoSyncGuard() { d_.sync_ = prev_; }
        NoSyncGuard(const NoSyncGuard&) = delete;
        NoSyncGuard& operator=(const NoSyncGuard&) = delete;

    private:
        DistributedDataParallel& d_;
        bool prev_;
    };
    [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

    nn::Module<T>& module() { return module_; }
    std::vector<Parameter<T>*> parameters() { return params_; }
    int rank() const { return rank_; }
    int world_size() const { return size_; }

    /// The buckets: indices into parameters(), in the order their all-reduces start (reverse
    /// registration order).
    const std::vector<std::vector<std::size_t>>& buckets() const { return bucket_params_; }
    /// When each bucket's all-reduce started in the latest synchronized step (bucket order), and
    /// when that step's backward sweep ended: what the overlap test and the benchmarks read.
    const std::vector<Clock::time_point>& bucket_start_times() const { return start_times_; }
    Clock::time_point backward_end_time() const { return backward_end_; }
    /// How many buckets started before the latest synchronized step's sweep ended.
    std::size_t buckets_started_in_backward() const { return started_in_backward_; }

private:
    struct Bucket {
        std::vector<T> buffer;        // the bucket's gradients, flat, reduced in place
        std::vector<std::size_t> offsets;
        std::size_t pending = 0;      // parameters whose gradient is not final yet
        MPI_Request request = MPI_REQUEST_NULL;
        bool started = false;
    };
    void before_forward(Tape<T>& tape, const Shape& input_shape);
    void after_forward(Tape<T>& tape, const Var<T>& y);
    void check_replicas();
    void check_input_shape(const Shape& shape);
    /// Collective: throws std::invalid_argument on every rank with the lowest rank's non-empty `why`.
    void agree_or_throw(std::string why);
    void broadcast_state();
    void broadcast_buffers();
    void prepare_for_backward(Tape<T>& tape, const Var<T>& anchor);
    void count_leaves(Tape<T>& tape);
    void on_param_ready(Tape<T>& tape, Parameter<T>& p);
    void start_ready_buckets();
    void progress();
    void start(std::size_t b);
    void remove_hooks();

    nn::Module<T>& module_;
    DataParallelOptions options_;
    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1;
    std::vector<Parameter<T>*> params_;
    std::vector<Tensor<T>*> buffers_;
    std::unordered_map<const Parameter<T>*, std::size_t> index_of_;
    std::vector<std::size_t> bucket_of_;  // parameter index -> bucket
    std::vector<std::vector<std::size_t>> bucket_params_;
    std::vector<Bucket> buckets_;
    std::vector<std::size_t> leaves_left_;  // per parameter: its leaves the sweep has not passed yet
    std::size_t next_bucket_ = 0;           // buckets start strictly in order, the same on every rank
    std::size_t first_open_ = 0;            // buckets before it have completed their all-reduce
    bool prepared_ = false;                 // hooks installed, a synchronization pending
    bool counted_ = false;                  // leaves_left_ counted for this sweep
    bool sync_ = true;
    Var<T> anchor_;  // a Var of the hooked record: valid() says whether the hooks are still there
    std::vector<Clock::time_point> start_times_;
    Clock::time_point backward_end_;
    std::size_t started_in_backward_ = 0;
};

extern template class DistributedDataParallel<float>;
extern template class DistributedDataParallel<double>;

}  // namespace xgrad::distributed

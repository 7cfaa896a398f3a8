#pragma once
// DistributedSampler: each rank's share of an epoch, as torch.utils.data.DistributedSampler.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace xgrad::distributed {

/// Splits each epoch's permutation of 0..n−1 (nn::epoch_order(n, seed, epoch): the same on every
/// rank) into `num_replicas` disjoint shards of equal size; rank r takes positions r, r + R, r + 2R…
/// (R = num_replicas), so R ranks with per-rank batch b see, step by step, exactly the samples one
/// process with batch R·b sees. When R does not divide n, as PyTorch: drop_last = false pads the
/// permutation with its own first indices up to the next multiple of R (a few samples counted twice);
/// drop_last = true drops its last n mod R entries. shuffle = false uses 0..n−1 in order.
class DistributedSampler {
public:
    /// std::invalid_argument if num_replicas < 1 or rank is not in [0, num_replicas).
    DistributedSampler(std::size_t n, int num_replicas, int rank, bool shuffle = true, std::uint64_t seed = 0,
                       bool drop_last = false);
    /// Picks the epoch's permutation (call at the start of every epoch, as in PyTorch).
    void set_epoch(std::size_t epoch) { epoch_ = epoch; }
    std::size_t epoch() const { return epoch_; }
    /// This rank's indices for the current epoch, num_samples() of them.
    std::vector<std::size_t> indices() const;
    /// Per rank: ceil(n / R), or floor(n / R) with drop_last.
    std::size_t num_samples() const { return num_samples_; }
    /// num_samples() · R.
    std::size_t total_size() const { return num_samples_ * std::size_t(num_replicas_); }

private:
    std::size_t n_;
    int num_replicas_, rank_;
    bool shuffle_;
    std::uint64_t seed_;
    std::size_t epoch_ = 0;
    std::size_t num_samples_;
};

}  // namespace xgrad::distributed

#include "xgrad/distributed/sampler.hpp"

#include <numeric>
#include <stdexcept>

#include <fmt/core.h>

#include "xgrad/nn/data.hpp"

namespace xgrad::distributed {

DistributedSampler::DistributedSampler(std::size_t n, int num_replicas, int rank, bool shuffle, std::uint64_t seed,
                                       bool drop_last)
    : n_(n), num_replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed)
{
    if (num_replicas < 1)
        throw std::invalid_argument(fmt::format("DistributedSampler: num_replicas must be >= 1, got {}", num_replicas));
    if (rank < 0 || rank >= num_replicas)
        throw std::invalid_argument(
            fmt::format("DistributedSampler: rank must be in [0, {}), got {}", num_replicas, rank));
    const auto r = std::size_t(num_replicas);
    num_samples_ = drop_last ? n / r : (n + r - 1) / r;
}

std::vector<std::size_t> DistributedSampler::indices() const
{
    std::vector<std::size_t> order;
    if (shuffle_) {
        order = nn::epoch_order(n_, seed_, epoch_);
    } else {
        order.resize(n_);
        std::iota(order.begin(), order.end(), std::size_t(0));
    }
    const std::size_t total = total_size();
    // Pad by repeating the permutation from its start (torch's drop_last=False), or cut the tail.
    for (std::size_t i = 0; order.size() < total; ++i) order.push_back(order[i % n_]);
    order.resize(total);
    std::vector<std::size_t> mine;
    mine.reserve(num_samples_);
    for (std::size_t i = std::size_t(rank_); i < total; i += std::size_t(num_replicas_)) mine.push_back(order[i]);
    return mine;
}

}  // namespace xgrad::distributed

#include "xgrad/distributed/data_parallel.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <stdexcept>

#include <fmt/core.h>

#include "xgrad/distributed/mpi.hpp"

namespace xgrad::distributed {

namespace {

int as_count(std::size_t n, const char* what)
{
    if (n > std::size_t(INT_MAX))
        throw std::length_error(fmt::format("DistributedDataParallel: {} of {} elements is more than MPI's int count", what, n));
    return int(n);
}

// Count, then each tensor's rank and extents: what must agree across ranks.
template <class Tensors>
void append_signature(std::vector<long long>& sig, const Tensors& tensors)
{
    sig.push_back((long long)tensors.size());
    for (const auto& [name, t] : tensors) {
        sig.push_back((long long)t->shape().size());
        for (auto d : t->shape()) sig.push_back((long long)d);
    }
}

std::string shape_of(const std::vector<long long>& sig, std::size_t& pos)
{
    const auto nd = std::size_t(sig[pos++]);
    std::string s = "(";
    for (std::size_t k = 0; k < nd; ++k) s += (k ? "," : "") + std::to_string(sig[pos++]);
    return s + ")";
}

}  // namespace

template <class T>
DistributedDataParallel<T>::DistributedDataParallel(nn::Module<T>& module, DataParallelOptions options)
    : module_(module), options_(options)
{
    check_mpi(MPI_Comm_dup(options_.comm(), &comm_), "MPI_Comm_dup");
    // Errors come back as codes (MpiError, which run_or_abort turns into MPI_Abort naming the rank).
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    params_ = module_.parameters();
    buffers_ = module_.buffers();
    for (std::size_t k = 0; k < params_.size(); ++k) index_of_[params_[k]] = k;
    try {
        check_replicas();
        broadcast_state();
    } catch (...) {
        MPI_Comm_free(&comm_);  // no destructor runs for a half-made object
        throw;
    }

    // Buckets in reverse registration order: roughly the order backward finishes the gradients.
    bucket_of_.assign(params_.size(), 0);
    std::size_t bytes = 0;
    for (std::size_t k = params_.size(); k-- > 0;) {
        if (bucket_params_.empty() || bytes >= options_.bucket_cap_bytes()) {
            bucket_params_.emplace_back();
            bytes = 0;
        }
        bucket_params_.back().push_back(k);
        bucket_of_[k] = bucket_params_.size() - 1;
        bytes += params_[k]->size() * sizeof(T);
    }
    buckets_.resize(bucket_params_.size());
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
        std::size_t n = 0;
        for (std::size_t k : bucket_params_[b]) {
            buckets_[b].offsets.push_back(n);
            n += params_[k]->size();
        }
        buckets_[b].buffer.resize(n);
        as_count(n, "a bucket");
    }
    leaves_left_.assign(params_.size(), 0);
}

template <class T>
DistributedDataParallel<T>::~DistributedDataParallel()
{
    remove_hooks();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    // An all-reduce still writing into a bucket must end before the bucket goes; not while an
    // exception unwinds (the job is being aborted, and a peer may never answer).
    if (std::uncaught_exceptions() == 0)
        for (Bucket& b : buckets_)
            if (b.request != MPI_REQUEST_NULL) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
    MPI_Comm_free(&comm_);
}

template <class T>
void DistributedDataParallel<T>::check_replicas()
{
    std::vector<long long> mine;
    append_signature(mine, module_.named_parameters());
    append_signature(mine, module_.named_buffers());
    long long n0 = (long long)mine.size();
    check_mpi(MPI_Bcast(&n0, 1, MPI_LONG_LONG, 0, comm_), "MPI_Bcast");
    std::vector<long long> root = rank_ == 0 ? mine : std::vector<long long>(std::size_t(n0));
    check_mpi(MPI_Bcast(root.data(), as_count(root.size(), "the signature"), MPI_LONG_LONG, 0, comm_), "MPI_Bcast");

    // Each rank describes its first difference from rank 0; the lowest differing rank's text is
    // sent to all, so every rank throws the same message and none is left waiting.
    std::string why;
    const auto pnames = module_.named_parameters();
    const auto bnames = module_.named_buffers();
    std::size_t pos_root = 0, pos_mine = 0;
    auto compare = [&](const char* kind, const std::vector<std::string>& names) {
        const long long c0 = root[pos_root++], c = mine[pos_mine++];
        if (c != c0) {
            why = fmt::format("DistributedDataParallel: rank {} has {} {}s, rank 0 has {}", rank_, c, kind, c0);
            return;
        }
        for (std::size_t k = 0; k < std::size_t(c); ++k) {
            const std::string s0 = shape_of(root, pos_root), s = shape_of(mine, pos_mine);
            if (s != s0) {
                why = fmt::format("DistributedDataParallel: {} {} ('{}') has shape {} on rank {}, {} on rank 0", kind, k,
                                  names[k], s, rank_, s0);
                return;
            }
        }
    };
    std::vector<std::string> names;
    for (const auto& [n, p] : pnames) names.push_back(n);
    compare("parameter", names);
    if (why.empty()) {
        names.clear();
        for (const auto& [n, b] : bnames) names.push_back(n);
        compare("buffer", names);
    }
    agree_or_throw(why);
}

template <class T>
void DistributedDataParallel<T>::agree_or_throw(std::string why)
{
    int first_bad = why.empty() ? size_ : rank_;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
    if (first_bad == size_) return;
    int len = int(why.size());
    check_mpi(MPI_Bcast(&len, 1, MPI_INT, first_bad, comm_), "MPI_Bcast");
    why.resize(std::size_t(len));
    check_mpi(MPI_Bcast(why.data(), len, MPI_CHAR, first_bad, comm_), "MPI_Bcast");
    throw std::invalid_argument(why);
}

template <class T>
void DistributedDataParallel<T>::check_input_shape(const Shape& shape)
{
    // Common case, one all-reduce: the minimum of (rank, extents) and of their negatives; all ranks
    // agree iff min == max everywhere. Extents past the 8th are not compared.
    constexpr std::size_t n = 9;
    long long v[2 * n] = {};
    v[0] = (long long)shape.size();
    for (std::size_t k = 0; k < shape.size() && k + 1 < n; ++k) v[k + 1] = (long long)shape[k];
    for (std::size_t k = 0; k < n; ++k) v[n + k] = -v[k];
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, v, int(2 * n), MPI_LONG_LONG, MPI_MIN, comm_), "MPI_Allreduce");
    bool same = true;
    for (std::size_t k = 0; k < n; ++k) same = same && v[k] == -v[n + k];
    if (same) return;
    // They differ: rank 0's shape to all, the first rank that differs names itself and rank 0.
    long long root[n] = {};
    root[0] = (long long)shape.size();
    for (std::size_t k = 0; k < shape.size() && k + 1 < n; ++k) root[k + 1] = (long long)shape[k];
    check_mpi(MPI_Bcast(root, int(n), MPI_LONG_LONG, 0, comm_), "MPI_Bcast");
    Shape shape0;
    for (long long k = 0; k < root[0] && k + 1 < (long long)n; ++k) shape0.push_back(std::size_t(root[k + 1]));
    std::string why;
    if (shape0 != shape)
        why = fmt::format("DistributedDataParallel: input of shape {} on rank {}, {} on rank 0", shape_str(shape), rank_,
                          shape_str(shape0));
    agree_or_throw(why);
}

template <class T>
void DistributedDataParallel<T>::broadcast_state()
{
    for (Parameter<T>* p : params_)
        check_mpi(MPI_Bcast(p->value().data(), as_count(p->size(), "a parameter"), mpi_type<T>(), 0, comm_),
                  "MPI_Bcast");
    broadcast_buffers();
}

template <class T>
void DistributedDataParallel<T>::broadcast_buffers()
{
    for (Tensor<T>* b : buffers_)
        check_mpi(MPI_Bcast(b->data(), as_count(b->size(), "a buffer"), mpi_type<T>(), 0, comm_), "MPI_Bcast");
}

template <class T>
Var<T> DistributedDataParallel<T>::forward(const Var<T>& x)
{
    return forward_with(x.tape(), x.shape(), [&] { return module_.forward(x); });
}

template <class T>
void DistributedDataParallel<T>::before_forward(Tape<T>& tape, const Shape& input_shape)
{
    if (options_.check_input_shapes() && tape.grad_enabled()) check_input_shape(input_shape);
    if (options_.broadcast_buffers() && tape.grad_enabled()) broadcast_buffers();
}

template <class T>
void DistributedDataParallel<T>::after_forward(Tape<T>& tape, const Var<T>& y)
{
    if (&y.tape() != &tape)
        throw std::invalid_argument("DistributedDataParallel::forward_with: the output is not on the tape passed in");
    if (sync_ && tape.grad_enabled()) prepare_for_backward(tape, y);
}

template <class T>
void DistributedDataParallel<T>::prepare_for_backward(Tape<T>& tape, const Var<T>& anchor)
{
    if (prepared_ && next_bucket_ > 0)
        throw std::logic_error("DistributedDataParallel: forward() while the previous step's gradients are being "
                               "averaged: call finish_gradient_synchronization() after backward()");
    next_bucket_ = 0;
    first_open_ = 0;
    counted_ = false;
    start_times_.assign(buckets_.size(), Clock::time_point{});
    backward_end_ = Clock::time_point{};
    started_in_backward_ = 0;
    BackwardHooks<T> hooks;
    // The hooks belong to this tape's record, so `tape` is alive whenever they run.
    hooks.param_ready = [this, &tape](Parameter<T>& p, std::uint32_t) { on_param_ready(tape, p); };
    hooks.node_done = [this](std::uint32_t) { progress(); };
    hooks.sweep_done = [this] {
        backward_end_ = Clock::now();
        started_in_backward_ = next_bucket_;
    };
    tape.set_backward_hooks(std::move(hooks));
    anchor_ = anchor;
    prepared_ = true;
}

template <class T>
void DistributedDataParallel<T>::count_leaves(Tape<T>& tape)
{
    // Counted when the sweep starts, not at forward(): the record is complete by then (a loss term
    // such as a weight penalty may put parameters on the tape after forward). A parameter's gradient
    // is final once the sweep has passed all of its leaves.
    std::fill(leaves_left_.begin(), leaves_left_.end(), 0);
    for (std::uint32_t i = 0; i < tape.size(); ++i)
        if (Parameter<T>* p = tape.at(i).parameter()) {
            auto it = index_of_.find(p);
            if (it != index_of_.end()) ++leaves_left_[it->second];
        }
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
        buckets_[b].pending = 0;
        for (std::size_t k : bucket_params_[b]) buckets_[b].pending += leaves_left_[k] > 0;  // unused: final now
    }
    counted_ = true;
}

template <class T>
void DistributedDataParallel<T>::on_param_ready(Tape<T>& tape, Parameter<T>& p)
{
    if (!counted_) count_leaves(tape);
    auto it = index_of_.find(&p);
    if (it == index_of_.end()) return;  // not this module's
    const std::size_t k = it->second;
    if (leaves_left_[k] == 0)
        throw std::logic_error(fmt::format("DistributedDataParallel: backward passed parameter '{}' again: one "
                                           "backward() per forward(), then finish_gradient_synchronization()",
                                           p.name()));
    if (--leaves_left_[k] == 0) --buckets_[bucket_of_[k]].pending;
    start_ready_buckets();
    progress();
}

template <class T>
void DistributedDataParallel<T>::progress()
{
    // Open MPI advances a non-blocking collective only inside MPI calls: between the sweep's nodes,
    // give the oldest unfinished all-reduce a turn (they complete in order).
    while (first_open_ < next_bucket_) {
        Bucket& b = buckets_[first_open_];
        if (b.request != MPI_REQUEST_NULL) {
            int done = 0;
            check_mpi(MPI_Test(&b.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
            if (!done) return;
        }
        ++first_open_;
    }
}

template <class T>
void DistributedDataParallel<T>::start_ready_buckets()
{
    // Strictly in bucket order: every rank then issues the same collectives in the same order.
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) start(next_bucket_++);
}

template <class T>
void DistributedDataParallel<T>::start(std::size_t b)
{
    Bucket& bucket = buckets_[b];
    const auto& ks = bucket_params_[b];
    for (std::size_t j = 0; j < ks.size(); ++j) {
        const Tensor<T>& g = params_[ks[j]]->grad();
        const std::size_t end = j + 1 < ks.size() ? bucket.offsets[j + 1] : bucket.buffer.size();
        if (g.size() != end - bucket.offsets[j])  // the buckets were laid out at construction
            throw std::logic_error(fmt::format("DistributedDataParallel: parameter '{}' has {} elements, {} when the "
                                               "wrapper was made: make the wrapper after changing the model",
                                               params_[ks[j]]->name(), g.size(), end - bucket.offsets[j]));
        std::copy(g.data(), g.data() + g.size(), bucket.buffer.data() + bucket.offsets[j]);
    }
    start_times_[b] = Clock::now();
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, bucket.buffer.data(), int(bucket.buffer.size()), mpi_type<T>(), MPI_SUM,
                             comm_, &bucket.request),
              "MPI_Iallreduce");
}

template <class T>
void DistributedDataParallel<T>::finish_gradient_synchronization()
{
    if (!prepared_) return;
    remove_hooks();
    // Buckets the sweep did not complete (leaves recorded after the output, no backward at all)
    // start now, in order, with the gradients as they are.
    for (Bucket& b : buckets_) b.pending = 0;
    start_ready_buckets();
    prepared_ = false;
    const T scale = T(size_);
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
        Bucket& bucket = buckets_[b];
        check_mpi(MPI_Wait(&bucket.request, MPI_STATUS_IGNORE), "MPI_Wait");
        const auto& ks = bucket_params_[b];
        for (std::size_t j = 0; j < ks.size(); ++j) {
            Tensor<T>& g = params_[ks[j]]->grad();
            const T* src = bucket.buffer.data() + bucket.offsets[j];
            T* dst = g.data();
            for (std::size_t e = 0; e < g.size(); ++e) dst[e] = src[e] / scale;
        }
    }
}

template <class T>
void DistributedDataParallel<T>::remove_hooks()
{
    if (anchor_.valid()) anchor_.tape().set_backward_hooks({});
    anchor_ = Var<T>();
}

template class DistributedDataParallel<float>;
template class DistributedDataParallel<double>;

}  // namespace xgrad::distributed

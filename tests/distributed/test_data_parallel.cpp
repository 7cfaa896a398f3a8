// xgrad::distributed on 2 ranks (mpiexec -n 2, tests/CMakeLists.txt): DistributedDataParallel gives
// one process's parameters, its all-reduces start during backward, bucketing changes nothing, and
// replicas that differ fail on every rank with a message naming both ranks.
#define BOOST_TEST_MODULE distributed_data_parallel
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>

#include "xgrad/distributed.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
namespace dist = xgrad::distributed;

struct MpiFixture {
    MpiFixture() { MPI_Init(nullptr, nullptr); }
    ~MpiFixture() { MPI_Finalize(); }
};
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

constexpr std::size_t steps = 20;     // K
constexpr std::size_t batch = 8;      // B: one process; each of the 2 ranks takes B/2
constexpr std::uint64_t data_seed = 7;

template <class T>
struct Data {
    Tensor<T> x;          // (N, ...)
    IndexTensor labels;   // (N)
};

// N = K·B random samples of shape `sample` with labels in 0..9, the same on every rank.
template <class T>
Data<T> make_data(const Shape& sample)
{
    Shape s{steps * batch};
    s.insert(s.end(), sample.begin(), sample.end());
    Data<T> d{rand_uniform<T>(s, 11, T(0), T(1)), IndexTensor::from_shape({steps * batch})};
    for (std::size_t i = 0; i < d.labels.size(); ++i) d.labels(i) = Index((i * 7 + 3) % 10);
    return d;
}

template <class T>
void gather(const Data<T>& d, const std::vector<std::size_t>& rows, Tensor<T>& x, IndexTensor& labels)
{
    Shape s = d.x.shape();
    const std::size_t row = d.x.size() / s[0];
    s[0] = rows.size();
    x.resize(s);
    labels.resize({rows.size()});
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::copy(d.x.data() + rows[i] * row, d.x.data() + (rows[i] + 1) * row, x.data() + i * row);
        labels(i) = d.labels(rows[i]);
    }
}

template <class T>
std::unique_ptr<nn::Module<T>> make_model(const std::string& kind, std::size_t hidden = 128)
{
    if (kind == "lenet") return reference::lenet<T>(3, true);
    if (kind == "lenet_avg") return reference::lenet<T>(3, false);
    return std::make_unique<nn::MLP<T>>(std::vector<std::size_t>{784, 256, hidden, 10}, nn::Activation::relu,
                                        nn::Activation::identity, 3);
}

template <class T>
Shape sample_shape(const std::string& kind)
{
    return kind.rfind("lenet", 0) == 0 ? Shape{1, 28, 28} : Shape{784};
}

// K steps of SGD with momentum on one process, batch B: batch s is order[sB, (s+1)B).
template <class T>
std::vector<Tensor<T>> train_single(const std::string& kind, const Data<T>& d)
{
    auto model = make_model<T>(kind);
    nn::SGD<T> opt(model->parameters(), nn::SGDOptions(0.05).momentum(0.9));
    const auto order = nn::epoch_order(d.labels.size(), data_seed, 0);
    Tape<T> tape;
    Tensor<T> x;
    IndexTensor y;
    for (std::size_t s = 0; s < steps; ++s) {
        tape.clear();
        opt.zero_grad();
        gather(d, std::vector<std::size_t>(order.begin() + s * batch, order.begin() + (s + 1) * batch), x, y);
        tape.backward(cross_entropy((*model)(tape.borrow(x)), y));
        opt.step();
    }
    std::vector<Tensor<T>> out;
    for (auto* p : model->parameters()) out.push_back(p->value());
    return out;
}

// The same K steps on this rank's shard (DistributedSampler), batch B/2, through DDP.
template <class T>
std::vector<Tensor<T>> train_ddp(const std::string& kind, const Data<T>& d, std::size_t bucket_cap,
                                 dist::DistributedDataParallel<T>** keep = nullptr,
                                 std::unique_ptr<nn::Module<T>>* keep_model = nullptr)
{
    auto model = make_model<T>(kind);
    auto ddp = std::make_unique<dist::DistributedDataParallel<T>>(*model,
                                                                  dist::DataParallelOptions().bucket_cap_bytes(bucket_cap));
    nn::SGD<T> opt(ddp->parameters(), nn::SGDOptions(0.05).momentum(0.9));
    dist::DistributedSampler sampler(d.labels.size(), ddp->world_size(), ddp->rank(), true, data_seed);
    sampler.set_epoch(0);
    const auto mine = sampler.indices();
    const std::size_t b = batch / std::size_t(ddp->world_size());
    Tape<T> tape;
    Tensor<T> x;
    IndexTensor y;
    for (std::size_t s = 0; s < steps; ++s) {
        tape.clear();
        opt.zero_grad();
        gather(d, std::vector<std::size_t>(mine.begin() + s * b, mine.begin() + (s + 1) * b), x, y);
        tape.backward(cross_entropy((*ddp)(tape.borrow(x)), y));
        ddp->finish_gradient_synchronization();
        opt.step();
    }
    std::vector<Tensor<T>> out;
    for (auto* p : model->parameters()) out.push_back(p->value());
    if (keep) *keep = ddp.release();
    if (keep_model) *keep_model = std::move(model);
    return out;
}

// max |a − b| / max |b| per parameter.
template <class T>
double worst_relative(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b)
{
    BOOST_TEST_REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
        BOOST_TEST_REQUIRE(a[k].shape() == b[k].shape());
        double diff = 0, scale = 0;
        for (std::size_t i = 0; i < a[k].size(); ++i) {
            diff = std::max(diff, std::abs(double(a[k].data()[i]) - double(b[k].data()[i])));
            scale = std::max(scale, std::abs(double(b[k].data()[i])));
        }
        worst = std::max(worst, diff / scale);
    }
    return worst;
}

// Not bitwise: each rank averages the loss over B/2 samples and its GEMMs sum the weight gradient
// over B/2 rows; the all-reduce then adds the two halves and halves the sum. One process sums all
// B rows in one GEMM and divides by B. Same terms, another summation order, so the parameters agree
// to rounding grown over K steps (float64 ε = 1.1e-16, float32 ε = 6e-8), not to the last bit.
template <class T>
void check_equivalence(const std::string& kind, double tol)
{
    const auto d = make_data<T>(sample_shape<T>(kind));
    const auto single = train_single<T>(kind, d);
    const auto ddp = train_ddp<T>(kind, d, std::size_t(25) << 20);
    const double worst = worst_relative(ddp, single);
    BOOST_TEST_MESSAGE(kind << " rank " << dist::rank() << ": worst relative difference " << worst);
    BOOST_TEST(worst <= tol);
    // And the training moved the weights: the comparison is not of two initializations.
    auto init = make_model<T>(kind);
    std::vector<Tensor<T>> init_values;
    for (auto* p : init->parameters()) init_values.push_back(p->value());
    BOOST_TEST(worst_relative(init_values, single) > 1e-3);
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_ranks)
{
    BOOST_TEST_REQUIRE(dist::world_size() == 2, "run under mpiexec -n 2");
}

BOOST_AUTO_TEST_CASE(sampler_shards_are_disjoint_equal_and_cover_the_permutation)
{
    const auto order = nn::epoch_order(10, 5, 3);
    dist::DistributedSampler s0(10, 2, 0, true, 5), s1(10, 2, 1, true, 5);
    s0.set_epoch(3);
    s1.set_epoch(3);
    const auto a = s0.indices(), b = s1.indices();
    BOOST_TEST(a.size() == 5u);
    BOOST_TEST(b.size() == 5u);
    for (std::size_t i = 0; i < 5; ++i) {  // strided: rank r takes positions r, r + 2, ...
        BOOST_TEST(a[i] == order[2 * i]);
        BOOST_TEST(b[i] == order[2 * i + 1]);
    }
    // 3 replicas of 10: padded to 12 with the permutation's first two entries, or cut to 9.
    std::multiset<std::size_t> padded, cut;
    for (int r = 0; r < 3; ++r) {
        dist::DistributedSampler p(10, 3, r, true, 5), c(10, 3, r, true, 5, true);
        p.set_epoch(3);
        c.set_epoch(3);
        BOOST_TEST(p.num_samples() == 4u);
        BOOST_TEST(c.num_samples() == 3u);
        for (auto i : p.indices()) padded.insert(i);
        for (auto i : c.indices()) cut.insert(i);
    }
    BOOST_TEST(padded.size() == 12u);
    BOOST_TEST(padded.count(order[0]) == 2u);
    BOOST_TEST(padded.count(order[1]) == 2u);
    BOOST_TEST(cut.size() == 9u);
    BOOST_TEST(cut.count(order[9]) == 0u);
    BOOST_TEST(std::set<std::size_t>(cut.begin(), cut.end()).size() == 9u);
    dist::DistributedSampler other_epoch(10, 2, 0, true, 5);
    other_epoch.set_epoch(4);
    BOOST_TEST(other_epoch.indices() != a);
    BOOST_CHECK_THROW(dist::DistributedSampler(10, 2, 2), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(mlp_double_matches_one_process)
{
    check_equivalence<double>("mlp", 1e-12);
}

BOOST_AUTO_TEST_CASE(mlp_float_matches_one_process)
{
    check_equivalence<float>("mlp", 1e-5);
}

BOOST_AUTO_TEST_CASE(lenet_double_matches_one_process)
{
    check_equivalence<double>("lenet", 1e-12);
}

// Average pooling in float: max pooling's gradient jumps when two window entries swap order, and in
// float32 near-ties (1 ulp apart) swap under rounding-level differences, then SGD amplifies the jump:
// with max pooling, about 1 in 75 data seeds drifts to 1e-4..1e-2 on either convolution path (im2col
// or oneDNN). Double keeps max pooling: its differences (1e-16) swap no ties.
BOOST_AUTO_TEST_CASE(lenet_float_matches_one_process)
{
    check_equivalence<float>("lenet_avg", 1e-5);
}

BOOST_AUTO_TEST_CASE(buckets_start_during_backward_and_do_not_change_the_result)
{
    const auto d = make_data<double>(sample_shape<double>("lenet"));
    dist::DistributedDataParallel<double>* per_param = nullptr;
    std::unique_ptr<nn::Module<double>> model;
    const auto one = train_ddp<double>("lenet", d, 1, &per_param, &model);
    std::unique_ptr<dist::DistributedDataParallel<double>> own(per_param);
    BOOST_TEST(own->buckets().size() == own->parameters().size());  // 10: one parameter each
    BOOST_TEST(own->buckets().front() == std::vector<std::size_t>{own->parameters().size() - 1});  // reverse order

    // The last step's timestamps: every bucket started, in order, before the sweep ended; the
    // first (the last layer's bias) strictly before the last (the first conv's weight).
    const auto& starts = own->bucket_start_times();
    const auto end = own->backward_end_time();
    BOOST_TEST(own->buckets_started_in_backward() == starts.size());
    BOOST_TEST(end.time_since_epoch().count() > 0);
    for (std::size_t b = 0; b < starts.size(); ++b) {
        BOOST_TEST(starts[b].time_since_epoch().count() > 0);
        BOOST_TEST((starts[b] < end), "bucket " << b << " started after backward ended");
        if (b) BOOST_TEST((starts[b - 1] <= starts[b]));
    }
    BOOST_TEST((starts.front() < starts.back()));
    using us = std::chrono::microseconds;
    BOOST_TEST_MESSAGE("rank " << dist::rank() << ": the first of " << starts.size() << " buckets started "
                               << std::chrono::duration_cast<us>(end - starts.front()).count() << " µs, the last "
                               << std::chrono::duration_cast<us>(end - starts.back()).count()
                               << " µs before backward ended");

    // Identical bits for one parameter per bucket, 64 KiB, the default (one bucket here) and all in one.
    for (std::size_t cap : {std::size_t(64) << 10, std::size_t(25) << 20, std::numeric_limits<std::size_t>::max()}) {
        dist::DistributedDataParallel<double>* other = nullptr;
        std::unique_ptr<nn::Module<double>> m;
        const auto res = train_ddp<double>("lenet", d, cap, &other, &m);
        std::unique_ptr<dist::DistributedDataParallel<double>> own_other(other);
        if (cap == (std::size_t(64) << 10)) BOOST_TEST(own_other->buckets().size() > 1u);
        if (cap > (std::size_t(1) << 20)) BOOST_TEST(own_other->buckets().size() == 1u);
        BOOST_TEST(own_other->buckets_started_in_backward() == own_other->buckets().size());
        for (std::size_t k = 0; k < one.size(); ++k)
            BOOST_TEST(bool(res[k] == one[k]), "parameter " << k << " differs for a bucket cap of " << cap);
    }
}

BOOST_AUTO_TEST_CASE(no_sync_accumulates_then_averages_the_sum)
{
    // Two micro-batches of B/4 per rank, the first under no_sync: the same gradient as B/2 at once
    // with the loss summed (not averaged) over micro-batches, i.e. one process with batch B, summed.
    const auto d = make_data<double>(sample_shape<double>("mlp"));
    auto model = make_model<double>("mlp");
    dist::DistributedDataParallel<double> ddp(*model);
    const auto order = nn::epoch_order(d.labels.size(), data_seed, 0);
    dist::DistributedSampler sampler(d.labels.size(), 2, ddp.rank(), true, data_seed);
    const auto mine = sampler.indices();
    Tape<double> tape;
    Tensor<double> x;
    IndexTensor y;
    model->zero_grad();
    {
        auto guard = ddp.no_sync();
        gather(d, {mine[0], mine[1]}, x, y);
        tape.backward(cross_entropy(ddp(tape.borrow(x)), y, Reduction::sum));
        ddp.finish_gradient_synchronization();  // nothing to wait for
    }
    const Tensor<double> local = model->parameters().back()->grad();
    tape.clear();
    gather(d, {mine[2], mine[3]}, x, y);
    tape.backward(cross_entropy(ddp(tape.borrow(x)), y, Reduction::sum));
    ddp.finish_gradient_synchronization();

    auto ref = make_model<double>("mlp");
    Tape<double> t2;
    gather(d, std::vector<std::size_t>(order.begin(), order.begin() + 8), x, y);
    t2.backward(cross_entropy((*ref)(t2.borrow(x)), y, Reduction::sum));
    const auto params = model->parameters(), ref_params = ref->parameters();
    for (std::size_t k = 0; k < params.size(); ++k) {
        const Tensor<double> expect = ref_params[k]->grad() / 2.0;  // the mean over 2 ranks of the sums
        const double err = xt::amax(xt::abs(params[k]->grad() - expect))();
        BOOST_TEST(err <= 1e-12 * std::max(1.0, double(xt::amax(xt::abs(expect))())));
    }
    // The first micro-batch's gradient stayed local: it is not the other rank's.
    double mine_vs_other = xt::amax(xt::abs(local))();
    double other = mine_vs_other;
    MPI_Bcast(&other, 1, MPI_DOUBLE, 1, MPI_COMM_WORLD);
    if (ddp.rank() == 0) BOOST_TEST(mine_vs_other != other);
}

BOOST_AUTO_TEST_CASE(replicas_that_differ_fail_on_every_rank_naming_both)
{
    // Rank 1's hidden layer is 64 wide, rank 0's 128: the third parameter's shape differs.
    auto model = make_model<double>("mlp", dist::rank() == 1 ? 64 : 128);
    try {
        dist::DistributedDataParallel<double> ddp(*model);
        BOOST_ERROR("no error for differing replicas");
    } catch (const std::invalid_argument& e) {
        const std::string m = e.what();
        BOOST_TEST_MESSAGE(m);
        BOOST_TEST(m == "DistributedDataParallel: parameter 2 ('2.weight') has shape (64,256) on rank 1, (128,256) on rank 0");
    }
    // A parameter count that differs.
    auto deeper = dist::rank() == 1 ? std::make_unique<nn::MLP<double>>(std::vector<std::size_t>{4, 3, 3, 2})
                                    : std::make_unique<nn::MLP<double>>(std::vector<std::size_t>{4, 3, 2});
    try {
        dist::DistributedDataParallel<double> ddp(*deeper);
        BOOST_ERROR("no error for differing parameter counts");
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()) == "DistributedDataParallel: rank 1 has 6 parameters, rank 0 has 4");
    }
    // Equal replicas start equal: rank 0's initialization reaches rank 1.
    nn::Linear<double> lin(3, 2, true, std::uint64_t(dist::rank() + 1));
    dist::DistributedDataParallel<double> ddp(lin);
    double w = lin.parameters()[0]->value()(0, 0), w0 = w;
    MPI_Bcast(&w0, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    BOOST_TEST(w == w0);
}

BOOST_AUTO_TEST_CASE(inputs_that_differ_fail_on_every_rank_naming_both)
{
    nn::Linear<double> lin(3, 2, true, std::uint64_t(1));
    dist::DistributedDataParallel<double> ddp(lin);
    Tape<double> tape;
    const std::size_t rows = dist::rank() == 1 ? 5 : 4;  // rank 1's batch is one row longer
    auto x = tape.constant(Tensor<double>(xt::ones<double>({rows, std::size_t(3)})));
    try {
        ddp(x);
        BOOST_ERROR("no error for differing input shapes");
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()) == "DistributedDataParallel: input of shape (5,3) on rank 1, (4,3) on rank 0");
    }
    // Equal shapes pass, and the step still averages: the gradient of Σ x·Wᵀ is the same on both ranks.
    tape.clear();
    auto same = tape.constant(Tensor<double>(xt::ones<double>({std::size_t(4), std::size_t(3)}) * double(dist::rank() + 1)));
    lin.zero_grad();
    tape.backward(sum(ddp(same)));
    ddp.finish_gradient_synchronization();
    // rank r's dL/dW = 4·(r + 1) in every entry; the mean over ranks 1 and 2 is 6.
    for (double g : lin.parameters()[0]->grad()) BOOST_TEST(g == 6.0);
    BOOST_TEST(ddp.buckets_started_in_backward() == 1u);
}

BOOST_AUTO_TEST_CASE(a_loss_term_recorded_after_forward_is_waited_for)
{
    // CE + 0.01·Σ W² of the first layer, the penalty recorded after ddp's forward: its leaf comes
    // after the forward's, so the first layer's bucket may start only once the sweep has passed both.
    const auto d = make_data<double>(sample_shape<double>("mlp"));
    auto model = make_model<double>("mlp");
    dist::DistributedDataParallel<double> ddp(*model, dist::DataParallelOptions().bucket_cap_bytes(1));
    dist::DistributedSampler sampler(d.labels.size(), 2, ddp.rank(), true, data_seed);
    const auto mine = sampler.indices();
    Parameter<double>& w0 = *model->parameters()[0];
    Tape<double> tape;
    Tensor<double> x;
    IndexTensor y;
    gather(d, {mine[0], mine[1], mine[2], mine[3]}, x, y);
    auto out = ddp(tape.borrow(x));
    auto w = tape.param(w0);
    tape.backward(cross_entropy(out, y) + sum(w * w) * 0.01);
    ddp.finish_gradient_synchronization();
    BOOST_TEST(ddp.buckets_started_in_backward() == ddp.buckets().size());

    auto ref = make_model<double>("mlp");
    Tape<double> t2;
    const auto order = nn::epoch_order(d.labels.size(), data_seed, 0);
    gather(d, std::vector<std::size_t>(order.begin(), order.begin() + 8), x, y);
    auto w_ref = t2.param(*ref->parameters()[0]);
    t2.backward(cross_entropy((*ref)(t2.borrow(x)), y) + sum(w_ref * w_ref) * 0.01);
    const auto params = model->parameters(), ref_params = ref->parameters();
    for (std::size_t k = 0; k < params.size(); ++k) {
        const Tensor<double>& expect = ref_params[k]->grad();
        const double err = xt::amax(xt::abs(params[k]->grad() - expect))();
        BOOST_TEST(err <= 1e-12 * double(xt::amax(xt::abs(expect))()), "parameter " << k);
    }
}

BOOST_AUTO_TEST_CASE(buffers_follow_rank_0_at_every_forward)
{
    for (bool on : {true, false}) {
        nn::Sequential<double> net;
        net.emplace<nn::Linear<double>>(4, 3, true, std::uint64_t(1));
        net.emplace<nn::BatchNorm1d<double>>(3);
        dist::DistributedDataParallel<double> ddp(net, dist::DataParallelOptions().broadcast_buffers(on));
        Tape<double> tape;
        // Step 1 on each rank's own data: the running means part.
        tape.backward(sum(ddp(tape.constant(rand_uniform<double>({6, 4}, unsigned(20 + ddp.rank()))))));
        ddp.finish_gradient_synchronization();
        tape.clear();
        // Step 2 on the same data everywhere: the running means agree iff step 2 started from rank 0's.
        tape.backward(sum(ddp(tape.constant(rand_uniform<double>({6, 4}, 30)))));
        ddp.finish_gradient_synchronization();
        const Tensor<double> mean = net.buffer("1.running_mean");
        Tensor<double> mean0 = mean;
        MPI_Bcast(mean0.data(), int(mean0.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
        BOOST_TEST(double(xt::amax(xt::abs(mean))()) > 0.0);
        if (on)
            BOOST_TEST(bool(mean == mean0));
        else if (ddp.rank() == 1)
            BOOST_TEST(!bool(mean == mean0));
    }
}

// Data-parallel throughput and the inputs of docs/scaling.md's model: training steps (forward,
// cross-entropy, backward, gradient averaging, SGD) of the MNIST MLP, the LeNet or the ResNet on
// random images, on one process or on N ranks (scripts/mpirun-local -n N bench_scaling ...).
// Prints one JSON object (rank 0):
//   step_ms, images_per_s       median step time and global images per second
//   exposed_ms                  median wait in finish_gradient_synchronization after the sweep, on
//                               the rank whose sweep ended last
//   allreduce_ms                the same buckets all-reduced alone, blocking (what hiding saves)
//   hidden_fraction             1 − exposed / allreduce (the share of all-reduce time overlapped)
//   latency_us, bandwidth_gbs   a 1-float all-reduce and a whole-gradient one (fit of α, β)
//   params                      per parameter, in all-reduce order: bytes and when its gradient was
//                               final, in ms before the sweep's end (one parameter per bucket, one rank)
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <vector>

#include "xgrad/distributed.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/random.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
namespace dist = xgrad::distributed;
using F = float;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v)
{
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::unique_ptr<nn::Module<F>> make_model(const std::string& name)
{
    if (name == "mlp") return std::make_unique<nn::MLP<F>>(std::vector<std::size_t>{784, 256, 128, 10}, nn::Activation::relu,
                                                            nn::Activation::identity, 3);
    if (name == "lenet") return reference::lenet<F>(5, true);
    auto net = reference::mnist_resnet<F>(5);
    net->train();
    return net;
}

struct Run {
    std::vector<double> step, exposed, window;  // ms per step; window: first bucket start → sweep end
};

/// `steps` timed steps after `warmup`, through `ddp` when given.
Run train_steps(nn::Module<F>& net, dist::DistributedDataParallel<F>* ddp, const Tensor<F>& x, const IndexTensor& y,
                std::size_t warmup, std::size_t steps)
{
    Tape<F> tape;
    nn::SGD<F> opt(net.parameters(), {0.01f});
    Run r;
    for (std::size_t s = 0; s < warmup + steps; ++s) {
        if (ddp) dist::check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");  // steps start together
        const auto t0 = Clock::now();
        tape.clear();
        opt.zero_grad();
        const Var<F> in = tape.borrow(x);
        const Var<F> loss = cross_entropy(ddp ? (*ddp)(in) : net(in), y);
        tape.backward(loss);
        const auto swept = ddp ? ddp->backward_end_time() : Clock::now();
        if (ddp) ddp->finish_gradient_synchronization();
        const auto synced = Clock::now();
        opt.step();
        if (!std::isfinite(double(loss.item()))) throw std::runtime_error("the loss is not finite");
        const auto t1 = Clock::now();
        if (s < warmup) continue;
        r.step.push_back(ms(t1 - t0));
        r.exposed.push_back(ddp ? ms(synced - swept) : 0.0);
        if (ddp && !ddp->bucket_start_times().empty() && ddp->buckets_started_in_backward() > 0)
            r.window.push_back(ms(swept - ddp->bucket_start_times().front()));
    }
    return r;
}

/// Median time of all-reducing buffers of `counts` floats one after the other, blocking.
double allreduce_ms(const std::vector<std::size_t>& counts, std::size_t reps)
{
    std::vector<std::vector<F>> bufs;
    for (std::size_t n : counts) bufs.emplace_back(n, 1.0f);
    std::vector<double> t;
    for (std::size_t r = 0; r < reps + 2; ++r) {
        dist::check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
        const auto t0 = Clock::now();
        for (auto& b : bufs)
            dist::check_mpi(MPI_Allreduce(MPI_IN_PLACE, b.data(), int(b.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                            "MPI_Allreduce");
        if (r >= 2) t.push_back(ms(Clock::now() - t0));
    }
    return median(t);
}

}  // namespace

int main(int argc, char** argv)
{
    std::string model = "lenet";
    std::size_t batch = 64, steps = 30, warmup = 5;
    int threads = 1;
    double bucket_mb = 25;
    CLI::App app{"xgrad data-parallel throughput (docs/scaling.md); run under scripts/mpirun-local -n N for N ranks"};
    app.add_option("--model", model, "mlp, lenet or resnet")->check(CLI::IsMember({"mlp", "lenet", "resnet"}))->capture_default_str();
    app.add_option("--batch", batch, "images per rank per step")->check(CLI::Range(1, 4096))->capture_default_str();
    app.add_option("--steps", steps, "timed steps")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(0, 1000))->capture_default_str();
    app.add_option("--threads", threads, "threads per rank")->check(CLI::Range(1, 256))->capture_default_str();
    app.add_option("--bucket-cap-mb", bucket_mb, "all-reduce bucket size (MiB)")->check(CLI::Range(1e-9, 1e6))->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    dist::Environment env(argc, argv);
    return dist::run_or_abort([&] {
        xgrad::set_num_threads(threads);
        const int ranks = dist::world_size(), rank = dist::rank();
        const Shape in = model == "mlp" ? Shape{batch, 784} : Shape{batch, 1, 28, 28};
        const Tensor<F> x = rand_uniform<F>(in, unsigned(1 + rank));
        IndexTensor y = xt::zeros<Index>({batch});
        for (std::size_t i = 0; i < batch; ++i) y(i) = Index((i + std::size_t(rank)) % 10);
        auto net = make_model(model);
        std::size_t params = 0;
        for (auto* p : net->parameters()) params += p->value().size();

        nlohmann::json out;
        out["model"] = model, out["ranks"] = ranks, out["threads"] = threads, out["batch_per_rank"] = batch;
        out["global_batch"] = batch * std::size_t(ranks), out["parameters"] = params, out["grad_bytes"] = params * sizeof(F);
        if (ranks == 1) {
            // Alone: the step without any wrapper, then (one rank, one parameter per bucket) when each
            // parameter's gradient becomes final before the sweep's end, which the model replays.
            const Run r = train_steps(*net, nullptr, x, y, warmup, steps);
            out["step_ms"] = median(r.step);
            dist::DistributedDataParallel<F> ddp(*net, dist::DataParallelOptions().bucket_cap_bytes(1).check_input_shapes(false));
            Tape<F> tape;
            std::vector<std::vector<double>> before(ddp.buckets().size());
            for (std::size_t s = 0; s < 5; ++s) {
                tape.clear();
                for (auto* p : ddp.parameters()) p->zero_grad();
                tape.backward(cross_entropy(ddp(tape.borrow(x)), y));
                for (std::size_t b = 0; b < before.size(); ++b)
                    before[b].push_back(ms(ddp.backward_end_time() - ddp.bucket_start_times()[b]));
                ddp.finish_gradient_synchronization();
            }
            std::map<const Parameter<F>*, std::string> names;
            for (const auto& [name, p] : net->named_parameters()) names[p] = name;
            auto& list = out["params"] = nlohmann::json::array();
            for (std::size_t b = 0; b < before.size(); ++b) {
                const Parameter<F>* p = ddp.parameters()[ddp.buckets()[b].front()];
                list.push_back({{"name", names[p]}, {"bytes", p->value().size() * sizeof(F)}, {"ms_before_end", median(before[b])}});
            }
        } else {
            dist::DistributedDataParallel<F> ddp(
                *net, dist::DataParallelOptions().bucket_cap_bytes(std::size_t(bucket_mb * double(1 << 20)) + 1));
            const Run r = train_steps(*net, &ddp, x, y, warmup, steps);
            std::vector<std::size_t> counts;
            for (const auto& b : ddp.buckets()) {
                std::size_t n = 0;
                for (std::size_t k : b) n += ddp.parameters()[k]->value().size();
                counts.push_back(n);
            }
            const double alone = allreduce_ms(counts, 50);
            // Per step, the wait of the rank whose sweep ended last: the faster ones also wait for it
            // (load imbalance), which is not all-reduce time.
            std::vector<double> last = r.exposed;
            dist::check_mpi(MPI_Allreduce(MPI_IN_PLACE, last.data(), int(last.size()), MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD),
                            "MPI_Allreduce");
            const double exposed = median(last);
            out["step_ms"] = median(r.step), out["exposed_ms"] = exposed, out["allreduce_ms"] = alone;
            out["overlap_window_ms"] = median(r.window), out["buckets"] = counts.size();
            out["hidden_fraction"] = alone > 0 ? std::clamp(1.0 - exposed / alone, 0.0, 1.0) : 0.0;
            const double latency = allreduce_ms({1}, 200);
            out["latency_us"] = 1e3 * latency;
            out["bandwidth_gbs"] = double(params * sizeof(F)) / (std::max(allreduce_ms({params}, 50) - latency, 1e-6) * 1e6);
        }
        out["images_per_s"] = double(batch * std::size_t(ranks)) / (out["step_ms"].get<double>() * 1e-3);
        if (rank == 0) std::cout << out.dump() << std::endl;
        return 0;
    });
}

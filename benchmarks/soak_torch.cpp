// libtorch peer of `xgrad_soak --mode hvp`: many Hessian-vector products of the benchmark models
// with torch::autograd::grad(..., create_graph=true), watching memory (pytorch/pytorch#16744 reports
// memory growth in C++ create_graph loops).
//
//   torch_soak [--steps N] [--model mlp|lenet] [--every K] [--threads T]
//
// Models as bench_torch's hvp_mlp / hvp_lenet (batch 64, cross-entropy, v ~ U(−1, 1) per
// parameter, parameters fixed); inputs drawn once from U(0,1), 16 batches used in turn, labels
// i mod 10 shuffled per batch. Every K steps (default 500) and at step 100 it prints VmRSS and VmHWM,
// the mean wall-clock and process-CPU ms/step and the heap allocations per step since the last
// sample. Verdict as xgrad_soak's: VmRSS growth from step 1000 to the last step within 1 MiB, else
// GROWTH and exit status 1; with the peak RSS (VmHWM) at steps 100, 1000 and the last.
#include <cblas.h>
#include <time.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "alloc_count.hpp"
#include "process_stats.hpp"

namespace nn = torch::nn;
namespace alloc = xgrad::alloc;

namespace {

using xgrad::bench::cpu_seconds;
using xgrad::bench::Mem;
using xgrad::bench::read_mem;

[[noreturn]] void usage(const char* why)
{
    std::fprintf(stderr, "torch_soak: %s\nusage: torch_soak [--steps N] [--model mlp|lenet] [--every K] [--threads T]\n",
                 why);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv)
{
    long steps = 10000, every = 500;
    std::string model = "mlp";
    int threads = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value after " + a).c_str());
            return argv[++i];
        };
        if (a == "--steps")
            steps = std::atol(next().c_str());
        else if (a == "--every")
            every = std::atol(next().c_str());
        else if (a == "--model")
            model = next();
        else if (a == "--threads")
            threads = std::atoi(next().c_str());
        else
            usage(("unknown option " + a).c_str());
    }
    if (steps < 1 || every < 1 || threads < 1) usage("--steps, --every and --threads must be positive");
    if (model != "mlp" && model != "lenet") usage("--model must be mlp or lenet");
    torch::set_num_threads(threads);
    openblas_set_num_threads(threads);  // libtorch_cpu links the same libopenblas.so.0
    torch::manual_seed(1);

    nn::Sequential net = model == "mlp"
                             ? nn::Sequential(nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128), nn::ReLU(),
                                              nn::Linear(128, 10))
                             : nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 6, 5).padding(2)), nn::ReLU(),
                                              nn::AvgPool2d(2), nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), nn::ReLU(),
                                              nn::AvgPool2d(2), nn::Flatten(), nn::Linear(400, 120), nn::ReLU(),
                                              nn::Linear(120, 84), nn::ReLU(), nn::Linear(84, 10));
    const std::vector<torch::Tensor> params = net->parameters();
    std::vector<torch::Tensor> v;
    for (const auto& p : params) v.push_back(torch::empty_like(p).uniform_(-1, 1));
    std::vector<torch::Tensor> xs, ys;
    for (int k = 0; k < 16; ++k) {
        xs.push_back(model == "mlp" ? torch::rand({64, 784}) : torch::rand({64, 1, 28, 28}));
        ys.push_back((torch::arange(64, torch::kLong) % 10).index_select(0, torch::randperm(64)));
    }
    auto step = [&](long i) {
        const auto k = std::size_t(i % 16);
        auto loss = torch::nn::functional::cross_entropy(net->forward(xs[k]), ys[k]);
        auto g = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
        auto dot = (g[0] * v[0]).sum();
        for (std::size_t j = 1; j < g.size(); ++j) dot = dot + (g[j] * v[j]).sum();
        torch::autograd::grad({dot}, params);
        return loss.item<double>();
    };

    std::printf("torch_soak: libtorch %s, %ld Hessian-vector products (autograd::grad, create_graph), model %s, batch 64, "
                "%d thread(s)\n",
                TORCH_VERSION, steps, model.c_str(), threads);
    std::printf("%8s %10s %10s %10s %12s %13s %10s\n", "step", "RSS MiB", "HWM MiB", "ms/step", "CPU ms/step",
                "allocs/step", "loss");
    const Mem start = read_mem();
    std::printf("%8d %10.1f %10.1f %10s %12s %13s %10s\n", 0, start.rss, start.hwm, "-", "-", "-", "-");
    const long ref = std::max(every, (steps >= 10000 ? 1000 : steps / 10) / every * every);
    Mem at_100, at_ref, at_end;
    double window_s = 0, window_cpu = 0, loss = 0;
    long last = 0;
    alloc::count_allocations(true);
    std::size_t a_window = alloc::allocations();
    for (long i = 1; i <= steps; ++i) {
        const double c0 = cpu_seconds();
        const auto t0 = std::chrono::steady_clock::now();
        loss = step(i);
        window_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        window_cpu += cpu_seconds() - c0;
        if (i % every == 0 || i == steps || i == 100) {
            const long n = i - last;
            last = i;
            const Mem m = read_mem();
            const std::size_t a = alloc::allocations();
            std::printf("%8ld %10.1f %10.1f %10.3f %12.3f %13.1f %10.4f\n", i, m.rss, m.hwm, 1e3 * window_s / double(n),
                        1e3 * window_cpu / double(n), double(a - a_window) / double(n), loss);
            std::fflush(stdout);
            a_window = a;
            window_s = window_cpu = 0;
            if (i == 100) at_100 = m;
            if (i == ref) at_ref = m;
            if (i == steps) at_end = m;
        }
    }
    alloc::count_allocations(false);
    if (steps <= ref) return 0;
    const double growth = at_end.rss - at_ref.rss;
    const bool flat = std::abs(growth) <= 1.0;
    std::printf("verdict libtorch %s hvp: VmRSS %.1f MiB at step %ld, %.1f at step %ld: growth %+.2f MiB (%s); peak RSS "
                "(VmHWM) %.1f MiB at step 100, %.1f at step %ld, %.1f at step %ld\n",
                model.c_str(), at_ref.rss, ref, at_end.rss, steps, growth, flat ? "no growth" : "GROWTH", at_100.hwm,
                at_ref.hwm, ref, at_end.hwm, steps);
    return flat ? 0 : 1;
}

// Soak run: many training steps of the benchmark models on synthetic data, watching memory.
//
//   xgrad_soak [--steps N] [--model mlp|lenet|all] [--mode train|hvp] [--pool max|avg] [--every K] [--threads T] [--ftz]
//
// Models (float, batch 64, cross-entropy, Adam lr 1e-3; inputs drawn once from U(0,1), 16 batches
// used in turn, labels i mod 10 shuffled per batch: no data files needed):
//   mlp:   the MNIST MLP 784-256-128-10, ReLU (nn::MLP, as bench_xgrad's mlp_b64)
//   lenet: reference::lenet (reference/include/xgrad/reference/models.hpp), max pooling as in the examples
//          (--pool avg: the average-pooling variant bench_xgrad times)
// --mode hvp: instead of training, a Hessian-vector product per step (the step bench_xgrad times
// as hvp_mlp / hvp_lenet, benchmarks/second_order.hpp): forward, grad(create_graph), Σ_k sum(g_k ⊙ v_k),
// backward, w.r.t. all parameters, v fixed; the parameters do not change. After the run it checks
// the step against central differences of the gradient, in double on the same network (relative
// error printed; after, so that its memory is not in the run's figures).
// Every K steps (default 500), and at step 100, it prints VmRSS and VmHWM (/proc/self/status), the mean wall-clock
// and process-CPU ms/step (CPU time is the steadier figure on a busy machine) and the heap
// allocations per step (alloc_count.cpp's malloc counter) over the last K steps.
// --ftz sets the FTZ/DAZ bits of the main thread (denormal floats become zero): a diagnostic for a
// step time that grows as the loss nears zero and gradients underflow.
// Verdict: VmRSS growth from step 1000 (the first sample once the run is 10× that) to the last
// step; "no growth" when it is within 1 MiB (allocator noise), otherwise GROWTH, exit status 1. The
// verdict line also gives the peak RSS (VmHWM) at steps 100, 1000 and the last.
#include <time.h>
#include <xmmintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "alloc_count.hpp"
#include "process_stats.hpp"
#include "second_order.hpp"
#include "xgrad/reference/models.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/threads.hpp"

using namespace xgrad;
using F = float;

namespace {

using xgrad::bench::cpu_seconds;
using xgrad::bench::Mem;
using xgrad::bench::read_mem;

struct Options {
    long steps = 10000;
    long every = 500;
    std::string model = "all";
    std::string pool = "max";
    std::string mode = "train";
    int threads = 1;
    bool ftz = false;
};

[[noreturn]] void usage(const char* why)
{
    std::fprintf(stderr,
                 "xgrad_soak: %s\nusage: xgrad_soak [--steps N] [--model mlp|lenet|all] [--mode train|hvp] [--pool max|avg] [--every K] "
                 "[--threads T] [--ftz]\n",
                 why);
    std::exit(2);
}

Options parse(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value after " + a).c_str());
            return argv[++i];
        };
        if (a == "--steps")
            o.steps = std::atol(next().c_str());
        else if (a == "--every")
            o.every = std::atol(next().c_str());
        else if (a == "--model")
            o.model = next();
        else if (a == "--mode")
            o.mode = next();
        else if (a == "--pool")
            o.pool = next();
        else if (a == "--threads")
            o.threads = std::atoi(next().c_str());
        else if (a == "--ftz")
            o.ftz = true;
        else if (a == "-h" || a == "--help")
            usage("help");
        else
            usage(("unknown option " + a).c_str());
    }
    if (o.steps < 1 || o.every < 1) usage("--steps and --every must be positive");
    if (o.model != "mlp" && o.model != "lenet" && o.model != "all") usage("--model must be mlp, lenet or all");
    if (o.pool != "max" && o.pool != "avg") usage("--pool must be max or avg");
    if (o.mode != "train" && o.mode != "hvp") usage("--mode must be train or hvp");
    if (o.threads < 1) usage("--threads must be positive");
    return o;
}

/// `n` input batches of `shape` from U(0,1), and labels 0..9 repeated and shuffled per batch.
struct Batches {
    std::vector<Tensor<F>> x;
    std::vector<IndexTensor> y;
    Batches(const Shape& shape, std::size_t n, unsigned seed)
    {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<F> u(0, 1);
        const std::size_t B = shape[0];
        for (std::size_t k = 0; k < n; ++k) {
            Tensor<F> t = Tensor<F>::from_shape(shape);
            for (auto& v : t) v = u(rng);
            x.push_back(std::move(t));
            IndexTensor l = IndexTensor::from_shape({B});
            for (std::size_t i = 0; i < B; ++i) l(i) = Index(i % 10);
            std::shuffle(l.begin(), l.end(), rng);
            y.push_back(std::move(l));
        }
    }
};

struct Result {
    Mem at_100, at_ref, at_mid, at_end;
    long mid_step = 0;
    long ref_step = 0;
    double allocs_per_step = 0;       // after warm-up (from step ref_step on), outside oneDNN
    double blas_allocs_per_step = 0;  // inside oneDNN / OpenBLAS (their own buffers and argument maps)
    double ms_per_step = 0;      // after warm-up, wall clock
    double cpu_ms_per_step = 0;  // after warm-up, process CPU time
    double final_loss = 0;
    bool ok = true;
};

/// Runs `steps` calls of step(i) (which returns the loss) with the memory table.
Result soak(const std::string& name, const Options& o, const std::function<double(long)>& step)
{
    using clock = std::chrono::steady_clock;
    // Reference sample: step 1000 (a tenth of shorter runs), rounded to a sampled step.
    const long ref = std::max(o.every, (o.steps >= 10000 ? 1000 : o.steps / 10) / o.every * o.every);
    std::printf("\n== %s: %ld steps, batch 64, %s, %d thread(s) ==\n", name.c_str(), o.steps,
                o.mode == "hvp" ? "Hessian-vector products w.r.t. all parameters" : "Adam", o.threads);
    std::printf("%8s %10s %10s %10s %12s %13s %10s\n", "step", "RSS MiB", "HWM MiB", "ms/step", "CPU ms/step",
                "allocs/step", "loss");
    std::fflush(stdout);
    const Mem start = read_mem();
    std::printf("%8d %10.1f %10.1f %10s %12s %13s %10s\n", 0, start.rss, start.hwm, "-", "-", "-", "-");
    Result r;
    r.ref_step = ref;
    r.mid_step = std::max(ref, (o.steps / 2) / o.every * o.every);
    double window_s = 0, after_ref_s = 0, window_cpu = 0, after_ref_cpu = 0;
    std::size_t after_ref_allocs = 0, after_ref_blas = 0;  // outside / inside oneDNN and OpenBLAS
    long after_ref_steps = 0;
    const std::size_t a_begin = alloc::allocations();
    std::size_t a_window = a_begin;
    long last_sample = 0;
    double loss = 0;
    // XGRAD_ALLOC_TRACE=1 (alloc_count.cpp prints the stacks of the first 40 counted allocations):
    // count only after warm-up, so the stacks are those of the steady state.
    const bool trace_allocs = std::getenv("XGRAD_ALLOC_TRACE") != nullptr;
    for (long i = 1; i <= o.steps; ++i) {
        const bool counted = i > ref;
        const std::size_t a0 = alloc::allocations(), d0 = alloc::blas_allocations();
        alloc::attribute_allocations(counted);  // soak steps are not a timing benchmark
        alloc::count_allocations(counted || !trace_allocs);
        const double c0 = cpu_seconds();
        const auto t0 = clock::now();
        loss = step(i);
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        const double dc = cpu_seconds() - c0;
        alloc::count_allocations(false);
        window_s += dt;
        window_cpu += dc;
        if (counted) {
            after_ref_s += dt;
            after_ref_cpu += dc;
            const std::size_t blas = alloc::blas_allocations() - d0;
            after_ref_allocs += alloc::allocations() - a0 - blas;
            after_ref_blas += blas;
            ++after_ref_steps;
        }
        if (!std::isfinite(loss)) {
            std::printf("step %ld: loss is %f\n", i, loss);
            r.ok = false;
            break;
        }
        if (i % o.every == 0 || i == o.steps || i == 100) {
            const long n = i - last_sample;
            last_sample = i;
            const Mem m = read_mem();
            const std::size_t a = alloc::allocations();
            std::printf("%8ld %10.1f %10.1f %10.3f %12.3f %13.1f %10.4f\n", i, m.rss, m.hwm, 1e3 * window_s / double(n),
                        1e3 * window_cpu / double(n), double(a - a_window) / double(n), loss);
            std::fflush(stdout);
            a_window = a;
            window_s = 0;
            window_cpu = 0;
            if (i == 100) r.at_100 = m;
            if (i == ref) r.at_ref = m;
            if (i == r.mid_step) r.at_mid = m;
            if (i == o.steps) r.at_end = m;
        }
    }
    r.final_loss = loss;
    if (after_ref_steps) {
        r.allocs_per_step = double(after_ref_allocs) / double(after_ref_steps);
        r.blas_allocs_per_step = double(after_ref_blas) / double(after_ref_steps);
        r.ms_per_step = 1e3 * after_ref_s / double(after_ref_steps);
        r.cpu_ms_per_step = 1e3 * after_ref_cpu / double(after_ref_steps);
    }
    if (r.ok && o.steps > ref) {
        const double growth = r.at_end.rss - r.at_ref.rss;
        const bool flat = std::abs(growth) <= 1.0;
        r.ok = flat;
        std::printf("verdict %s: VmRSS %.1f MiB at step %ld, %.1f at step %ld, %.1f at step %ld: growth %+.2f MiB (%s); "
                    "VmHWM %.1f -> %.1f MiB; after step %ld: %.1f allocations/step (+%.1f inside oneDNN/OpenBLAS), %.3f ms/step wall, "
                    "%.3f ms/step CPU; peak RSS (VmHWM) %.1f MiB at step 100, %.1f at step %ld, %.1f at step %ld\n",
                    name.c_str(), r.at_ref.rss, ref, r.at_mid.rss, r.mid_step, r.at_end.rss, o.steps, growth, flat ? "no growth" : "GROWTH",
                    r.at_ref.hwm, r.at_end.hwm, ref, r.allocs_per_step, r.blas_allocs_per_step, r.ms_per_step, r.cpu_ms_per_step,
                    r.at_100.hwm, r.at_ref.hwm, ref, r.at_end.hwm, o.steps);
    }
    std::fflush(stdout);
    return r;
}

template <class Net>
std::function<double(long)> training_step(Net& net, nn::Adam<F>& opt, Tape<F>& tape, const Batches& data)
{
    return [&net, &opt, &tape, &data](long i) {
        const std::size_t k = std::size_t(i) % data.x.size();
        opt.zero_grad();
        auto loss = cross_entropy(net(tape.borrow(data.x[k])), data.y[k]);
        const double l = loss.item();
        tape.backward(loss);
        opt.step();
        tape.clear();
        return l;
    };
}

/// The HVP step checked in double precision on the same network (same seeds) and batch 0, against
/// central differences of the gradient with ε = 1e-7 (larger steps cross ReLU kinks: the gradient
/// jumps there by far more than ε·Hv, and float32 cannot resolve smaller ones).
void check_hvp(nn::Module<double>& net, const Batches& data)
{
    bench::ParamHvp<double> hvp(net, 11);
    Tape<double> tape;
    const Tensor<double> x = xt::cast<double>(data.x[0]);
    std::printf("check: Hv (double, same network, batch 0) vs central differences of the gradient (eps 1e-7): "
                "relative error %.2e\n",
                hvp.check(tape, x, data.y[0], 1e-7));
}

/// Hessian-vector products at the batches in turn (parameters fixed).
std::function<double(long)> hvp_step(bench::ParamHvp<F>& hvp, Tape<F>& tape, const Batches& data)
{
    return [&hvp, &tape, &data](long i) {
        const std::size_t k = std::size_t(i) % data.x.size();
        return double(hvp.step(tape, data.x[k], data.y[k]));
    };
}

}  // namespace

int main(int argc, char** argv)
{
    const Options o = parse(argc, argv);
    xgrad::set_num_threads(o.threads);
    if (o.ftz) _mm_setcsr(_mm_getcsr() | 0x8040);  // flush-to-zero and denormals-are-zero (this thread)
    std::printf("xgrad_soak: %ld steps per model, sample every %ld steps, model %s, mode %s, LeNet pooling %s%s\n",
                o.steps, o.every, o.model.c_str(), o.mode.c_str(), o.pool.c_str(), o.ftz ? ", denormals flushed to zero" : "");
    bool ok = true;
    if (o.model == "mlp" || o.model == "all") {
        const Batches data(Shape{64, 784}, 16, 1);
        nn::MLP<F> net({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3);
        nn::Adam<F> opt(net.parameters(), {1e-3});
        Tape<F> tape;
        bench::ParamHvp<F> hvp(net, 11);
        ok &= soak("mlp 784-256-128-10", o, o.mode == "hvp" ? hvp_step(hvp, tape, data) : training_step(net, opt, tape, data)).ok;
        if (o.mode == "hvp") {  // after the run: its memory is not in the run's figures
            nn::MLP<double> net64({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3);
            check_hvp(net64, data);
        }
    }
    if (o.model == "lenet" || o.model == "all") {
        const Batches data(Shape{64, 1, 28, 28}, 16, 2);
        auto net = reference::lenet<F>(5, o.pool == "max");
        nn::Adam<F> opt(net->parameters(), {1e-3});
        Tape<F> tape;
        bench::ParamHvp<F> hvp(*net, 11);
        ok &= soak(std::string("lenet (") + o.pool + " pool)", o,
                   o.mode == "hvp" ? hvp_step(hvp, tape, data) : training_step(*net, opt, tape, data)).ok;
        if (o.mode == "hvp") check_hvp(*reference::lenet<double>(5, o.pool == "max"), data);
    }
    return ok ? 0 : 1;
}

// Workload `tape` (../shared/benchmarks.md): ns per recorded op, forward + backward, on a chain of
// N = 10,000 ops cycling  x·1.0001, x + 0.0001, tanh(x), x ⊙ w  over 1-element and 64×64 tensors.
#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "timing.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;

int main(int argc, char** argv)
{
    const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    openblas_set_num_threads(threads);
    const double base = bench::peak_rss_mib();
    const std::size_t N = 10000;
    std::printf("| workload | threads | fwd+bwd ns/op | fwd ns/op | bwd ns/op | p10 | p90 | reps | peak RSS MiB (+workload) |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const Shape& shape : {Shape{1}, Shape{64, 64}}) {
        const Tensor<float> x0 = xt::full_like(Tensor<float>::from_shape(shape), 0.5f);
        const Tensor<float> w0 = xt::ones<float>(shape);
        Tape<float> tape;
        double fwd_total = 0, bwd_total = 0;
        std::size_t n_split = 0;
        auto rep = [&] {
            const auto t0 = std::chrono::steady_clock::now();
            auto x = tape.variable(x0);
            auto w = tape.variable(w0);
            for (std::size_t i = 0; i < N; ++i) {
                switch (i % 4) {
                    case 0: x = x * 1.0001f; break;
                    case 1: x = x + 0.0001f; break;
                    case 2: x = tanh(x); break;
                    default: x = x * w; break;
                }
            }
            auto loss = sum(x);
            const auto t1 = std::chrono::steady_clock::now();
            tape.backward(loss);
            volatile float sink = w.grad().data()[0];
            (void)sink;
            tape.clear();
            const auto t2 = std::chrono::steady_clock::now();
            fwd_total += std::chrono::duration<double>(t1 - t0).count();
            bwd_total += std::chrono::duration<double>(t2 - t1).count();
            ++n_split;
        };
        const bench::Stats s = bench::run([] {}, rep);
        const double per = 1e9 / double(N);
        const double fwd_share = fwd_total / (fwd_total + bwd_total);
        std::printf("| tape_%s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %zu | %.1f (+%.1f) |\n",
                    shape.size() == 1 ? "1" : "64x64", threads, s.median * per, s.median * per * fwd_share,
                    s.median * per * (1 - fwd_share), s.p10 * per, s.p90 * per, s.reps, bench::peak_rss_mib(),
                    bench::peak_rss_mib() - base);
    }
    return 0;
}

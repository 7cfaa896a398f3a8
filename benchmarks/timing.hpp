#pragma once
// The timing rule of ../shared/benchmarks.md: warm up (≥ 10 reps and ≥ 0.5 s), then time reps
// one by one until ≥ 30 reps and ≥ 3 s; report the median with p10, p90, min and mean.
// XGRAD_BENCH_QUICK=1 shortens both phases (smoke runs only; not for reported figures).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace xgrad::bench {

struct Stats {
    double median = 0, p10 = 0, p90 = 0, min = 0, mean = 0;  // seconds
    std::size_t reps = 0;
};

inline bool quick() { return std::getenv("XGRAD_BENCH_QUICK") != nullptr; }

inline Stats summarize(std::vector<double> t)
{
    Stats s;
    std::sort(t.begin(), t.end());
    auto pct = [&](double p) { return t[std::min(t.size() - 1, std::size_t(p * double(t.size() - 1) + 0.5))]; };
    s.reps = t.size();
    s.median = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    s.p10 = pct(0.1);
    s.p90 = pct(0.9);
    s.min = t.front();
    double sum = 0;
    for (double v : t) sum += v;
    s.mean = sum / double(t.size());
    return s;
}

/// Times `rep()` (one repetition; may call `setup()` outside the clock first).
template <class Setup, class Rep>
Stats run(Setup setup, Rep rep, std::size_t warm_n = 10, double warm_s = 0.5, std::size_t min_n = 30,
          double min_s = 3.0)
{
    using clock = std::chrono::steady_clock;
    if (quick()) {
        warm_n = 2, warm_s = 0.01, min_n = 5, min_s = 0.05;
    }
    auto secs = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
    const auto w0 = clock::now();
    for (std::size_t i = 0; i < warm_n || secs(clock::now() - w0) < warm_s; ++i) {
        setup();
        rep();
    }
    std::vector<double> times;
    double total = 0;
    while (times.size() < min_n || total < min_s) {
        setup();
        const auto t0 = clock::now();
        rep();
        const double dt = secs(clock::now() - t0);
        times.push_back(dt);
        total += dt;
    }
    return summarize(std::move(times));
}

/// Peak resident memory so far, MiB.
inline double peak_rss_mib()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

}  // namespace xgrad::bench

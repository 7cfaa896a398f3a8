#pragma once
// The timing rule of docs/benchmarks.md: warm up (≥ 10 reps and ≥ 0.5 s), then time reps
// one by one until ≥ 30 reps and ≥ 3 s; report the median with p10, p90, min and mean, the heap
// allocations per timed rep, and memory (VmHWM before the workload, peak RSS at the end).
// A rep that returns its loss has it kept: the first one (the step on the initial weights, which
// bench_run compares with the peer's) and whether every one was finite, so a fast but wrong step
// shows. XGRAD_BENCH_QUICK=1 shortens both phases (smoke runs only; not for reported figures).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "alloc_count.hpp"

namespace xgrad::bench {

struct Stats {
    double median = 0, p10 = 0, p90 = 0, min = 0, mean = 0;  // seconds
    std::size_t reps = 0;
    double allocs_per_rep = 0;       ///< outside oneDNN
    double blas_allocs_per_rep = 0;  ///< inside oneDNN / OpenBLAS: packing buffers, primitive executions' argument maps
    double minor_faults_per_rep = 0;  ///< page faults (ru_minflt) during the timed reps, per rep
    bool has_loss = false;            ///< the rep returned a loss
    double loss_first = std::numeric_limits<double>::quiet_NaN();  ///< of the first rep (warm-up's first)
    double loss_last = std::numeric_limits<double>::quiet_NaN();
    bool loss_finite = true;  ///< every rep's loss was finite
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

/// Times `rep()`, calling `setup()` outside the clock before each rep. If rep() returns a number
/// (the step's loss), Stats keeps the first and last and whether all were finite.
template <class Setup, class Rep>
Stats run(Setup setup, Rep rep_, std::size_t warm_n = 10, double warm_s = 0.5, std::size_t min_n = 30, double min_s = 3.0)
{
    using clock = std::chrono::steady_clock;
    if (quick()) warm_n = 2, warm_s = 0.01, min_n = 5, min_s = 0.05;
    auto secs = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
    constexpr bool returns_loss = !std::is_void_v<decltype(rep_())>;
    double first = std::numeric_limits<double>::quiet_NaN(), last = first;
    bool finite = true, seen = false;
    auto rep = [&] {
        if constexpr (returns_loss) {
            last = double(rep_());
            finite = finite && std::isfinite(last);
            if (!seen) first = last, seen = true;
        } else {
            rep_();
        }
    };
    const auto w0 = clock::now();
    for (std::size_t i = 0; i < warm_n || secs(clock::now() - w0) < warm_s; ++i) {
        setup();
        rep();
    }
    std::vector<double> times;
    double total = 0;
    rusage u0{};
    getrusage(RUSAGE_SELF, &u0);
    while (times.size() < min_n || total < min_s) {
        setup();
        alloc::count_allocations(true);
        const auto t0 = clock::now();
        rep();
        const double dt = secs(clock::now() - t0);
        alloc::count_allocations(false);
        times.push_back(dt);
        total += dt;
    }
    rusage u1{};
    getrusage(RUSAGE_SELF, &u1);
    Stats s = summarize(std::move(times));
    s.minor_faults_per_rep = double(u1.ru_minflt - u0.ru_minflt) / double(s.reps);
    // One more rep, untimed, with each allocation's call stack looked at: how many of a rep's
    // allocations oneDNN's sgemm makes (its packing buffers) and how many everything else does.
    setup();
    const std::size_t a1 = alloc::allocations(), d0 = alloc::blas_allocations();
    alloc::attribute_allocations(true);
    alloc::count_allocations(true);
    rep();
    alloc::count_allocations(false);
    alloc::attribute_allocations(false);
    const std::size_t blas = alloc::blas_allocations() - d0;
    s.blas_allocs_per_rep = double(blas);
    s.allocs_per_rep = double(alloc::allocations() - a1 - blas);
    s.has_loss = returns_loss;
    s.loss_first = first, s.loss_last = last, s.loss_finite = finite;
    return s;
}

/// Peak resident memory so far (ru_maxrss), MiB.
inline double peak_rss_mib()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

/// VmHWM from /proc/self/status, MiB.
inline double vm_hwm_mib()
{
    std::ifstream f("/proc/self/status");
    std::string key;
    double kb = 0;
    while (f >> key) {
        if (key == "VmHWM:") {
            f >> kb;
            break;
        }
        std::getline(f, key);
    }
    return kb / 1024.0;
}

/// One JSON line on stdout: what the driver (bench_run) reads.
inline void report(const char* impl, const std::string& workload, int threads, const char* unit, double scale,
                   const Stats& s, double base_mib, const std::string& extra_ = "")
{
    std::string extra = extra_;
    if (s.has_loss) {
        char e[160];
        std::snprintf(e, sizeof e, ",\"loss_first\":%.9g,\"loss_last\":%.9g,\"loss_finite\":%s",
                      std::isfinite(s.loss_first) ? s.loss_first : 0.0, std::isfinite(s.loss_last) ? s.loss_last : 0.0,
                      s.loss_finite ? "true" : "false");
        extra += e;
    }
    std::printf("{\"impl\":\"%s\",\"workload\":\"%s\",\"threads\":%d,\"unit\":\"%s\",\"median\":%.6g,\"p10\":%.6g,"
                "\"p90\":%.6g,\"min\":%.6g,\"mean\":%.6g,\"reps\":%zu,\"allocs_per_rep\":%.1f,\"blas_allocs_per_rep\":%.1f,\"base_mib\":%.1f,"
                "\"peak_mib\":%.1f,\"minflt_per_rep\":%.1f%s}\n",
                impl, workload.c_str(), threads, unit, s.median * scale, s.p10 * scale, s.p90 * scale, s.min * scale,
                s.mean * scale, s.reps, s.allocs_per_rep, s.blas_allocs_per_rep, base_mib, peak_rss_mib(), s.minor_faults_per_rep, extra.c_str());
    std::fflush(stdout);
}

}  // namespace xgrad::bench

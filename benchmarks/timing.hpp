#pragma once
// The timing rule of docs/benchmarks.md: warm up (≥ 10 reps and ≥ 0.5 s), then time reps
// one by one until ≥ 30 reps and ≥ 3 s; report the median with p10, p90, min and mean, the heap
// allocations per timed rep, and memory (VmHWM before the workload, peak RSS at the end).
// XGRAD_BENCH_QUICK=1 shortens both phases (smoke runs only; not for reported figures).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "alloc_count.hpp"

namespace xgrad::bench {

struct Stats {
    double median = 0, p10 = 0, p90 = 0, min = 0, mean = 0;  // seconds
    std::size_t reps = 0;
    double allocs_per_rep = 0;       ///< outside oneDNN
    double dnnl_allocs_per_rep = 0;  ///< inside dnnl_sgemm (its packing buffer, one per call)
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

/// Times `rep()`, calling `setup()` outside the clock before each rep.
template <class Setup, class Rep>
Stats run(Setup setup, Rep rep, std::size_t warm_n = 10, double warm_s = 0.5, std::size_t min_n = 30, double min_s = 3.0)
{
    using clock = std::chrono::steady_clock;
    if (quick()) warm_n = 2, warm_s = 0.01, min_n = 5, min_s = 0.05;
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
        alloc::count_allocations(true);
        const auto t0 = clock::now();
        rep();
        const double dt = secs(clock::now() - t0);
        alloc::count_allocations(false);
        times.push_back(dt);
        total += dt;
    }
    Stats s = summarize(std::move(times));
    // One more rep, untimed, with each allocation's call stack looked at: how many of a rep's
    // allocations oneDNN's sgemm makes (its packing buffers) and how many everything else does.
    setup();
    const std::size_t a1 = alloc::allocations(), d0 = alloc::dnnl_allocations();
    alloc::attribute_allocations(true);
    alloc::count_allocations(true);
    rep();
    alloc::count_allocations(false);
    alloc::attribute_allocations(false);
    const std::size_t dnnl = alloc::dnnl_allocations() - d0;
    s.dnnl_allocs_per_rep = double(dnnl);
    s.allocs_per_rep = double(alloc::allocations() - a1 - dnnl);
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
                   const Stats& s, double base_mib, const std::string& extra = "")
{
    std::printf("{\"impl\":\"%s\",\"workload\":\"%s\",\"threads\":%d,\"unit\":\"%s\",\"median\":%.6g,\"p10\":%.6g,"
                "\"p90\":%.6g,\"min\":%.6g,\"mean\":%.6g,\"reps\":%zu,\"allocs_per_rep\":%.1f,\"dnnl_allocs_per_rep\":%.1f,\"base_mib\":%.1f,"
                "\"peak_mib\":%.1f%s}\n",
                impl, workload.c_str(), threads, unit, s.median * scale, s.p10 * scale, s.p90 * scale, s.min * scale,
                s.mean * scale, s.reps, s.allocs_per_rep, s.dnnl_allocs_per_rep, base_mib, peak_rss_mib(), extra.c_str());
    std::fflush(stdout);
}

}  // namespace xgrad::bench

#pragma once
// What a soak reads about its own process: resident memory and CPU time. Shared by xgrad_soak and
// torch_soak (no xgrad or libtorch header: both include it).
#include <time.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace xgrad::bench {

struct Mem {
    double rss = 0, hwm = 0;  // MiB: current and peak resident set
};

inline Mem read_mem()
{
    std::ifstream f("/proc/self/status");
    std::string line;
    Mem m;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) m.rss = std::atof(line.c_str() + 6) / 1024.0;
        if (line.rfind("VmHWM:", 0) == 0) m.hwm = std::atof(line.c_str() + 6) / 1024.0;
    }
    return m;
}

inline double cpu_seconds()
{
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace xgrad::bench

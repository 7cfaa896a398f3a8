#include "alloc_count.hpp"

#include <link.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> count{0};
std::atomic<std::size_t> blas_count{0};
std::atomic<bool> attributing{false};
thread_local bool in_attribution = false;

/// Address ranges of the loaded segments of libdnnl and libopenblas, found once when attribution is
/// turned on.
struct Range {
    std::uintptr_t lo, hi;
};
Range blas_ranges[32];
std::atomic<int> n_blas_ranges{0};

int collect_blas(dl_phdr_info* info, std::size_t, void*)
{
    if (!info->dlpi_name || !(std::strstr(info->dlpi_name, "libdnnl") || std::strstr(info->dlpi_name, "libopenblas")))
        return 0;
    int n = n_blas_ranges.load();
    for (int i = 0; i < info->dlpi_phnum && n < 32; ++i)
        if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            const std::uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            blas_ranges[n++] = {lo, lo + info->dlpi_phdr[i].p_memsz};
        }
    n_blas_ranges = n;
    return 0;
}

/// Whether a frame of the current call stack lies in libdnnl or libopenblas: a comparison of each
/// return address with their segments (dladdr would search symbol tables, far too slow for libtorch's).
bool called_from_blas()
{
    if (in_attribution) return false;
    in_attribution = true;
    void* frames[24];
    const int n = backtrace(frames, 24);
    const int nr = n_blas_ranges.load(std::memory_order_relaxed);
    bool found = false;
    for (int i = 2; i < n && !found; ++i) {
        const auto a = reinterpret_cast<std::uintptr_t>(frames[i]);
        for (int r = 0; r < nr && !found; ++r) found = a >= blas_ranges[r].lo && a < blas_ranges[r].hi;
    }
    in_attribution = false;
    return found;
}
std::atomic<int> traced{0};
thread_local bool in_trace = false;
const bool trace = std::getenv("XGRAD_ALLOC_TRACE") != nullptr;
/// XGRAD_ALLOC_TRACE=1: print the call stack of the first 40 counted allocations (to find them).
inline void tick()
{
    if (!counting.load(std::memory_order_relaxed) || in_attribution) return;
    count.fetch_add(1, std::memory_order_relaxed);
    if (attributing.load(std::memory_order_relaxed) && called_from_blas()) blas_count.fetch_add(1, std::memory_order_relaxed);
    if (trace && !in_trace && traced.fetch_add(1) < 40) {
        in_trace = true;
        void* frames[12];
        const int n = backtrace(frames, 12);
        backtrace_symbols_fd(frames, n, 2);
        (void)!write(2, "----\n", 5);
        in_trace = false;
    }
}
}  // namespace

namespace xgrad::alloc {
void count_allocations(bool on)
{
    if (on) {  // the first backtrace() loads libgcc_s (allocating): do it before counting
        void* frames[2];
        backtrace(frames, 2);
    }
    counting = on;
}
std::size_t allocations() { return count.load(); }
std::size_t blas_allocations() { return blas_count.load(); }
void attribute_allocations(bool on)
{
    if (on && n_blas_ranges.load() == 0) dl_iterate_phdr(collect_blas, nullptr);
    attributing = on;
}
}  // namespace xgrad::alloc

extern "C" {
void* malloc(std::size_t n)
{
    tick();
    return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b)
{
    tick();
    return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n)
{
    tick();
    return __libc_realloc(p, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n)
{
    tick();
    void* p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void* aligned_alloc(std::size_t align, std::size_t n)
{
    tick();
    return __libc_memalign(align, n);
}
void* memalign(std::size_t align, std::size_t n)
{
    tick();
    return __libc_memalign(align, n);
}
}

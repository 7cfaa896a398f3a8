#include "alloc_count.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> count{0};
std::atomic<std::size_t> dnnl_count{0};
std::atomic<bool> attributing{false};
thread_local bool in_attribution = false;

/// Whether a frame of the current call stack lies in libdnnl. backtrace() and dladdr() do not
/// allocate once warmed up (count_allocations(true) warms them up before counting starts).
bool called_from_dnnl()
{
    if (in_attribution) return false;
    in_attribution = true;
    void* frames[24];
    const int n = backtrace(frames, 24);
    bool found = false;
    for (int i = 2; i < n && !found; ++i) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_fname)
            for (const char* p = info.dli_fname; *p && !found; ++p) found = p[0] == 'l' && p[1] == 'i' && p[2] == 'b' &&
                                                                            p[3] == 'd' && p[4] == 'n' && p[5] == 'n' &&
                                                                            p[6] == 'l';
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
    if (attributing.load(std::memory_order_relaxed) && called_from_dnnl()) dnnl_count.fetch_add(1, std::memory_order_relaxed);
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
        Dl_info info;
        dladdr(reinterpret_cast<void*>(&count_allocations), &info);
    }
    counting = on;
}
std::size_t allocations() { return count.load(); }
std::size_t dnnl_allocations() { return dnnl_count.load(); }
void attribute_allocations(bool on) { attributing = on; }
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

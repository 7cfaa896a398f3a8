#include "alloc_count.hpp"

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
std::atomic<int> traced{0};
thread_local bool in_trace = false;
const bool trace = std::getenv("XGRAD_ALLOC_TRACE") != nullptr;
/// XGRAD_ALLOC_TRACE=1: print the call stack of the first 40 counted allocations (to find them).
inline void tick()
{
    if (!counting.load(std::memory_order_relaxed)) return;
    count.fetch_add(1, std::memory_order_relaxed);
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

namespace xgrad::bench {
void count_allocations(bool on) { counting = on; }
std::size_t allocations() { return count.load(); }
}  // namespace xgrad::bench

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

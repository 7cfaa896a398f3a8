#include "alloc_count.hpp"

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
inline void tick()
{
    if (counting.load(std::memory_order_relaxed)) count.fetch_add(1, std::memory_order_relaxed);
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

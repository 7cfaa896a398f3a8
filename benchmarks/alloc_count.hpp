#pragma once
// Counts heap allocations (malloc family, which operator new and xsimd's aligned allocator both
// reach) while counting is on. The counting versions of malloc & co. are in alloc_count.cpp and
// interpose glibc's for the whole process.
#include <cstddef>

namespace xgrad::bench {
void count_allocations(bool on);
std::size_t allocations();
}  // namespace xgrad::bench

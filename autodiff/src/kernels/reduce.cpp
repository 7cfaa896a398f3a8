// Kernels: reductions (see reduce.hpp).
#include "kernels/reduce.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/core.h>

namespace xgrad::kernels {

namespace {

/// Strides of `small` seen as an nd-axis shape it broadcasts to: aligned to the last axes, 0 on
/// the leading axes and where `small` has size 1. (Shape is an inline small vector: no allocation.)
Shape broadcast_strides(const Shape& small, std::size_t nd)
{
    Shape stride(nd, 0);
    const std::size_t lead = nd - small.size();
    std::size_t st = 1;
    for (std::size_t i = small.size(); i-- > 0;) {
        stride[lead + i] = (small[i] == 1) ? 0 : st;
        st *= small[i];
    }
    return stride;
}

/// The next row of a row-major walk over `full`: the multi-index over all axes but the last is
/// advanced, and `off` (an offset under `stride`) with it.
inline void advance(Shape& idx, const Shape& full, const Shape& stride, std::size_t& off)
{
    for (std::size_t d = full.size() - 1; d-- > 0;) {
        ++idx[d];
        off += stride[d];
        if (idx[d] < full[d]) break;
        off -= stride[d] * idx[d];
        idx[d] = 0;
    }
}

}  // namespace

template <class T>
void sum_to(const T* full, const Shape& fs, const Shape& target, T* dst, bool acc, const char* op)
{
    bool ok = fs.size() >= target.size();
    const std::size_t lead = ok ? fs.size() - target.size() : 0;
    for (std::size_t i = 0; ok && i < target.size(); ++i) ok = target[i] == fs[lead + i] || target[i] == 1;
    if (!ok)
        throw std::logic_error(fmt::format("xgrad: {}: gradient of shape {} cannot be reduced to input shape {}", op,
                                           shape_str(fs), shape_str(target)));
    if (!acc) std::fill(dst, dst + shape_size(target), T(0));
    const std::size_t n = shape_size(fs);
    if (n == 0) return;
    const std::size_t nd = fs.size();
    if (nd == 0) {
        *dst += *full;
        return;
    }
    // Walk the full gradient once in row-major order and map each element to its target offset:
    // target strides are 0 on the reduced axes. Shape is an inline small vector: no allocation.
    const Shape tstride = broadcast_strides(target, nd);
    const std::size_t inner = fs[nd - 1];
    const std::size_t inner_stride = tstride[nd - 1];
    Shape idx(nd, 0);
    const T* src = full;
    std::size_t off = 0;
    for (std::size_t base = 0; base < n; base += inner) {
        if (inner_stride == 1) {
            for (std::size_t j = 0; j < inner; ++j) dst[off + j] += src[base + j];
        } else {
            T acc = 0;
            for (std::size_t j = 0; j < inner; ++j) acc += src[base + j];
            dst[off] += acc;
        }
        advance(idx, fs, tstride, off);
    }
}

template <class T>
void broadcast_to(const T* src, const Shape& small, T* dst, const Shape& fs, T scale, bool acc)
{
    const std::size_t n = shape_size(fs);
    if (n == 0) return;
    const std::size_t nd = fs.size();
    if (nd == 0) {
        *dst = (acc ? *dst : T(0)) + scale * *src;
        return;
    }
    // The walk of sum_to, the other way: source strides are 0 on the broadcast axes.
    const Shape sstride = broadcast_strides(small, nd);
    const std::size_t inner = fs[nd - 1];
    const std::size_t inner_stride = sstride[nd - 1];
    Shape idx(nd, 0);
    std::size_t off = 0;
    for (std::size_t base = 0; base < n; base += inner) {
        T* d = dst + base;
        if (inner_stride == 1) {
            const T* s = src + off;
            if (acc)
                for (std::size_t j = 0; j < inner; ++j) d[j] += scale * s[j];
            else
                for (std::size_t j = 0; j < inner; ++j) d[j] = scale * s[j];
        } else {
            const T v = scale * src[off];
            if (acc)
                for (std::size_t j = 0; j < inner; ++j) d[j] += v;
            else
                std::fill(d, d + inner, v);
        }
        advance(idx, fs, sstride, off);
    }
}

template void sum_to(const float*, const Shape&, const Shape&, float*, bool, const char*);
template void sum_to(const double*, const Shape&, const Shape&, double*, bool, const char*);
template void broadcast_to(const float*, const Shape&, float*, const Shape&, float, bool);
template void broadcast_to(const double*, const Shape&, double*, const Shape&, double, bool);

}  // namespace xgrad::kernels

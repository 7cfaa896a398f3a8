#pragma once
// Kernels: 2-D max and average pooling over NCHW planes, no padding, floor windows. Raw buffers.
#include <cstddef>

#include "xgrad/tensor.hpp"

namespace xgrad::kernels {

struct PoolGeom {
    std::size_t planes, h, w, k, s, oh, ow;
};
/// Checks the input (ShapeError naming `op`) and computes the geometry; stride 0 means stride = kernel.
PoolGeom pool_geometry(const char* op, const Shape& x, std::size_t kernel, std::size_t stride);

template <class T>
void avg_pool2d_forward(const T* x, const PoolGeom& g, T* y);
/// dx (+)= gy / k² spread over each window; `acc` false overwrites dx (which may hold garbage).
template <class T>
void avg_pool2d_backward(const T* gy, const PoolGeom& g, T* dx, bool acc);

/// dx = gy / k² spread over each window, overwritten (dx may hold garbage): what
/// avg_pool2d_backward(…, false) computes, but when 2×2 windows of stride 2 tile the input exactly
/// every element is written once, without zeroing dx first and adding into it (the recorded VJP's
/// op avg_pool2d_backward; other geometries take avg_pool2d_backward's path).
template <class T>
void avg_pool2d_spread(const T* gy, const PoolGeom& g, T* dx);

/// y = window maxima; argmax[o] = offset of output o's maximum within its input plane (first max).
template <class T>
void max_pool2d_forward(const T* x, const PoolGeom& g, T* y, std::size_t* argmax);
/// dx (+)= gy routed to each window's maximum; `acc` false overwrites dx.
template <class T>
void max_pool2d_backward(const T* gy, const std::size_t* argmax, const PoolGeom& g, T* dx, bool acc);

}  // namespace xgrad::kernels

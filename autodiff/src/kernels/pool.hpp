#pragma once
// Kernels: 2-D max and average pooling over NCHW planes, no padding, floor windows. Raw buffers.
#include <cstddef>

#include "xgrad/activation_kind.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::kernels {

struct PoolGeom {
    std::size_t planes, h, w, k, s, oh, ow;
};
/// Checks the input (ShapeError naming `op`) and computes the geometry; stride 0 means stride = kernel.
PoolGeom pool_geometry(const char* op, const Shape& x, std::size_t kernel, std::size_t stride);

template <class T>
void avg_pool2d_forward(const T* x, const PoolGeom& g, T* y);
/// dx (+)= gy / k² spread over each window; `acc` false overwrites dx (which may hold garbage;
/// 2×2 windows of stride 2 that tile the input exactly write each element once, with no zero fill).
template <class T>
void avg_pool2d_backward(const T* gy, const PoolGeom& g, T* dx, bool acc);

/// y = avg_pool2d(act(x)) plane by plane. act(x) is written to `kept` (x's shape) when given, else
/// it lives a plane at a time in the thread's scratch (cache), never in memory. The same bits as
/// the activation then the pooling.
template <class T>
void activation_avg_pool2d_forward(Activation act, const T* x, const PoolGeom& g, T* y, T* kept);
/// dx (+)= act'(x) ⊙ (the pooling's dX of gy), plane by plane: relu's mask from x, sigmoid's and
/// tanh's slope from kept = act(x). The same bits as the two backwards.
template <class T>
void activation_avg_pool2d_backward(Activation act, const T* gy, const T* x, const T* kept, const PoolGeom& g, T* dx,
                                    bool acc);

/// y = window maxima; argmax[o] = offset of output o's maximum within its input plane (first max).
template <class T>
void max_pool2d_forward(const T* x, const PoolGeom& g, T* y, std::size_t* argmax);
/// dx (+)= gy routed to each window's maximum; `acc` false overwrites dx.
template <class T>
void max_pool2d_backward(const T* gy, const std::size_t* argmax, const PoolGeom& g, T* dx, bool acc);

}  // namespace xgrad::kernels

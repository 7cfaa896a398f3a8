#pragma once
// Kernels: reductions on raw buffers.
#include <cstddef>

#include "xgrad/tensor.hpp"

namespace xgrad::kernels {

/// dst (shape `target`) (+)= `full` (shape `full_shape`) summed over its leading axes and over the
/// axes where `target` has size 1: the adjoint of NumPy broadcasting, the one place it is undone.
/// `acc` false overwrites dst. std::logic_error naming `op` if `target` does not broadcast to `full_shape`.
template <class T>
void sum_to(const T* full, const Shape& full_shape, const Shape& target, T* dst, bool acc, const char* op);

/// dst (shape `full_shape`) (+)= scale · src (shape `small`, which broadcasts to full_shape by NumPy
/// rules; the caller checks that): the adjoint of sum_to. `acc` false overwrites dst.
template <class T>
void broadcast_to(const T* src, const Shape& small, T* dst, const Shape& full_shape, T scale, bool acc);

}  // namespace xgrad::kernels

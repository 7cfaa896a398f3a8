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

}  // namespace xgrad::kernels

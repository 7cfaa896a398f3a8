#pragma once
// Reproducible random tensors for tests, examples and benchmarks (model weights are initialized by
// xgrad::nn::init instead).
#include <random>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// A tensor of `shape` drawn from U(lo, hi) by std::mt19937 seeded with `seed`, in row-major order;
/// the same seed gives the same tensor on every platform's libstdc++.
template <class T>
Tensor<T> rand_uniform(const Shape& shape, unsigned seed, T lo = T(0), T hi = T(1))
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<T> d(lo, hi);
    Tensor<T> t = Tensor<T>::from_shape(shape);
    for (auto& v : t) v = d(rng);
    return t;
}

}  // namespace xgrad

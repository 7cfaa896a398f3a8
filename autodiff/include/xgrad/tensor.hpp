#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "xgrad/xtensor.hpp"

namespace xgrad {

/// Dense row-major tensor of any rank: the value and gradient type of every Var.
template <class T>
using Tensor = xt::xarray<T, xt::layout_type::row_major>;

/// Shape of a Tensor (a small inline vector: no heap allocation up to rank 4).
using Shape = typename Tensor<float>::shape_type;

/// Integer type for labels and indices (gather, one_hot).
using Index = std::int64_t;
using IndexTensor = xt::xarray<Index, xt::layout_type::row_major>;

/// "(64,784)"; "()" for a 0-d scalar. Also writes a multi-index: "(2,0,1)".
template <class S>
std::string shape_str(const S& shape)
{
    std::string s = "(";
    bool first = true;
    for (auto d : shape) {
        if (!first) s += ',';
        s += std::to_string(d);
        first = false;
    }
    return s + ")";
}

/// Number of elements of a shape (1 for a 0-d scalar).
template <class S>
std::size_t shape_size(const S& shape)
{
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
}

/// Number of elements of a shape, or false if the product overflows size_t (a shape read from a
/// file or given by a user is checked with this before anything is allocated).
template <class S>
bool checked_shape_size(const S& shape, std::size_t& n)
{
    n = 1;
    for (auto d : shape)
        if (__builtin_mul_overflow(n, static_cast<std::size_t>(d), &n)) return false;
    return true;
}

}  // namespace xgrad

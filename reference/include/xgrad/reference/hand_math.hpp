#pragma once
// Plain float64 tensor arithmetic for writing a derivation by hand, the way it is written on paper:
// (n,k)·(k,m) products, transposes, row-wise softmax, one-hot rows. Never tape ops, so a hand
// derivation built from these is independent of what it is compared with (diagnose, compare).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <limits>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>

#include "xgrad/tensor.hpp"

namespace xgrad::reference::hand {

using Tens = Tensor<double>;

/// a·b for a (n,k), b (k,m): three loops, no BLAS.
inline Tens mm(const Tens& a, const Tens& b)
{
    Tens c = xt::zeros<double>({a.shape()[0], b.shape()[1]});
    for (std::size_t i = 0; i < a.shape()[0]; ++i)
        for (std::size_t k = 0; k < a.shape()[1]; ++k)
            for (std::size_t j = 0; j < b.shape()[1]; ++j) c(i, j) += a(i, k) * b(k, j);
    return c;
}
/// aᵀ of a matrix.
inline Tens tr(const Tens& a) { return xt::transpose(a); }
/// Σ over rows: (n,m) → (m).
inline Tens colsum(const Tens& a) { return xt::sum(a, {0}); }
/// σ(z) = 1 / (1 + e^(−z)), elementwise.
inline Tens sig(const Tens& z) { return 1 / (1 + xt::exp(-z)); }
/// x·Wᵀ + b with W (out, in) as Linear stores it.
inline Tens affine(const Tens& x, const Tens& w, const Tens& b) { return mm(x, tr(w)) + b; }
/// A (1, n) row from its values.
inline Tens row(std::initializer_list<double> v)
{
    Tens t = xt::zeros<double>({std::size_t(1), v.size()});
    std::size_t j = 0;
    for (double x : v) t(0, j++) = x;
    return t;
}
/// softmax of each row of z (n,m), shifted by the row's max.
inline Tens softmax_rows(const Tens& z)
{
    Tens s = z;
    for (std::size_t i = 0; i < z.shape()[0]; ++i) {
        double m = -std::numeric_limits<double>::infinity(), sum = 0;
        for (std::size_t j = 0; j < z.shape()[1]; ++j) m = std::max(m, z(i, j));
        for (std::size_t j = 0; j < z.shape()[1]; ++j) sum += (s(i, j) = std::exp(z(i, j) - m));
        for (std::size_t j = 0; j < z.shape()[1]; ++j) s(i, j) /= sum;
    }
    return s;
}
/// (n, c) rows with a 1 at each label y_i; labels must be < c.
inline Tens one_hot_rows(const IndexTensor& y, std::size_t c)
{
    Tens t = xt::zeros<double>({y.size(), c});
    for (std::size_t i = 0; i < y.size(); ++i) t(i, std::size_t(y(i))) = 1;
    return t;
}

}  // namespace xgrad::reference::hand

#pragma once
// Shared by the tests: random tensors and a gradcheck assertion that prints the report on failure.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "xgrad/autodiff.hpp"

namespace xgrad::test {

/// Uniform values in [lo, hi); with min_abs > 0, magnitudes below it are pushed out (keeps inputs
/// away from kinks such as relu and abs at 0, where finite differences are meaningless).
inline Tensor<double> rnd(const Shape& shape, unsigned seed, double lo = -1, double hi = 1, double min_abs = 0)
{
    Tensor<double> t = rand_uniform(shape, seed, lo, hi);
    for (auto& v : t)
        if (std::abs(v) < min_abs) v = v < 0 ? v - min_abs : v + min_abs;
    return t;
}

/// Runs gradcheck and fails the current test with the full report if it does not pass.
inline GradcheckReport expect_gradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                                        GradcheckOptions opt = {})
{
    GradcheckReport r = gradcheck(f, inputs, opt);
    BOOST_TEST(r.ok, r.summary());
    return r;
}

/// Runs gradgradcheck and fails the current test with the full report if it does not pass.
inline GradcheckReport expect_gradgradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                                            GradcheckOptions opt = {})
{
    GradcheckReport r = gradgradcheck(f, inputs, opt);
    BOOST_TEST(r.ok, r.summary());
    return r;
}

}  // namespace xgrad::test

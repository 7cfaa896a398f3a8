#pragma once
// Shared by the tests: random tensors and a gradcheck assertion that prints the report on failure.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

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

/// Whether `pre` (the pre-activation of a fused ReLU, as a gradcheck function) is at least `margin`
/// away from 0 everywhere on `inputs`: finite differences across relu's kink are meaningless, so the
/// fused op is gradchecked only on inputs where this holds (the caller counts them).
inline bool clear_of_relu_kink(const GradcheckFn& pre, const std::vector<Tensor<double>>& inputs, double margin = 1e-3)
{
    Tape<double> t;
    std::vector<Var<double>> v;
    for (const Tensor<double>& x : inputs) v.push_back(t.variable(x));
    return xt::amin(xt::abs(pre(v).value()))() > margin;
}

/// The shapes every elementwise op is checked on (first and second order check the same cases).
inline const std::vector<Shape> unary_shapes = {Shape{}, Shape{1}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3}};
/// Pairs of shapes for broadcasting binary ops.
inline const std::vector<std::pair<Shape, Shape>> binary_shapes = {
    {Shape{3, 4}, Shape{3, 4}}, {Shape{3, 4}, Shape{4}},    {Shape{3, 1}, Shape{1, 4}}, {Shape{2, 3, 4}, Shape{3, 1}},
    {Shape{}, Shape{2, 3}},     {Shape{1}, Shape{5}},       {Shape{2, 1, 3}, Shape{2, 4, 1}}};

/// gradcheck (Order 1) or gradgradcheck (Order 2) of `inputs` through f.
template <int Order>
GradcheckReport expect_check(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs)
{
    static_assert(Order == 1 || Order == 2);
    if constexpr (Order == 1)
        return expect_gradcheck(f, inputs);
    else
        return expect_gradgradcheck(f, inputs);
}

/// gradcheck and gradgradcheck of `inputs` through f.
inline void check_both(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs)
{
    expect_check<1>(f, inputs);
    expect_check<2>(f, inputs);
}

/// Checks a unary op on every shape in unary_shapes; inputs drawn from [lo, hi) away from 0 by min_abs.
template <int Order = 1, class F>
void check_unary(F op, double lo = -1, double hi = 1, double min_abs = 0)
{
    unsigned seed = 1;
    for (const auto& s : unary_shapes) {
        BOOST_TEST_CONTEXT("shape " << shape_str(s))
        {
            expect_check<Order>([&](const std::vector<Var<double>>& x) { return op(x[0]); },
                                {rnd(s, seed++, lo, hi, min_abs)});
        }
    }
}

/// Checks a broadcasting binary op on every pair in binary_shapes, both ways round.
template <int Order = 1, class F>
void check_binary(F op, double lo = -1, double hi = 1, double min_abs = 0)
{
    unsigned seed = 100;
    for (const auto& [sa, sb] : binary_shapes) {
        BOOST_TEST_CONTEXT("shapes " << shape_str(sa) << " and " << shape_str(sb))
        {
            auto f = [&](const std::vector<Var<double>>& x) { return op(x[0], x[1]); };
            expect_check<Order>(f, {rnd(sa, seed, lo, hi, min_abs), rnd(sb, seed + 1, lo, hi, min_abs)});
            expect_check<Order>(f, {rnd(sb, seed + 2, lo, hi, min_abs), rnd(sa, seed + 3, lo, hi, min_abs)});
        }
        seed += 4;
    }
}

/// f() must throw an E whose what() is exactly `message`.
template <class E, class F>
void expect_message(F f, const std::string& message)
{
    try {
        f();
        BOOST_ERROR("no exception; expected: " << message);
    } catch (const E& e) {
        BOOST_TEST(std::string(e.what()) == message);
    }
}

}  // namespace xgrad::test

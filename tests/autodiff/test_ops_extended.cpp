// The ops of modern layers: values against per-element formulas (std:: functions), first and
// second derivatives against finite differences (gradcheck, gradgradcheck) on the shape lists of
// the other op tests, PyTorch's conventions at ties and boundaries, and the errors.
#define BOOST_TEST_MODULE ops_extended
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;
using xgrad::test::check_binary;
using xgrad::test::check_unary;
using xgrad::test::rnd;
using V = Var<double>;
using Tens = Tensor<double>;

namespace {

/// max |op(x) − f(x)| elementwise over a spread of inputs, including large ones.
double value_error(const std::function<V(const V&)>& op, const std::function<double(double)>& f)
{
    Tape<double> t;
    const Tens x = {-40.0, -8.5, -1.25, -1e-9, 0.0, 1e-9, 0.3, 2.0, 9.0, 40.0};
    const Tens y = op(t.constant(x)).value();
    double err = 0;
    for (std::size_t i = 0; i < x.size(); ++i) err = std::max(err, std::abs(y(i) - f(x(i))) / std::max(1.0, std::abs(f(x(i)))));
    return err;
}

double sigma(double v) { return 1 / (1 + std::exp(-v)); }

template <int Order>
void check_activations()
{
    check_unary<Order>([](const V& x) { return sin(x); }, -3, 3);
    check_unary<Order>([](const V& x) { return cos(x); }, -3, 3);
    check_unary<Order>([](const V& x) { return log1p(x); }, -0.9, 2);
    check_unary<Order>([](const V& x) { return expm1(x); }, -2, 2);
    check_unary<Order>([](const V& x) { return softplus(x); }, -4, 4);
    check_unary<Order>([](const V& x) { return silu(x); }, -4, 4);
    check_unary<Order>([](const V& x) { return gelu(x); }, -3, 3);
    check_unary<Order>([](const V& x) { return gelu(x, "tanh"); }, -3, 3);
    check_unary<Order>([](const V& x) { return leaky_relu(x, 0.2); }, -2, 2, 0.05);
    check_unary<Order>([](const V& x) { return elu(x, 1.5); }, -2, 2, 0.05);
    // + x/4: a one-element input outside [lo, hi] would leave nothing to check
    check_unary<Order>([](const V& x) { return clamp(x, -0.5, 0.4) + 0.25 * x; }, -1, 1, 0.05);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(values)

BOOST_AUTO_TEST_CASE(unary_ops_match_their_formulas)
{
    BOOST_TEST(value_error([](const V& x) { return sin(x); }, [](double v) { return std::sin(v); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return cos(x); }, [](double v) { return std::cos(v); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return expm1(x); }, [](double v) { return std::expm1(v); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return softplus(x); }, [](double v) { return v > 30 ? v : std::log1p(std::exp(v)); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return silu(x); }, [](double v) { return v * sigma(v); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return gelu(x); }, [](double v) { return 0.5 * v * std::erfc(-v / std::sqrt(2.0)); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return gelu(x, "tanh"); }, [](double v) {
                   return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
               }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return leaky_relu(x, 0.1); }, [](double v) { return v > 0 ? v : 0.1 * v; }) == 0.0);
    BOOST_TEST(value_error([](const V& x) { return elu(x, 2.0); }, [](double v) { return v > 0 ? v : 2 * std::expm1(v); }) < 1e-15);
    BOOST_TEST(value_error([](const V& x) { return clamp(x, -1.0, 2.0); }, [](double v) { return std::min(std::max(v, -1.0), 2.0); }) == 0.0);
    // log1p near 0 keeps its digits (log(1 + 1e-12) would lose four)
    Tape<double> t;
    BOOST_TEST(log1p(t.constant(Tens{1e-12})).value()(0) == std::log1p(1e-12));
    // softplus does not overflow, and is exact for large negative inputs
    BOOST_TEST(softplus(t.constant(Tens{800.0})).value()(0) == 800.0);
    BOOST_TEST(softplus(t.constant(Tens{-800.0})).value()(0) == 0.0);
}

BOOST_AUTO_TEST_CASE(maximum_minimum_where_broadcast)
{
    Tape<double> t;
    const Tens a = {{1, 5, -2}, {0, 3, 3}}, b = {2, 3, -2};
    BOOST_TEST(maximum(t.constant(a), t.constant(b)).value() == (Tens{{2, 5, -2}, {2, 3, 3}}));
    BOOST_TEST(minimum(t.constant(a), t.constant(b)).value() == (Tens{{1, 3, -2}, {0, 3, -2}}));
    const V cond = t.constant(Tens{1, 0, 2});  // nonzero: true
    BOOST_TEST(where(cond, t.constant(a), t.constant(b)).value() == (Tens{{1, 3, -2}, {0, 3, 3}}));
    Tens col_mask = xt::zeros<double>({2, 1});
    col_mask(0, 0) = 1;
    const V col = t.constant(col_mask);  // (2,1) against (2,3) and (3)
    BOOST_TEST(where(col, t.constant(a), t.constant(b)).value() == (Tens{{1, 5, -2}, {2, 3, -2}}));
    // a −inf fill (attention's causal mask) stays out of the other branch's gradient
    auto s = t.variable(Tens{{0.5, 0.25}, {1.0, 2.0}});
    auto masked = where(t.constant(Tens{{1, 0}, {1, 1}}), s, t.constant(Tens{-INFINITY}));
    t.backward(sum(softmax(masked, 1)));
    BOOST_TEST(std::isfinite(s.grad()(0, 0)));
    BOOST_TEST(s.grad()(0, 1) == 0.0);
}

BOOST_AUTO_TEST_CASE(reductions_match_their_formulas)
{
    Tape<double> t;
    const Tens x = rnd({3, 4, 5}, 7, -3, 3);
    // logsumexp over axis 1 against the naive sum (inputs are small, so it cannot overflow)
    const Tens l = logsumexp(t.constant(x), {1}).value();
    BOOST_TEST((l.shape() == Shape{3, 5}));
    double err = 0;
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t k = 0; k < 5; ++k) {
            double s = 0;
            for (std::size_t j = 0; j < 4; ++j) s += std::exp(x(i, j, k));
            err = std::max(err, std::abs(l(i, k) - std::log(s)));
        }
    BOOST_TEST(err < 1e-14);
    // shifted: no overflow at 1000, and a row of −inf gives −inf
    const Tens big = {{1000.0, 1000.0}, {-INFINITY, -INFINITY}};
    const Tens lb = logsumexp(t.constant(big), {-1}, true).value();
    BOOST_TEST((lb.shape() == Shape{2, 1}));
    BOOST_TEST(std::abs(lb(0, 0) - (1000 + std::log(2.0))) < 1e-12);
    BOOST_TEST(lb(1, 0) == -INFINITY);
    // var and std over axes (0, 2) with correction 1 and 0
    for (int corr : {0, 1}) {
        const Tens v = var(t.constant(x), {0, 2}, corr).value();
        const Tens sd = xgrad::std(t.constant(x), {0, 2}, corr, true).value();
        BOOST_TEST((sd.shape() == Shape{1, 4, 1}));
        for (std::size_t j = 0; j < 4; ++j) {
            double m = 0, q = 0;
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t k = 0; k < 5; ++k) m += x(i, j, k) / 15;
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t k = 0; k < 5; ++k) q += (x(i, j, k) - m) * (x(i, j, k) - m);
            BOOST_TEST(std::abs(v(j) - q / (15 - corr)) < 1e-13);
            BOOST_TEST(std::abs(sd(0, j, 0) - std::sqrt(q / (15 - corr))) < 1e-13);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(derivatives)

BOOST_AUTO_TEST_CASE(unary_first_order) { check_activations<1>(); }

BOOST_AUTO_TEST_CASE(unary_second_order) { check_activations<2>(); }

BOOST_AUTO_TEST_CASE(binary_first_and_second_order)
{
    check_binary<1>([](const V& a, const V& b) { return maximum(a, b); });
    check_binary<1>([](const V& a, const V& b) { return minimum(a, b); });
    check_binary<2>([](const V& a, const V& b) { return maximum(a, b) * minimum(a, b); });
    // the condition: the sign pattern of a fixed (3,4) tensor, broadcast against each pair of shapes
    // where it fits (broadcast_shape throws otherwise, so those pairs are left out)
    const Tens mask = xt::cast<double>(rnd({4}, 9) > 0.0);
    for (const auto& [sa, sb] : xgrad::test::binary_shapes) {
        const Tens xa = rnd(sa, 3), xb = rnd(sb, 4);
        auto f1 = [&](const std::vector<V>& v) { return where(v[0].tape().constant(mask), v[0], v[1]) * v[0]; };
        auto f2 = [&](const std::vector<V>& v) { return where(v[0].tape().constant(mask), v[0] * v[0], v[1] * v[0]); };
        bool fits = true;
        try {
            Tape<double> t;
            where(t.constant(mask), t.constant(xa), t.constant(xb)) * t.constant(xa);
        } catch (const ShapeError&) {
            fits = false;
        }
        if (!fits) continue;
        xgrad::test::expect_check<1>(f1, {xa, xb});
        xgrad::test::expect_check<2>(f2, {xa, xb});
    }
}

BOOST_AUTO_TEST_CASE(reductions_first_and_second_order)
{
    for (const std::vector<int>& axes : {std::vector<int>{0}, std::vector<int>{-1}, std::vector<int>{0, 2}}) {
        const Tens x = rnd({2, 3, 4}, 11);
        auto lse = [&](const std::vector<V>& v) { return logsumexp(v[0], axes); };
        auto vr = [&](const std::vector<V>& v) { return var(v[0], axes, 1, true) * v[0]; };
        auto sd = [&](const std::vector<V>& v) { return xgrad::std(v[0], axes, 0); };
        xgrad::test::expect_check<1>(lse, {x});
        xgrad::test::expect_check<2>(lse, {x});
        xgrad::test::expect_check<1>(vr, {x});
        xgrad::test::expect_check<2>(vr, {x});
        xgrad::test::expect_check<1>(sd, {x});
        xgrad::test::expect_check<2>(sd, {x});
    }
}

BOOST_AUTO_TEST_CASE(ties_and_boundaries_follow_pytorch)
{
    Tape<double> t;
    auto a = t.variable(Tens{1.0, 2.0, 3.0});
    auto b = t.variable(Tens{1.0, 0.0, 5.0});
    t.backward(sum(maximum(a, b)));
    BOOST_TEST(a.grad() == (Tens{0.5, 1.0, 0.0}));  // the tie at 1 splits the gradient
    BOOST_TEST(b.grad() == (Tens{0.5, 0.0, 1.0}));
    Tape<double> t2;
    auto x = t2.variable(Tens{-1.0, -0.5, 0.0, 0.5, 1.0});
    t2.backward(sum(clamp(x, -0.5, 0.5)));
    BOOST_TEST(x.grad() == (Tens{0.0, 1.0, 1.0, 1.0, 0.0}));  // the bounds pass the gradient
    Tape<double> t3;
    auto z = t3.variable(Tens{-1.0, 0.0, 2.0});
    t3.backward(sum(leaky_relu(z, 0.1) + elu(z, 2.0)));
    // leaky: 0.1, 0.1, 1 (0 counts as negative, as PyTorch); elu: 2e⁻¹, 2e⁰ = 2, 1
    BOOST_TEST(std::abs(z.grad()(0) - (0.1 + 2 * std::exp(-1.0))) < 1e-15);
    BOOST_TEST(z.grad()(1) == 0.1 + 2.0);
    BOOST_TEST(z.grad()(2) == 2.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

using xgrad::test::expect_message;

BOOST_AUTO_TEST_CASE(bad_arguments_name_the_op)
{
    Tape<double> t;
    auto a = t.constant(Tens::from_shape({3, 4}));
    auto b = t.constant(Tens::from_shape({5}));
    expect_message<ShapeError>([&] { maximum(a, b); },
                               "maximum: (3,4) and (5) cannot be broadcast: dimensions 4 and 5 differ at axis 1 of the result");
    expect_message<ShapeError>([&] { where(t.constant(Tens{1, 0}), a, a); },
                               "where: (2) and (3,4) cannot be broadcast: dimensions 2 and 4 differ at axis 1 of the result");
    expect_message<std::invalid_argument>([&] { clamp(a, 1.0, -1.0); }, "clamp: needs lo <= hi, got lo = 1, hi = -1");
    expect_message<std::invalid_argument>([&] { gelu(a, "erf"); }, "gelu: approximate must be \"none\" or \"tanh\", got \"erf\"");
    expect_message<std::invalid_argument>(
        [&] { var(t.constant(Tens::from_shape({1, 4})), {0}); },
        "var: 1 elements over axes (0) of (1,4) leave no degrees of freedom with correction 1");
    expect_message<ShapeError>([&] { logsumexp(a, {2}); }, "logsumexp: axis 2 is out of range for shape (3,4)");
    expect_message<ShapeError>([&] { var(a, {1, -1}); }, "var: axes (1,-1) name an axis twice for shape (3,4)");
}

BOOST_AUTO_TEST_SUITE_END()

// Higher-order differentiation: grad with create_graph, hvp, hessian, jacobian, jvp and
// gradgradcheck, against closed forms and finite differences (float64).
#define BOOST_TEST_MODULE autodiff_higher_order
#include <cmath>

#include "test_util.hpp"
#include "xgrad/op.hpp"

using namespace xgrad;
using V = Var<double>;

namespace {
double rel(double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); }
}  // namespace

// d/dx tanh = 1 − t², d²/dx² = −2t(1 − t²), d³/dx³ = −2(1 − t²)(1 − 3t²), t = tanh x.
BOOST_AUTO_TEST_CASE(third_derivative_of_tanh_matches_the_closed_form)
{
    for (double x0 : {-1.3, -0.2, 0.0, 0.4, 2.1}) {
        Tape<double> tape;
        const V x = tape.variable(Tensor<double>{x0});
        const V y = sum(tanh(x));
        const V d1 = grad(y, {x}, GradOptions{true})[0];
        const V d2 = grad(sum(d1), {x}, GradOptions{true})[0];
        const V d3 = grad(sum(d2), {x}, GradOptions{true})[0];
        const double t = std::tanh(x0);
        BOOST_TEST(rel(d1.value()(0), 1 - t * t) < 1e-14);
        BOOST_TEST(rel(d2.value()(0), -2 * t * (1 - t * t)) < 1e-14);
        BOOST_TEST(rel(d3.value()(0), -2 * (1 - t * t) * (1 - 3 * t * t)) < 1e-13);
    }
}

BOOST_AUTO_TEST_CASE(grad_without_create_graph_leaves_parameters_alone)
{
    Parameter<double> w(test::rnd(Shape{3}, 1));
    w.zero_grad();
    Tape<double> tape;
    const V p = tape.param(w);
    const V x = tape.variable(test::rnd(Shape{3}, 2));
    const V y = sum(p * x * x);
    const auto g = grad(y, {p, x});
    BOOST_TEST(!g[0].requires_grad());  // a constant without create_graph
    for (std::size_t i = 0; i < 3; ++i) {
        BOOST_TEST(rel(g[0].value()(i), x.value()(i) * x.value()(i)) < 1e-15);
        BOOST_TEST(rel(g[1].value()(i), 2 * w.value()(i) * x.value()(i)) < 1e-15);
        BOOST_TEST(w.grad()(i) == 0.0);
    }
}

BOOST_AUTO_TEST_CASE(unused_inputs_throw_unless_allowed)
{
    Tape<double> tape;
    const V x = tape.variable(test::rnd(Shape{2}, 3));
    const V z = tape.variable(test::rnd(Shape{2}, 4));
    const V y = sum(exp(x));
    BOOST_CHECK_EXCEPTION(grad(y, {x, z}, GradOptions{true}), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()).find("input 1") != std::string::npos;
    });
    const auto g = grad(y, {x, z}, GradOptions{true, true});
    BOOST_TEST(g[1].value()(0) == 0.0);
    BOOST_TEST(g[1].value()(1) == 0.0);
}

BOOST_AUTO_TEST_CASE(an_op_without_a_recorded_vjp_names_itself)
{
    Tape<double> tape;
    const V x = tape.variable(test::rnd(Shape{3}, 5));
    auto op = begin_op("first_order_only", {x});
    op.value() = x.value() * 2.0;
    const V y = op.finish([](BackwardContext<double>& c) { c.accumulate(0, c.grad() * 2.0); });
    BOOST_CHECK_EXCEPTION(grad(sum(y), {x}, GradOptions{true}), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()) == "double backward not implemented for first_order_only";
    });
}

// f(x) = Σ exp(x_i)·x_{i+1}: H is tridiagonal, written out elementwise.
BOOST_AUTO_TEST_CASE(hessian_hvp_and_jvp_agree_with_the_closed_form)
{
    const Tensor<double> x0 = test::rnd(Shape{4}, 6);
    auto f = [](const V& x) {
        return sum(exp(slice(x, 0, 0, 3)) * slice(x, 0, 1, 4));
    };
    const Tensor<double> h = hessian(f, x0);
    BOOST_TEST(h.shape() == (Shape{4, 4}));
    Tensor<double> want = xt::zeros<double>(Shape{4, 4});
    for (std::size_t i = 0; i < 3; ++i) {
        want(i, i) += std::exp(x0(i)) * x0(i + 1);
        want(i, i + 1) += std::exp(x0(i));
        want(i + 1, i) += std::exp(x0(i));
    }
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) BOOST_TEST(rel(h(i, j), want(i, j)) < 1e-14);
    const Tensor<double> v = test::rnd(Shape{4}, 7);
    const Tensor<double> hv = hvp(f, x0, v);
    for (std::size_t i = 0; i < 4; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < 4; ++j) s += want(i, j) * v(j);
        BOOST_TEST(rel(hv(i), s) < 1e-14);
    }
    // jacobian of the gradient is the Hessian; jvp of it is H·v.
    auto df = [&](const V& x) { return grad(f(x), {x}, GradOptions{true})[0]; };
    const Tensor<double> j = jacobian(df, x0);
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t k = 0; k < 4; ++k) BOOST_TEST(rel(j(i, k), want(i, k)) < 1e-14);
    const auto [y, jv] = jvp(df, x0, v);
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(rel(jv(i), hv(i)) < 1e-14);
    BOOST_TEST(y.shape() == (Shape{4}));
}

BOOST_AUTO_TEST_CASE(gradgradcheck_passes_on_elementwise_ops_and_catches_a_wrong_recorded_vjp)
{
    const Tensor<double> a = test::rnd(Shape{2, 3}, 8, 0.5, 1.5);
    const Tensor<double> b = test::rnd(Shape{3}, 9, 0.5, 1.5);
    test::expect_gradgradcheck([](const std::vector<V>& v) { return v[0] * v[1] / (v[0] + v[1]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return tanh(v[0]) * sigmoid(v[1]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return pow(v[0], 3) - log(v[1]) + sqrt(v[0]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return softmax(v[0] * v[1], 1); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return log_softmax(v[0] * v[1], 0); }, {a, b});

    // y = x³ whose recorded VJP forgets the factor 3: the second derivative is wrong by 1/3.
    auto cube = [](const V& x) {
        auto op = begin_op("cube", {x});
        op.value() = x.value() * x.value() * x.value();
        return op.finish([](BackwardContext<double>& c) { c.accumulate(0, 3.0 * c.grad() * c.input(0) * c.input(0)); },
                         [](GraphBackwardContext<double>& c) { c.accumulate(0, c.grad() * c.input(0) * c.input(0)); });
    };
    GradcheckOptions opt;
    opt.input_names({"x"});
    const GradcheckReport r = gradgradcheck([&](const std::vector<V>& v) { return cube(v[0]); }, {a}, opt);
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.output_op == "grad of cube");
    BOOST_TEST(r.summary().find("x") != std::string::npos);
}

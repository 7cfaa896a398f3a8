// Second derivatives of the elementwise, activation and reduction ops: gradgradcheck over the
// shape lists of test_ops.cpp (test_util.hpp), and each family's Hessian against finite differences of its
// gradient (float64).
#define BOOST_TEST_MODULE autodiff_double_backward_elementwise
#include <cmath>

#include "test_util.hpp"

using namespace xgrad;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::check_binary;
using xgrad::test::check_unary;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;

namespace {

/// hessian(f, x) against central differences of f's gradient (each a first-order backward):
/// |H − H_fd| ≤ 1e-6 · max(1, |H_fd|) for every element.
template <class F>
void expect_hessian_matches_fd(F f, const Tensor<double>& x0)
{
    const Tensor<double> h = hessian(f, x0);
    const std::size_t n = x0.size();
    BOOST_REQUIRE(h.size() == n * n);
    auto gradient = [&](const Tensor<double>& x) {
        Tape<double> t;
        const V v = t.variable(x);
        t.backward(f(v));
        return Tensor<double>(v.grad());
    };
    const double eps = 1e-5;
    double worst = 0;
    for (std::size_t j = 0; j < n; ++j) {
        Tensor<double> xp = x0, xm = x0;
        xp.data()[j] += eps;
        xm.data()[j] -= eps;
        const Tensor<double> gp = gradient(xp), gm = gradient(xm);
        for (std::size_t i = 0; i < n; ++i) {
            const double fd = (gp.data()[i] - gm.data()[i]) / (2 * eps);
            worst = std::max(worst, std::abs(h.data()[i * n + j] - fd) / std::max(1.0, std::abs(fd)));
        }
    }
    BOOST_TEST(worst < 1e-6);
}
}  // namespace

BOOST_AUTO_TEST_CASE(add_sub_mul_div_broadcast)
{
    check_binary<2>([](const V& a, const V& b) { return a + b; });
    check_binary<2>([](const V& a, const V& b) { return a - b; });
    check_binary<2>([](const V& a, const V& b) { return a * b; });
    check_binary<2>([](const V& a, const V& b) { return a / b; }, -2, 2, 0.5);
    // the same Var on both sides: its two gradient contributions meet in one recorded add
    expect_gradgradcheck([](const Vs& x) { return x[0] * x[0] / (x[0] + 3.0); }, {rnd(Shape{2, 3}, 7)});
}

BOOST_AUTO_TEST_CASE(scalar_ops)
{
    check_unary<2>([](const V& x) { return x + 2.5; });
    check_unary<2>([](const V& x) { return 2.5 - x; });
    check_unary<2>([](const V& x) { return x * -3.0; });
    check_unary<2>([](const V& x) { return x / 4.0; });
    check_unary<2>([](const V& x) { return 3.0 / x; }, -2, 2, 0.5);
    check_unary<2>([](const V& x) { return -x; });
}

BOOST_AUTO_TEST_CASE(pow_exp_log_sqrt_abs_square)
{
    check_unary<2>([](const V& x) { return pow(x, 3.0); });
    check_unary<2>([](const V& x) { return pow(x, 0.5); }, 0.2, 2);
    check_unary<2>([](const V& x) { return pow(x, -1.5); }, 0.2, 2);
    check_unary<2>([](const V& x) { return exp(x); }, -3, 3);
    check_unary<2>([](const V& x) { return log(x); }, 0.1, 5);
    check_unary<2>([](const V& x) { return sqrt(x); }, 0.1, 5);
    check_unary<2>([](const V& x) { return abs(x) * x; }, -1, 1, 0.05);
    check_unary<2>([](const V& x) { return square(x); });
}

BOOST_AUTO_TEST_CASE(activations)
{
    check_unary<2>([](const V& x) { return sigmoid(x); }, -3, 3);
    check_unary<2>([](const V& x) { return tanh(x); }, -3, 3);
    check_unary<2>([](const V& x) { return relu(x) * x + x * x; }, -1, 1, 0.05);  // relu'' = 0: made non-trivial
    const std::vector<std::pair<Shape, int>> cases = {
        {Shape{4, 5}, -1}, {Shape{4, 5}, 0}, {Shape{2, 3, 4}, 1}, {Shape{1, 6}, 1}, {Shape{7}, 0}};
    unsigned seed = 40;
    for (const auto& [s, axis] : cases)
        BOOST_TEST_CONTEXT("shape " << shape_str(s) << " axis " << axis)
        {
            expect_gradgradcheck([axis = axis](const Vs& x) { return softmax(x[0], axis); }, {rnd(s, seed++, -3, 3)});
            expect_gradgradcheck([axis = axis](const Vs& x) { return log_softmax(x[0], axis); }, {rnd(s, seed++, -3, 3)});
        }
}

// relu_backward(G, X) = G ⊙ [X > 0], relu's recorded VJP (internal), reached as relu's gradient with
// the cotangent G as an input: gradcheck (its tensor VJP: dG = relu_backward(GY, X), dX = 0) and
// gradgradcheck (its recorded VJP, relu_backward again), on every shape of unary_shapes, G and X as
// separate inputs and as one Var (relu_backward(X, X) = X ⊙ [X > 0]).
BOOST_AUTO_TEST_CASE(relu_backward_op)
{
    using xgrad::test::expect_gradcheck;
    unsigned seed = 60;
    for (const auto& s : xgrad::test::unary_shapes) {
        BOOST_TEST_CONTEXT("shape " << shape_str(s))
        {
            const Tensor<double> x = rnd(s, seed++, -1, 1, 0.05), g = rnd(s, seed++);
            // relu's input X = x + w, w = 0 a leaf that always requires grad (gradcheck also calls f on
            // constants, with grad mode off, which grad() needs on): X depends on x whenever x is
            // being differentiated
            auto rb = [](const V& x, const V& g) {
                Tape<double>& t = x.tape();
                const bool was = t.grad_enabled();
                t.set_grad_enabled(true);
                const V w = t.variable(Tensor<double>(xt::zeros<double>(x.shape())));
                const V xw = x + w;
                const V r = grad(relu(xw), {w}, g.valid() ? g : xw, GradOptions{true})[0];
                t.set_grad_enabled(was);
                return r;
            };
            auto f = [rb](const Vs& v) { return tanh(rb(v[0], v[1])) * v[1]; };
            const auto names = GradcheckOptions().input_names({"x", "g"});
            expect_gradcheck(f, {x, g}, names);
            expect_gradgradcheck(f, {x, g}, names);
            auto same = [rb](const Vs& v) { return tanh(rb(v[0], V())); };  // G = X
            expect_gradcheck(same, {x});
            expect_gradgradcheck(same, {x});
        }
    }
    // third order: d/dg of (d/dg of sum(tanh(relu_backward(g, x)))) · v, through relu_backward's recorded VJP
    const Tensor<double> x = rnd(Shape{2, 3}, 70, -1, 1, 0.05);
    auto h = [x](const V& g) {
        const V xv = g.tape().variable(x);
        return sum(tanh(grad(relu(xv), {xv}, g, GradOptions{true})[0]));
    };
    const Tensor<double> g0 = rnd(Shape{2, 3}, 71), v = rnd(Shape{2, 3}, 72);
    // the Hessian of sum(tanh(g ⊙ m)) in g is diag(m · tanh''(g ⊙ m)), m = [x > 0]
    const Tensor<double> hv = hvp(h, g0, v);
    for (std::size_t i = 0; i < g0.size(); ++i) {
        const double m = x.data()[i] > 0 ? 1 : 0, t = std::tanh(g0.data()[i] * m);
        BOOST_TEST(hv.data()[i] == m * (-2 * t * (1 - t * t)) * v.data()[i], boost::test_tools::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(reductions)
{
    const Shape s{2, 3, 4};
    expect_gradgradcheck([](const Vs& x) { return sum(x[0]) * sum(x[0]); }, {rnd(s, 1)});
    expect_gradgradcheck([](const Vs& x) { return mean(x[0] * x[0]); }, {rnd(s, 2)});
    const std::vector<std::vector<int>> axes_list = {{0}, {1}, {-1}, {0, 2}, {0, 1, 2}};
    unsigned seed = 10;
    for (const auto& axes : axes_list)
        for (bool keep : {false, true})
            BOOST_TEST_CONTEXT("axes size " << axes.size() << " first " << axes[0] << " keepdims " << keep)
            {
                expect_gradgradcheck([&](const Vs& x) { return square(sum(x[0], axes, keep)); }, {rnd(s, seed++)});
                expect_gradgradcheck([&](const Vs& x) { return square(mean(x[0], axes, keep)); }, {rnd(s, seed++)});
            }
    expect_gradgradcheck([](const Vs& x) { return square(max(x[0], 1)); }, {rnd(Shape{3, 5}, 21)});
    expect_gradgradcheck([](const Vs& x) { return square(max(x[0], 0, true)); }, {rnd(Shape{2, 3, 4}, 22)});
    expect_gradgradcheck([](const Vs& x) { return square(max(x[0], -1)); }, {rnd(Shape{2, 3, 4}, 23)});
    expect_gradgradcheck([](const Vs& x) { return square(sum_to(x[0], Shape{3, 1})); }, {rnd(Shape{2, 3, 4}, 24)});
    expect_gradgradcheck([](const Vs& x) { return square(broadcast_to(x[0], Shape{2, 3, 4})); }, {rnd(Shape{3, 1}, 25)});
}

BOOST_AUTO_TEST_CASE(hessians_of_each_family_match_finite_differences_of_the_gradient)
{
    const Tensor<double> x = rnd(Shape{2, 3}, 50, 0.2, 1.5);
    expect_hessian_matches_fd([](const V& v) { return sum(v * v * v / (v + 2.0) - log(v) + sqrt(v) * exp(v)); }, x);
    expect_hessian_matches_fd([](const V& v) { return sum(pow(v, 2.5) + abs(v) * v + square(v) / 3.0); }, x);
    expect_hessian_matches_fd([](const V& v) { return sum(tanh(v) * sigmoid(v) + relu(v) * v); }, x);
    expect_hessian_matches_fd([](const V& v) { return sum(softmax(v, 1) * log_softmax(v * 2.0, 0)); }, x);
    expect_hessian_matches_fd([](const V& v) { return sum(square(sum(v, {0}))) * mean(v) + sum(square(max(v, 1))); }, x);
}

BOOST_AUTO_TEST_CASE(sum_to_and_broadcast_to_check_their_shapes)
{
    Tape<double> t;
    const V x = t.variable(rnd(Shape{2, 3}, 1));
    BOOST_CHECK_THROW(sum_to(x, Shape{2}), ShapeError);
    BOOST_CHECK_THROW(broadcast_to(x, Shape{3, 3}), ShapeError);
    BOOST_TEST(sum_to(x, Shape{3}).value()(1) == x.value()(0, 1) + x.value()(1, 1));
    BOOST_TEST(broadcast_to(x, Shape{4, 2, 3}).value()(3, 1, 2) == x.value()(1, 2));
}

// Found by fuzz_ops: a reshape with an inferred dimension, differentiated twice.
BOOST_AUTO_TEST_CASE(reshape_with_an_inferred_dimension)
{
    expect_gradgradcheck([](const Vs& x) { return reshape(x[0], {-1, 6}); }, {rnd(Shape{2, 3}, 60)});
}

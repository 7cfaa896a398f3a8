// Double backward of the dense ops: matmul (2x2, batched 3x3, shared 3x2), linear (with and
// without bias), conv2d (stride, padding, bias) and max/avg pooling. gradgradcheck over the shapes
// the first-order tests use; gradgradcheck of the ops' gradients themselves (their recorded VJPs:
// the internal ops matmul_t, conv2d_input_grad, conv2d_weight_grad, avg_pool2d_backward); one
// Hessian per family against finite differences of the gradient; third derivatives (float64).
#define BOOST_TEST_MODULE autodiff_double_backward_dense
#include <algorithm>
#include <cmath>
#include <functional>

#include "test_util.hpp"

using namespace xgrad;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;

namespace {

/// gradgradcheck with a step of 1e-5: the composed checks (tanh of 5×5 convolutions, of second
/// gradients) sum many terms, and the default 1e-6 leaves round-off near the 1e-8 tolerance.
GradcheckReport expect_gradgradcheck(const GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                                     GradcheckOptions opt = {})
{
    return test::expect_gradgradcheck(f, inputs, opt.eps(1e-5));
}

/// dL/dx of the scalar f at x, by one first-order backward.
Tensor<double> gradient_at(const std::function<V(const V&)>& f, const Tensor<double>& x)
{
    Tape<double> tape;
    const V xv = tape.variable(x);
    tape.backward(f(xv));
    return xv.grad();
}

/// hessian(f, x) against central differences of the gradient: |h − fd| ≤ 1e-6 · max(|fd|, 1e-2·max|fd|).
void expect_hessian_matches_differences(const std::function<V(const V&)>& f, const Tensor<double>& x0)
{
    const Tensor<double> h = hessian(f, x0);
    const std::size_t n = x0.size();
    BOOST_REQUIRE(h.size() == n * n);
    const double eps = 1e-5;
    Tensor<double> fd = Tensor<double>::from_shape({n, n});
    for (std::size_t i = 0; i < n; ++i) {
        Tensor<double> xp = x0, xm = x0;
        xp.data()[i] += eps;
        xm.data()[i] -= eps;
        const Tensor<double> gp = gradient_at(f, xp), gm = gradient_at(f, xm);
        for (std::size_t j = 0; j < n; ++j) fd(i, j) = (gp.data()[j] - gm.data()[j]) / (2 * eps);
    }
    const double scale = xt::amax(xt::abs(fd))();
    BOOST_TEST(scale > 1e-3);  // not vacuous
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            const double e = std::abs(h.data()[i * n + j] - fd(i, j)) / std::max(std::abs(fd(i, j)), 1e-2 * scale);
            worst = std::max(worst, e);
        }
    BOOST_TEST(worst < 1e-6);
}

/// ∇ₓ(vᵀ·H(x)·v) by three recorded gradients, against central differences of vᵀ·hvp(f, x, v).
void expect_third_derivative_matches_differences(const std::function<V(const V&)>& f, const Tensor<double>& x0,
                                                 const Tensor<double>& v)
{
    Tape<double> tape;
    const V x = tape.variable(x0);
    const V vv = tape.constant(v);
    const V g1 = grad(f(x), {x}, GradOptions{true})[0];
    const V g2 = grad(sum(g1 * vv), {x}, GradOptions{true})[0];  // H·v
    const V g3 = grad(sum(g2 * vv), {x}, GradOptions{true})[0];  // ∇(vᵀHv), itself differentiable
    BOOST_TEST(g3.requires_grad());
    const double eps = 1e-5;
    double worst = 0, scale = 0;
    std::vector<double> fd(x0.size());
    for (std::size_t i = 0; i < x0.size(); ++i) {
        Tensor<double> xp = x0, xm = x0;
        xp.data()[i] += eps;
        xm.data()[i] -= eps;
        fd[i] = (xt::sum(hvp(f, xp, v) * v)() - xt::sum(hvp(f, xm, v) * v)()) / (2 * eps);
        scale = std::max(scale, std::abs(fd[i]));
    }
    BOOST_TEST(scale > 1e-3);
    for (std::size_t i = 0; i < x0.size(); ++i)
        worst = std::max(worst, std::abs(g3.value().data()[i] - fd[i]) / std::max(std::abs(fd[i]), 1e-2 * scale));
    BOOST_TEST(worst < 1e-6);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(linalg)

const std::vector<std::pair<Shape, Shape>> matmul_cases = {{Shape{3, 4}, Shape{4, 5}},
                                                           {Shape{1, 1}, Shape{1, 1}},
                                                           {Shape{1, 7}, Shape{7, 1}},
                                                           {Shape{2, 3, 4}, Shape{2, 4, 5}},
                                                           {Shape{2, 3, 4}, Shape{4, 5}}};

BOOST_AUTO_TEST_CASE(matmul_gradgradcheck_all_kinds)
{
    unsigned seed = 11;
    for (const auto& [sa, sb] : matmul_cases) {
        BOOST_TEST_CONTEXT(shape_str(sa) << " x " << shape_str(sb))
        {
            const Tensor<double> a = rnd(sa, seed), b = rnd(sb, seed + 1);
            expect_gradgradcheck([](const Vs& x) { return matmul(x[0], x[1]); }, {a, b});
            expect_gradgradcheck([](const Vs& x) { return tanh(matmul(x[0], x[1])); }, {a, b});
        }
        seed += 2;
    }
    // one Var as both operands: both recorded VJPs accumulate into one gradient
    expect_gradgradcheck([](const Vs& x) { return sigmoid(matmul(x[0], x[0])); }, {rnd(Shape{4, 4}, 5)});
    expect_gradgradcheck([](const Vs& x) { return matmul(x[0], x[0]); }, {rnd(Shape{2, 3, 3}, 6)});
}

// matmul_t: every transpose flag, 2-D and batched, with α ≠ 1 (whose VJPs carry α): the value
// against matmul of materialized transposes, then gradcheck and gradgradcheck.
BOOST_AUTO_TEST_CASE(matmul_t_all_flags)
{
    unsigned seed = 51;
    for (const bool batched : {false, true})
        for (const bool ta : {false, true})
            for (const bool tb : {false, true}) {
                BOOST_TEST_CONTEXT("batched " << batched << " ta " << ta << " tb " << tb)
                {
                    auto shape = [&](std::size_t r, std::size_t c, bool t) {
                        return batched ? (t ? Shape{2, c, r} : Shape{2, r, c}) : (t ? Shape{c, r} : Shape{r, c});
                    };
                    const Tensor<double> a = rnd(shape(3, 4, ta), seed), b = rnd(shape(4, 5, tb), seed + 1);
                    seed += 2;
                    Tape<double> tape;
                    const V av = tape.constant(a), bv = tape.constant(b);
                    const V want = matmul(ta ? transpose(av) : av, tb ? transpose(bv) : bv) * 0.7;
                    const V got = matmul_t(av, bv, ta, tb, 0.7);
                    BOOST_TEST(got.shape() == want.shape());
                    double diff = 0;
                    for (std::size_t i = 0; i < want.value().size(); ++i)
                        diff = std::max(diff, std::abs(got.value().data()[i] - want.value().data()[i]));
                    BOOST_TEST(diff < 1e-12);
                    test::check_both([=](const Vs& x) { return tanh(matmul_t(x[0], x[1], ta, tb, 0.7)); }, {a, b});
                }
            }
    Tape<double> tape;
    BOOST_CHECK_THROW(matmul_t(tape.constant(rnd(Shape{2, 3, 4}, 1)), tape.constant(rnd(Shape{3, 4, 5}, 2)), false, false),
                      ShapeError);
}

// The recorded VJPs' own VJPs (third order): gradgradcheck of dA = G·Bᵀ and dB = Aᵀ·G as functions.
BOOST_AUTO_TEST_CASE(matmul_gradients_are_differentiable_twice)
{
    unsigned seed = 31;
    for (const auto& [sa, sb] : matmul_cases) {
        BOOST_TEST_CONTEXT(shape_str(sa) << " x " << shape_str(sb))
        {
            const Tensor<double> a0 = rnd(sa, seed), b0 = rnd(sb, seed + 1);
            Tape<double> probe;
            const Shape cs = matmul(probe.constant(a0), probe.constant(b0)).shape();
            const Tensor<double> g = rnd(cs, seed + 2);
            // dA(B, G) = G·Bᵀ
            expect_gradgradcheck(
                [a0](const Vs& v) {
                    const V a = v[0].tape().variable(a0);
                    return tanh(grad(matmul(a, v[0]), {a}, v[1], GradOptions{true})[0]);
                },
                {b0, g});
            // dB(A, G) = Aᵀ·G (summed over the batch for a shared B)
            expect_gradgradcheck(
                [b0](const Vs& v) {
                    const V b = v[0].tape().variable(b0);
                    return tanh(grad(matmul(v[0], b), {b}, v[1], GradOptions{true})[0]);
                },
                {a0, g});
        }
        seed += 3;
    }
}

BOOST_AUTO_TEST_CASE(linear_gradgradcheck_with_and_without_bias)
{
    for (const auto& [b, i, o] :
         std::vector<std::tuple<std::size_t, std::size_t, std::size_t>>{{4, 5, 3}, {1, 1, 1}, {7, 2, 6}}) {
        BOOST_TEST_CONTEXT("batch " << b << " in " << i << " out " << o)
        {
            const Tensor<double> x = rnd(Shape{b, i}, 1), w = rnd(Shape{o, i}, 2), bias = rnd(Shape{o}, 3);
            expect_gradgradcheck([](const Vs& v) { return linear(v[0], v[1], v[2]); }, {x, w, bias});
            expect_gradgradcheck([](const Vs& v) { return linear(v[0], v[1]); }, {x, w});
            expect_gradgradcheck([](const Vs& v) { return tanh(linear(v[0], v[1], v[2])); }, {x, w, bias});
            expect_gradgradcheck([](const Vs& v) { return tanh(linear(v[0], v[1])); }, {x, w});
            // dX = G·W and dW = Gᵀ·X as functions, differentiated twice
            const Tensor<double> g = rnd(Shape{b, o}, 4);
            expect_gradgradcheck(
                [x](const Vs& v) {
                    const V xv = v[0].tape().variable(x);
                    return tanh(grad(linear(xv, v[0], v[2]), {xv}, v[1], GradOptions{true})[0]);
                },
                {w, g, bias});
            expect_gradgradcheck(
                [w](const Vs& v) {
                    const V wv = v[0].tape().variable(w);
                    return tanh(grad(linear(v[0], wv), {wv}, v[1], GradOptions{true})[0]);
                },
                {x, g});
        }
    }
    expect_gradgradcheck([](const Vs& v) { return tanh(linear(v[0], v[0], v[1])); },
                         {rnd(Shape{3, 3}, 7), rnd(Shape{3}, 8)});
}

BOOST_AUTO_TEST_CASE(hessians_match_differences_of_the_gradient)
{
    // x as both operands, so the Hessian has the cross terms of both recorded VJPs
    expect_hessian_matches_differences([](const V& x) { return sum(tanh(matmul(x, x))); }, rnd(Shape{3, 3}, 20));
    const Tensor<double> b = rnd(Shape{3}, 21);
    expect_hessian_matches_differences(
        [b](const V& x) { return sum(tanh(linear(x, x, x.tape().constant(b)))); }, rnd(Shape{3, 3}, 22));
    const Tensor<double> shared = rnd(Shape{4, 3}, 23);
    expect_hessian_matches_differences(
        [shared](const V& x) { return sum(sigmoid(matmul(x, x.tape().constant(shared)))); },
        rnd(Shape{2, 3, 4}, 24));
}

BOOST_AUTO_TEST_CASE(third_derivative_through_linear_and_matmul)
{
    const Tensor<double> w = rnd(Shape{3, 4}, 25);
    auto f = [w](const V& x) { return sum(tanh(linear(matmul(x, x), x.tape().constant(w)))); };
    expect_third_derivative_matches_differences(f, rnd(Shape{4, 4}, 26, -0.7, 0.7), rnd(Shape{4, 4}, 27));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(conv)

struct ConvCase {
    Shape x, w;
    std::size_t stride, pad;
    bool bias;
};
const std::vector<ConvCase> conv_cases = {
    {{2, 1, 5, 5}, {3, 1, 3, 3}, 1, 0, true},  {{2, 2, 6, 6}, {4, 2, 3, 3}, 2, 1, true},
    {{1, 3, 7, 6}, {2, 3, 3, 2}, 2, 0, false},  // 7 and 6 do not divide by the stride
    {{2, 2, 4, 5}, {3, 2, 5, 5}, 1, 2, true},   // padding larger than needed
    {{3, 1, 3, 3}, {2, 1, 1, 1}, 1, 0, true},   // 1×1 kernel
    {{1, 2, 8, 8}, {2, 2, 4, 4}, 3, 1, true},
    {{1, 1, 3, 3}, {1, 1, 7, 7}, 1, 2, true}};  // kernel larger than the input

BOOST_AUTO_TEST_CASE(conv2d_gradgradcheck_stride_padding_bias)
{
    unsigned seed = 1;
    for (const auto& k : conv_cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " stride " << k.stride << " pad "
                                << k.pad << " bias " << k.bias)
        {
            const Tensor<double> x = rnd(k.x, seed++), w = rnd(k.w, seed++), b = rnd(Shape{k.w[0]}, seed++);
            const Conv2dOptions opt = Conv2dOptions().stride(k.stride).padding(k.pad);
            if (k.bias) {
                expect_gradgradcheck([opt](const Vs& v) { return conv2d(v[0], v[1], v[2], opt); }, {x, w, b},
                                     GradcheckOptions().input_names({"x", "w", "b"}));
                expect_gradgradcheck([opt](const Vs& v) { return tanh(conv2d(v[0], v[1], v[2], opt)); }, {x, w, b},
                                     GradcheckOptions().input_names({"x", "w", "b"}));
            }
            expect_gradgradcheck([opt](const Vs& v) { return conv2d(v[0], v[1], opt); }, {x, w});
            expect_gradgradcheck([opt](const Vs& v) { return tanh(conv2d(v[0], v[1], opt)); }, {x, w});
        }
    }
    // x as input and weight: conv2d(x, x) with x (2,1,3,3) = (O,C,KH,KW)
    expect_gradgradcheck([](const Vs& v) { return tanh(conv2d(v[0], v[0], Conv2dOptions().padding(1))); },
                         {rnd(Shape{2, 1, 3, 3}, 90)});
}

// conv2d_input_grad(G, W) and conv2d_weight_grad(X, G), reached as conv2d's gradients, twice
// differentiated: their recorded VJPs are conv2d and each other.
BOOST_AUTO_TEST_CASE(conv2d_gradients_are_differentiable_twice)
{
    unsigned seed = 100;
    for (const auto& k : conv_cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " stride " << k.stride << " pad "
                                << k.pad)
        {
            const Tensor<double> x = rnd(k.x, seed++), w = rnd(k.w, seed++);
            const Conv2dOptions opt = Conv2dOptions().stride(k.stride).padding(k.pad);
            Tape<double> probe;
            const Tensor<double> g = rnd(conv2d(probe.constant(x), probe.constant(w), opt).shape(), seed++);
            expect_gradgradcheck(
                [x, opt](const Vs& v) {  // dX = conv2d_input_grad(G, W)
                    const V xv = v[0].tape().variable(x);
                    return tanh(grad(conv2d(xv, v[0], opt), {xv}, v[1], GradOptions{true})[0]);
                },
                {w, g}, GradcheckOptions().input_names({"w", "g"}));
            expect_gradgradcheck(
                [w, opt](const Vs& v) {  // dW = conv2d_weight_grad(X, G)
                    const V wv = v[0].tape().variable(w);
                    return tanh(grad(conv2d(v[0], wv, opt), {wv}, v[1], GradOptions{true})[0]);
                },
                {x, g}, GradcheckOptions().input_names({"x", "g"}));
        }
    }
}

BOOST_AUTO_TEST_CASE(hessian_matches_differences_of_the_gradient)
{
    const Tensor<double> b = rnd(Shape{2}, 91);
    // x (2,1,3,3) as input and weight: the Hessian couples the input and weight gradients
    expect_hessian_matches_differences(
        [b](const V& x) { return sum(tanh(conv2d(x, x, x.tape().constant(b), Conv2dOptions().padding(1)))); },
        rnd(Shape{2, 1, 3, 3}, 92));
    const Tensor<double> w = rnd(Shape{2, 2, 3, 3}, 93);
    expect_hessian_matches_differences(
        [w](const V& x) { return sum(tanh(conv2d(x, x.tape().constant(w), Conv2dOptions().stride(2).padding(1)))); },
        rnd(Shape{1, 2, 5, 5}, 94));
}

// The recorded VJPs move rows with the stride-1 kernels (SIMD batches: rows shorter than, equal
// to and longer than one batch, with and without padding); conv2d's first-order backward and
// forward use the generic ones. Both must give the same numbers: the recorded dX =
// conv2d_input_grad(G, W) against the first-order dX, and that op's dG = conv2d(GY, W) (built from
// GY's im2col) against a plain forward conv2d(GY, W). float and double (batches of 8 and 4).
template <class T>
void check_stride1_kernels_match()
{
    struct Case {
        Shape x, w;
        std::size_t pad;
    };
    const std::vector<Case> cases = {{{2, 3, 12, 20}, {4, 3, 3, 5}, 0}, {{2, 2, 9, 11}, {3, 2, 5, 5}, 2},
                                     {{1, 2, 6, 17}, {2, 2, 3, 3}, 3}, {{3, 1, 28, 28}, {2, 1, 5, 5}, 2},
                                     {{1, 1, 3, 3}, {1, 1, 7, 7}, 2},  {{2, 6, 14, 14}, {3, 6, 5, 5}, 0}};
    unsigned seed = 500;
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " pad " << k.pad)
        {
            const Conv2dOptions opt = Conv2dOptions().padding(k.pad);
            const Tensor<T> x = rand_uniform<T>(k.x, seed++, T(-1), T(1)), w = rand_uniform<T>(k.w, seed++, T(-1), T(1));
            Tape<T> tape;
            const Shape ys = conv2d(tape.constant(x), tape.constant(w), opt).shape();
            const Tensor<T> g = rand_uniform<T>(ys, seed++, T(-1), T(1)), gy = rand_uniform<T>(k.x, seed++, T(-1), T(1));
            tape.clear();
            const Var<T> xv = tape.variable(x), gv = tape.variable(g);
            tape.backward(conv2d(xv, tape.constant(w), opt), g);
            const Tensor<T> dx_first = xv.grad();
            const Var<T> dx = grad(conv2d(xv, tape.constant(w), opt), {xv}, gv, GradOptions{true})[0];
            BOOST_TEST((dx.value() == dx_first));
            tape.backward(dx, gy);  // dG = conv2d(GY, W), through GY's im2col
            const Tensor<T> dg_plain = conv2d(tape.constant(gy), tape.constant(w), opt).value();
            BOOST_TEST((gv.grad() == dg_plain));
        }
    }
}

BOOST_AUTO_TEST_CASE(stride1_kernels_of_the_recorded_vjps_match_the_first_order_ones)
{
    check_stride1_kernels_match<float>();
    check_stride1_kernels_match<double>();
}

BOOST_AUTO_TEST_CASE(third_derivative_through_conv2d)
{
    auto f = [](const V& x) { return sum(tanh(conv2d(x, x, Conv2dOptions().stride(2).padding(1)))); };
    expect_third_derivative_matches_differences(f, rnd(Shape{2, 1, 4, 4}, 95), rnd(Shape{2, 1, 4, 4}, 96));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(pool)

struct PoolCase {
    Shape x;
    std::size_t k, s;
};
const std::vector<PoolCase> pool_cases = {{{2, 3, 4, 4}, 2, 2}, {{1, 2, 5, 5}, 2, 2}, {{1, 1, 7, 6}, 3, 2},
                                          {{2, 1, 5, 5}, 3, 1}, {{1, 2, 4, 6}, 2, 2}, {{1, 1, 4, 5}, 2, 2}};

BOOST_AUTO_TEST_CASE(pooling_gradgradcheck)
{
    unsigned seed = 40;
    for (const auto& c : pool_cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(c.x) << " k " << c.k << " s " << c.s)
        {
            const Tensor<double> x = rnd(c.x, seed++);
            expect_gradgradcheck([c](const Vs& v) { return max_pool2d(v[0], c.k, c.s); }, {x});
            expect_gradgradcheck([c](const Vs& v) { return avg_pool2d(v[0], c.k, c.s); }, {x});
            expect_gradgradcheck([c](const Vs& v) { return tanh(max_pool2d(v[0], c.k, c.s)); }, {x});
            expect_gradgradcheck([c](const Vs& v) { return tanh(avg_pool2d(v[0], c.k, c.s)); }, {x});
            // the fused activation + pooling (relu away from its kink)
            const Tensor<double> xa = rnd(c.x, seed++, -2, 2, 0.05);
            for (const Activation a : {Activation::relu, Activation::sigmoid, Activation::tanh})
                expect_gradgradcheck([c, a](const Vs& v) { return tanh(activation_avg_pool2d(v[0], a, c.k, c.s)); }, {xa});
            // the recorded VJPs (scatter_add_flat, avg_pool2d_backward) as functions of G, twice
            Tape<double> probe;
            const Tensor<double> g = rnd(max_pool2d(probe.constant(x), c.k, c.s).shape(), seed++);
            expect_gradgradcheck(
                [c, x](const Vs& v) {
                    const V xv = v[0].tape().variable(x);
                    return tanh(grad(max_pool2d(xv, c.k, c.s), {xv}, v[0], GradOptions{true})[0]);
                },
                {g});
            expect_gradgradcheck(
                [c, x](const Vs& v) {
                    const V xv = v[0].tape().variable(x);
                    return tanh(grad(avg_pool2d(xv, c.k, c.s), {xv}, v[0], GradOptions{true})[0]);
                },
                {g});
            // the recorded gradients' values (avg_pool2d_backward writes without zeroing first when
            // 2×2 windows tile the input) are the first-order ones
            Tape<double> t;
            const V xv = t.variable(x), gv = t.constant(g);
            t.backward(avg_pool2d(xv, c.k, c.s), g);
            const Tensor<double> first = xv.grad();
            BOOST_TEST((grad(avg_pool2d(xv, c.k, c.s), {xv}, gv, GradOptions{true})[0].value() == first));
            t.backward(max_pool2d(xv, c.k, c.s), g);
            const Tensor<double> first_max = xv.grad();
            BOOST_TEST((grad(max_pool2d(xv, c.k, c.s), {xv}, gv, GradOptions{true})[0].value() == first_max));
        }
    }
}

BOOST_AUTO_TEST_CASE(hessian_matches_differences_of_the_gradient)
{
    expect_hessian_matches_differences(
        [](const V& x) { return sum(tanh(max_pool2d(x, 2, 2))) + sum(tanh(avg_pool2d(x, 3, 1) * 2.0)); },
        rnd(Shape{1, 2, 4, 4}, 60));
}

BOOST_AUTO_TEST_CASE(third_derivative_through_pooling)
{
    auto f = [](const V& x) { return sum(tanh(max_pool2d(x, 2, 1))) + sum(tanh(avg_pool2d(x, 2, 2) * 2.0)); };
    expect_third_derivative_matches_differences(f, rnd(Shape{1, 2, 4, 4}, 61), rnd(Shape{1, 2, 4, 4}, 62));
}

BOOST_AUTO_TEST_SUITE_END()

// Double backpropagation through a small conv → pool → conv → pool net: gradgradcheck with respect
// to both weights (the gradient penalty ‖∇_W L‖² of a training step needs exactly this).
BOOST_AUTO_TEST_CASE(double_backward_through_a_small_convnet)
{
    const Tensor<double> x = rnd(Shape{2, 1, 6, 6}, 70), w1 = rnd(Shape{2, 1, 3, 3}, 71), w2 = rnd(Shape{3, 2, 2, 2}, 72);
    const Tensor<double> b2 = rnd(Shape{3}, 73);
    expect_gradgradcheck(
        [x, b2](const Vs& v) {
            Tape<double>& t = v[0].tape();
            const V h = max_pool2d(tanh(conv2d(t.constant(x), v[0], Conv2dOptions().padding(1))), 2, 2);  // (2,2,3,3)
            const V z = conv2d(h, v[1], t.constant(b2));                                                   // (2,3,2,2)
            return tanh(avg_pool2d(z, 2, 2));                                                             // (2,3,1,1)
        },
        {w1, w2}, GradcheckOptions().input_names({"w1", "w2"}));
}

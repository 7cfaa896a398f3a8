// Every op against central finite differences in float64, on several shapes including
// broadcasting, size-1 dimensions, 0-d scalars and (where the op allows) empty tensors.
#define BOOST_TEST_MODULE autodiff_ops
#include <cmath>
#include <functional>
#include <stdexcept>

#include "test_util.hpp"

using namespace xgrad;
using xgrad::test::expect_gradcheck;
using xgrad::test::check_binary;
using xgrad::test::check_unary;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;

BOOST_AUTO_TEST_SUITE(elementwise)

BOOST_AUTO_TEST_CASE(add_sub_mul_div_broadcast)
{
    check_binary([](const V& a, const V& b) { return a + b; });
    check_binary([](const V& a, const V& b) { return a - b; });
    check_binary([](const V& a, const V& b) { return a * b; });
    check_binary([](const V& a, const V& b) { return a / b; }, -2, 2, 0.5);
}

BOOST_AUTO_TEST_CASE(broadcast_values)
{
    Tape<double> t;
    Tensor<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    Tensor<double> b = {10.0, 20.0, 30.0};
    auto c = t.variable(a) + t.variable(b);
    Tensor<double> expected = {{11.0, 22.0, 33.0}, {14.0, 25.0, 36.0}};
    BOOST_TEST(c.value() == expected);
}

BOOST_AUTO_TEST_CASE(scalar_ops)
{
    check_unary([](const V& x) { return x + 2.5; });
    check_unary([](const V& x) { return 2.5 + x; });
    check_unary([](const V& x) { return x - 2.5; });
    check_unary([](const V& x) { return 2.5 - x; });
    check_unary([](const V& x) { return x * -3.0; });
    check_unary([](const V& x) { return x / 4.0; });
    check_unary([](const V& x) { return 3.0 / x; }, -2, 2, 0.5);
    check_unary([](const V& x) { return -x; });
}

BOOST_AUTO_TEST_CASE(pow_exp_log_sqrt_abs_square)
{
    check_unary([](const V& x) { return pow(x, 3.0); });
    check_unary([](const V& x) { return pow(x, 0.5); }, 0.2, 2);
    check_unary([](const V& x) { return pow(x, -1.5); }, 0.2, 2);
    check_unary([](const V& x) { return exp(x); }, -3, 3);
    check_unary([](const V& x) { return log(x); }, 0.1, 5);
    check_unary([](const V& x) { return sqrt(x); }, 0.1, 5);
    check_unary([](const V& x) { return abs(x); }, -1, 1, 0.05);
    check_unary([](const V& x) { return square(x); });
}

BOOST_AUTO_TEST_CASE(pow_takes_any_arithmetic_exponent)
{
    // The exponent converts to the Var's type: an int, or a double literal for a float Var.
    Tape<float> tf;
    auto xf = tf.variable(Tensor<float>{1.0f, 2.0f, 4.0f});
    auto sq = pow(xf, 2);
    BOOST_TEST(sq.value() == (Tensor<float>{1.0f, 4.0f, 16.0f}));
    tf.backward(sum(sq));
    BOOST_TEST(xf.grad() == (Tensor<float>{2.0f, 4.0f, 8.0f}));  // 2x
    BOOST_TEST(xt::amax(xt::abs(pow(xf, 0.5).value() - Tensor<float>{1.0f, std::sqrt(2.0f), 2.0f}))() < 1e-6f);
    Tape<double> td;
    auto xd = td.variable(Tensor<double>{9.0, 16.0});
    BOOST_TEST(pow(xd, 0.5).value() == (Tensor<double>{3.0, 4.0}));
    BOOST_TEST(pow(xd, 3).value() == (Tensor<double>{729.0, 4096.0}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(activation)

BOOST_AUTO_TEST_CASE(sigmoid_tanh_relu)
{
    check_unary([](const V& x) { return sigmoid(x); }, -4, 4);
    check_unary([](const V& x) { return tanh(x); }, -3, 3);
    // relu on all-negative input would be a vacuous check: mix signs, and one positive scalar
    expect_gradcheck([](const Vs& x) { return relu(x[0]); }, {Tensor<double>{{-0.7, 0.3, 1.2}, {0.9, -0.2, -1.5}}});
    expect_gradcheck([](const Vs& x) { return relu(x[0]); }, {Tensor<double>(0.4)});
    expect_gradcheck([](const Vs& x) { return relu(x[0] * x[1]); }, {rnd(Shape{4, 5}, 3, -1, 1, 0.05), rnd(Shape{5}, 4, 0.1, 1)});
}

BOOST_AUTO_TEST_CASE(relu_values_nan_and_accumulation)
{
    // Forward keeps NaN (as PyTorch does).
    Tape<float> t0;
    const Tensor<float> y0 = relu(t0.variable(Tensor<float>{-1.5f, std::nanf(""), 2.0f})).value();
    BOOST_TEST(y0(0) == 0.0f);
    BOOST_TEST(std::isnan(y0(1)));
    BOOST_TEST(y0(2) == 2.0f);
    // Backward passes G where X > 0 and 0 at X = 0; x reaches the loss twice, so relu's VJP must add
    // to the other path's gradient, not overwrite it.
    Tape<float> tape;
    auto x = tape.variable(Tensor<float>{-1.5f, 0.0f, 2.0f, 3.0f});
    auto w = tape.constant(Tensor<float>{1.0f, 2.0f, 3.0f, 5.0f});
    auto y = relu(x);
    BOOST_TEST(y.value() == (Tensor<float>{0.0f, 0.0f, 2.0f, 3.0f}));
    tape.backward(sum(y * w) + sum(x * w));
    BOOST_TEST(x.grad() == (Tensor<float>{1.0f, 2.0f, 6.0f, 10.0f}));
}

BOOST_AUTO_TEST_CASE(softmax_and_log_softmax_axes)
{
    const std::vector<std::pair<Shape, int>> cases = {
        {Shape{4, 5}, -1}, {Shape{4, 5}, 0}, {Shape{2, 3, 4}, 1}, {Shape{1, 6}, 1}, {Shape{7}, 0}};
    unsigned seed = 7;
    for (const auto& [s, axis] : cases) {
        BOOST_TEST_CONTEXT("shape " << shape_str(s) << " axis " << axis)
        {
            expect_gradcheck([axis = axis](const Vs& x) { return softmax(x[0], axis); }, {rnd(s, seed++, -3, 3)});
            expect_gradcheck([axis = axis](const Vs& x) { return log_softmax(x[0], axis); }, {rnd(s, seed++, -3, 3)});
        }
    }
}

BOOST_AUTO_TEST_CASE(softmax_over_a_single_element_is_constant)
{
    // softmax over an axis of size 1 is identically 1: its gradient is zero and gradcheck refuses it.
    Tensor<double> x = rnd(Shape{3, 1}, 5);
    auto r = gradcheck([](const Vs& v) { return softmax(v[0], 1); }, {x});
    BOOST_TEST(r.vacuous);
    Tape<double> t;
    BOOST_TEST(softmax(t.constant(x), 1).value() == (xt::ones<double>({3, 1})));
}

BOOST_AUTO_TEST_CASE(softmax_gradcheck_at_large_inputs)
{
    // Without the max shift these overflow: e^800 = inf.
    Tensor<double> x = rnd(Shape{3, 4}, 3, -2, 2) + 800.0;
    expect_gradcheck([](const Vs& v) { return log_softmax(v[0], 1); }, {x});
    expect_gradcheck([](const Vs& v) { return softmax(v[0], 1); }, {x});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(linalg)

BOOST_AUTO_TEST_CASE(matmul_ranks)
{
    const std::vector<std::pair<Shape, Shape>> cases = {{Shape{3, 4}, Shape{4, 5}},
                                                        {Shape{1, 1}, Shape{1, 1}},
                                                        {Shape{1, 7}, Shape{7, 1}},
                                                        {Shape{2, 3, 4}, Shape{2, 4, 5}},
                                                        {Shape{2, 3, 4}, Shape{4, 5}}};
    unsigned seed = 11;
    for (const auto& [sa, sb] : cases) {
        BOOST_TEST_CONTEXT(shape_str(sa) << " x " << shape_str(sb))
        {
            expect_gradcheck([](const Vs& x) { return matmul(x[0], x[1]); }, {rnd(sa, seed), rnd(sb, seed + 1)});
        }
        seed += 2;
    }
}

BOOST_AUTO_TEST_CASE(fused_linear)
{
    // W is (out, in), as in PyTorch: linear(x, W, b) = x·Wᵀ + b, and linear(x, W) = x·Wᵀ.
    for (const auto& [b, i, o] : std::vector<std::tuple<std::size_t, std::size_t, std::size_t>>{{4, 5, 3}, {1, 1, 1}, {7, 2, 6}}) {
        const Tensor<double> x = rnd(Shape{b, i}, 1), w = rnd(Shape{o, i}, 2), bias = rnd(Shape{o}, 3);
        expect_gradcheck([](const Vs& v) { return linear(v[0], v[1], v[2]); }, {x, w, bias});
        expect_gradcheck([](const Vs& v) { return linear(v[0], v[1]); }, {x, w});
        Tape<double> t;
        const auto fused = linear(t.constant(x), t.constant(w), t.constant(bias)).value();
        const auto plain = (matmul(t.constant(x), transpose(t.constant(w))) + t.constant(bias)).value();
        BOOST_TEST(fused.shape() == (Shape{b, o}), boost::test_tools::per_element());
        BOOST_TEST(xt::amax(xt::abs(fused - plain))() < 1e-14);
        const auto no_bias = linear(t.constant(x), t.constant(w)).value();
        BOOST_TEST(xt::amax(xt::abs(no_bias - (fused - bias)))() < 1e-14);
    }
    // a hand-computed case: x = [1 2], W = [[1 0], [0 1], [1 1]] (3 outputs, 2 inputs), b = [0 0 10]
    Tape<double> t;
    auto x = t.variable(Tensor<double>{{1, 2}});
    auto w = t.variable(Tensor<double>{{1, 0}, {0, 1}, {1, 1}});
    auto y = linear(x, w, t.constant(Tensor<double>{0, 0, 10}));
    BOOST_TEST(y.value() == (Tensor<double>{{1, 2, 13}}));
    t.backward(y, Tensor<double>{{1, 10, 100}});
    BOOST_TEST(x.grad() == (Tensor<double>{{101, 110}}));                       // g·W
    BOOST_TEST(w.grad() == (Tensor<double>{{1, 2}, {10, 20}, {100, 200}}));     // gᵀ·x
    BOOST_CHECK_THROW(linear(t.constant(rnd(Shape{2, 3}, 1)), t.constant(rnd(Shape{4, 3}, 2)), t.constant(rnd(Shape{3}, 3))),
                      ShapeError);
}

BOOST_AUTO_TEST_CASE(matmul_inputs_used_twice)
{
    // A·A and A·Aᵀ: both operands are the same node, so both VJPs accumulate into one gradient.
    expect_gradcheck([](const Vs& x) { return matmul(x[0], x[0]); }, {rnd(Shape{4, 4}, 5)});
    expect_gradcheck([](const Vs& x) { return matmul(x[0], transpose(x[0])); }, {rnd(Shape{3, 5}, 6)});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(reduce)

BOOST_AUTO_TEST_CASE(sum_mean_all_and_axes)
{
    const Shape s{2, 3, 4};
    expect_gradcheck([](const Vs& x) { return sum(x[0]); }, {rnd(s, 1)});
    expect_gradcheck([](const Vs& x) { return mean(x[0]); }, {rnd(s, 2)});
    expect_gradcheck([](const Vs& x) { return sum(x[0]); }, {rnd(Shape{}, 3)});
    const std::vector<std::vector<int>> axes_list = {{0}, {1}, {-1}, {0, 2}, {0, 1, 2}};
    unsigned seed = 10;
    for (const auto& axes : axes_list)
        for (bool keep : {false, true}) {
            BOOST_TEST_CONTEXT("axes size " << axes.size() << " first " << axes[0] << " keepdims " << keep)
            {
                expect_gradcheck([&](const Vs& x) { return sum(x[0], axes, keep); }, {rnd(s, seed++)});
                expect_gradcheck([&](const Vs& x) { return mean(x[0], axes, keep); }, {rnd(s, seed++)});
            }
        }
}

BOOST_AUTO_TEST_CASE(sum_axes_values)
{
    Tape<double> t;
    Tensor<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    auto x = t.constant(a);
    BOOST_TEST(sum(x, {0}).value() == (Tensor<double>{5.0, 7.0, 9.0}));
    BOOST_TEST(sum(x, {1}, true).value() == (Tensor<double>(xt::xtensor<double, 2>{{6.0}, {15.0}})));
    BOOST_TEST(mean(x, {1}).value() == (Tensor<double>{2.0, 5.0}));
    BOOST_TEST(sum(x).item() == 21.0);
    BOOST_TEST(sum(x).dim() == 0u);
}

BOOST_AUTO_TEST_CASE(max_along_axis)
{
    expect_gradcheck([](const Vs& x) { return max(x[0], 1); }, {rnd(Shape{3, 5}, 21)});
    expect_gradcheck([](const Vs& x) { return max(x[0], 0, true); }, {rnd(Shape{2, 3, 4}, 22)});
    expect_gradcheck([](const Vs& x) { return max(x[0], -1); }, {rnd(Shape{2, 3, 4}, 23)});
    Tape<double> t;
    auto m = max(t.constant(Tensor<double>{{1.0, 9.0, 3.0}, {7.0, 2.0, 5.0}}), 1);
    BOOST_TEST(m.value() == (Tensor<double>{9.0, 7.0}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shape_ops)

BOOST_AUTO_TEST_CASE(reshape_flatten_permute_transpose)
{
    expect_gradcheck([](const Vs& x) { return reshape(x[0], {6, -1}); }, {rnd(Shape{2, 3, 4}, 1)});
    expect_gradcheck([](const Vs& x) { return flatten(x[0]); }, {rnd(Shape{2, 3, 2, 2}, 2)});
    expect_gradcheck([](const Vs& x) { return permute(x[0], {2, 0, 1}); }, {rnd(Shape{2, 3, 4}, 3)});
    expect_gradcheck([](const Vs& x) { return transpose(x[0]); }, {rnd(Shape{3, 4}, 4)});
    expect_gradcheck([](const Vs& x) { return transpose(x[0]); }, {rnd(Shape{2, 3, 4}, 5)});
    Tape<double> t;
    auto p = permute(t.constant(Tensor<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}), {1, 0});
    BOOST_TEST(p.value() == (Tensor<double>{{1.0, 4.0}, {2.0, 5.0}, {3.0, 6.0}}));
}

BOOST_AUTO_TEST_CASE(slice_along_axis)
{
    expect_gradcheck([](const Vs& x) { return slice(x[0], 1, 1, 5, 2); }, {rnd(Shape{4, 6}, 1)});
    expect_gradcheck([](const Vs& x) { return slice(x[0], 0, -2, 4); }, {rnd(Shape{4, 6}, 2)});
    expect_gradcheck([](const Vs& x) { return slice(x[0], 2, 0, 3); }, {rnd(Shape{2, 3, 4}, 3)});
    Tape<double> t;
    auto s = slice(t.constant(Tensor<double>{0.0, 1.0, 2.0, 3.0, 4.0, 5.0}), 0, 1, 6, 2);
    BOOST_TEST(s.value() == (Tensor<double>{1.0, 3.0, 5.0}));
}

BOOST_AUTO_TEST_CASE(concatenate_axes)
{
    expect_gradcheck([](const Vs& x) { return concatenate<double>({x[0], x[1], x[2]}, 1); },
                     {rnd(Shape{2, 3}, 1), rnd(Shape{2, 1}, 2), rnd(Shape{2, 4}, 3)});
    expect_gradcheck([](const Vs& x) { return concatenate<double>({x[0], x[1]}, 0); },
                     {rnd(Shape{2, 3, 2}, 4), rnd(Shape{1, 3, 2}, 5)});
    // an input used twice, and an empty piece
    expect_gradcheck([](const Vs& x) { return concatenate<double>({x[0], x[1], x[0]}, -1); },
                     {rnd(Shape{3, 2}, 6), rnd(Shape{3, 0}, 7)});
}

BOOST_AUTO_TEST_CASE(gather_pick_one_hot)
{
    IndexTensor idx = {{0, 4}, {2, 2}, {1, 3}};  // repeated index: gradients add
    expect_gradcheck([&](const Vs& x) { return gather(x[0], 1, idx); }, {rnd(Shape{3, 5}, 1)});
    IndexTensor idx0 = {{2, 0, 1}};
    expect_gradcheck([&](const Vs& x) { return gather(x[0], 0, idx0); }, {rnd(Shape{3, 3}, 2)});
    IndexTensor labels = {3, 0, 4};
    expect_gradcheck([&](const Vs& x) { return pick(x[0], labels); }, {rnd(Shape{3, 5}, 3)});

    Tape<double> t;
    auto oh = one_hot(t, IndexTensor{2, 0}, 3);
    BOOST_TEST(oh.value() == (Tensor<double>{{0.0, 0.0, 1.0}, {1.0, 0.0, 0.0}}));
    BOOST_TEST(!oh.requires_grad());
    auto p = pick(t.constant(Tensor<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}), IndexTensor{2, 0});
    BOOST_TEST(p.value() == (Tensor<double>{3.0, 4.0}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(losses)

BOOST_AUTO_TEST_CASE(half_sum_is_refused_by_cross_entropy_and_nll)
{
    // half_sum (½Σ) is the squared-error convention; for a log-likelihood it used to mean sum silently.
    Tape<double> t;
    auto z = t.variable(Tensor<double>{{1, 2, 3}, {0, 0, 1}});
    const IndexTensor labels = {2, 0};
    auto expect_refused = [](const char* op, const std::function<void()>& f) {
        try {
            f();
            BOOST_ERROR(op << " accepted Reduction::half_sum");
        } catch (const std::invalid_argument& e) {
            BOOST_TEST(std::string(e.what()) == std::string(op) +
                                                    ": Reduction::half_sum is for squared error (mse_loss); use "
                                                    "Reduction::mean or Reduction::sum");
        }
    };
    expect_refused("cross_entropy", [&] { cross_entropy(z, labels, Reduction::half_sum); });
    expect_refused("nll_loss", [&] { nll_loss(log_softmax(z, 1), labels, Reduction::half_sum); });
    // sum and mean still work: ℓ = Σ (logΣexp z − z_y)
    const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
    const double l1 = std::log(2.0 + std::exp(1.0)) - 0.0;
    BOOST_TEST(cross_entropy(z, labels, Reduction::sum).value()() == l0 + l1, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(nll_loss(log_softmax(z, 1), labels, Reduction::mean).value()() == (l0 + l1) / 2,
               boost::test_tools::tolerance(1e-12));
    // mse_loss keeps half_sum: ½Σ(y − d)²
    BOOST_TEST(mse_loss(z, t.constant(Tensor<double>{{1, 2, 3}, {0, 0, 3}}), Reduction::half_sum).value()() == 2.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(edge_cases)

BOOST_AUTO_TEST_CASE(empty_tensors_flow_through)
{
    // (0,3) + (3): result is empty, the (3) input's gradient is exactly zero, nothing crashes.
    Tape<double> t;
    auto e = t.variable(Tensor<double>::from_shape({0, 3}));
    auto b = t.variable(Tensor<double>{1.0, 2.0, 3.0});
    auto y = tanh(e * b + b);
    BOOST_TEST(y.shape() == (Shape{0, 3}));
    auto loss = sum(y) + sum(b);
    t.backward(loss);
    BOOST_TEST(loss.item() == 6.0);
    BOOST_TEST(b.grad() == (Tensor<double>{1.0, 1.0, 1.0}));
    BOOST_TEST(e.grad().size() == 0u);
    auto m = matmul(t.variable(Tensor<double>::from_shape({2, 0})), t.variable(Tensor<double>::from_shape({0, 3})));
    BOOST_TEST(m.value() == (xt::zeros<double>({2, 3})));
    // gradcheck over a function that also takes an empty input
    expect_gradcheck([](const Vs& x) { return sum(x[0], {0}) + softmax(x[1], 0); },
                     {Tensor<double>::from_shape({0, 4}), rnd(Shape{4}, 9)});
}

BOOST_AUTO_TEST_CASE(composite_two_layer_network)
{
    // tanh(x·W1 + b1)·W2 + b2 under log_softmax/pick: a whole small classifier at once.
    IndexTensor labels = {1, 0, 2, 1};
    expect_gradcheck(
        [&](const Vs& p) {
            auto h = tanh(matmul(p[0], p[1]) + p[2]);
            auto logits = matmul(h, p[3]) + p[4];
            return -mean(pick(log_softmax(logits, 1), labels));
        },
        {rnd(Shape{4, 5}, 1), rnd(Shape{5, 6}, 2), rnd(Shape{6}, 3), rnd(Shape{6, 3}, 4), rnd(Shape{3}, 5)},
        GradcheckOptions().seed(1).input_names({"x", "W1", "b1", "W2", "b2"}));
}

BOOST_AUTO_TEST_SUITE_END()

// select and the fused recurrent cells lstm_cell and gru_cell: values against the same formulas
// composed of single ops (sigmoid, tanh, slice), first and second derivatives against finite
// differences (gradcheck, gradgradcheck in float64), one Var given as both gate parts, and errors.
#define BOOST_TEST_MODULE ops_recurrent
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;
using xgrad::test::check_both;
using xgrad::test::expect_check;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;
using Tens = Tensor<double>;

namespace {


/// f() must throw an E whose message contains every one of `parts`.
template <class E, class F>
void expect_message(F f, std::initializer_list<const char*> parts)
{
    try {
        f();
        BOOST_ERROR("no exception");
    } catch (const E& e) {
        for (const char* p : parts) BOOST_TEST(std::string(e.what()).find(p) != std::string::npos, e.what() << " lacks " << p);
    }
}

/// max |a − b| / max(1, max |b|)
double rel_diff(const Tens& a, const Tens& b)
{
    BOOST_TEST_REQUIRE((a.shape() == b.shape()));
    double m = 0, s = 1;
    for (std::size_t i = 0; i < a.size(); ++i) {
        m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
        s = std::max(s, std::abs(b.data()[i]));
    }
    return m / s;
}

/// lstm_cell composed of single ops: [h', c'] stacked.
V lstm_composed(const V& gx, const V& gh, const V& c)
{
    const auto h = std::ptrdiff_t(c.shape()[1]);
    const V a = gx + gh;
    const V i = sigmoid(slice(a, 1, 0, h)), f = sigmoid(slice(a, 1, h, 2 * h));
    const V g = tanh(slice(a, 1, 2 * h, 3 * h)), o = sigmoid(slice(a, 1, 3 * h, 4 * h));
    const V cn = f * c + i * g;
    return stack({o * tanh(cn), cn}, 0);
}

V gru_composed(const V& gx, const V& gh, const V& hp)
{
    const auto h = std::ptrdiff_t(hp.shape()[1]);
    const V r = sigmoid(slice(gx, 1, 0, h) + slice(gh, 1, 0, h));
    const V z = sigmoid(slice(gx, 1, h, 2 * h) + slice(gh, 1, h, 2 * h));
    const V n = tanh(slice(gx, 1, 2 * h, 3 * h) + r * slice(gh, 1, 2 * h, 3 * h));
    return (1.0 - z) * n + z * hp;
}

}  // namespace

BOOST_AUTO_TEST_CASE(select_takes_one_row_without_its_axis)
{
    Tape<double> t;
    const Tens x = rnd({3, 2, 4}, 1);
    const V v = t.variable(x);
    const V a = select(v, 0, 2), b = select(v, 1, -1), c = select(v, -1, 0);
    BOOST_TEST((a.shape() == Shape{2, 4}));
    BOOST_TEST((b.shape() == Shape{3, 4}));
    BOOST_TEST((c.shape() == Shape{3, 2}));
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 4; ++j) BOOST_TEST(a.value()(i, j) == x(2, i, j));
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t j = 0; j < 4; ++j) BOOST_TEST(b.value()(i, j) == x(i, 1, j));
        for (std::size_t j = 0; j < 2; ++j) BOOST_TEST(c.value()(i, j) == x(i, j, 0));
    }
    expect_message<ShapeError>([&] { select(v, 1, 2); }, {"select", "index 2", "axis 1", "(3,2,4)"});
    expect_message<ShapeError>([&] { select(v, 0, -4); }, {"select", "index -4"});
    expect_message<ShapeError>([&] { select(v, 3, 0); }, {"select"});
    unsigned seed = 10;
    for (int axis : {0, 1, -1})
        for (std::ptrdiff_t index : {0, -1})
            BOOST_TEST_CONTEXT("axis " << axis << " index " << index)
            check_both([=](const Vs& w) { return square(select(w[0], axis, index)); }, {rnd({3, 2, 4}, seed++)});
}

BOOST_AUTO_TEST_CASE(lstm_cell_equals_its_composition_and_its_gradients_are_right)
{
    for (const auto& [b, h] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 2}, {2, 5}}) {
        BOOST_TEST_CONTEXT("B " << b << " H " << h)
        {
            const Tens gx = rnd({b, 4 * h}, 20, -2, 2), gh = rnd({b, 4 * h}, 21, -2, 2), c = rnd({b, h}, 22, -2, 2);
            Tape<double> t;
            const V x = t.variable(gx), y = t.variable(gh), s = t.variable(c);
            const V fused = lstm_cell(x, y, s), composed = lstm_composed(x, y, s);
            BOOST_TEST(rel_diff(fused.value(), composed.value()) < 1e-15);
            // first derivatives against the composition's, through a weighted sum
            const V w = t.constant(rnd({2, b, h}, 23));
            const auto gf = grad(sum(fused * w), Vs{x, y, s}), gc = grad(sum(composed * w), Vs{x, y, s});
            for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(rel_diff(gf[k].value(), gc[k].value()) < 1e-14);
            check_both([](const Vs& v) { return lstm_cell(v[0], v[1], v[2]); }, {gx, gh, c});
        }
    }
}

BOOST_AUTO_TEST_CASE(gru_cell_equals_its_composition_and_its_gradients_are_right)
{
    for (const auto& [b, h] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 2}, {2, 5}}) {
        BOOST_TEST_CONTEXT("B " << b << " H " << h)
        {
            const Tens gx = rnd({b, 3 * h}, 30, -2, 2), gh = rnd({b, 3 * h}, 31, -2, 2), hp = rnd({b, h}, 32, -2, 2);
            Tape<double> t;
            const V x = t.variable(gx), y = t.variable(gh), s = t.variable(hp);
            const V fused = gru_cell(x, y, s), composed = gru_composed(x, y, s);
            BOOST_TEST(rel_diff(fused.value(), composed.value()) < 1e-15);
            const V w = t.constant(rnd({b, h}, 33));
            const auto gf = grad(sum(fused * w), Vs{x, y, s}), gc = grad(sum(composed * w), Vs{x, y, s});
            for (std::size_t k = 0; k < 3; ++k) BOOST_TEST(rel_diff(gf[k].value(), gc[k].value()) < 1e-14);
            check_both([](const Vs& v) { return gru_cell(v[0], v[1], v[2]); }, {gx, gh, hp});
        }
    }
}

BOOST_AUTO_TEST_CASE(one_var_as_both_gate_parts_gets_both_gradients)
{
    // The two gate inputs share one gradient buffer: the second write must add, not overwrite.
    const Tens a = rnd({2, 8}, 40, -2, 2), c = rnd({2, 2}, 41);
    check_both([](const Vs& v) { return lstm_cell(v[0], v[0], v[1]); }, {a, c});
    const Tens a3 = rnd({2, 6}, 42, -2, 2);
    check_both([](const Vs& v) { return gru_cell(v[0], v[0], v[1]); }, {a3, c});
    check_both([](const Vs& v) { return gru_cell(v[0], v[0], select(v[0], 1, 0) * v[1]); }, {a3, c});
}

BOOST_AUTO_TEST_CASE(cells_name_the_op_and_the_shapes_on_mismatch)
{
    Tape<double> t;
    const V g4 = t.variable(rnd({2, 8}, 1)), g3 = t.variable(rnd({2, 6}, 2)), s = t.variable(rnd({2, 2}, 3));
    expect_message<ShapeError>([&] { lstm_cell(g4, g3, s); }, {"lstm_cell", "(2,8)", "(2,6)", "(2,2)"});
    expect_message<ShapeError>([&] { lstm_cell(g3, g3, s); }, {"lstm_cell", "(B, 4·H)"});
    expect_message<ShapeError>([&] { gru_cell(g4, g4, s); }, {"gru_cell", "(B, 3·H)", "(2,8)"});
    expect_message<ShapeError>([&] { gru_cell(g3, g3, t.variable(rnd({3, 2}, 4))); }, {"gru_cell", "(3,2)"});
}

BOOST_AUTO_TEST_CASE(cells_run_in_float)
{
    Tape<float> t;
    Tensor<float> a = Tensor<float>::from_shape({1, 4}), c = Tensor<float>::from_shape({1, 1});
    a.fill(0.f);
    c.fill(2.f);
    const auto y = lstm_cell(t.variable(a), t.constant(a), t.variable(c));
    // i = f = o = ½, g = 0: c' = ½·2 = 1, h' = ½·tanh 1
    BOOST_TEST(y.value()(1, 0, 0) == 1.f);
    BOOST_TEST(std::abs(y.value()(0, 0, 0) - 0.5f * std::tanh(1.f)) < 1e-7f);
}

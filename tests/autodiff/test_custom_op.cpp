// A user's own ops, written with nothing but the installed headers (xgrad/op.hpp), exactly as the
// library's ops are written: values, gradients against finite differences (float64), broadcasting
// undone by accumulate(), state kept with the node, a failed op taken off the tape.
#define BOOST_TEST_MODULE autodiff_custom_op
#include "test_util.hpp"

#include <cmath>

#include "xgrad/op.hpp"

using namespace xgrad;
using xgrad::test::expect_gradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;

namespace {

/// y = x·σ(x)    dx = g·(σ + y·(1 − σ))    (the example of docs/custom_ops.md)
template <class T>
Var<T> swish(const Var<T>& x)
{
    auto op = begin_op("swish", {x});
    op.value().resize(x.shape());  // noalias: computed in place, no allocation once shapes are stable
    xt::noalias(op.value()) = x.value() / (T(1) + xt::exp(-x.value()));
    return op.finish([](BackwardContext<T>& c) {
        auto s = T(1) / (T(1) + xt::exp(-c.input(0)));
        c.accumulate(0, c.grad() * (s + c.value() * (T(1) - s)));
    });
}

/// swish again, differentiable to any order (docs/custom_ops.md, "Second derivatives"): one
/// closure serves both sweeps.
template <class T>
Var<T> swish2(const Var<T>& x)
{
    auto op = begin_op("swish2", {x});
    op.value().resize(x.shape());
    xt::noalias(op.value()) = x.value() / (T(1) + xt::exp(-x.value()));
    return op.finish_both([](auto& c) {                   // swish: both sweeps, one body
        auto s = T(1) / (T(1) + exp(-c.input(0)));        // xt::exp on tensors, xgrad::exp on Vars
        c.accumulate(0, c.grad() * (s + c.value() * (T(1) - s)));
    });
}

/// y = a·b (a (n,m), b broadcast from (m)), z = y + a    da = g·(b + 1), db = Σ_rows g·a
/// Two inputs, one of them broadcast: accumulate() sums db back to b's shape.
template <class T>
Var<T> scale_shift(const Var<T>& a, const Var<T>& b)
{
    auto op = begin_op("scale_shift", {a, b});
    if (a.dim() != 2 || b.dim() != 1 || b.shape()[0] != a.shape()[1])
        throw ShapeError("scale_shift: a " + shape_str(a.shape()) + " and b " + shape_str(b.shape())
                         + ": needs a (n,m) and b (m)");
    op.value().resize(a.shape());
    xt::noalias(op.value()) = a.value() * b.value() + a.value();
    return op.finish([](BackwardContext<T>& c) {
        c.accumulate(0, c.grad() * (c.input(1) + T(1)));
        c.accumulate(1, c.grad() * c.input(0));  // shape (n,m): reduced to (m) by accumulate
    });
}

/// y_i = x at the row argmax of each row (n)    dx[i, argmax_i] = g_i
/// State for backward (the argmax positions) kept in the node's saved_index(), a kernel-style
/// write through input_grad().
template <class T>
Var<T> row_max(const Var<T>& x)
{
    auto op = begin_op("row_max", {x});
    const std::size_t n = x.shape()[0], m = x.shape()[1];
    op.value().resize(Shape{n});
    std::vector<std::size_t>& at = op.saved_index();
    at.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t best = 0;
        for (std::size_t j = 1; j < m; ++j)
            if (x.value()(i, j) > x.value()(i, best)) best = j;
        at[i] = i * m + best;
        op.value()(i) = x.value().data()[at[i]];
    }
    return op.finish([](BackwardContext<T>& c) {
        InputGrad<T> dx = c.input_grad(0);
        if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
        for (std::size_t i = 0; i < c.saved_index().size(); ++i) dx.data()[c.saved_index()[i]] += c.grad()(i);
    });
}

}  // namespace

BOOST_AUTO_TEST_CASE(swish_value_and_gradient)
{
    const Tensor<double> x = rnd({3, 4}, 1, -3, 3);
    Tape<double> t;
    auto y = swish(t.variable(x));
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double v = x.data()[i];
        BOOST_TEST(y.value().data()[i] == v / (1 + std::exp(-v)), boost::test_tools::tolerance(1e-15));
    }
    BOOST_TEST(std::string(y.op()) == "swish");
    auto r = expect_gradcheck([](const Vs& v) { return swish(v[0]); }, {x});
    BOOST_TEST(r.inputs.at(0).max_abs_error < 1e-9);
    // Used twice in one graph (its input's gradient accumulates from two consumers).
    expect_gradcheck([](const Vs& v) { return swish(v[0]) * swish(v[0] * 2.0); }, {x});
}

BOOST_AUTO_TEST_CASE(two_inputs_with_broadcast)
{
    const Tensor<double> a = rnd({4, 3}, 2), b = rnd({3}, 3);
    expect_gradcheck([](const Vs& v) { return scale_shift(v[0], v[1]); }, {a, b});
    Tape<double> t;
    auto av = t.variable(a), bv = t.variable(b);
    t.backward(sum(scale_shift(av, bv)));
    for (std::size_t j = 0; j < 3; ++j) {
        double col = 0;
        for (std::size_t i = 0; i < 4; ++i) col += a(i, j);
        BOOST_TEST(bv.grad()(j) == col, boost::test_tools::tolerance(1e-14));  // db = Σ_rows a
        for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(av.grad()(i, j) == b(j) + 1, boost::test_tools::tolerance(1e-14));
    }
}

BOOST_AUTO_TEST_CASE(state_in_the_node_and_kernel_writes)
{
    const Tensor<double> x = rnd({5, 4}, 4);
    expect_gradcheck([](const Vs& v) { return row_max(v[0]) * row_max(v[0] + 0.5); }, {x});
    // The same graph again on a cleared tape reuses the node's buffers.
    Tape<double> t;
    for (int step = 0; step < 3; ++step) {
        auto xv = t.variable(x);
        t.backward(sum(row_max(xv)));
        double total = 0;
        for (double g : xv.grad()) total += g;
        BOOST_TEST(total == 5.0);  // one 1 per row
        t.clear();
    }
}

BOOST_AUTO_TEST_CASE(a_failed_op_leaves_no_node)
{
    Tape<double> t;
    auto a = t.variable(rnd({2, 3}, 5)), b = t.variable(rnd({4}, 6));
    const std::size_t before = t.size();
    BOOST_CHECK_EXCEPTION(scale_shift(a, b), ShapeError, [](const ShapeError& e) {
        return std::string(e.what()).find("scale_shift: a (2,3) and b (4)") != std::string::npos;
    });
    BOOST_TEST(t.size() == before);  // the reserved node was taken back
    auto y = swish(a);                // and the next op lands where it would have
    BOOST_TEST(y.index() == before);
    t.backward(sum(y));
    BOOST_TEST(a.grad().size() == 6u);
}

BOOST_AUTO_TEST_CASE(inputs_of_two_tapes_are_refused)
{
    Tape<double> t1, t2;
    auto a = t1.variable(rnd({2, 3}, 7)), b = t2.variable(rnd({3}, 8));
    BOOST_CHECK_EXCEPTION(scale_shift(a, b), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()) == "xgrad: scale_shift: input 1 belongs to another tape (Vars of different tapes "
                                        "cannot be mixed)";
    });
    BOOST_TEST(t1.size() == 1u);
}

BOOST_AUTO_TEST_CASE(float_ops_and_check_nodes)
{
    Tape<float> t;
    auto x = t.variable(Tensor<float>{{-1.f, 0.5f, 2.f}});
    t.backward(sum(swish(x)));
    const float v = 0.5f, s = 1 / (1 + std::exp(-v));
    BOOST_TEST(x.grad()(0, 1) == s + v * s * (1 - s), boost::test_tools::tolerance(1e-6f));
    const Tensor<double> in = rnd({3, 3}, 9, -2, 2);
    auto report = check_nodes([&](Tape<double>& tape) { return sum(swish(scale_shift(tape.variable(in), tape.variable(rnd({3}, 10))))); });
    BOOST_TEST(report.ok(), report.summary());
    BOOST_TEST(report.nodes_checked == 3u);  // swish, scale_shift, sum
}

// σ' = σ(1 − σ); swish'' = σ'·(2 + x(1 − 2σ)).
BOOST_AUTO_TEST_CASE(a_custom_op_with_one_closure_has_second_derivatives)
{
    const Tensor<double> x = rnd({2, 3}, 31);
    auto r = xgrad::test::expect_gradgradcheck([](const Vs& v) { return swish2(v[0]); }, {x});
    BOOST_TEST(r.output_op == "grad of swish2");
    const Tensor<double> h = hessian([](const V& v) { return sum(swish2(v)); }, x);
    for (std::size_t i = 0; i < x.size(); ++i)
        for (std::size_t j = 0; j < x.size(); ++j) {
            const double xi = x.data()[i], s = 1 / (1 + std::exp(-xi));
            const double want = i == j ? s * (1 - s) * (2 + xi * (1 - 2 * s)) : 0.0;
            BOOST_TEST(std::abs(h.data()[i * x.size() + j] - want) < 1e-14);
        }
    // The first-order-only swish says which op stops grad(..., create_graph).
    Tape<double> t;
    const V v = t.variable(x);
    BOOST_CHECK_EXCEPTION(grad(sum(swish(v)), {v}, GradOptions{true}), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()) == "double backward not implemented for swish";
    });
}

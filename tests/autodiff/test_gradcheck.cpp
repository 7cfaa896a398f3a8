// The public gradcheck: it must catch a wrong backward, locate the element, and refuse vacuous checks.
#define BOOST_TEST_MODULE autodiff_gradcheck
#include "test_util.hpp"
#include "xgrad/op.hpp"

using namespace xgrad;
using V = Var<double>;

namespace {
/// A deliberately wrong custom op: y = x², with backward 2x·G except element 3, which is doubled.
V broken_square(const V& x)
{
    const auto& xv = x.value();
    auto op = begin_op("broken_square", {x});
    op.value() = xv * xv;
    return op.finish([](BackwardContext<double>& c) {
        Tensor<double> g = 2.0 * c.input(0) * c.grad();
        g.data()[3] *= 2;
        c.accumulate(0, g);
    });
}
}  // namespace

BOOST_AUTO_TEST_CASE(catches_a_wrong_backward_and_locates_it)
{
    Tensor<double> x = test::rnd(Shape{2, 3}, 4, 0.5, 1.5);
    GradcheckOptions opt;
    opt.input_names({"x"});
    auto r = gradcheck([](const std::vector<V>& v) { return broken_square(v[0]); }, {x}, opt);
    BOOST_TEST(!r.ok);
    BOOST_TEST(!r.vacuous);
    BOOST_TEST(r.output_op == "broken_square");
    BOOST_REQUIRE_EQUAL(r.mismatches.size(), 1u);
    const auto& m = r.mismatches[0];
    BOOST_TEST(m.input_name == "x");
    BOOST_TEST(m.index == (std::vector<std::size_t>{1, 0}));  // flat element 3 of (2,3)
    BOOST_TEST(std::abs(m.analytic - 2 * m.numeric) < 1e-6);
    BOOST_TEST(r.inputs[0].failures == 1u);
    const std::string s = r.summary();
    BOOST_TEST(s.find("FAILED") != std::string::npos);
    BOOST_TEST(s.find("x(1,0)") != std::string::npos, s);
}

BOOST_AUTO_TEST_CASE(passes_a_correct_op_with_small_errors)
{
    Tensor<double> x = test::rnd(Shape{2, 3}, 4, 0.5, 1.5);
    auto r = gradcheck([](const std::vector<V>& v) { return square(v[0]); }, {x});
    BOOST_TEST(r.ok, r.summary());
    BOOST_TEST(r.inputs[0].max_abs_error < 1e-8);
    BOOST_TEST(r.inputs[0].max_abs_error > 0.0);  // finite differences are never exact: the check measured something
}

BOOST_AUTO_TEST_CASE(refuses_a_check_that_tests_nothing)
{
    // relu of negative inputs: analytic and numeric gradients are both exactly zero.
    Tensor<double> x = {-1.0, -2.0, -3.0};
    auto r = gradcheck([](const std::vector<V>& v) { return relu(v[0]); }, {x});
    BOOST_TEST(r.vacuous);
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.summary().find("REFUSED") != std::string::npos);
    // an output that does not depend on the input at all
    auto r2 = gradcheck([](const std::vector<V>& v) { return v[0].tape().constant(Tensor<double>{1.0}); }, {x});
    BOOST_TEST(r2.vacuous);
    BOOST_TEST(!r2.ok);
}

BOOST_AUTO_TEST_CASE(random_cotangent_catches_errors_a_sum_would_hide)
{
    // A backward that returns the right column sums but the wrong elements: with a cotangent of
    // all ones the error cancels; gradcheck's random cotangent exposes it.
    auto swapped = [](const V& x) {
        auto op = begin_op("swapped_identity", {x});
        op.value() = x.value();
        return op.finish([](BackwardContext<double>& c) {
            Tensor<double> g = c.grad();
            std::swap(g.data()[0], g.data()[1]);  // wrong: routes each element's gradient to the other
            c.accumulate(0, g);
        });
    };
    auto r = gradcheck([&](const std::vector<V>& v) { return swapped(v[0]); }, {Tensor<double>{1.0, 2.0}});
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.mismatches.size() == 2u);
}

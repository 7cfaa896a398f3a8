// Bad input gets a clear error naming the op and the shapes; misuse throws std::logic_error.
#define BOOST_TEST_MODULE autodiff_errors
#include <cmath>

#include "test_util.hpp"

using namespace xgrad;

namespace {
// Runs f, expects an exception of type E whose message contains every string in `parts`.
template <class E, class F>
void expect_error(F f, std::initializer_list<std::string> parts)
{
    try {
        f();
        BOOST_ERROR("no exception thrown");
    } catch (const E& e) {
        const std::string msg = e.what();
        for (const auto& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
    }
}
}  // namespace

BOOST_AUTO_TEST_CASE(shape_errors_name_op_and_shapes)
{
    Tape<float> t;
    auto a = t.constant(Tensor<float>::from_shape({64, 784}));
    auto b = t.constant(Tensor<float>::from_shape({100, 10}));
    expect_error<ShapeError>([&] { matmul(a, b); }, {"matmul: (64,784) x (100,10): inner dimensions 784 and 100 differ"});
    static_assert(std::is_base_of_v<std::invalid_argument, ShapeError>);
    auto c = t.constant(Tensor<float>::from_shape({3, 4}));
    auto d = t.constant(Tensor<float>::from_shape({5}));
    expect_error<ShapeError>([&] { add(c, d); }, {"add", "(3,4)", "(5)", "4 and 5"});
    expect_error<ShapeError>([&] { c * d; }, {"mul", "(3,4)", "(5)"});
    expect_error<ShapeError>([&] { softmax(c, 2); }, {"softmax", "axis 2", "(3,4)"});
    expect_error<ShapeError>([&] { reshape(c, {5, -1}); }, {"reshape", "(3,4)"});
    expect_error<ShapeError>([&] { slice(c, 1, 2, 9); }, {"slice", "(3,4)"});
    expect_error<ShapeError>([&] { concatenate<float>({c, d}, 0); }, {"concatenate", "(3,4)", "(5)"});
    expect_error<ShapeError>([&] { permute(c, {0, 0}); }, {"permute", "(3,4)"});
    expect_error<ShapeError>([&] { matmul(t.constant(Tensor<float>::from_shape({2, 3, 4})),
                                          t.constant(Tensor<float>::from_shape({3, 4, 5}))); },
                             {"matmul", "(2,3,4) x (3,4,5)", "batch dimensions 2 and 3 differ"});
    expect_error<std::out_of_range>([&] { pick(c, IndexTensor{0, 1, 4}); }, {"pick", "label 4 at position 2", "[0,4)"});
    expect_error<std::out_of_range>([&] { one_hot(t, IndexTensor{0, 10}, 10); }, {"one_hot", "label 10"});
    expect_error<ShapeError>([&] { t.backward(a * 2.0f, Tensor<float>::from_shape({3})); }, {"seed", "(3)", "(64,784)"});
}

BOOST_AUTO_TEST_CASE(backward_on_non_scalar_needs_a_seed)
{
    Tape<double> t;
    auto x = t.variable(Tensor<double>{1.0, 2.0});
    expect_error<std::logic_error>([&] { t.backward(x * 2.0); }, {"one-element", "(2)", "seed"});
}

BOOST_AUTO_TEST_CASE(stale_var_after_clear_is_detected)
{
    Tape<double> t;
    auto x = t.variable(Tensor<double>{1.0});
    auto y = exp(x);
    t.clear();
    auto z = t.variable(Tensor<double>{5.0});  // reuses slot 0: only the generation tells them apart
    BOOST_TEST(!x.valid());
    BOOST_TEST(z.valid());
    expect_error<std::logic_error>([&] { x.value(); }, {"stale", "cleared"});
    expect_error<std::logic_error>([&] { exp(y); }, {"stale"});
    expect_error<std::logic_error>([&] { t.backward(y); }, {"stale"});
    expect_error<std::logic_error>([&] { z + x; }, {"add", "stale"});
}

BOOST_AUTO_TEST_CASE(var_from_another_tape_is_rejected)
{
    Tape<double> t1, t2;
    auto a = t1.variable(Tensor<double>{1.0});
    auto b = t2.variable(Tensor<double>{2.0});
    expect_error<std::logic_error>([&] { a + b; }, {"add", "another tape"});
    expect_error<std::logic_error>([&] { matmul(a, b); }, {"matmul", "another tape"});
    expect_error<std::logic_error>([&] { t1.backward(b); }, {"another tape"});
    expect_error<std::logic_error>([&] { Var<double>().value(); }, {"empty Var"});
}

BOOST_AUTO_TEST_CASE(backward_without_any_grad_input)
{
    Tape<double> t;
    auto c = t.constant(Tensor<double>{1.0});
    expect_error<std::logic_error>([&] { t.backward(exp(c)); }, {"does not depend", "requires grad"});
}

BOOST_AUTO_TEST_CASE(anomaly_mode_names_the_forward_op)
{
    Tape<double> t;
    t.set_anomaly_detection(true);
    auto x = t.variable(Tensor<double>{1.0, -1.0});
    auto y = x * 2.0;                                            // #1
    expect_error<AnomalyError>([&] { log(y); }, {"forward of op 'log'", "#2", "nan", "(1)"});
    // Off by default: the same op silently yields NaN.
    Tape<double> quiet;
    auto q = log(quiet.variable(Tensor<double>{-1.0}));
    BOOST_TEST(std::isnan(q.value()(0)));
}

BOOST_AUTO_TEST_CASE(anomaly_mode_names_the_backward_op)
{
    // sqrt(0) = 0 is fine forward; its gradient 1/(2·0) = inf appears in backward.
    Tape<double> t;
    t.set_anomaly_detection(true);
    auto x = t.variable(Tensor<double>{0.0, 4.0});
    auto y = sqrt(x);          // #1
    auto s = sum(y);           // #2
    expect_error<AnomalyError>([&] { t.backward(s); }, {"backward of op 'sqrt'", "#1", "inf", "input 0"});
}

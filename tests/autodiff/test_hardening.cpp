// Regression tests for the engine rows of the hardening issue: each feeds the original bad input
// and asserts the exact outcome (the right exception naming the op and the bad value, or the
// correct result). Rows 3-5, 9, 10, 12-14 (files and command line) live with the nn and example tests.
#define BOOST_TEST_MODULE autodiff_hardening
#include <cmath>
#include <limits>
#include <memory>

#include "test_util.hpp"
#include "xgrad/nn/losses.hpp"  // trace_scatter_loss: an nn loss written on the op API

using namespace xgrad;
using xgrad::nn::scatter_traces;
using xgrad::nn::ScatterTraces;
using xgrad::nn::trace_scatter_loss;
using xgrad::test::expect_gradcheck;
using xgrad::test::rnd;
using Vs = std::vector<Var<double>>;

namespace {

template <class E, class F>
std::string expect_error(F f, std::initializer_list<std::string> parts)
{
    try {
        f();
        BOOST_ERROR("no exception thrown");
    } catch (const E& e) {
        const std::string msg = e.what();
        for (const auto& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
        return msg;
    }
    return {};
}

}  // namespace

// Row 2: an empty inner dimension on a tape whose reused output buffer held NaN.
BOOST_AUTO_TEST_CASE(row02_matmul_inner_dimension_zero_gives_zeros)
{
    for (int precision = 0; precision < 2; ++precision) {
        auto run = [](auto zero) {
            using T = decltype(zero);
            Tape<T> t;
            // Step 1 leaves a NaN-filled (3,4) buffer in node slot 2 ...
            {
                Tensor<T> nan_in = Tensor<T>::from_shape({3, 4});
                nan_in.fill(std::numeric_limits<T>::quiet_NaN());
                auto a = t.constant(nan_in);
                auto b = t.constant(Tensor<T>(xt::ones<T>({4, 4})));
                auto c = matmul(a, b);
                BOOST_TEST(std::isnan(double(c.value()(0, 0))));
            }
            t.clear();
            // ... which step 2's matmul (3,0)x(0,4) reuses.
            auto a = t.variable(Tensor<T>::from_shape({3, 0}));
            auto b = t.variable(Tensor<T>::from_shape({0, 4}));
            auto c = matmul(a, b);
            BOOST_TEST(c.shape() == (Shape{3, 4}), boost::test_tools::per_element());
            for (T v : c.value()) BOOST_TEST(v == T(0));
            t.backward(sum(c));
            BOOST_TEST(a.grad().shape() == (Shape{3, 0}), boost::test_tools::per_element());
            BOOST_TEST(b.grad().shape() == (Shape{0, 4}), boost::test_tools::per_element());
            // Batched and fused forms too.
            auto x3 = t.constant(Tensor<T>::from_shape({2, 3, 0}));
            auto y3 = matmul(x3, t.constant(Tensor<T>::from_shape({2, 0, 5})));
            BOOST_TEST(y3.shape() == (Shape{2, 3, 5}), boost::test_tools::per_element());
            for (T v : y3.value()) BOOST_TEST(v == T(0));
            auto l = linear(t.constant(Tensor<T>::from_shape({3, 0})), t.constant(Tensor<T>::from_shape({2, 0})),
                            t.constant(Tensor<T>{T(1), T(2)}));
            BOOST_TEST(l.value()(2, 0) == T(1));
            BOOST_TEST(l.value()(2, 1) == T(2));
        };
        if (precision == 0)
            run(0.0f);
        else
            run(0.0);
    }
}

// Row 6 (library part): set_num_threads rejects counts outside [1, max_num_threads()].
BOOST_AUTO_TEST_CASE(row06_set_num_threads_range)
{
    const int hi = max_num_threads();
    BOOST_TEST(hi >= 1);
    for (int n : {0, -1, 100000, hi + 1}) {
        const std::string msg = expect_error<std::invalid_argument>([n] { set_num_threads(n); },
                                                                    {"set_num_threads", std::to_string(n) + " threads",
                                                                     "allowed: 1 to " + std::to_string(hi)});
        BOOST_TEST(msg.size() < 200u);
    }
    set_num_threads(1);  // the bounds themselves are fine
    set_num_threads(hi);
}

// Row 7: a new shape whose element count overflows size_t wrapped around and could "fit".
BOOST_AUTO_TEST_CASE(row07_reshape_product_overflow)
{
    Tape<double> t;
    auto x = t.variable(rnd(Shape{4}, 1));
    const std::ptrdiff_t big = std::ptrdiff_t(1) << 62;
    // 2^62 · 4 = 2^64 ≡ 0 (mod 2^64), and 2^62 · 2^62 · 4 as well: both used to pass as "0 elements" or worse.
    expect_error<ShapeError>([&] { reshape(x, {big, 4}); }, {"reshape", "(4)", "(4611686018427387904,4)", "overflows"});
    expect_error<ShapeError>([&] { reshape(x, {big, big, -1}); }, {"reshape", "(4)", "overflows"});
    expect_error<ShapeError>([&] { reshape(x, {-3, 2}); }, {"reshape", "(4)", "negative dimension -3"});
    expect_error<ShapeError>([&] { reshape(x, {-1, -1}); }, {"reshape", "more than one -1"});
    expect_error<ShapeError>([&] { reshape(x, {0, -1}); }, {"reshape", "(4)", "4 elements do not fit"});
    // Found by fuzz_ops: zero-size shapes whose other dimensions overflow the strides, and a -1
    // that could be anything next to a 0.
    auto e = t.variable(Tensor<double>::from_shape({0, 3}));
    expect_error<ShapeError>([&] { reshape(e, {0, big, big}); }, {"reshape", "(0,3)", "overflows"});
    expect_error<ShapeError>([&] { reshape(e, {0, big, 3}); }, {"reshape", "(0,3)", "overflows"});  // 3·2^62 > 2^63
    expect_error<ShapeError>([&] { reshape(e, {0, -1}); }, {"reshape", "(0,3) to (0,-1)", "ambiguous"});
    BOOST_TEST(reshape(e, {3, 0, 1}).shape() == (Shape{3, 0, 1}), boost::test_tools::per_element());
    // The valid cases still work, gradients included.
    BOOST_TEST(reshape(x, {2, -1}).shape() == (Shape{2, 2}), boost::test_tools::per_element());
    expect_gradcheck([](const Vs& v) { return reshape(v[0], {2, 1, -1}); }, {rnd(Shape{4}, 2)});
}

// Row 8: a label of 1e12 used to allocate 1e12 class means (std::bad_alloc).
BOOST_AUTO_TEST_CASE(row08_trace_scatter_loss_label_range)
{
    Tape<double> t;
    auto y = t.variable(rnd(Shape{3, 2}, 3));
    expect_error<std::out_of_range>([&] { trace_scatter_loss(y, IndexTensor{0, Index(1e12), 1}, 0.5); },
                                    {"trace_scatter_loss", "label 1000000000000 at position 1", "[0,16777216)"});
    expect_error<std::out_of_range>([&] { trace_scatter_loss(y, IndexTensor{0, -1, 1}, 0.5); },
                                    {"trace_scatter_loss", "label -1 at position 1"});
    expect_error<std::out_of_range>([&] { scatter_traces(y.value(), IndexTensor{Index(1) << 40, 0, 0}); },
                                    {"scatter_traces", "label 1099511627776 at position 0"});
    // Large but valid labels take no memory for the absent classes and give the same loss as
    // small ones with the same grouping.
    const double big = trace_scatter_loss(y, IndexTensor{16000000, 7, 16000000}, 0.5).item();
    const double small = trace_scatter_loss(y, IndexTensor{1, 0, 1}, 0.5).item();
    BOOST_TEST(big == small, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(std::abs(big) > 1e-3);
    expect_gradcheck([](const Vs& v) { return trace_scatter_loss(v[0], IndexTensor{16000000, 7, 16000000}, 0.5); },
                     {rnd(Shape{3, 2}, 4)});
}

// Row 11: a Var used after its tape was destroyed read freed memory (segfault).
BOOST_AUTO_TEST_CASE(row11_var_after_tape_destroyed)
{
    Var<double> x, y;
    {
        auto t = std::make_unique<Tape<double>>();
        x = t->variable(rnd(Shape{2, 2}, 5));
        y = exp(x);
        BOOST_TEST(x.valid());
    }
    BOOST_TEST(!x.valid());
    BOOST_TEST(!y.valid());
    expect_error<std::logic_error>([&] { x.value(); }, {"stale", "used after its tape was destroyed"});
    expect_error<std::logic_error>([&] { y.grad(); }, {"used after its tape was destroyed"});
    expect_error<std::logic_error>([&] { y.shape(); }, {"used after its tape was destroyed"});
    expect_error<std::logic_error>([&] { exp(y); }, {"used after its tape was destroyed"});
    // The slot is reused by the next tape (likely at the same address): the old Vars stay dead.
    Tape<double> t2;
    auto z = t2.variable(rnd(Shape{2, 2}, 6));
    BOOST_TEST(z.valid());
    BOOST_TEST(!x.valid());
    expect_error<std::logic_error>([&] { x + z; }, {"used after its tape was destroyed"});
    expect_error<std::logic_error>([&] { t2.backward(sum(y)); }, {"used after its tape was destroyed"});
    // A cleared (not destroyed) tape still says so.
    t2.clear();
    expect_error<std::logic_error>([&] { z.value(); }, {"stale", "used after its tape was cleared"});
    // Many tapes made and destroyed: slots are recycled, live Vars stay valid.
    std::vector<std::unique_ptr<Tape<float>>> tapes;
    std::vector<Var<float>> vars;
    for (int i = 0; i < 5000; ++i) {
        tapes.push_back(std::make_unique<Tape<float>>());
        vars.push_back(tapes.back()->constant(float(i)));
    }
    for (int i = 0; i < 5000; i += 2) tapes[std::size_t(i)].reset();
    for (int i = 0; i < 5000; ++i) {
        BOOST_TEST(vars[std::size_t(i)].valid() == (i % 2 == 1));
        if (i % 2 == 1) BOOST_TEST(vars[std::size_t(i)].item() == float(i));
    }
}

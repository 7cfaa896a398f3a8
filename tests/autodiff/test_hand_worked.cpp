// Gradients worked out by hand (numbers in the comments), not by the code under test.
#define BOOST_TEST_MODULE autodiff_hand_worked
#include <cmath>

#include "test_util.hpp"

using namespace xgrad;
namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(matmul_vjp_by_hand)
{
    // A = [1 2; 3 4], B = [5 6 7; 8 9 10], G = [1 0 -1; 2 1 0]
    // dA = G·Bᵀ = [1·5+0·6−1·7, 1·8+0·9−1·10; 2·5+1·6+0·7, 2·8+1·9+0·10] = [−2 −2; 16 25]
    // dB = Aᵀ·G = [1·1+3·2, 1·0+3·1, 1·(−1)+3·0; 2·1+4·2, 2·0+4·1, 2·(−1)+4·0] = [7 3 −1; 10 4 −2]
    for (int rep = 0; rep < 2; ++rep) {
        Tape<double> t;
        auto a = t.variable(Tensor<double>{{1, 2}, {3, 4}});
        auto b = t.variable(Tensor<double>{{5, 6, 7}, {8, 9, 10}});
        auto c = matmul(a, b);
        BOOST_TEST(c.value() == (Tensor<double>{{21, 24, 27}, {47, 54, 61}}));
        t.backward(c, Tensor<double>{{1, 0, -1}, {2, 1, 0}});
        BOOST_TEST(a.grad() == (Tensor<double>{{-2, -2}, {16, 25}}));
        BOOST_TEST(b.grad() == (Tensor<double>{{7, 3, -1}, {10, 4, -2}}));
    }
    // float32 path (cblas_sgemm) gives the same small integers exactly
    Tape<float> t;
    auto a = t.variable(Tensor<float>{{1, 2}, {3, 4}});
    auto b = t.variable(Tensor<float>{{5, 6, 7}, {8, 9, 10}});
    t.backward(matmul(a, b), Tensor<float>{{1, 0, -1}, {2, 1, 0}});
    BOOST_TEST(a.grad() == (Tensor<float>{{-2, -2}, {16, 25}}));
    BOOST_TEST(b.grad() == (Tensor<float>{{7, 3, -1}, {10, 4, -2}}));
}

BOOST_AUTO_TEST_CASE(softmax_by_hand)
{
    // x = [0, ln 2, ln 3] → softmax = [1/6, 2/6, 3/6]. Seed G = [1, 0, 0]:
    // dX = Y ⊙ (G − Σ G⊙Y) = Y ⊙ (G − 1/6) = [1/6·5/6, 2/6·(−1/6), 3/6·(−1/6)] = [5/36, −2/36, −3/36]
    for (double shift : {0.0, 1000.0, -1000.0}) {
        BOOST_TEST_CONTEXT("shift " << shift)
        {
            Tape<double> t;
            auto x = t.variable(Tensor<double>{shift, shift + std::log(2.0), shift + std::log(3.0)});
            auto y = softmax(x, 0);
            for (int i = 0; i < 3; ++i) BOOST_TEST(y.value()(i) == (i + 1) / 6.0, tt::tolerance(1e-12));
            t.backward(y, Tensor<double>{1, 0, 0});
            const double expected[] = {5.0 / 36, -2.0 / 36, -3.0 / 36};
            for (int i = 0; i < 3; ++i) BOOST_TEST(x.grad()(i) == expected[i], tt::tolerance(1e-12));
        }
    }
}

BOOST_AUTO_TEST_CASE(log_softmax_by_hand)
{
    // log_softmax([0, ln 2, ln 3]) = [ln 1/6, ln 2/6, ln 3/6]; seed G = [1, 0, 0]:
    // dX = G − softmax ⊙ ΣG = [1 − 1/6, −2/6, −3/6]
    for (double shift : {0.0, 1000.0}) {
        Tape<double> t;
        auto x = t.variable(Tensor<double>{shift, shift + std::log(2.0), shift + std::log(3.0)});
        auto y = log_softmax(x, 0);
        for (int i = 0; i < 3; ++i) BOOST_TEST(y.value()(i) == std::log((i + 1) / 6.0), tt::tolerance(1e-12));
        t.backward(y, Tensor<double>{1, 0, 0});
        const double expected[] = {5.0 / 6, -2.0 / 6, -3.0 / 6};
        for (int i = 0; i < 3; ++i) BOOST_TEST(x.grad()(i) == expected[i], tt::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(sigmoid_saturates_without_nan)
{
    // sigmoid(±1000) = 1 or 0 exactly in double, and its gradient 0, never NaN.
    Tape<double> t;
    auto x = t.variable(Tensor<double>{-1000, 0, 1000});
    auto y = sigmoid(x);
    BOOST_TEST(y.value() == (Tensor<double>{0, 0.5, 1}));
    t.backward(sum(y));
    BOOST_TEST(x.grad() == (Tensor<double>{0, 0.25, 0}));
}

BOOST_AUTO_TEST_CASE(chain_rule_by_hand)
{
    // f(x, y) = (x·y + x)² at x = 3, y = 2: u = x·y + x = 9, f = 81,
    // df/dx = 2u·(y + 1) = 54, df/dy = 2u·x = 54
    Tape<double> t;
    t.set_retain_grad(true);  // to read the intermediate u's gradient
    auto x = t.variable(Tensor<double>(3.0));
    auto y = t.variable(Tensor<double>(2.0));
    auto u = x * y + x;
    auto f = u * u;
    t.backward(f);
    BOOST_TEST(f.item() == 81.0);
    BOOST_TEST(x.grad()() == 54.0);
    BOOST_TEST(y.grad()() == 54.0);
    BOOST_TEST(u.grad()() == 18.0);  // intermediate gradient: 2u
}

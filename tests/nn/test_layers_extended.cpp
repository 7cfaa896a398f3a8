// Issue 15: the activation modules against their ops and std:: formulas, AdaptiveAvgPool2d against
// a hand loop of PyTorch's bins, clip_grad_norm_, AdamW and parameter groups against hand-written
// updates, and the LR schedules against PyTorch's closed forms; first and second derivatives in
// float64 (gradcheck, gradgradcheck); the errors, by message.
#define BOOST_TEST_MODULE nn_layers_extended
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "test_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::test::check_unary;
using xgrad::test::expect_gradcheck;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Tens = Tensor<double>;

namespace {

const double kPi = 3.14159265358979323846;

double sigma(double v) { return 1 / (1 + std::exp(-v)); }

/// The module's output at a spread of inputs, including large ones.
const Tens& spread()
{
    static const Tens x = {-40.0, -8.5, -1.25, -1e-9, 0.0, 1e-9, 0.3, 2.0, 9.0, 40.0};
    return x;
}

/// max relative |m(x) − f(x)| over spread(); and m(x) must equal op(x) bit for bit.
double module_error(Module<double>& m, const std::function<V(const V&)>& op, const std::function<double(double)>& f)
{
    Tape<double> t;
    const Tens y = m(t.constant(spread())).value();
    const Tens z = op(t.constant(spread())).value();
    BOOST_TEST((y == z), m.describe() << " differs from its op");
    double err = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        const double want = f(spread()(i));
        err = std::max(err, std::abs(y(i) - want) / std::max(1.0, std::abs(want)));
    }
    return err;
}

/// The message of the exception f throws as E ("" if it throws nothing, which fails the test).
template <class E, class F>
std::string message_of(F&& f)
{
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    BOOST_ERROR("no exception");
    return "";
}

double gelu_exact(double v) { return 0.5 * v * std::erfc(-v / std::sqrt(2.0)); }
double gelu_tanh(double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / kPi) * (v + 0.044715 * v * v * v))); }
/// torch.nn.functional.softplus: x where βx > threshold, else log1p(exp(βx))/β.
double softplus_torch(double v, double beta, double threshold)
{
    return beta * v > threshold ? v : std::log1p(std::exp(beta * v)) / beta;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(activations)

BOOST_AUTO_TEST_CASE(modules_match_their_ops_and_formulas)
{
    GELU<double> gelu_none, gelu_t(GELUOptions().approximate("tanh"));
    BOOST_TEST(module_error(gelu_none, [](const V& x) { return gelu(x); }, gelu_exact) < 1e-15);
    BOOST_TEST(module_error(gelu_t, [](const V& x) { return gelu(x, "tanh"); }, gelu_tanh) < 1e-15);
    SiLU<double> silu_m;
    BOOST_TEST(module_error(silu_m, [](const V& x) { return silu(x); }, [](double v) { return v * sigma(v); }) < 1e-15);
    LeakyReLU<double> leaky_default, leaky(LeakyReLUOptions().negative_slope(0.2));
    BOOST_TEST(leaky_default.options().negative_slope() == 0.01);
    BOOST_TEST(module_error(leaky_default, [](const V& x) { return leaky_relu(x, 0.01); },
                            [](double v) { return v > 0 ? v : 0.01 * v; }) == 0.0);
    BOOST_TEST(module_error(leaky, [](const V& x) { return leaky_relu(x, 0.2); },
                            [](double v) { return v > 0 ? v : 0.2 * v; }) == 0.0);
    ELU<double> elu_default, elu15(ELUOptions().alpha(1.5));
    BOOST_TEST(elu_default.options().alpha() == 1.0);
    BOOST_TEST(module_error(elu_default, [](const V& x) { return elu(x, 1.0); },
                            [](double v) { return v > 0 ? v : std::expm1(v); }) < 1e-15);
    BOOST_TEST(module_error(elu15, [](const V& x) { return elu(x, 1.5); },
                            [](double v) { return v > 0 ? v : 1.5 * std::expm1(v); }) < 1e-15);
    // β = 1, threshold 20: the op except past 20, where PyTorch returns x itself
    Softplus<double> sp;
    BOOST_TEST(sp.options().beta() == 1.0);
    BOOST_TEST(sp.options().threshold() == 20.0);
    BOOST_TEST(module_error(sp, [](const V& x) { return where(x.tape().constant(Tens(xt::cast<double>(x.value() > 20.0))), x, softplus(x)); },
                            [](double v) { return softplus_torch(v, 1, 20); }) < 1e-15);
    Softplus<double> sp2(SoftplusOptions().beta(2).threshold(5));
    BOOST_TEST(module_error(sp2, [](const V& x) {
        return where(x.tape().constant(Tens(xt::cast<double>(2.0 * x.value() > 5.0))), x, softplus(2.0 * x) / 2.0);
    }, [](double v) { return softplus_torch(v, 2, 5); }) < 1e-15);
    Identity<double> id;
    Tape<double> t;
    V x = t.constant(spread());
    BOOST_TEST((id(x).value() == spread()));
    BOOST_TEST(id(x).index() == x.index());  // the same node, nothing recorded
    BOOST_TEST(gelu_t.describe() == "GELU");
    BOOST_TEST(sp2.describe() == "Softplus");
}

BOOST_AUTO_TEST_CASE(softplus_linear_part_is_x_with_gradient_one)
{
    // past the threshold the output is x exactly and its gradient exactly 1 (not σ(βx))
    Softplus<double> sp(SoftplusOptions().beta(2).threshold(5));
    Tape<double> t;
    Parameter<double> p(Tens{2.4, 2.6, 30.0});
    V y = sp(t.param(p));
    BOOST_TEST(y.value()(1) == 2.6);
    BOOST_TEST(y.value()(2) == 30.0);
    BOOST_TEST(std::abs(y.value()(0) - std::log1p(std::exp(4.8)) / 2) < 1e-15);
    t.backward(sum(y));
    BOOST_TEST(p.grad()(1) == 1.0);
    BOOST_TEST(p.grad()(2) == 1.0);
    BOOST_TEST(std::abs(p.grad()(0) - sigma(4.8)) < 1e-15);
}

BOOST_AUTO_TEST_CASE(float_modules_match_the_formulas)
{
    Tape<float> t;
    const Tensor<float> x = {-3.0f, -0.5f, 0.0f, 0.7f, 2.5f};
    Var<float> v = t.constant(x);
    GELU<float> g;
    SiLU<float> s;
    LeakyReLU<float> l(LeakyReLUOptions().negative_slope(0.3));
    ELU<float> e(ELUOptions().alpha(0.5));
    Softplus<float> sp(SoftplusOptions().beta(3));
    Identity<float> id;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double xi = x(i);
        BOOST_TEST(std::abs(g(v).value()(i) - gelu_exact(xi)) < 1e-6);
        BOOST_TEST(std::abs(s(v).value()(i) - xi * sigma(xi)) < 1e-6);
        BOOST_TEST(std::abs(l(v).value()(i) - (xi > 0 ? xi : 0.3 * xi)) < 1e-6);
        BOOST_TEST(std::abs(e(v).value()(i) - (xi > 0 ? xi : 0.5 * std::expm1(xi))) < 1e-6);
        BOOST_TEST(std::abs(sp(v).value()(i) - softplus_torch(xi, 3, 20)) < 1e-6);
        BOOST_TEST(id(v).value()(i) == x(i));
    }
}

template <int Order>
void check_activation_modules()
{
    GELU<double> g, gt(GELUOptions().approximate("tanh"));
    SiLU<double> s;
    LeakyReLU<double> l(LeakyReLUOptions().negative_slope(0.2));
    ELU<double> e(ELUOptions().alpha(1.5));
    Softplus<double> sp, sp2(SoftplusOptions().beta(2));
    Identity<double> id;
    check_unary<Order>([&](const V& x) { return g(x); }, -3, 3);
    check_unary<Order>([&](const V& x) { return gt(x); }, -3, 3);
    check_unary<Order>([&](const V& x) { return s(x); }, -4, 4);
    check_unary<Order>([&](const V& x) { return l(x); }, -2, 2, 0.05);
    check_unary<Order>([&](const V& x) { return e(x); }, -2, 2, 0.05);
    check_unary<Order>([&](const V& x) { return sp(x); }, -4, 4);
    check_unary<Order>([&](const V& x) { return sp2(x); }, -4, 4);
    check_unary<Order>([&](const V& x) { return sp2(x) * x; }, 10.5, 12);  // the linear part, βx > 20
    check_unary<Order>([&](const V& x) { return id(x) * x; }, -2, 2);
    // broadcasting into the module: (2,1,3) + (4,1) → (2,4,3)
    auto f = [&](const std::vector<V>& v) { return g(v[0] + v[1]) * sp2(v[1]); };
    const std::vector<Tens> in = {rnd(Shape{2, 1, 3}, 7), rnd(Shape{4, 1}, 8)};
    if constexpr (Order == 1)
        expect_gradcheck(f, in);
    else
        expect_gradgradcheck(f, in);
}

BOOST_AUTO_TEST_CASE(conv2d_layer_with_groups_and_dilation)
{
    // W (out, in/groups, k, k); the forward is the op conv2d with the layer's options
    Conv2d<double> depthwise(Conv2dOptions(4, 8, 3).groups(4).dilation(2).padding(2), 11);
    BOOST_TEST(depthwise.weight().value().shape() == (Shape{8, 1, 3, 3}));
    const double bound = 1 / std::sqrt(1.0 * 3 * 3);  // U(±1/√(in/groups·k·k))
    BOOST_TEST(xt::amax(xt::abs(depthwise.weight().value()))() <= bound);
    const Tens x = rnd(Shape{2, 4, 6, 6}, 12);
    Tape<double> t;
    auto y = depthwise.forward(t.constant(x));
    auto ref = conv2d(t.constant(x), t.constant(depthwise.weight().value()), t.constant(depthwise.bias()->value()),
                      Conv2dOptions().groups(4).dilation(2).padding(2));
    BOOST_TEST(y.shape() == (Shape{2, 8, 6, 6}));
    BOOST_TEST(xt::amax(xt::abs(y.value() - ref.value()))() == 0.0);
    try {
        Conv2d<double>(Conv2dOptions(4, 6, 3).groups(4));
        BOOST_ERROR("no throw");
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()).find("in_channels 4 and out_channels 6 must be divisible by groups 4") !=
                   std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(Conv2d<double>(Conv2dOptions(4, 4, 3).dilation(0)), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(embedding_layer_looks_up_rows_and_trains_only_used_ones)
{
    Embedding<double> emb(EmbeddingOptions(5, 3).padding_idx(-1), 21);  // row 4 is padding
    const Tens& w = emb.weight().value();
    BOOST_TEST(w.shape() == (Shape{5, 3}));
    for (std::size_t j = 0; j < 3; ++j) BOOST_TEST(w(4, j) == 0.0);
    BOOST_TEST(*emb.options().padding_idx() == 4);
    IndexTensor idx = IndexTensor::from_shape({2, 3});
    const Index pick[6] = {1, 3, 1, 4, 0, 1};
    std::copy(pick, pick + 6, idx.begin());
    Tape<double> t;
    auto y = emb.forward(t, idx);
    BOOST_REQUIRE(y.shape() == (Shape{2, 3, 3}));
    for (std::size_t i = 0; i < 6; ++i)
        for (std::size_t j = 0; j < 3; ++j) BOOST_TEST(y.value().data()[i * 3 + j] == w(std::size_t(pick[i]), j));
    // dL/dW[r] = Σ over the positions holding r of dL/dy; the padding row and unused rows get 0
    const Tens g = rnd(Shape{2, 3, 3}, 22);
    emb.weight().zero_grad();
    t.backward(sum(y * t.constant(g)));
    const Tens& dw = emb.weight().grad();
    for (std::size_t r = 0; r < 5; ++r)
        for (std::size_t j = 0; j < 3; ++j) {
            double want = 0;
            for (std::size_t i = 0; i < 6; ++i)
                if (std::size_t(pick[i]) == r && r != 4) want += g.data()[i * 3 + j];
            BOOST_TEST(dw(r, j) == want, "row " << r << " col " << j);
        }
    // the Var form (for a Sequential) is the same lookup; fractional or out-of-range values throw
    Tens as_values = xt::cast<double>(idx);
    Tape<double> t2;
    BOOST_TEST(emb.forward(t2.constant(as_values)).value() == y.value());
    as_values(0, 0) = 1.5;
    BOOST_CHECK_THROW(emb.forward(t2.constant(as_values)), std::invalid_argument);
    as_values(0, 0) = 5;
    BOOST_CHECK_THROW(emb.forward(t2.constant(as_values)), std::invalid_argument);
    BOOST_CHECK_THROW(Embedding<double>(EmbeddingOptions(5, 3).padding_idx(5)), std::invalid_argument);
    BOOST_CHECK_THROW(Embedding<double>(EmbeddingOptions(0, 3)), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(modules_gradcheck) { check_activation_modules<1>(); }
BOOST_AUTO_TEST_CASE(modules_gradgradcheck) { check_activation_modules<2>(); }

BOOST_AUTO_TEST_CASE(bad_options_throw)
{
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    BOOST_TEST(message_of<std::invalid_argument>([] { GELU<double>(GELUOptions().approximate("exact")); }) ==
               "GELU: approximate must be \"none\" or \"tanh\", got \"exact\"");
    BOOST_TEST(message_of<std::invalid_argument>([&] { LeakyReLU<float>(LeakyReLUOptions().negative_slope(nan)); }) ==
               "LeakyReLU: negative_slope must be finite, got nan");
    BOOST_TEST(message_of<std::invalid_argument>([&] { ELU<double>(ELUOptions().alpha(inf)); }) ==
               "ELU: alpha must be finite, got inf");
    BOOST_TEST(message_of<std::invalid_argument>([] { Softplus<double>(SoftplusOptions().beta(0)); }) ==
               "Softplus: beta must be a finite number > 0, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([] { Softplus<float>(SoftplusOptions().beta(-2)); }) ==
               "Softplus: beta must be a finite number > 0, got -2");
    BOOST_TEST(message_of<std::invalid_argument>([&] { Softplus<double>(SoftplusOptions().threshold(nan)); }) ==
               "Softplus: threshold must not be NaN");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- AdaptiveAvgPool2d ----

namespace {

/// PyTorch's adaptive average pooling by hand: bins [⌊i·H/oh⌋, ⌈(i+1)·H/oh⌉).
Tens adaptive_avg_pool_loop(const Tens& x, std::size_t oh, std::size_t ow)
{
    const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    Tens y = xt::zeros<double>({n, c, oh, ow});
    for (std::size_t a = 0; a < n; ++a)
        for (std::size_t b = 0; b < c; ++b)
            for (std::size_t i = 0; i < oh; ++i)
                for (std::size_t j = 0; j < ow; ++j) {
                    const auto r0 = std::size_t(std::floor(double(i * h) / double(oh)));
                    const auto r1 = std::size_t(std::ceil(double((i + 1) * h) / double(oh)));
                    const auto c0 = std::size_t(std::floor(double(j * w) / double(ow)));
                    const auto c1 = std::size_t(std::ceil(double((j + 1) * w) / double(ow)));
                    double s = 0;
                    for (std::size_t r = r0; r < r1; ++r)
                        for (std::size_t q = c0; q < c1; ++q) s += x(a, b, r, q);
                    y(a, b, i, j) = s / double((r1 - r0) * (c1 - c0));
                }
    return y;
}

struct PoolCase {
    Shape in;
    std::size_t oh, ow;
};

/// global, equal bins, unequal bins, output larger than the input, size-1 axes
const std::vector<PoolCase> pool_cases = {
    {{2, 3, 4, 4}, 1, 1}, {{1, 1, 1, 1}, 1, 1}, {{2, 2, 4, 6}, 2, 3}, {{1, 2, 5, 7}, 3, 2},
    {{2, 1, 3, 3}, 4, 4}, {{1, 1, 1, 5}, 2, 2}, {{1, 3, 6, 1}, 4, 1}, {{2, 2, 7, 5}, 7, 2}};

}  // namespace

BOOST_AUTO_TEST_SUITE(adaptive_avg_pool)

BOOST_AUTO_TEST_CASE(values_match_the_hand_loop)
{
    unsigned seed = 20;
    for (const auto& pc : pool_cases) {
        BOOST_TEST_CONTEXT("input " << shape_str(pc.in) << " output " << pc.oh << "x" << pc.ow)
        {
            const Tens x = rnd(pc.in, seed++);
            AdaptiveAvgPool2d<double> pool(AdaptiveAvgPool2dOptions({pc.oh, pc.ow}));
            Tape<double> t;
            const Tens y = pool(t.constant(x)).value();
            const Tens want = adaptive_avg_pool_loop(x, pc.oh, pc.ow);
            BOOST_TEST((y.shape() == want.shape()));
            BOOST_TEST(double(xt::amax(xt::abs(y - want))()) < 1e-15);
            // float: the same within float rounding
            AdaptiveAvgPool2d<float> pf(AdaptiveAvgPool2dOptions({pc.oh, pc.ow}));
            Tape<float> tf;
            const Tensor<float> yf = pf(tf.constant(Tensor<float>(xt::cast<float>(x)))).value();
            BOOST_TEST(double(xt::amax(xt::abs(xt::cast<double>(yf) - want))()) < 1e-6);
        }
    }
    // a square size: AdaptiveAvgPool2dOptions(1) is global average pooling
    AdaptiveAvgPool2d<double> global(1);
    BOOST_TEST(global.options().output_size()[0] == 1u);
    BOOST_TEST(global.options().output_size()[1] == 1u);
    BOOST_TEST(global.describe() == "AdaptiveAvgPool2d(1x1)");
    Tape<double> t;
    const Tens x = {{{{1.0, 2.0}, {3.0, 6.0}}}};
    BOOST_TEST(global(t.constant(x)).value()(0, 0, 0, 0) == 3.0);
}

BOOST_AUTO_TEST_CASE(gradcheck_and_gradgradcheck)
{
    unsigned seed = 40;
    for (const auto& pc : pool_cases) {
        BOOST_TEST_CONTEXT("input " << shape_str(pc.in) << " output " << pc.oh << "x" << pc.ow)
        {
            AdaptiveAvgPool2d<double> pool(AdaptiveAvgPool2dOptions({pc.oh, pc.ow}));
            // times a (C,1,1) weight broadcast over the output, so the cotangent is not uniform
            auto f = [&](const std::vector<V>& v) { return pool(v[0]) * v[1]; };
            const std::vector<Tens> in = {rnd(pc.in, seed), rnd(Shape{pc.in[1], 1, 1}, seed + 1)};
            expect_gradcheck(f, in);
            expect_gradgradcheck([&](const std::vector<V>& v) { return square(pool(v[0])) * v[1]; }, in);
            seed += 2;
        }
    }
}

BOOST_AUTO_TEST_CASE(errors)
{
    BOOST_TEST(message_of<std::invalid_argument>([] { AdaptiveAvgPool2d<double>(AdaptiveAvgPool2dOptions({0, 2})); }) ==
               "AdaptiveAvgPool2d: output_size must be at least 1, got (0, 2)");
    AdaptiveAvgPool2d<double> pool(AdaptiveAvgPool2dOptions({2, 3}));
    Tape<double> t;
    BOOST_TEST(message_of<ShapeError>([&] { pool(t.constant(Tens(xt::zeros<double>({2, 4, 4})))); }) ==
               "AdaptiveAvgPool2d(2x3): expected input (N,C,H,W) with H, W >= 1, got " + shape_str(Shape{2, 4, 4}));
    BOOST_TEST(message_of<ShapeError>([&] { pool(t.constant(Tens(xt::zeros<double>({1, 1, 0, 4})))); }) ==
               "AdaptiveAvgPool2d(2x3): expected input (N,C,H,W) with H, W >= 1, got " + shape_str(Shape{1, 1, 0, 4}));
}

BOOST_AUTO_TEST_SUITE_END()

// ---- clip_grad_norm_ ----

BOOST_AUTO_TEST_SUITE(clip_grad_norm)

namespace {
struct TwoParams {
    Parameter<double> a{Tens{{3.0, -4.0}, {1.0, 2.0}}, "a"}, b{Tens{0.5, -6.0, 2.0}, "b"};
    TwoParams()
    {
        a.grad() = Tens{{3.0, -4.0}, {1.0, 2.0}};
        b.grad() = Tens{0.5, -6.0, 2.0};
    }
    std::vector<Parameter<double>*> list() { return {&a, &b}; }
    std::vector<double> grads() const
    {
        std::vector<double> g(a.grad().begin(), a.grad().end());
        g.insert(g.end(), b.grad().begin(), b.grad().end());
        return g;
    }
};
}  // namespace

BOOST_AUTO_TEST_CASE(l2_norm_clips_and_returns_the_total)
{
    TwoParams p;
    const std::vector<double> g0 = p.grads();
    double sq = 0;
    for (double g : g0) sq += g * g;
    const double total = std::sqrt(sq);  // √(9+16+1+4+0.25+36+4) = √70.25
    BOOST_TEST(total == std::sqrt(70.25));
    const double returned = utils::clip_grad_norm_(p.list(), 2.0);
    BOOST_TEST(std::abs(returned - total) < 1e-14);
    const double coef = 2.0 / (total + 1e-6);
    const std::vector<double> g1 = p.grads();
    double norm_after = 0;
    for (std::size_t i = 0; i < g0.size(); ++i) {
        BOOST_TEST(std::abs(g1[i] - g0[i] * coef) < 1e-15);
        norm_after += g1[i] * g1[i];
    }
    BOOST_TEST(std::abs(std::sqrt(norm_after) - 2.0) < 1e-6);
    // below max_norm: nothing changes, the norm is still returned
    TwoParams q;
    BOOST_TEST(std::abs(utils::clip_grad_norm_(q.list(), 100.0) - total) < 1e-14);
    BOOST_TEST((q.grads() == g0));
}

BOOST_AUTO_TEST_CASE(other_norms)
{
    TwoParams p;
    const std::vector<double> g0 = p.grads();
    double l1 = 0, linf = 0, l3 = 0;
    for (double g : g0) {
        l1 += std::abs(g);
        linf = std::max(linf, std::abs(g));
        l3 += std::pow(std::abs(g), 3);
    }
    l3 = std::cbrt(l3);
    BOOST_TEST(std::abs(utils::clip_grad_norm_(p.list(), 1e3, 1.0) - l1) < 1e-13);
    BOOST_TEST(utils::clip_grad_norm_(p.list(), 1e3, std::numeric_limits<double>::infinity()) == 6.0);
    BOOST_TEST(linf == 6.0);
    BOOST_TEST(std::abs(utils::clip_grad_norm_(p.list(), 1e3, 3.0) - l3) < 1e-13);
    BOOST_TEST((p.grads() == g0));
    // ∞-norm clipping to 3: every gradient halved (up to the 1e-6)
    utils::clip_grad_norm_(p.list(), 3.0, std::numeric_limits<double>::infinity());
    const std::vector<double> g1 = p.grads();
    for (std::size_t i = 0; i < g0.size(); ++i) BOOST_TEST(std::abs(g1[i] - g0[i] * 3.0 / (6.0 + 1e-6)) < 1e-15);
    // float parameters: the norm accumulated in double
    Parameter<float> f(Tensor<float>{3.0f, 4.0f});
    f.grad() = Tensor<float>{3.0f, 4.0f};
    BOOST_TEST(utils::clip_grad_norm_(std::vector<Parameter<float>*>{&f}, 1.0) == 5.0);
    BOOST_TEST(std::abs(f.grad()(0) - 0.6f) < 1e-6f);
    BOOST_TEST(std::abs(f.grad()(1) - 0.8f) < 1e-6f);
    // no parameters: norm 0
    BOOST_TEST(utils::clip_grad_norm_(std::vector<Parameter<double>*>{}, 1.0) == 0.0);
}

BOOST_AUTO_TEST_CASE(nonfinite_and_bad_arguments)
{
    TwoParams p;
    p.b.grad()(1) = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> g0 = p.grads();
    BOOST_TEST(message_of<std::runtime_error>([&] { utils::clip_grad_norm_(p.list(), 1.0, 2.0, true); }) ==
               "clip_grad_norm_: the total norm of order 2 of the gradients is nan; set error_if_nonfinite to false "
               "to clip anyway");
    BOOST_TEST(std::isnan(p.grads()[5]));
    BOOST_TEST(p.grads()[0] == g0[0]);  // untouched when it throws
    // without error_if_nonfinite, as PyTorch: the NaN coefficient reaches every gradient
    BOOST_TEST(std::isnan(utils::clip_grad_norm_(p.list(), 1.0)));
    for (double g : p.grads()) BOOST_TEST(std::isnan(g));
    TwoParams q;
    BOOST_TEST(message_of<std::invalid_argument>([&] { utils::clip_grad_norm_(q.list(), -1.0); }) ==
               "clip_grad_norm_: max_norm must be a finite number >= 0, got -1");
    BOOST_TEST(message_of<std::invalid_argument>([&] { utils::clip_grad_norm_(q.list(), 1.0, 0.0); }) ==
               "clip_grad_norm_: norm_type must be > 0 or infinity, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([&] {
                   utils::clip_grad_norm_(std::vector<Parameter<double>*>{&q.a, nullptr}, 1.0);
               }) == "clip_grad_norm_: parameter 1 is null");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- AdamW, parameter groups ----

namespace {

/// A deterministic gradient for step s of parameter k.
Tens grad_at(const Shape& shape, int s, int k)
{
    Tens g = Tens::from_shape(shape);
    for (std::size_t i = 0; i < g.size(); ++i) g.data()[i] = std::sin(1.3 * double(i) + 0.7 * s + 2.1 * k) * (1 + 0.2 * s);
    return g;
}

/// torch.optim.AdamW's update, written out: w ← w − lr·wd·w; m, v; w ← w − lr·m̂/(√v̂ + ε).
struct HandAdamW {
    double lr, b1, b2, eps, wd;
    Tens m, v;
    int t = 0;
    void step(Tens& w, const Tens& g)
    {
        if (t == 0) {  // (a default Tensor is 0-d, one element: not a sign of "empty")
            m = xt::zeros<double>(w.shape());
            v = xt::zeros<double>(w.shape());
        }
        ++t;
        for (std::size_t i = 0; i < w.size(); ++i) {
            double& wi = w.data()[i];
            const double gi = g.data()[i];
            wi -= lr * wd * wi;
            m.data()[i] = b1 * m.data()[i] + (1 - b1) * gi;
            v.data()[i] = b2 * v.data()[i] + (1 - b2) * gi * gi;
            const double mhat = m.data()[i] / (1 - std::pow(b1, t)), vhat = v.data()[i] / (1 - std::pow(b2, t));
            wi -= lr * mhat / (std::sqrt(vhat) + eps);
        }
    }
};

double max_abs_diff(const Tens& a, const Tens& b) { return double(xt::amax(xt::abs(a - b))()); }

}  // namespace

BOOST_AUTO_TEST_SUITE(optimizers)

BOOST_AUTO_TEST_CASE(adamw_matches_the_hand_loop)
{
    Parameter<double> w(rnd(Shape{3, 4}, 60), "w"), b(rnd(Shape{4}, 61), "b");
    Tens hw = w.value(), hb = b.value();
    AdamW<double> opt({&w, &b}, AdamWOptions(0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1));
    HandAdamW ha{0.01, 0.8, 0.99, 1e-6, 0.1, {}, {}}, hb_{0.01, 0.8, 0.99, 1e-6, 0.1, {}, {}};
    for (int s = 0; s < 6; ++s) {
        w.grad() = grad_at(w.shape(), s, 0);
        b.grad() = grad_at(b.shape(), s, 1);
        opt.step();
        ha.step(hw, grad_at(w.shape(), s, 0));
        hb_.step(hb, grad_at(b.shape(), s, 1));
        BOOST_TEST(max_abs_diff(w.value(), hw) < 1e-12);
        BOOST_TEST(max_abs_diff(b.value(), hb) < 1e-12);
    }
    BOOST_TEST(max_abs_diff(w.value(), rnd(Shape{3, 4}, 60)) > 1e-3);  // it moved
    // the options' defaults are PyTorch's: weight_decay 0.01, betas (0.9, 0.999), eps 1e-8, lr 1e-3
    const AdamWOptions d;
    BOOST_TEST(d.lr() == 1e-3);
    BOOST_TEST(d.weight_decay() == 0.01);
    BOOST_TEST(d.beta1() == 0.9);
    BOOST_TEST(d.beta2() == 0.999);
    BOOST_TEST(d.eps() == 1e-8);
    BOOST_TEST(AdamWOptions(0.5).weight_decay() == 0.01);
    // AdamOptions converts with its own decay (0)
    BOOST_TEST(AdamWOptions(AdamOptions(0.5)).weight_decay() == 0.0);
    AdamW<double> braced({&w}, {0.02});
    BOOST_TEST(braced.param_groups()[0].weight_decay() == 0.01);
    BOOST_TEST(braced.lr() == 0.02);
}

BOOST_AUTO_TEST_CASE(adamw_without_decay_is_adam)
{
    Parameter<double> a(rnd(Shape{2, 3}, 62)), b(a.value());
    AdamW<double> w_opt({&a}, AdamWOptions(0.05).weight_decay(0));
    Adam<double> a_opt({&b}, AdamOptions(0.05));
    for (int s = 0; s < 5; ++s) {
        a.grad() = grad_at(a.shape(), s, 0);
        b.grad() = grad_at(b.shape(), s, 0);
        w_opt.step();
        a_opt.step();
        BOOST_TEST((a.value() == b.value()));
    }
}

BOOST_AUTO_TEST_CASE(groups_have_their_own_lr_and_decay)
{
    // SGD: w ← w − lr_g·(∇ + wd_g·w), each group with its own lr and decay
    Parameter<double> a(Tens{1.0, -2.0}), b(Tens{{0.5, 4.0}}), c(Tens{3.0});
    SGD<double> sgd({OptimizerParamGroup<double>({&a, &b}, ParamGroupOptions().lr(0.1)),
                     OptimizerParamGroup<double>({&c}, ParamGroupOptions().weight_decay(0.5))},
                    SGDOptions(0.01).weight_decay(0.2));
    BOOST_TEST(sgd.num_param_groups() == 2u);
    BOOST_TEST(sgd.param_groups()[0].lr() == 0.1);
    BOOST_TEST(sgd.param_groups()[0].weight_decay() == 0.2);  // the default filled in
    BOOST_TEST(sgd.param_groups()[1].lr() == 0.01);
    BOOST_TEST(sgd.param_groups()[1].weight_decay() == 0.5);
    BOOST_TEST(sgd.params().size() == 3u);
    BOOST_TEST(sgd.params()[2] == &c);
    a.grad() = Tens{1.0, 1.0};
    b.grad() = Tens{{-2.0, 0.0}};
    c.grad() = Tens{4.0};
    sgd.step();
    BOOST_TEST(std::abs(a.value()(0) - (1.0 - 0.1 * (1.0 + 0.2 * 1.0))) < 1e-15);
    BOOST_TEST(std::abs(a.value()(1) - (-2.0 - 0.1 * (1.0 + 0.2 * -2.0))) < 1e-15);
    BOOST_TEST(std::abs(b.value()(0, 0) - (0.5 - 0.1 * (-2.0 + 0.2 * 0.5))) < 1e-15);
    BOOST_TEST(std::abs(b.value()(0, 1) - (4.0 - 0.1 * (0.0 + 0.2 * 4.0))) < 1e-15);
    BOOST_TEST(std::abs(c.value()(0) - (3.0 - 0.01 * (4.0 + 0.5 * 3.0))) < 1e-15);
    // set_lr sets every group; set_group_lr one
    sgd.set_lr(0.3);
    BOOST_TEST(sgd.group_lr(0) == 0.3);
    BOOST_TEST(sgd.group_lr(1) == 0.3);
    sgd.set_group_lr(1, 0.07);
    BOOST_TEST(sgd.lr() == 0.3);
    BOOST_TEST(sgd.param_groups()[1].lr() == 0.07);
    sgd.param_group(0).set_lr(0.5);
    BOOST_TEST(sgd.lr() == 0.5);
    BOOST_TEST(sgd.group_lr(1) == 0.07);

    // AdamW with groups: each group against the hand loop with its lr and decay
    Parameter<double> w(rnd(Shape{2, 3}, 63)), v(rnd(Shape{3}, 64));
    Tens hw = w.value(), hv = v.value();
    AdamW<double> opt({OptimizerParamGroup<double>({&w}), OptimizerParamGroup<double>({&v}, ParamGroupOptions().lr(0.2).weight_decay(0))},
                      AdamWOptions(0.03).weight_decay(0.3));
    HandAdamW hw_{0.03, 0.9, 0.999, 1e-8, 0.3, {}, {}}, hv_{0.2, 0.9, 0.999, 1e-8, 0.0, {}, {}};
    for (int s = 0; s < 4; ++s) {
        w.grad() = grad_at(w.shape(), s, 2);
        v.grad() = grad_at(v.shape(), s, 3);
        opt.step();
        hw_.step(hw, grad_at(w.shape(), s, 2));
        hv_.step(hv, grad_at(v.shape(), s, 3));
        BOOST_TEST(max_abs_diff(w.value(), hw) < 1e-12);
        BOOST_TEST(max_abs_diff(v.value(), hv) < 1e-12);
    }
    // checkpoint names run over the groups' parameters in order, as for a plain list
    const auto st = opt.state();
    BOOST_TEST(st.size() == 4u);
    BOOST_TEST(st[2].first == "m.1");
    BOOST_TEST((st[2].second->shape() == Shape{3}));
}

BOOST_AUTO_TEST_CASE(decay_groups_leave_biases_and_norms_alone)
{
    MLP<double> net({3, 4, 2}, Activation::relu, Activation::identity, 65);
    const auto named = net.named_parameters();
    const auto groups = decay_param_groups(named);
    BOOST_TEST(groups.size() == 2u);
    BOOST_TEST(groups[0].params().size() == 2u);
    BOOST_TEST(groups[0].params()[0] == &net.parameter("0.weight"));
    BOOST_TEST(groups[0].params()[1] == &net.parameter("2.weight"));
    BOOST_TEST(groups[1].params()[0] == &net.parameter("0.bias"));
    BOOST_TEST(groups[1].params()[1] == &net.parameter("2.bias"));
    BOOST_TEST(!groups[0].options().weight_decay());  // the optimizer's
    BOOST_TEST(*groups[1].options().weight_decay() == 0.0);
    // a 1-D parameter not called bias (a norm's scale), and a bias of two dimensions
    Parameter<double> scale(Tens{1.0, 1.0}), conv_bias(Tens{{0.1, 0.2}});
    const auto g2 = decay_param_groups<double>({{"norm.weight", &scale}, {"extra_bias", &conv_bias}});
    BOOST_TEST(g2[0].params().empty());
    BOOST_TEST(g2[1].params().size() == 2u);

    // zero gradients: AdamW's step is the decay alone, w(1 − lr·wd), and the no-decay group stays put
    AdamW<double> opt(groups, AdamWOptions(0.1).weight_decay(0.5));
    const Tens w0 = net.parameter("0.weight").value(), b0 = net.parameter("0.bias").value();
    net.zero_grad();
    opt.step();
    BOOST_TEST(max_abs_diff(net.parameter("0.weight").value(), w0 * (1 - 0.1 * 0.5)) < 1e-15);
    BOOST_TEST((net.parameter("0.bias").value() == b0));
}

BOOST_AUTO_TEST_CASE(float_groups_and_adam)
{
    Parameter<float> a(Tensor<float>{1.0f, 2.0f}), b(Tensor<float>{{-1.0f, 0.5f}});
    Adam<float> opt({OptimizerParamGroup<float>({&a}, ParamGroupOptions().lr(0.5)), OptimizerParamGroup<float>({&b})},
                    AdamOptions(0.1));
    a.grad() = Tensor<float>{1.0f, -1.0f};
    b.grad() = Tensor<float>{{2.0f, -3.0f}};
    opt.step();  // the first Adam step moves each element by lr·sign(g) (up to ε)
    // (float: Adam's 1 − β₂ in float against √ of the double bias correction, a few 1e-6 apart)
    BOOST_TEST(std::abs(a.value()(0) - 0.5f) < 2e-5f);
    BOOST_TEST(std::abs(a.value()(1) - 2.5f) < 2e-5f);
    BOOST_TEST(std::abs(b.value()(0, 0) - -1.1f) < 2e-5f);
    BOOST_TEST(std::abs(b.value()(0, 1) - 0.6f) < 2e-5f);
}

BOOST_AUTO_TEST_CASE(group_errors)
{
    Parameter<double> a(Tens{1.0}), b(Tens{2.0});
    BOOST_TEST(message_of<std::invalid_argument>([&] {
                   SGD<double>({OptimizerParamGroup<double>({&a}), OptimizerParamGroup<double>({&b}, ParamGroupOptions().lr(-1))},
                               0.1);
               }) == "SGD (parameter group 1): lr must be a finite number >= 0, got -1");
    BOOST_TEST(message_of<std::invalid_argument>([&] {
                   AdamW<double>({OptimizerParamGroup<double>({&a}, ParamGroupOptions().weight_decay(-0.5))});
               }) == "AdamW (parameter group 0): weight_decay must be a finite number >= 0, got -0.5");
    BOOST_TEST(message_of<std::invalid_argument>([&] { Adam<double>(std::vector<OptimizerParamGroup<double>>{}); }) ==
               "Adam: no parameter groups");
    BOOST_TEST(message_of<std::invalid_argument>([&] {
                   Adam<double>({OptimizerParamGroup<double>({&a, &b}), OptimizerParamGroup<double>({&a})});
               }) == "Adam: parameter 2 ('') is the same as parameter 0; list each parameter once");
    SGD<double> sgd({&a}, 0.1);
    BOOST_TEST(message_of<std::out_of_range>([&] { sgd.set_group_lr(1, 0.1); }) ==
               "param_group: parameter group 1 is out of range (1 groups)");
    BOOST_TEST(message_of<std::out_of_range>([&] { sgd.group_lr(3); }) ==
               "param_group: parameter group 3 is out of range (1 groups)");
    BOOST_TEST(message_of<std::invalid_argument>([&] { sgd.param_group(0).set_lr(-2); }) ==
               "OptimizerParamGroup::set_lr: lr must be a finite number >= 0, got -2");
    BOOST_TEST(message_of<std::invalid_argument>([&] { AdamW<double>({&a}, AdamWOptions().betas(0.9, 1.0)); }) ==
               "AdamW: beta2 must be in [0, 1), got 1");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- LR schedules ----

BOOST_AUTO_TEST_SUITE(schedules)

BOOST_AUTO_TEST_CASE(step_lr)
{
    Parameter<double> a(Tens{1.0}), b(Tens{2.0});
    SGD<double> opt({OptimizerParamGroup<double>({&a}), OptimizerParamGroup<double>({&b}, ParamGroupOptions().lr(0.02))}, 0.1);
    StepLR sched(opt, 3, 0.5);
    BOOST_TEST((sched.base_lrs() == std::vector<double>{0.1, 0.02}));
    for (int e = 0; e <= 10; ++e) {
        if (e > 0) sched.step();
        BOOST_TEST(sched.last_epoch() == e);
        const double f = std::pow(0.5, e / 3);  // γ^⌊e/3⌋
        BOOST_TEST(sched.get_last_lr()[0] == 0.1 * f);
        BOOST_TEST(sched.get_last_lr()[1] == 0.02 * f);
        BOOST_TEST(opt.group_lr(0) == 0.1 * f);
        BOOST_TEST(opt.group_lr(1) == 0.02 * f);
    }
    BOOST_TEST(opt.group_lr(0) == 0.1 * 0.125);  // epoch 10: ⌊10/3⌋ = 3
    // without an optimizer, as before: lr(epoch), and step()/get_last_lr() of the one base lr
    StepLR detached(1.0, 2, 0.5);
    BOOST_TEST(detached.lr(3) == 0.5);
    BOOST_TEST(detached.lr(4) == 0.25);
    detached.step();
    detached.step();
    BOOST_TEST((detached.get_last_lr() == std::vector<double>{0.5}));
}

BOOST_AUTO_TEST_CASE(cosine_annealing_lr)
{
    Parameter<float> a(Tensor<float>{1.0f});
    Adam<float> opt({&a}, AdamOptions(0.1));
    CosineAnnealingLR sched(opt, 10, 0.001);
    for (int e = 0; e <= 25; ++e) {
        if (e > 0) sched.step();
        // η_min + ½(η₀ − η_min)(1 + cos(π·e/T_max)), past T_max too (PyTorch's closed form)
        const double want = 0.001 + 0.5 * (0.1 - 0.001) * (1 + std::cos(kPi * e / 10.0));
        BOOST_TEST(std::abs(sched.get_last_lr()[0] - want) < 1e-16);
        BOOST_TEST(std::abs(opt.lr() - want) < 1e-16);
    }
    // the half period and the minimum, in closed form
    CosineAnnealingLR s2(opt, 4);
    BOOST_TEST(s2.base_lrs()[0] == opt.lr());  // starts from the lr it finds
    const double base = s2.base_lrs()[0];
    s2.step();
    s2.step();
    BOOST_TEST(std::abs(s2.get_last_lr()[0] - base / 2) < 1e-16);
    s2.step();
    s2.step();
    BOOST_TEST(std::abs(s2.get_last_lr()[0]) < 1e-16);
    for (int i = 0; i < 4; ++i) s2.step();  // 2·T_max: back at the base
    BOOST_TEST(std::abs(s2.get_last_lr()[0] - base) < 1e-16);
}

namespace {
/// torch.optim.lr_scheduler.OneCycleLR.get_lr (three_phase=False), transcribed.
double one_cycle_torch(int step_num, double max_lr, int total_steps, double pct_start, bool cos, double div_factor,
                       double final_div_factor)
{
    const double initial_lr = max_lr / div_factor, min_lr = initial_lr / final_div_factor;
    struct Phase {
        double end_step, start_lr, end_lr;
    };
    const Phase phases[2] = {{pct_start * total_steps - 1, initial_lr, max_lr}, {double(total_steps) - 1, max_lr, min_lr}};
    double start_step = 0;
    for (int i = 0; i < 2; ++i) {
        const double end_step = phases[i].end_step;
        if (step_num <= end_step || i == 1) {
            const double pct = (step_num - start_step) / (end_step - start_step);
            const double s = phases[i].start_lr, e = phases[i].end_lr;
            // xgrad clamps at 0 where PyTorch's linear form overshoots below 0 at step total_steps
            return cos ? e + (s - e) / 2.0 * (std::cos(kPi * pct) + 1) : std::max(0.0, (e - s) * pct + s);
        }
        start_step = phases[i].end_step;
    }
    return std::numeric_limits<double>::quiet_NaN();
}
}  // namespace

BOOST_AUTO_TEST_CASE(one_cycle_lr)
{
    Parameter<double> a(Tens{1.0}), b(Tens{2.0});
    SGD<double> opt({OptimizerParamGroup<double>({&a}), OptimizerParamGroup<double>({&b}, ParamGroupOptions().lr(5.0))}, 0.1);
    OneCycleLR sched(opt, 0.1, 100);
    // the landmarks: max_lr/25 at step 0, max_lr at step pct·total − 1 = 29, max_lr/25/1e4 at step 99
    BOOST_TEST(std::abs(sched.get_last_lr()[0] - 0.004) < 1e-17);
    BOOST_TEST(std::abs(sched.get_last_lr()[1] - 0.004) < 1e-17);  // every group, whatever its lr was
    for (int s = 1; s <= 100; ++s) {
        sched.step();
        const double want = one_cycle_torch(s, 0.1, 100, 0.3, true, 25, 1e4);
        BOOST_TEST(std::abs(sched.get_last_lr()[0] - want) < 1e-17);
        BOOST_TEST(opt.group_lr(1) == sched.get_last_lr()[1]);
        if (s == 29) BOOST_TEST(std::abs(sched.get_last_lr()[0] - 0.1) < 1e-17);
        if (s == 99) BOOST_TEST(std::abs(sched.get_last_lr()[0] - 0.1 / 25 / 1e4) < 1e-18);
    }
    // step 100 is allowed (as PyTorch), step 101 is not, and changes nothing
    const double last = opt.lr();
    BOOST_TEST(message_of<std::out_of_range>([&] { sched.step(); }) ==
               "OneCycleLR: tried to step 101 times; the specified number of total steps is 100");
    BOOST_TEST(sched.last_epoch() == 100);
    BOOST_TEST(opt.lr() == last);

    // linear annealing, other factors, pct_start·total below 1 (no rising phase)
    for (auto [pct, total] : {std::pair<double, int>{0.25, 20}, {0.05, 10}, {0.0, 7}, {0.7, 3}}) {
        OneCycleLR lin(opt, 2.0, total, pct, "linear", 10, 100);
        for (int s = 0; s <= total; ++s) {
            if (s > 0) lin.step();
            const double want = one_cycle_torch(s, 2.0, total, pct, false, 10, 100);
            BOOST_TEST(std::abs(lin.get_last_lr()[0] - want) < 1e-15, "pct " << pct << " total " << total << " step " << s);
        }
    }
}

BOOST_AUTO_TEST_CASE(bad_arguments_throw)
{
    Parameter<double> a(Tens{1.0});
    SGD<double> opt({&a}, 0.1);
    BOOST_TEST(message_of<std::invalid_argument>([&] { StepLR(opt, 0); }) == "StepLR: step_size must be at least 1, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([&] { StepLR(opt, 2, -0.5); }) ==
               "StepLR: gamma must be a finite number >= 0, got -0.5");
    BOOST_TEST(message_of<std::invalid_argument>([&] { CosineAnnealingLR(opt, 0); }) ==
               "CosineAnnealingLR: T_max must be at least 1, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([&] { CosineAnnealingLR(opt, 5, -1); }) ==
               "CosineAnnealingLR: eta_min must be a finite number >= 0, got -1");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, 0.1, 0); }) ==
               "OneCycleLR: total_steps must be at least 1, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, -0.1, 10); }) ==
               "OneCycleLR: max_lr must be a finite number >= 0, got -0.1");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, 0.1, 10, 1.5); }) ==
               "OneCycleLR: pct_start must be in [0, 1], got 1.5");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, 0.1, 10, 0.3, "exp"); }) ==
               "OneCycleLR: anneal_strategy must be \"cos\" or \"linear\", got \"exp\"");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, 0.1, 10, 0.3, "cos", 0); }) ==
               "OneCycleLR: div_factor must be a finite number > 0, got 0");
    BOOST_TEST(message_of<std::invalid_argument>([&] { OneCycleLR(opt, 0.1, 10, 0.1); }) ==
               "OneCycleLR: pct_start 0.1 with total_steps 10 leaves a phase of zero steps (pct_start·total_steps must "
               "not be 1 or total_steps)");
    BOOST_TEST(opt.lr() == 0.1);  // a schedule that throws leaves the optimizer alone
}

BOOST_AUTO_TEST_SUITE_END()

// ---- the pieces together ----

BOOST_AUTO_TEST_SUITE(together)

BOOST_AUTO_TEST_CASE(cnn_with_new_layers_gradcheck)
{
    // conv → GELU → adaptive pool (unequal bins) → flatten → linear → SiLU, every parameter checked
    Sequential<double> net;
    net.emplace<Conv2d<double>>(Conv2dOptions(2, 3, 3).padding(1), 70);
    net.emplace<GELU<double>>(GELUOptions().approximate("tanh"));
    net.emplace<AdaptiveAvgPool2d<double>>(AdaptiveAvgPool2dOptions({3, 2}));
    net.emplace<Flatten<double>>();
    net.emplace<Linear<double>>(3 * 3 * 2, 4, true, 71);
    net.emplace<SiLU<double>>();
    const IndexTensor labels = {1, 3};
    auto r = gradcheck_module(net, rnd(Shape{2, 2, 5, 7}, 72),
                              [&](const V& y) { return cross_entropy(y, labels); });
    BOOST_TEST(r.ok, r.summary());
    BOOST_TEST(r.inputs.size() == 5u);  // 4 parameters and the input
}

BOOST_AUTO_TEST_CASE(adamw_groups_clipping_and_one_cycle_train)
{
    // a float MLP fitting fixed targets with AdamW (decay groups), clipping and 1cycle: the loss
    // falls, every gradient handed to the optimizer has norm <= 1, and the lr follows the schedule
    MLP<float> net({4, 16, 3}, Activation::tanh, Activation::identity, 73);
    const Tensor<float> x = xt::cast<float>(rnd(Shape{32, 4}, 74));
    const Tensor<float> y = xt::cast<float>(rnd(Shape{32, 3}, 75, -0.5, 0.5));
    AdamW<float> opt(decay_param_groups(net.named_parameters()), AdamWOptions(1e-3).weight_decay(1e-4));
    const int steps = 150;
    OneCycleLR sched(opt, 0.05, steps);
    Tape<float> tape;
    float first = 0, last = 0;
    for (int s = 0; s < steps; ++s) {
        tape.clear();
        opt.zero_grad();
        Var<float> loss = mse_loss(net(tape.constant(x)), tape.constant(y));
        tape.backward(loss);
        utils::clip_grad_norm_(opt.params(), 1.0);
        double sq = 0;
        for (auto* p : opt.params())
            for (float g : p->grad()) sq += double(g) * g;
        BOOST_TEST(std::sqrt(sq) <= 1.0 + 1e-5);
        const double want = schedules::one_cycle_torch(s, 0.05, steps, 0.3, true, 25, 1e4);
        BOOST_TEST(std::abs(opt.group_lr(0) - want) < 1e-15);
        BOOST_TEST(opt.group_lr(1) == opt.group_lr(0));
        opt.step();
        sched.step();
        (s == 0 ? first : last) = loss.value()();
    }
    BOOST_TEST_MESSAGE("loss " << first << " → " << last);
    BOOST_TEST(last < 0.3f * first);
}

BOOST_AUTO_TEST_SUITE_END()

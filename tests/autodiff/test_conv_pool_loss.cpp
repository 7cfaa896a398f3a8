// conv2d, pooling and the fused losses: values against naive direct loops, gradients against
// finite differences (float64), on stride/padding combinations and shapes that do not divide evenly.
#define BOOST_TEST_MODULE autodiff_conv_pool_loss
#include "test_util.hpp"
#include "xgrad/nn/losses.hpp"  // trace_scatter_loss: an nn loss written on the op API

#include <cstring>
#include <random>

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

using namespace xgrad;
using xgrad::nn::scatter_traces;
using xgrad::nn::ScatterTraces;
using xgrad::nn::trace_scatter_loss;
using xgrad::test::expect_gradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;
namespace tt = boost::test_tools;

namespace {

/// Direct 7-loop convolution, the definition itself, with dilation d and groups g: output channel o sees input channels
/// [(o / (O/g))·C/g, …+C/g) through W[o, c mod C/g], taps d apart.
Tensor<double> naive_conv_dg(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b, std::size_t s,
                             std::size_t p, std::size_t d, std::size_t g)
{
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t O = w.shape()[0], CG = w.shape()[1], KH = w.shape()[2], KW = w.shape()[3];
    const std::size_t OH = (H + 2 * p - d * (KH - 1) - 1) / s + 1, OW = (W + 2 * p - d * (KW - 1) - 1) / s + 1;
    BOOST_REQUIRE(CG * g == C);
    Tensor<double> y = xt::zeros<double>({N, O, OH, OW});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < OH; ++i)
                for (std::size_t j = 0; j < OW; ++j) {
                    double acc = b ? (*b)(o) : 0.0;
                    const std::size_t c0 = o / (O / g) * CG;
                    for (std::size_t c = 0; c < CG; ++c)
                        for (std::size_t a = 0; a < KH; ++a)
                            for (std::size_t q = 0; q < KW; ++q) {
                                const long ih = long(i * s + a * d) - long(p), iw = long(j * s + q * d) - long(p);
                                if (ih >= 0 && ih < long(H) && iw >= 0 && iw < long(W))
                                    acc += w(o, c, a, q) * x(n, c0 + c, std::size_t(ih), std::size_t(iw));
                            }
                    y(n, o, i, j) = acc;
                }
    return y;
}

/// Without dilation or groups.
Tensor<double> naive_conv(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b, std::size_t s,
                          std::size_t p)
{
    return naive_conv_dg(x, w, b, s, p, 1, 1);
}

Tensor<double> naive_pool(const Tensor<double>& x, std::size_t k, std::size_t s, bool is_max)
{
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    Tensor<double> y = xt::zeros<double>({N, C, OH, OW});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < OH; ++i)
                for (std::size_t j = 0; j < OW; ++j) {
                    double acc = is_max ? -1e300 : 0.0;
                    for (std::size_t a = 0; a < k; ++a)
                        for (std::size_t b = 0; b < k; ++b) {
                            const double v = x(n, c, i * s + a, j * s + b);
                            acc = is_max ? std::max(acc, v) : acc + v / double(k * k);
                        }
                    y(n, c, i, j) = acc;
                }
    return y;
}

struct ConvCase {
    Shape x, w;
    std::size_t stride, pad;
    bool bias;
};

}  // namespace

BOOST_AUTO_TEST_CASE(conv2d_matches_direct_loops_and_finite_differences)
{
    const std::vector<ConvCase> cases = {
        {{2, 1, 5, 5}, {3, 1, 3, 3}, 1, 0, true},   {{2, 2, 6, 6}, {4, 2, 3, 3}, 2, 1, true},
        {{1, 3, 7, 6}, {2, 3, 3, 2}, 2, 0, false},  // 7 and 6 do not divide by the stride
        {{2, 2, 4, 5}, {3, 2, 5, 5}, 1, 2, true},   // padding larger than needed ("same" for 5×5)
        {{3, 1, 3, 3}, {2, 1, 1, 1}, 1, 0, true},   // 1×1 kernel
        {{1, 2, 8, 8}, {2, 2, 4, 4}, 3, 1, true}};
    unsigned seed = 1;
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " stride " << k.stride << " pad "
                                << k.pad << " bias " << k.bias)
        {
            const Tensor<double> x = rnd(k.x, seed++), w = rnd(k.w, seed++), b = rnd(Shape{k.w[0]}, seed++);
            Tape<double> t;
            const Conv2dOptions opt = Conv2dOptions().stride(k.stride).padding(k.pad);
            auto y = k.bias ? conv2d(t.constant(x), t.constant(w), t.constant(b), opt)
                            : conv2d(t.constant(x), t.constant(w), opt);
            const Tensor<double> ref = naive_conv(x, w, k.bias ? &b : nullptr, k.stride, k.pad);
            BOOST_REQUIRE(y.shape() == ref.shape());
            BOOST_TEST(xt::amax(xt::abs(y.value() - ref))() < 1e-12);
            if (k.bias)
                expect_gradcheck([opt](const Vs& v) { return conv2d(v[0], v[1], v[2], opt); },
                                 {x, w, b}, GradcheckOptions().seed(1).input_names({"x", "w", "b"}));
            else
                expect_gradcheck([opt](const Vs& v) { return conv2d(v[0], v[1], opt); }, {x, w});
        }
    }
}

// Hardening row 1: with padding, a kernel much larger than the input has kernel columns that
// reach no input column at all; im2col used to write past the row (heap overflow).
BOOST_AUTO_TEST_CASE(conv2d_kernel_larger_than_input_with_padding)
{
    {
        const Tensor<double> x = rnd(Shape{1, 1, 3, 3}, 40), w = rnd(Shape{1, 1, 7, 7}, 41), b = rnd(Shape{1}, 42);
        Tape<double> t;
        auto y = conv2d(t.constant(x), t.constant(w), t.constant(b), Conv2dOptions().padding(2));
        BOOST_TEST(y.shape() == (Shape{1, 1, 1, 1}), tt::per_element());
        BOOST_TEST(std::abs(y.value()(0, 0, 0, 0) - naive_conv(x, w, &b, 1, 2)(0, 0, 0, 0)) < 1e-13);
        expect_gradcheck([](const Vs& v) { return conv2d(v[0], v[1], v[2], Conv2dOptions().padding(2)); }, {x, w, b});
    }
    // The sweep: random small configurations, every one either correct (values and
    // gradients) or a ShapeError when the output would be empty.
    std::mt19937 rng(346);
    auto pick = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
    int computed = 0, rejected = 0;
    for (int trial = 0; trial < 346; ++trial) {
        const std::size_t n = pick(1, 2), c = pick(1, 2), h = pick(1, 5), wd = pick(1, 5), o = pick(1, 2);
        const std::size_t kh = pick(1, 8), kw = pick(1, 8), s = pick(1, 3), p = pick(0, 3);
        const Tensor<double> x = rnd(Shape{n, c, h, wd}, 1000 + unsigned(trial)), w = rnd(Shape{o, c, kh, kw}, 2000 + unsigned(trial));
        const Conv2dOptions opt = Conv2dOptions().stride(s).padding(p);
        Tape<double> t;
        if (h + 2 * p < kh || wd + 2 * p < kw) {
            BOOST_CHECK_THROW(conv2d(t.constant(x), t.constant(w), opt), ShapeError);
            ++rejected;
            continue;
        }
        BOOST_TEST_CONTEXT("x " << shape_str(x.shape()) << " w " << shape_str(w.shape()) << " stride " << s << " pad " << p)
        {
            auto y = conv2d(t.constant(x), t.constant(w), opt);
            const Tensor<double> ref = naive_conv(x, w, nullptr, s, p);
            BOOST_REQUIRE(y.shape() == ref.shape());
            BOOST_TEST(xt::amax(xt::abs(y.value() - ref))() < 1e-12);
            if (trial % 4 == 0) expect_gradcheck([opt](const Vs& v) { return conv2d(v[0], v[1], opt); }, {x, w});
        }
        ++computed;
    }
    BOOST_TEST(computed > 100);
    BOOST_TEST(rejected > 10);
    // Found by fuzz_ops: a stride near 2^64 overflowed the valid-column bound (wrong output).
    // Any stride past the padded input gives one output position; huge ones are refused.
    {
        const Tensor<double> x = rnd(Shape{2, 3, 4, 4}, 50), w = rnd(Shape{2, 3, 4, 4}, 51);
        Tape<double> t;
        auto y = conv2d(t.constant(x), t.constant(w), Conv2dOptions().stride(1000).padding(1));
        const Tensor<double> ref = naive_conv(x, w, nullptr, 1000, 1);
        BOOST_REQUIRE(y.shape() == ref.shape());
        BOOST_TEST(xt::amax(xt::abs(y.value() - ref))() < 1e-12);
        BOOST_CHECK_THROW(conv2d(t.constant(x), t.constant(w), Conv2dOptions().stride(std::size_t(-1))), ShapeError);
    }
}

BOOST_AUTO_TEST_CASE(conv2d_float32_agrees_with_float64)
{
    const Tensor<double> x = rnd(Shape{4, 3, 9, 9}, 5), w = rnd(Shape{5, 3, 3, 3}, 6);
    Tape<float> t;
    auto y = conv2d(t.constant(xt::cast<float>(x)), t.constant(xt::cast<float>(w)), Conv2dOptions().stride(2).padding(1));
    const Tensor<double> ref = naive_conv(x, w, nullptr, 2, 1);
    BOOST_TEST(xt::amax(xt::abs(xt::cast<double>(y.value()) - ref))() < 1e-5);
}

BOOST_AUTO_TEST_CASE(conv2d_shape_errors)
{
    Tape<double> t;
    auto x = t.constant(Tensor<double>::from_shape({2, 3, 8, 8}));
    auto w = t.constant(Tensor<double>::from_shape({4, 2, 3, 3}));
    try {
        conv2d(x, w);
        BOOST_ERROR("no throw");
    } catch (const ShapeError& e) {
        BOOST_TEST(std::string(e.what()) ==
                   "conv2d: input (2,3,8,8), weight (4,2,3,3): input has 3 channels, weight expects 2");
    }
    BOOST_CHECK_THROW(conv2d(x, t.constant(Tensor<double>::from_shape({4, 3, 9, 9}))), ShapeError);
}

BOOST_AUTO_TEST_CASE(conv2d_dilation_and_groups_match_the_definition_to_second_order)
{
    struct Case {
        Shape x, w;
        std::size_t stride, pad, dilation, groups;
    };
    const std::vector<Case> cases = {
        {{2, 2, 7, 7}, {3, 2, 3, 3}, 1, 0, 2, 1},   // dilation alone
        {{1, 4, 6, 5}, {6, 2, 3, 2}, 1, 1, 1, 2},   // two groups, non-square kernel
        {{2, 3, 6, 6}, {3, 1, 3, 3}, 2, 1, 1, 3},   // depthwise, stride 2
        {{1, 4, 9, 8}, {4, 2, 2, 3}, 2, 2, 3, 2}};  // groups + dilation + stride + padding
    unsigned seed = 40;
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " s " << k.stride << " p " << k.pad
                                << " d " << k.dilation << " g " << k.groups)
        {
            const Tensor<double> x = rnd(k.x, seed++), w = rnd(k.w, seed++), b = rnd(Shape{k.w[0]}, seed++);
            const Conv2dOptions opt =
                Conv2dOptions().stride(k.stride).padding(k.pad).dilation(k.dilation).groups(k.groups);
            Tape<double> t;
            auto y = conv2d(t.constant(x), t.constant(w), t.constant(b), opt);
            const Tensor<double> ref = naive_conv_dg(x, w, &b, k.stride, k.pad, k.dilation, k.groups);
            BOOST_REQUIRE(y.shape() == ref.shape());
            BOOST_TEST(xt::amax(xt::abs(y.value() - ref))() < 1e-12);
            const GradcheckFn f = [opt](const Vs& v) { return conv2d(v[0], v[1], v[2], opt); };
            expect_gradcheck(f, {x, w, b});
            xgrad::test::expect_gradgradcheck(f, {x, w, b});
        }
    }
    Tape<double> t;
    auto x = t.constant(Tensor<double>::from_shape({1, 4, 5, 5}));
    auto w = t.constant(Tensor<double>::from_shape({6, 2, 3, 3}));
    BOOST_CHECK_NO_THROW(conv2d(x, w, Conv2dOptions().groups(2)));
    try {
        conv2d(x, w, Conv2dOptions().groups(3));
        BOOST_ERROR("no throw");
    } catch (const ShapeError& e) {
        BOOST_TEST(std::string(e.what()) == "conv2d: input (1,4,5,5) and weight (6,2,3,3) with groups 3: need C and O "
                                            "divisible by groups and W (O, C/groups, KH, KW)");
    }
    BOOST_CHECK_THROW(conv2d(x, w, Conv2dOptions().groups(0)), std::invalid_argument);
    BOOST_CHECK_THROW(conv2d(x, w, Conv2dOptions().dilation(0)), std::invalid_argument);
    BOOST_CHECK_THROW(conv2d(x, w, Conv2dOptions().groups(2).dilation(3)), ShapeError);  // 7×7 taps on 5×5
}

struct PoolCase {
    Shape x;
    std::size_t k, s;
};
// 2×2 windows that tile the input, 2×2 with a row and a column dropped, overlapping 3×3 of stride 2,
// 3×3 of stride 1
const std::vector<PoolCase> pool_cases = {{{2, 3, 4, 4}, 2, 2}, {{1, 2, 5, 5}, 2, 2}, {{1, 1, 7, 6}, 3, 2}, {{2, 1, 5, 5}, 3, 1}};

BOOST_AUTO_TEST_CASE(pooling_matches_direct_loops_and_finite_differences)
{
    unsigned seed = 40;
    for (const auto& c : pool_cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(c.x) << " k " << c.k << " s " << c.s)
        {
            const Tensor<double> x = rnd(c.x, seed++);
            Tape<double> t;
            BOOST_TEST(xt::amax(xt::abs(max_pool2d(t.constant(x), c.k, c.s).value() - naive_pool(x, c.k, c.s, true)))() ==
                       0.0);
            BOOST_TEST(xt::amax(xt::abs(avg_pool2d(t.constant(x), c.k, c.s).value() - naive_pool(x, c.k, c.s, false)))() <
                       1e-15);
            expect_gradcheck([c](const Vs& v) { return max_pool2d(v[0], c.k, c.s); }, {x});
            expect_gradcheck([c](const Vs& v) { return avg_pool2d(v[0], c.k, c.s); }, {x});
        }
    }
}

// activation_avg_pool2d against the two ops it fuses: the same bits forward and backward, the
// gradient written fresh and added to (x used again before or after), every activation and window
// kind (2×2 tiling, 2×2 with a row and column dropped, overlapping 3×3, stride 1), planes on 1 and 2
// threads; exact zeros in x (relu's mask: 0 there).
template <class T>
void check_fused_activation_pool()
{
    std::vector<PoolCase> cases = pool_cases;  // and planes enough for 2 threads
    cases.insert(cases.end(), {{{1, 2, 5, 7}, 2, 2}, {{3, 5, 9, 9}, 2, 1}, {{64, 6, 28, 28}, 2, 2}, {{64, 16, 10, 10}, 2, 2}});
    auto unfused = [](Activation a, const Var<T>& x) {
        switch (a) {
            case Activation::relu: return relu(x);
            case Activation::sigmoid: return sigmoid(x);
            case Activation::tanh: return xgrad::tanh(x);
            default: return x;
        }
    };
    unsigned seed = 300;
    for (const int threads : {1, 2}) {
        if (threads > max_num_threads()) continue;
        set_num_threads(threads);
        for (const auto& c : cases)
            for (const Activation a : {Activation::relu, Activation::sigmoid, Activation::tanh, Activation::identity})
                for (const int use : {0, 1, 2}) {  // x: only pooled; used again after; used again before
                    Tensor<T> x = xt::cast<T>(rnd(c.x, seed++, -6, 6));
                    for (std::size_t i = 0; i < x.size(); i += 7) x.data()[i] = T(0);
                    const Tensor<T> v = xt::cast<T>(rnd(c.x, seed++));
                    Tensor<T> y[2], dx[2];
                    for (const bool fused : {false, true}) {
                        Tape<T> t;
                        const Var<T> xv = t.variable(x);
                        Var<T> other;
                        if (use == 2) other = sum(xv * t.constant(v));
                        const Var<T> p = fused ? activation_avg_pool2d(xv, a, c.k, c.s) : avg_pool2d(unfused(a, xv), c.k, c.s);
                        if (use == 1) other = sum(xv * t.constant(v));
                        const Tensor<T> g = xt::cast<T>(rnd(p.shape(), 900));
                        const Var<T> l = sum(p * t.constant(g));
                        t.backward(use ? l + other : l);
                        y[fused] = p.value();
                        dx[fused] = xv.grad();
                    }
                    BOOST_TEST_CONTEXT("x " << shape_str(c.x) << " k " << c.k << " s " << c.s << " activation "
                                            << int(a) << " use " << use << " threads " << threads)
                    {
                        BOOST_TEST(y[0].shape() == y[1].shape());
                        BOOST_TEST(std::memcmp(y[0].data(), y[1].data(), y[0].size() * sizeof(T)) == 0);
                        BOOST_TEST(std::memcmp(dx[0].data(), dx[1].data(), dx[0].size() * sizeof(T)) == 0);
                    }
                }
    }
    set_num_threads(max_num_threads());
}

BOOST_AUTO_TEST_CASE(activation_avg_pool2d_is_the_two_ops_bit_for_bit)
{
    check_fused_activation_pool<float>();
    check_fused_activation_pool<double>();
}

BOOST_AUTO_TEST_CASE(activation_avg_pool2d_matches_finite_differences)
{
    unsigned seed = 500;
    for (const auto& c : pool_cases)
        for (const Activation a : {Activation::relu, Activation::sigmoid, Activation::tanh})
            BOOST_TEST_CONTEXT("x " << shape_str(c.x) << " k " << c.k << " s " << c.s << " activation " << int(a))
            {
                const Tensor<double> x = rnd(c.x, seed++, -2, 2, 0.05);  // relu: away from its kink
                expect_gradcheck([c, a](const Vs& v) { return activation_avg_pool2d(v[0], a, c.k, c.s); }, {x});
            }
    Tape<double> t;
    try {
        activation_avg_pool2d(t.constant(rnd({2, 3, 4}, 1)), Activation::relu, 2);
        BOOST_ERROR("no throw");
    } catch (const ShapeError& e) {
        BOOST_TEST(std::string(e.what()) == "activation_avg_pool2d: input (2,3,4) must be (N,C,H,W)");
    }
}

// Ties in a window: the gradient goes to the first maximum in row-major order, as in PyTorch; every
// position of a 2×2 window can be the maximum (2×2 fast path and the general loop, float and double).
template <class T>
void check_max_pool_ties()
{
    // six 2×2 windows: the max at (0,0) tied with (1,1); (0,0) tied with (0,1); (0,1) alone;
    // (1,0) tied with (1,1); (1,1) alone; all four tied
    const Tensor<T> x = {{{{5, 1, 7, 7, 0, 9}, {2, 5, 3, 1, 3, 1}, {1, 2, 4, 6, 2, 2}, {8, 8, 6, 10, 2, 2}}}};
    Tape<T> t;
    Var<T> xv = t.variable(x);
    Var<T> y = max_pool2d(xv, 2, 2);
    const Tensor<T> want_y = {{{{5, 7, 9}, {8, 10, 2}}}};
    BOOST_TEST(y.value() == want_y);
    t.backward(sum(y * t.constant(Tensor<T>{{{{1, 2, 3}, {4, 5, 6}}}})));
    const Tensor<T> want_g = {{{{1, 0, 2, 0, 0, 3}, {0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 6, 0}, {4, 0, 0, 5, 0, 0}}}};
    BOOST_TEST(xv.grad() == want_g);
    // the general loop: a 3×3 window of stride 3 tied at (0,2) and (2,0)
    Tape<T> t3;
    Var<T> z = t3.variable(Tensor<T>{{{{0, 1, 6}, {2, 3, 4}, {6, 5, 0}}}});
    t3.backward(sum(max_pool2d(z, 3, 3)));
    const Tensor<T> want_z = {{{{0, 0, 1}, {0, 0, 0}, {0, 0, 0}}}};
    BOOST_TEST(z.grad() == want_z);
}

BOOST_AUTO_TEST_CASE(max_pooling_ties_go_to_the_first_maximum)
{
    check_max_pool_ties<float>();
    check_max_pool_ties<double>();
}

BOOST_AUTO_TEST_CASE(cross_entropy_value_gradient_and_stability)
{
    IndexTensor labels = {2, 0, 1, 2};
    const Tensor<double> z = rnd(Shape{4, 3}, 9, -2, 2);
    // value: equals the unfused −mean(log_softmax picked at the labels)
    Tape<double> t;
    auto fused = cross_entropy(t.constant(z), labels);
    auto unfused = -mean(pick(log_softmax(t.constant(z), 1), labels));
    BOOST_TEST(fused.item() == unfused.item(), tt::tolerance(1e-14));
    BOOST_TEST(cross_entropy(t.constant(z), labels, Reduction::sum).item() == 4 * fused.item(), tt::tolerance(1e-14));
    for (Reduction r : {Reduction::mean, Reduction::sum})
        expect_gradcheck([&](const Vs& v) { return cross_entropy(v[0], labels, r); }, {z});
    expect_gradcheck([&](const Vs& v) { return nll_loss(log_softmax(v[0], 1), labels); }, {z});
    // huge logits: finite value, gradient rows sum to zero
    auto zl = t.variable(Tensor<double>{{1000.0, -1000.0, 0.0}});
    auto l = cross_entropy(zl, IndexTensor{1});
    t.backward(l);
    BOOST_TEST(l.item() == 2000.0, tt::tolerance(1e-12));
    BOOST_TEST(zl.grad()(0, 0) == 1.0, tt::tolerance(1e-12));
    BOOST_TEST(zl.grad()(0, 1) == -1.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(mse_loss_reductions)
{
    const Tensor<double> y = rnd(Shape{3, 4}, 11), d = rnd(Shape{3, 4}, 12);
    const double ss = xt::sum(xt::square(y - d))();
    Tape<double> t;
    BOOST_TEST(mse_loss(t.constant(y), t.constant(d), Reduction::sum).item() == ss, tt::tolerance(1e-14));
    BOOST_TEST(mse_loss(t.constant(y), t.constant(d), Reduction::half_sum).item() == ss / 2, tt::tolerance(1e-14));
    BOOST_TEST(mse_loss(t.constant(y), t.constant(d), Reduction::mean).item() == ss / 12, tt::tolerance(1e-14));
    for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::half_sum})
        expect_gradcheck([r](const Vs& v) { return mse_loss(v[0], v[1], r); }, {y, d});
    BOOST_CHECK_THROW(mse_loss(t.constant(y), t.constant(Tensor<double>::from_shape({4, 3}))), ShapeError);
}

namespace {
/// tr S_w and tr S_b from the explicit D×D scatter matrices, the definition of source document 000 (docs/sources.md).
std::pair<double, double> direct_traces(const Tensor<double>& y, const IndexTensor& labels, std::size_t K)
{
    const std::size_t B = y.shape()[0], D = y.shape()[1];
    Tensor<double> m = xt::mean(y, {0});
    Tensor<double> sw = xt::zeros<double>({D, D}), sb = xt::zeros<double>({D, D});
    for (std::size_t c = 0; c < K; ++c) {
        std::vector<std::size_t> rows;
        for (std::size_t i = 0; i < B; ++i)
            if (std::size_t(labels(i)) == c) rows.push_back(i);
        if (rows.empty()) continue;
        Tensor<double> mc = xt::zeros<double>({D});
        for (auto i : rows) mc += xt::view(y, i, xt::all());
        mc /= double(rows.size());
        for (auto i : rows) {
            Tensor<double> e = xt::view(y, i, xt::all()) - mc;
            sw += xt::linalg::outer(e, e);
        }
        Tensor<double> e = mc - m;
        sb += double(rows.size()) * xt::linalg::outer(e, e);
    }
    double tw = 0, tb = 0;
    for (std::size_t d = 0; d < D; ++d) tw += sw(d, d), tb += sb(d, d);
    return {tw, tb};
}
}  // namespace

BOOST_AUTO_TEST_CASE(trace_scatter_loss_value_gradient_invariants)
{
    const IndexTensor labels = {0, 2, 2, 0, 3, 2, 0};  // class 1 absent, class 3 a singleton
    const Tensor<double> y = rnd(Shape{7, 4}, 21, -2, 2);
    const auto [tw, tb] = direct_traces(y, labels, 4);
    const ScatterTraces st = scatter_traces(y, labels);
    BOOST_TEST(st.within == tw, tt::tolerance(1e-12));
    BOOST_TEST(st.between == tb, tt::tolerance(1e-12));
    const double gamma = 0.3;
    Tape<double> t;
    auto yv = t.variable(y);
    auto r = trace_scatter_loss(yv, labels, gamma);
    BOOST_TEST(r.item() == 0.5 * gamma * (tw - tb), tt::tolerance(1e-12));
    t.backward(r);
    // Σ_i dR/dy_i = 0: moving every output by the same vector changes neither trace
    const Tensor<double> col = xt::sum(yv.grad(), {0});
    BOOST_TEST(xt::amax(xt::abs(col))() < 1e-12);
    BOOST_TEST(xt::amax(xt::abs(yv.grad()))() > 0.1);
    expect_gradcheck([&](const Vs& v) { return trace_scatter_loss(v[0], labels, gamma); }, {y});
    // γ = 0: zero loss and zero gradient
    auto r0 = trace_scatter_loss(t.variable(y), labels, 0.0);
    BOOST_TEST(r0.item() == 0.0);
}

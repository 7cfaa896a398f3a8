// Channels-last (NHWC) data: conv2d with Conv2dOptions::channels_last and the batch norm ops
// batch_norm(_relu)_channels_last against the NCHW ops on the permuted tensors (which the other
// tests check against hand formulas), values and every gradient: in float64 to 1e-12 of each
// tensor's largest entry, in float (oneDNN's NHWC kernels) to 1e-5; first and second derivatives
// against finite differences; the fused ReLU and the fused residual sum + ReLU (batch_norm_add_relu,
// both layouts) bit for bit against the separate ops; the same bits on one
// thread and on all; the layers, BasicBlock and the ResNet in both layouts (same state dict, same
// function); the errors name the op, the layout and the shapes.
#define BOOST_TEST_MODULE nn_channels_last
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <typeinfo>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"
#include "xgrad/nn/blocks.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/losses.hpp"
#include "xgrad/nn/norm.hpp"
#include "xgrad/reference/models.hpp"
#include "xgrad/threads.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::test::expect_gradcheck;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::expect_message;
using xgrad::test::rnd;
using V = Var<double>;
using Opts = BatchNormFuncOptions<double>;
using Tens = Tensor<double>;

namespace {

/// max |a − b| / max |b| (elementwise relative error is meaningless where entries cancel to ~0).
template <class U>
double rel_err(const Tensor<U>& a, const Tensor<U>& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        err = std::max(err, std::abs(double(a.data()[i]) - double(b.data()[i])));
        scale = std::max(scale, std::abs(double(b.data()[i])));
    }
    return scale > 0 ? err / scale : err;
}

template <class U>
bool same_bits(const Tensor<U>& a, const Tensor<U>& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(U)) == 0;
}

template <class U>
Tensor<U> as(const Tens& v)
{
    return Tensor<U>(xt::cast<U>(v));
}

/// (N,C,H,W) ↔ (N,H,W,C) of a tensor, outside any tape.
template <class U>
Tensor<U> nhwc(const Tensor<U>& t)
{
    return Tensor<U>(xt::transpose(t, {0, 2, 3, 1}));
}
template <class U>
Tensor<U> nchw(const Tensor<U>& t)
{
    return Tensor<U>(xt::transpose(t, {0, 3, 1, 2}));
}

struct Grads {
    Tens y, dx, dw, db;
};

/// Runs op_cl on X (N,H,W,C) and op on the same values as (N,C,H,W), backward with the same G
/// (permuted), in U; returns both as float64 in the NCHW layout.
template <class U, class OpCl, class Op>
std::pair<Grads, Grads> both_layouts(const Tens& x_nchw, const Tens& w, const Tens& b, const Tens& g_nchw, OpCl op_cl,
                                     Op op)
{
    auto run = [&](bool cl) {
        Tape<U> t;
        const Var<U> x = t.variable(cl ? nhwc(as<U>(x_nchw)) : as<U>(x_nchw));
        const Var<U> wv = t.variable(as<U>(w)), bv = t.variable(as<U>(b));
        const Var<U> y = cl ? op_cl(x, wv, bv) : op(x, wv, bv);
        t.backward(y, cl ? nhwc(as<U>(g_nchw)) : as<U>(g_nchw));
        auto d = [](const Tensor<U>& v) { return Tens(xt::cast<double>(v)); };
        return Grads{d(cl ? nchw(y.value()) : y.value()), d(cl ? nchw(x.grad()) : x.grad()), d(wv.grad()), d(bv.grad())};
    };
    return {run(true), run(false)};
}

void expect_close(const Grads& a, const Grads& b, double tol)
{
    BOOST_TEST(rel_err(a.y, b.y) < tol);
    BOOST_TEST(rel_err(a.dx, b.dx) < tol);
    BOOST_TEST(rel_err(a.dw, b.dw) < tol);
    BOOST_TEST(rel_err(a.db, b.db) < tol);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(batch_norm_ops)

// Shapes with C a multiple of the kernels' chunk of channels and not (3, 12, 19: each of the
// backward's loops, two batches of channels, one, and single channels, in float and double), rows
// a multiple of four and not, N = 1; the sums over blocks of several images, equal (64 × 7 × 7:
// 8 blocks of 8, as ResNet's last stage) and not (13 images of 9 × 9 in blocks of 3, 3, 3 and 4;
// 5 images of 1 × 1 in 1, 1, 1 and 2).
BOOST_AUTO_TEST_CASE(equals_the_nchw_op_on_the_permuted_input)
{
    const std::vector<Shape> shapes = {Shape{4, 16, 5, 5}, Shape{3, 19, 3, 7}, Shape{1, 3, 2, 3}, Shape{2, 32, 4, 4},
                                       Shape{5, 8, 1, 1}, Shape{2, 12, 3, 3}, Shape{64, 8, 7, 7}, Shape{13, 4, 9, 9}};
    unsigned seed = 300;
    for (const Shape& s : shapes)
        for (bool relu : {false, true}) {
            const Tens x = rnd(s, seed, -2, 2), w = rnd({s[1]}, seed + 1, 0.5, 1.5), b = rnd({s[1]}, seed + 2, -0.5, 0.5),
                       g = rnd(s, seed + 3);
            seed += 4;
            auto run = [&](auto tag, double tol) {
                using U = decltype(tag);
                const auto [cl, ref] = both_layouts<U>(
                    x, w, b, g,
                    [relu](const Var<U>& x, const Var<U>& w, const Var<U>& b) {
                        return relu ? batch_norm(
                                          x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true).relu(true))
                                    : batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true));
                    },
                    [relu](const Var<U>& x, const Var<U>& w, const Var<U>& b) {
                        return relu ? batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).relu(true))
                                    : batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b));
                    });
                BOOST_TEST_CONTEXT(shape_str(s) << (relu ? " relu " : " ") << typeid(U).name()) { expect_close(cl, ref, tol); }
            };
            run(double{}, 1e-12);
            run(float{}, 1e-5);
        }
}

BOOST_AUTO_TEST_CASE(without_the_affine_map_and_the_statistics)
{
    const Tens x = rnd({3, 4, 5, 6}, 320, -2, 2), g = rnd({3, 4, 5, 6}, 321);
    Tens m_cl, v_cl, m, v;
    Tape<double> t;
    const V xc = t.variable(nhwc(x)), xn = t.variable(x);
    const V yc = batch_norm(xc, Opts().eps(1e-3).batch_mean(&m_cl).batch_var(&v_cl).channels_last(true)),
            yn = batch_norm(xn, Opts().eps(1e-3).batch_mean(&m).batch_var(&v));
    t.backward(sum(yc * t.constant(nhwc(g))) + sum(yn * t.constant(g)));
    BOOST_TEST(rel_err(nchw(yc.value()), yn.value()) < 1e-12);
    BOOST_TEST(rel_err(nchw(xc.grad()), xn.grad()) < 1e-12);
    BOOST_TEST(rel_err(m_cl, m) < 1e-12);
    BOOST_TEST(rel_err(v_cl, v) < 1e-12);
    const V r = batch_norm(t.variable(nhwc(x)), Opts().eps(1e-3).channels_last(true).relu(true));
    BOOST_TEST(rel_err(nchw(r.value()), Tens(xt::maximum(yn.value(), 0.0))) < 1e-12);
}

BOOST_AUTO_TEST_CASE(gradcheck_and_gradgradcheck)
{
    const std::vector<Shape> shapes = {Shape{2, 2, 3, 3}, Shape{3, 1, 2, 5}, Shape{1, 2, 2, 2}, Shape{4, 3}};
    unsigned seed = 340;
    int fused_checked = 0;
    for (const Shape& s : shapes) {
        const std::size_t c = s.back();
        BOOST_TEST_CONTEXT("x " << shape_str(s))
        {
            const std::vector<Tens> in = {rnd(s, seed, -1, 1), rnd({c}, seed + 1, 0.5, 1.5), rnd({c}, seed + 2)};
            seed += 3;
            auto f = [](const std::vector<V>& v) {
                return batch_norm(v[0], Opts().weight(v[1]).bias(v[2]).eps(1e-3).channels_last(true));
            };
            expect_gradcheck(f, in);
            expect_gradgradcheck(f, in);
            auto plain = [](const std::vector<V>& v) { return batch_norm(v[0], Opts().eps(1e-3).channels_last(true)); };
            expect_gradcheck(plain, {in[0]});
            expect_gradgradcheck(plain, {in[0]});
            if (test::clear_of_relu_kink(f, in)) {
                auto fused = [](const std::vector<V>& v) {
                    return batch_norm(v[0], Opts().weight(v[1]).bias(v[2]).eps(1e-3).channels_last(true).relu(true));
                };
                expect_gradcheck(fused, in);
                expect_gradgradcheck(fused, in);
                ++fused_checked;
            }
        }
    }
    BOOST_TEST(fused_checked >= 2);
}

// The fused ReLU: the same bits as relu(batch_norm_channels_last), values and gradients, x used again
// (its gradient adds); and the same bits on one thread and on all. Two shapes: 16 images of 12 × 12
// (the sums in 8 blocks of 2 images), and 64 of 7 × 7 (8 blocks of 8, ResNet's last stage), large
// enough (75,264 values) that the forward's passes, not only the backward's, run on the threads.
BOOST_AUTO_TEST_CASE(fused_relu_and_threads_bit_for_bit)
{
    for (const auto& draw : {std::pair{Shape{16, 12, 12, 24}, 360u}, std::pair{Shape{64, 7, 7, 24}, 370u}}) {
        const Shape shape = draw.first;
        const unsigned seed = draw.second;
        const Tens x0 = rnd(shape, seed, -2, 2), w0 = rnd({24}, seed + 1, 0.5, 1.5), b0 = rnd({24}, seed + 2, -0.5, 0.5),
                   g0 = rnd(shape, seed + 3);
        auto check = [&](auto tag) {
            using U = decltype(tag);
            auto run = [&](bool fused, int threads) {
                set_num_threads(threads);
                Tape<U> t;
                const Var<U> x = t.variable(as<U>(x0)), w = t.variable(as<U>(w0)), b = t.variable(as<U>(b0));
                const Var<U> y =
                    fused ? batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true).relu(true))
                          : relu(batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true)));
                t.backward(y + x, as<U>(g0));
                return std::vector<Tensor<U>>{y.value(), x.grad(), w.grad(), b.grad()};
            };
            const auto ref = run(false, 1);
            for (const auto& [fused, threads] : {std::pair{true, 1}, std::pair{true, max_num_threads()},
                                                std::pair{false, max_num_threads()}}) {
                const auto got = run(fused, threads);
                BOOST_TEST_CONTEXT(shape_str(shape) << " " << typeid(U).name() << (fused ? " fused, " : " two ops, ") << threads
                                                    << " threads")
                {
                    for (std::size_t i = 0; i < ref.size(); ++i) BOOST_TEST(same_bits(got[i], ref[i]), "tensor " << i);
                }
            }
            const double clipped = double(xt::sum(xt::cast<double>(xt::equal(ref[0], U(0))))()) / double(ref[0].size());
            BOOST_TEST(clipped > 0.2);
            BOOST_TEST(clipped < 0.7);
        };
        check(float{});
        check(double{});
    }
    set_num_threads(1);
}

// batch_norm_add_relu (a residual block's end) is add_relu(batch_norm(x), residual) as one op: the
// value and every gradient bit for bit against the two ops, both layouts, float and double, one
// thread and all, with the residual its own Var and the residual x itself (one gradient buffer),
// and the residual used again after the op or not (its gradient added to what the later use left
// there, or its buffer written first).
BOOST_AUTO_TEST_CASE(add_relu_fused_is_the_two_ops_bit_for_bit)
{
    // 12 channels either way, and 5 (a batch of channels and single ones in float and in double) with
    // several draws: a rounding that differs between the two (a multiply-add contracted in one
    // variant of a kernel and not in the other) shows on some values only
    for (const auto& draw : {std::pair{Shape{8, 12, 10, 12}, 390u}, std::pair{Shape{6, 5, 4, 5}, 400u},
                             std::pair{Shape{6, 5, 4, 5}, 405u}, std::pair{Shape{6, 5, 4, 5}, 410u},
                             std::pair{Shape{6, 5, 4, 5}, 415u}}) {
    const Shape shape = draw.first;  // (a structured binding: lambdas below may not capture one in C++17)
    const unsigned seed = draw.second;
    const std::size_t c = shape[1];
    const Tens x0 = rnd(shape, seed, -2, 2), s0 = rnd(shape, seed + 1, -1, 1), w0 = rnd({c}, seed + 2, 0.5, 1.5),
               b0 = rnd({c}, seed + 3, -0.5, 0.5), g0 = rnd(shape, seed + 4);
    auto check = [&](auto tag, bool cl, bool self, bool again, int threads) {
        using U = decltype(tag);
        set_num_threads(threads);
        auto run = [&](bool fused) {
            Tape<U> t;
            const Var<U> x = t.variable(as<U>(x0)), w = t.variable(as<U>(w0)), b = t.variable(as<U>(b0));
            const Var<U> r = self ? x : t.variable(as<U>(s0));
            Var<U> y;
            if (fused)
                y = cl ? batch_norm(
                             x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true).relu(true).residual(r))
                       : batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).relu(true).residual(r));
            else
                y = add_relu(cl ? batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).channels_last(true))
                                : batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b)),
                             r);
            t.backward(again ? y + r : y, as<U>(g0));
            return std::vector<Tensor<U>>{y.value(), x.grad(), w.grad(), b.grad(), r.grad()};
        };
        const auto f = run(true), u = run(false);
        BOOST_TEST_CONTEXT(typeid(U).name() << " " << shape_str(shape) << (cl ? " channels_last" : " nchw") << (self ? " residual x" : "")
                                            << (again ? " used again" : "") << ", " << threads << " threads")
        {
            for (std::size_t i = 0; i < f.size(); ++i) BOOST_TEST(same_bits(f[i], u[i]), "tensor " << i);
            const double clipped = double(xt::sum(xt::cast<double>(xt::equal(f[0], U(0))))()) / double(f[0].size());
            BOOST_TEST(clipped > 0.2);
            BOOST_TEST(clipped < 0.7);
        }
    };
    for (int threads : {1, max_num_threads()})
        for (bool cl : {false, true})
            for (bool self : {false, true})
                for (bool again : {false, true}) {
                    check(float{}, cl, self, again, threads);
                    check(double{}, cl, self, again, threads);
                }
    }
    set_num_threads(1);
}

BOOST_AUTO_TEST_CASE(add_relu_fused_gradcheck_and_gradgradcheck)
{
    int checked = 0;
    for (unsigned seed = 395; seed < 415 && checked < 4; seed += 5)
        for (bool cl : {false, true}) {
            const Shape s{3, 2, 2, 2};  // channels: axis 1, or the last
            const std::vector<Tens> in = {rnd(s, seed, -1, 1), rnd(s, seed + 1, -1, 1), rnd({2}, seed + 2, 0.5, 1.5),
                                          rnd({2}, seed + 3)};
            auto f = [cl](const std::vector<V>& v) {
                return batch_norm(v[0], Opts().weight(v[2]).bias(v[3]).eps(1e-3).channels_last(cl).relu(true).residual(v[1]));
            };
            auto pre = [cl](const std::vector<V>& v) {
                return batch_norm(v[0], Opts().weight(v[2]).bias(v[3]).eps(1e-3).channels_last(cl)) + v[1];
            };
            if (!test::clear_of_relu_kink(pre, in)) continue;
            BOOST_TEST_CONTEXT("seed " << seed << (cl ? " channels_last" : " nchw"))
            {
                expect_gradcheck(f, in);
                expect_gradgradcheck(f, in);
            }
            ++checked;
        }
    BOOST_TEST(checked >= 2);
}

BOOST_AUTO_TEST_CASE(errors_name_the_op_and_the_shapes)
{
    Tape<double> t;
    const V x = t.variable(rnd({4, 2, 3}, 380)), w2 = t.variable(rnd({2}, 381)), w3 = t.variable(rnd({3}, 382));
    expect_message<ShapeError>([&] { batch_norm(x, Opts().weight(w2).bias(w2).channels_last(true)); },
        "batch_norm_channels_last: input (4,2,3) has 3 channels, but weight (2) and bias (2) must be (3)");
    expect_message<ShapeError>([&] { batch_norm(w3, Opts().channels_last(true).relu(true)); },
        "batch_norm_relu_channels_last: input (3) must have rank 2 or more, (N,*,C)");
    expect_message<std::invalid_argument>([&] { batch_norm(t.variable(rnd({1, 3}, 383)), Opts().channels_last(true)); },
        "batch_norm_channels_last: expected more than 1 value per channel in training mode, got input (1,3)");
    expect_message<ShapeError>([&] { batch_norm(x, Opts().weight(w2).bias(w2).relu(true).residual(w3)); },
                               "batch_norm_add_relu: residual (3) must have the input's shape (4,2,3)");
    expect_message<ShapeError>(
        [&] { batch_norm(x, Opts().weight(w2).bias(w2).channels_last(true).relu(true).residual(x)); },
        "batch_norm_add_relu_channels_last: input (4,2,3) has 3 channels, but weight (2) and "
        "bias (2) must be (3)");
    expect_message<std::invalid_argument>(
        [&] { batch_norm(x, Opts().weight(w3).bias(w3).eps(-1.0).channels_last(true).relu(true)); },
        "batch_norm_relu_channels_last: eps must be finite and non-negative, got -1");
    // the options that do not go together
    expect_message<std::invalid_argument>([&] { batch_norm(x, Opts().weight(w2)); },
        "batch_norm: weight and bias must be given together (the affine map), got weight without bias");
    expect_message<std::invalid_argument>([&] { batch_norm(x, Opts().bias(w3).channels_last(true)); },
        "batch_norm_channels_last: weight and bias must be given together (the affine map), got bias without weight");
    expect_message<std::invalid_argument>([&] { batch_norm(x, Opts().weight(w2).bias(w2).residual(x)); },
        "batch_norm_add_relu: a residual is fused only with relu and the affine map (relu(γ·x̂ + β + residual)); "
        "got relu false, weight and bias");
    expect_message<std::invalid_argument>([&] { batch_norm(x, Opts().relu(true).residual(x).channels_last(true)); },
        "batch_norm_add_relu_channels_last: a residual is fused only with relu and the affine map "
        "(relu(γ·x̂ + β + residual)); got relu true, no weight and bias");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(convolution)

// Float on oneDNN's NHWC kernels (double through permutes around the NCHW path) against the NCHW
// op: stride, padding, 1×1, bias and none, few and many channels.
BOOST_AUTO_TEST_CASE(equals_the_nchw_op_on_the_permuted_input)
{
    struct Case {
        Shape x, w;
        std::size_t stride, padding;
        bool bias;
    };
    const std::vector<Case> cases = {{{4, 16, 10, 10}, {16, 16, 3, 3}, 1, 1, false}, {{3, 16, 9, 9}, {32, 16, 3, 3}, 2, 1, true},
                                     {{2, 8, 8, 8}, {24, 8, 1, 1}, 2, 0, false},      {{2, 1, 12, 12}, {6, 1, 5, 5}, 1, 2, true},
                                     {{1, 3, 7, 6}, {5, 3, 3, 2}, 1, 0, true}};
    unsigned seed = 400;
    for (const Case& k : cases) {
        const std::size_t o = k.w[0];
        const Tens x = rnd(k.x, seed), w = rnd(k.w, seed + 1), b = rnd({o}, seed + 2);
        Tape<double> probe;
        const Conv2dOptions opt = Conv2dOptions().stride(k.stride).padding(k.padding);
        const Shape ys = conv2d(probe.constant(x), probe.constant(w), opt).shape();
        const Tens g = rnd(ys, seed + 3);
        seed += 4;
        auto run = [&](auto tag, double tol) {
            using U = decltype(tag);
            auto conv = [&](bool cl) {
                return [&k, opt, cl](const Var<U>& x, const Var<U>& w, const Var<U>& b) {
                    const Conv2dOptions o = Conv2dOptions(opt).channels_last(cl);
                    return k.bias ? conv2d(x, w, b, o) : conv2d(x, w, o) + sum(b) * U(0);
                };
            };
            const auto [cl, ref] = both_layouts<U>(x, w, b, g, conv(true), conv(false));
            BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " w " << shape_str(k.w) << " stride " << k.stride << " "
                                    << typeid(U).name())
            {
                expect_close(cl, ref, tol);
            }
        };
        run(double{}, 1e-13);
        run(float{}, 1e-5);
    }
}

// A strided 1 × 1 convolution runs on the subsampled input in float (stride 1), its input
// gradient scattered back: odd sizes and strides 2 and 3, with and without bias, and with x used
// again before the convolution (its input gradient then added to x's) and after (written first).
BOOST_AUTO_TEST_CASE(strided_one_by_one_with_the_input_used_again)
{
    struct Case {
        Shape x, w;
        std::size_t stride;
        bool bias;
    };
    const std::vector<Case> cases = {{{3, 5, 9, 7}, {6, 5, 1, 1}, 2, true}, {{2, 16, 7, 8}, {32, 16, 1, 1}, 3, false},
                                     {{1, 4, 1, 5}, {3, 4, 1, 1}, 2, true}};
    unsigned seed = 470;
    for (const Case& k : cases)
        for (bool after : {false, true}) {
            const std::size_t o = k.w[0];
            const Tens x = rnd(k.x, seed), w = rnd(k.w, seed + 1), b = rnd({o}, seed + 2);
            const Conv2dOptions opt = Conv2dOptions().stride(k.stride);
            Tape<double> probe;
            const Tens g = rnd(conv2d(probe.constant(x), probe.constant(w), opt).shape(), seed + 3);
            seed += 4;
            auto op = [&k, opt, after](bool cl) {
                return [&k, opt, cl, after](const Var<float>& x, const Var<float>& w, const Var<float>& b) {
                    const Conv2dOptions oc = Conv2dOptions(opt).channels_last(cl);
                    const Var<float> s0 = after ? Var<float>() : sum(x * x);
                    const Var<float> y = k.bias ? conv2d(x, w, b, oc) : conv2d(x, w, oc) + sum(b) * 0.0f;
                    return y + (after ? sum(x * x) : s0);
                };
            };
            const auto [cl, ref] = both_layouts<float>(x, w, b, g, op(true), op(false));
            BOOST_TEST_CONTEXT("x " << shape_str(k.x) << " stride " << k.stride << (after ? ", x used after" : ", x used before"))
            {
                expect_close(cl, ref, 1e-5);
                BOOST_TEST(xt::amax(xt::abs(cl.dx))() > 0.1);
            }
        }
}

BOOST_AUTO_TEST_CASE(dilation_and_groups_through_permutes)
{
    const Tens x = rnd({2, 4, 9, 9}, 420), w = rnd({6, 2, 3, 3}, 421), b = rnd({6}, 422);
    const Conv2dOptions opt = Conv2dOptions().padding(2).dilation(2).groups(2);
    Tape<double> probe;
    const Tens g = rnd(conv2d(probe.constant(x), probe.constant(w), opt).shape(), 423);
    auto conv = [opt](bool cl) {
        return [opt, cl](const Var<float>& x, const Var<float>& w, const Var<float>& b) {
            return conv2d(x, w, b, Conv2dOptions(opt).channels_last(cl));
        };
    };
    const auto [cl, ref] = both_layouts<float>(x, w, b, g, conv(true), conv(false));
    expect_close(cl, ref, 1e-5);
}

BOOST_AUTO_TEST_CASE(gradcheck_and_gradgradcheck)
{
    const Tens x = rnd({2, 5, 4, 3}, 440), w = rnd({4, 3, 3, 2}, 441), b = rnd({4}, 442);
    auto f = [](const std::vector<V>& v) {
        return conv2d(v[0], v[1], v[2], Conv2dOptions().stride(2).padding(1).channels_last(true));
    };
    expect_gradcheck(f, {x, w, b});
    expect_gradgradcheck(f, {x, w, b});
}

// Float's second order goes through the recorded VJPs of the NHWC node (permutes around the NCHW
// family): its Hessian-vector product equals the NCHW model's, and a wrong VJP would not.
BOOST_AUTO_TEST_CASE(float_double_backward_matches_nchw)
{
    const Tens x = rnd({2, 3, 6, 6}, 460), w0 = rnd({4, 3, 3, 3}, 461), v = rnd({4, 3, 3, 3}, 462);
    auto loss = [&](bool cl) {
        return [&x, cl](const Var<float>& w) {
            Tape<float>& t = w.tape();
            const Var<float> xv = t.constant(cl ? nhwc(as<float>(x)) : as<float>(x));
            const Var<float> y = conv2d(xv, w, Conv2dOptions().padding(1).channels_last(cl));
            return sum(square(tanh(y)));
        };
    };
    const Tensor<float> h_cl = hvp(loss(true), as<float>(w0), as<float>(v));
    const Tensor<float> h = hvp(loss(false), as<float>(w0), as<float>(v));
    BOOST_TEST(rel_err(h_cl, h) < 1e-5);
    BOOST_TEST(xt::amax(xt::abs(h))() > 1e-3);
}

BOOST_AUTO_TEST_CASE(errors_name_the_layout_and_the_shapes)
{
    Tape<float> t;
    const Var<float> w = t.variable(as<float>(rnd({4, 3, 3, 3}, 480)));
    const Conv2dOptions cl = Conv2dOptions().channels_last(true);
    expect_message<ShapeError>([&] { conv2d(t.variable(as<float>(rnd({2, 6, 6}, 481))), w, cl); },
        "conv2d (channels_last): input (2,6,6) and weight (4,3,3,3): need X (N,H,W,C) and W (O,C,KH,KW)");
    // 3 channels in W, 6 in the last axis of X (a NCHW tensor given as NHWC)
    expect_message<ShapeError>([&] { conv2d(t.variable(as<float>(rnd({2, 3, 6, 6}, 482))), w, cl); },
        "conv2d (channels_last): input (N,H,W,C) (2,3,6,6), as NCHW: conv2d: input (2,6,3,6), weight (4,3,3,3): "
                 "input has 6 channels, weight expects 3");
    Tape<double> td;
    expect_message<ShapeError>([&] { conv2d(td.variable(rnd({2, 6, 6}, 483)), td.variable(rnd({4, 3, 3, 3}, 484)), cl); },
                 "conv2d (channels_last): input (2,6,6) and weight (4,3,3,3): need X (N,H,W,C) and W (O,C,KH,KW)");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(layers)

// The ResNet channels-last and NCHW: the same parameter names and values, the same loss and
// gradients (float, oneDNN's kernels both ways), the same running statistics; in eval mode the
// same output.
BOOST_AUTO_TEST_CASE(resnet_in_both_layouts)
{
    auto a = reference::mnist_resnet<float>(11, false), c = reference::mnist_resnet<float>(11, true);
    const auto pa = a->named_parameters(), pc = c->named_parameters();
    BOOST_REQUIRE(pa.size() == pc.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
        BOOST_TEST(pa[i].first == pc[i].first);
        BOOST_TEST(same_bits(pa[i].second->value(), pc[i].second->value()));
    }
    const Tensor<float> x = as<float>(rnd({8, 1, 28, 28}, 500, 0, 1));
    IndexTensor y = IndexTensor::from_shape({8});
    for (std::size_t i = 0; i < 8; ++i) y(i) = Index(i % 10);
    for (bool training : {true, false}) {
        a->train(training);
        c->train(training);
        auto run = [&](Sequential<float>& net, bool cl) {
            Tape<float> t;
            Tensor<float> xi = x;
            if (cl) xi.reshape({8, 28, 28, 1});
            for (auto* p : net.parameters()) p->zero_grad();
            const Var<float> out = net(t.borrow(xi));
            const Var<float> loss = cross_entropy(out, y);
            t.backward(loss);
            return out.value();
        };
        const Tensor<float> oa = run(*a, false), oc = run(*c, true);
        BOOST_TEST_CONTEXT((training ? "train" : "eval") << " mode")
        {
            BOOST_TEST(rel_err(oc, oa) < 1e-5);
            for (std::size_t i = 0; i < pa.size(); ++i)
                BOOST_TEST(rel_err(pc[i].second->grad(), pa[i].second->grad()) < 1e-4, pa[i].first);
        }
    }
    const auto ba = a->named_buffers(), bc = c->named_buffers();
    BOOST_REQUIRE(ba.size() == bc.size());
    for (std::size_t i = 0; i < ba.size(); ++i) {
        BOOST_TEST(ba[i].first == bc[i].first);
        BOOST_TEST(rel_err(*bc[i].second, *ba[i].second) < 1e-5, ba[i].first);
    }
}

BOOST_AUTO_TEST_CASE(basic_block_in_double)
{
    BasicBlock<double> a(3, 5, 2, 21, false), c(3, 5, 2, 21, true);
    BOOST_TEST(c.describe() == "BasicBlock(3→5, stride 2, channels_last)");
    const Tens x = rnd({2, 3, 6, 6}, 520), g = rnd({2, 5, 3, 3}, 521);
    Tape<double> t;
    const V ya = a(t.variable(x)), yc = c(t.variable(nhwc(x)));
    t.backward(sum(ya * t.constant(g)) + sum(yc * t.constant(nhwc(g))));
    BOOST_TEST(rel_err(nchw(yc.value()), ya.value()) < 1e-12);
    const auto pa = a.named_parameters(), pc = c.named_parameters();
    for (std::size_t i = 0; i < pa.size(); ++i)
        BOOST_TEST(rel_err(pc[i].second->grad(), pa[i].second->grad()) < 1e-12, pa[i].first);
}

BOOST_AUTO_TEST_CASE(layer_errors_name_the_layout)
{
    Tape<float> t;
    const Var<float> x = t.variable(as<float>(rnd({2, 3, 6, 6}, 540)));
    Conv2d<float> conv(Conv2dOptions(3, 4, 3).channels_last(true), 1);
    expect_message<ShapeError>([&] { conv(x); }, "Conv2d(3→4, channels_last): expected input (N,H,W,3), got (2,3,6,6)");
    BatchNorm2d<float> bn(BatchNorm2dOptions(3).channels_last(true));
    expect_message<ShapeError>([&] { bn(x); },
        "BatchNorm2d(3): input (2,3,6,6) has 6 channels (axis 3, channels_last), the layer has 3");
    expect_message<ShapeError>([&] { bn(t.variable(as<float>(rnd({2, 3}, 541)))); },
        "BatchNorm2d(3): expected input (N,H,W,3), got (2,3)");
}

BOOST_AUTO_TEST_SUITE_END()

// Recorded (double-backward) VJPs of the shape ops, the fused losses and nn's trace regularizer:
// gradgradcheck on the shapes of the first-order tests (test_ops.cpp, test_conv_pool_loss.cpp),
// third order through grad(create_graph) twice, and one Hessian per family against finite
// differences of the gradient (float64).
#define BOOST_TEST_MODULE autodiff_double_backward_shape_loss
#include <cmath>
#include <functional>

#include "test_util.hpp"
#include "xgrad/nn/losses.hpp"  // trace_scatter_loss: an nn loss written on the op API

using namespace xgrad;
using xgrad::nn::trace_scatter_loss;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;
using Fn = std::function<V(const Vs&)>;

namespace {

/// gradgradcheck of f itself (a linear op: its recorded VJP against the cotangent) and of
/// tanh(f) (a curved one: the recorded VJP differentiated along with the forward).
void expect_second_order(const Fn& f, const std::vector<Tensor<double>>& inputs)
{
    expect_gradgradcheck(f, inputs);
    expect_gradgradcheck([&](const Vs& v) { return tanh(f(v)); }, inputs);
}

/// Third order: gradgradcheck of x ↦ ∂(Σ w·tanh(f(x)))/∂x, itself a recorded gradient.
void expect_third_order(const std::function<V(const V&)>& f, const Tensor<double>& x)
{
    Shape out;
    {
        Tape<double> probe;
        out = f(probe.constant(x)).shape();
    }
    const Tensor<double> w = rnd(out, 99);
    expect_gradgradcheck(
        [&](const Vs& v) {
            const V y = sum(tanh(f(v[0])) * v[0].tape().constant(w));
            return grad(y, {v[0]}, GradOptions{true})[0];
        },
        {x});
}

/// ∇f at x by a plain (first-order) backward.
Tensor<double> gradient(const std::function<V(const V&)>& f, const Tensor<double>& x)
{
    Tape<double> tape;
    const V xv = tape.variable(x);
    tape.backward(f(xv));
    return xv.grad();
}

/// Central differences of the gradient along v: (∇f(x + εv) − ∇f(x − εv)) / 2ε ≈ H·v.
Tensor<double> fd_hvp(const std::function<V(const V&)>& f, const Tensor<double>& x, const Tensor<double>& v,
                      double eps = 1e-5)
{
    const Tensor<double> xp = x + eps * v, xm = x - eps * v;
    return (gradient(f, xp) - gradient(f, xm)) / (2 * eps);
}

/// max |a − b| / max(1, max |b|): relative to the matrix's scale (1e-6 is the bar).
double rel_err(const Tensor<double>& a, const Tensor<double>& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    return xt::amax(xt::abs(a - b))() / std::max(1.0, double(xt::amax(xt::abs(b))()));
}

/// xgrad::hessian against finite differences of the gradient, column by column.
void expect_hessian_matches_fd(const std::function<V(const V&)>& f, const Tensor<double>& x)
{
    const Tensor<double> h = hessian(f, x);
    const std::size_t n = x.size();
    BOOST_REQUIRE(h.size() == n * n);
    Tensor<double> fd = Tensor<double>::from_shape({n, n});
    Tensor<double> e = xt::zeros<double>(x.shape());
    for (std::size_t j = 0; j < n; ++j) {
        e.data()[j] = 1;
        const Tensor<double> col = fd_hvp(f, x, e);
        e.data()[j] = 0;
        for (std::size_t i = 0; i < n; ++i) fd(i, j) = col.data()[i];
    }
    const Tensor<double> h2 = xt::reshape_view(h, {n, n});
    BOOST_TEST(rel_err(h2, fd) < 1e-6, "hessian vs finite differences: " << rel_err(h2, fd));
    BOOST_TEST(xt::amax(xt::abs(h2 - xt::transpose(h2)))() < 1e-12);  // symmetric
    BOOST_TEST(xt::amax(xt::abs(h2))() > 1e-3);                        // and not vacuous
}

}  // namespace

BOOST_AUTO_TEST_SUITE(shape_ops)

BOOST_AUTO_TEST_CASE(reshape_flatten_permute_transpose)
{
    expect_second_order([](const Vs& x) { return reshape(x[0], {6, -1}); }, {rnd(Shape{2, 3, 4}, 1)});
    expect_second_order([](const Vs& x) { return flatten(x[0]); }, {rnd(Shape{2, 3, 2, 2}, 2)});
    expect_second_order([](const Vs& x) { return flatten(x[0], 2); }, {rnd(Shape{2, 3, 2, 2}, 2)});
    expect_second_order([](const Vs& x) { return permute(x[0], {2, 0, 1}); }, {rnd(Shape{2, 3, 4}, 3)});
    expect_second_order([](const Vs& x) { return transpose(x[0]); }, {rnd(Shape{3, 4}, 4)});
    expect_second_order([](const Vs& x) { return transpose(x[0]); }, {rnd(Shape{2, 3, 4}, 5)});
    expect_third_order([](const V& x) { return permute(reshape(x, {3, 2, -1}), {1, 2, 0}); }, rnd(Shape{2, 6}, 6));
}

BOOST_AUTO_TEST_CASE(slice_along_axis)
{
    expect_second_order([](const Vs& x) { return slice(x[0], 1, 1, 5, 2); }, {rnd(Shape{4, 6}, 1)});
    expect_second_order([](const Vs& x) { return slice(x[0], 0, -2, 4); }, {rnd(Shape{4, 6}, 2)});
    expect_second_order([](const Vs& x) { return slice(x[0], 2, 0, 3); }, {rnd(Shape{2, 3, 4}, 3)});
    // overlapping slices of one input: their recorded VJPs add
    expect_second_order([](const Vs& x) { return slice(x[0], 1, 0, 4) * slice(x[0], 1, 2, 6); }, {rnd(Shape{3, 6}, 4)});
    expect_third_order([](const V& x) { return slice(x, 1, 1, 6, 2); }, rnd(Shape{2, 6}, 5));
}

BOOST_AUTO_TEST_CASE(concatenate_axes)
{
    expect_second_order([](const Vs& x) { return concatenate<double>({x[0], x[1], x[2]}, 1); },
                        {rnd(Shape{2, 3}, 1), rnd(Shape{2, 1}, 2), rnd(Shape{2, 4}, 3)});
    expect_second_order([](const Vs& x) { return concatenate<double>({x[0], x[1]}, 0); },
                        {rnd(Shape{2, 3, 2}, 4), rnd(Shape{1, 3, 2}, 5)});
    // an input used twice, and an empty piece
    expect_second_order([](const Vs& x) { return concatenate<double>({x[0], x[1], x[0]}, -1); },
                        {rnd(Shape{3, 2}, 6), rnd(Shape{3, 0}, 7)});
    // a constant piece: only the Var's slice is recorded
    expect_second_order(
        [](const Vs& x) { return concatenate<double>({x[0].tape().constant(rnd(Shape{2, 2}, 8)), x[0]}, 1); },
        {rnd(Shape{2, 3}, 9)});
    expect_third_order([](const V& x) { return concatenate<double>({x, x * x}, 0); }, rnd(Shape{2, 3}, 10));
}

BOOST_AUTO_TEST_CASE(gather_pick_one_hot)
{
    const IndexTensor idx = {{0, 4}, {2, 2}, {1, 3}};  // repeated index: gradients add
    expect_second_order([&](const Vs& x) { return gather(x[0], 1, idx); }, {rnd(Shape{3, 5}, 1)});
    const IndexTensor idx0 = {{2, 0, 1}};
    expect_second_order([&](const Vs& x) { return gather(x[0], 0, idx0); }, {rnd(Shape{3, 3}, 2)});
    const IndexTensor labels = {3, 0, 4};
    expect_second_order([&](const Vs& x) { return pick(x[0], labels); }, {rnd(Shape{3, 5}, 3)});
    expect_third_order([&](const V& x) { return gather(x, 1, idx) * reshape(pick(x, labels), {3, 1}); }, rnd(Shape{3, 5}, 4));
    // one_hot is a constant: a loss against it is differentiated twice in the prediction only
    expect_gradgradcheck(
        [&](const Vs& x) { return mse_loss(tanh(x[0]), one_hot(x[0].tape(), labels, 5), Reduction::sum); },
        {rnd(Shape{3, 5}, 5)});
}

BOOST_AUTO_TEST_CASE(hessian_of_a_shape_op_chain_matches_finite_differences)
{
    const IndexTensor idx = {{0, 2}, {3, 3}, {1, 0}};
    const IndexTensor labels = {1, 3, 0};
    auto f = [&](const V& x) {  // x (3,4)
        const V a = tanh(transpose(reshape(x, {4, 3})));                                      // (3,4)
        const V b = concatenate<double>({slice(x, 1, 2, 4), slice(x, 1, 0, 2)}, 1);            // (3,4)
        const V c = permute(reshape(flatten(x * x, 0), {3, 2, 2}), {0, 2, 1});                 // (3,2,2)
        return sum(a * b) + sum(exp(pick(x, labels)) * sum(gather(x, 1, idx), {1})) + sum(tanh(c) * reshape(x, {3, 2, 2}));
    };
    expect_hessian_matches_fd(f, rnd(Shape{3, 4}, 11));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(losses)

BOOST_AUTO_TEST_CASE(cross_entropy_and_nll_every_reduction)
{
    const IndexTensor labels = {2, 0, 1, 2};
    const Tensor<double> z = rnd(Shape{4, 3}, 9, -2, 2);
    for (Reduction r : {Reduction::mean, Reduction::sum}) {
        expect_gradgradcheck([&](const Vs& v) { return cross_entropy(v[0], labels, r); }, {z});
        expect_gradgradcheck([&](const Vs& v) { return nll_loss(log_softmax(v[0], 1), labels, r); }, {z});
        expect_gradgradcheck([&](const Vs& v) { return nll_loss(v[0], labels, r); }, {z});  // linear: via u
        expect_gradgradcheck([&](const Vs& v) { return nll_loss(tanh(v[0]), labels, r); }, {z});
    }
    // under a network: logits = tanh(x·w) with both inputs differentiated twice
    expect_gradgradcheck([&](const Vs& v) { return cross_entropy(tanh(v[0]) * v[1], labels); },
                         {z, rnd(Shape{3}, 10)});
    expect_third_order([&](const V& x) { return cross_entropy(x, labels, Reduction::sum); }, z);
}

BOOST_AUTO_TEST_CASE(cross_entropy_recorded_gradient_equals_the_fused_one)
{
    const IndexTensor labels = {2, 0, 1, 2};
    const Tensor<double> z = rnd(Shape{4, 3}, 12, -2, 2);
    Tape<double> tape;
    const V zv = tape.variable(z);
    const V l = cross_entropy(zv, labels);
    const V recorded = grad(l, {zv}, GradOptions{true})[0];
    const V plain = grad(l, {zv})[0];
    BOOST_TEST(recorded.requires_grad());
    BOOST_TEST(xt::amax(xt::abs(recorded.value() - plain.value()))() < 1e-15);
}

BOOST_AUTO_TEST_CASE(mse_loss_every_reduction)
{
    const Tensor<double> y = rnd(Shape{3, 4}, 11), d = rnd(Shape{3, 4}, 12);
    for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::half_sum}) {
        expect_gradgradcheck([r](const Vs& v) { return mse_loss(v[0], v[1], r); }, {y, d});
        expect_gradgradcheck([r](const Vs& v) { return mse_loss(tanh(v[0]), v[1] * v[1], r); }, {y, d});
    }
    expect_third_order([&](const V& x) { return mse_loss(x * x, x.tape().constant(d), Reduction::half_sum); }, y);
}

BOOST_AUTO_TEST_CASE(hessian_of_the_losses_matches_finite_differences)
{
    const IndexTensor labels = {2, 0, 1, 2};
    const Tensor<double> d = rnd(Shape{4, 3}, 13);
    auto f = [&](const V& z) {
        const V dv = z.tape().constant(d);
        return cross_entropy(z, labels) + nll_loss(log_softmax(z * z, 1), labels, Reduction::sum) +
               mse_loss(tanh(z), dv, Reduction::half_sum) + mse_loss(z, dv, Reduction::mean);
    };
    expect_hessian_matches_fd(f, rnd(Shape{4, 3}, 14, -2, 2));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(trace_regularizer)

const IndexTensor labels = {0, 2, 2, 0, 3, 2, 0};  // class 1 absent, class 3 a singleton
constexpr double kGamma = 0.3;

BOOST_AUTO_TEST_CASE(gradgradcheck_of_the_trace_scatter_loss)
{
    const Tensor<double> y = rnd(Shape{7, 4}, 21, -2, 2);
    expect_gradgradcheck([&](const Vs& v) { return trace_scatter_loss(v[0], labels, kGamma); }, {y});
    expect_gradgradcheck([&](const Vs& v) { return trace_scatter_loss(tanh(v[0]), labels, kGamma); }, {y});
    // the labels of the accumulation tests, (5b + 2) mod 4
    const IndexTensor l2 = {2, 3, 0, 1, 2, 3, 0};
    expect_gradgradcheck([&](const Vs& v) { return trace_scatter_loss(v[0] * v[0], l2, kGamma); }, {y});
    expect_third_order([&](const V& x) { return trace_scatter_loss(x, labels, kGamma); }, y);
}

// R is quadratic in y: its Hessian is γ (I − 2A + 11ᵀ/B) ⊗ I_D, A the class-averaging matrix
// (A_ij = [c(i) = c(j)] / n_c(i)), the same at every y.
BOOST_AUTO_TEST_CASE(hessian_is_the_closed_form_and_matches_finite_differences)
{
    const std::size_t B = 7, D = 4;
    const Tensor<double> y = rnd(Shape{B, D}, 22, -2, 2);
    auto f = [&](const V& x) { return trace_scatter_loss(x, labels, kGamma); };
    const Tensor<double> h = hessian(f, y);
    double worst = 0;
    for (std::size_t i = 0; i < B; ++i)
        for (std::size_t a = 0; a < D; ++a)
            for (std::size_t j = 0; j < B; ++j)
                for (std::size_t b = 0; b < D; ++b) {
                    std::size_t n = 0;
                    for (std::size_t k = 0; k < B; ++k) n += labels(k) == labels(i);
                    const double aij = labels(i) == labels(j) ? 1.0 / double(n) : 0.0;
                    const double want = a == b ? kGamma * ((i == j) - 2 * aij + 1.0 / double(B)) : 0.0;
                    worst = std::max(worst, std::abs(h(i, a, j, b) - want));
                }
    BOOST_TEST(worst < 1e-14);
    expect_hessian_matches_fd(f, y);
    expect_hessian_matches_fd([&](const V& x) { return trace_scatter_loss(tanh(x), labels, kGamma); }, y);
}

BOOST_AUTO_TEST_CASE(hvp_matches_finite_differences_of_the_gradient)
{
    const Tensor<double> y = rnd(Shape{7, 4}, 23, -2, 2), v = rnd(Shape{7, 4}, 24);
    // the regularizer alone, and on a curved map of the features with a squared error beside it
    const Tensor<double> d = rnd(Shape{7, 4}, 25);
    const std::vector<std::function<V(const V&)>> fs = {
        [](const V& x) { return trace_scatter_loss(x, labels, kGamma); },
        [&](const V& x) {
            const V h = tanh(x);
            return mse_loss(h, x.tape().constant(d), Reduction::half_sum) + trace_scatter_loss(h, labels, kGamma);
        }};
    for (const auto& f : fs) {
        const Tensor<double> hv = hvp(f, y, v);
        const Tensor<double> fd = fd_hvp(f, y, v);
        BOOST_TEST(rel_err(hv, fd) < 1e-6, "hvp vs finite differences: " << rel_err(hv, fd));
        BOOST_TEST(xt::amax(xt::abs(hv))() > 1e-3);
    }
}

BOOST_AUTO_TEST_SUITE_END()

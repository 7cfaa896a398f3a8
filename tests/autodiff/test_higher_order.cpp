// Higher-order differentiation: grad with create_graph, hvp, hessian, jacobian, jvp and
// gradgradcheck, against closed forms and finite differences (float64).
#define BOOST_TEST_MODULE autodiff_higher_order
#include <cmath>

#include "test_util.hpp"
#include "xgrad/op.hpp"

using namespace xgrad;
using V = Var<double>;

namespace {
double rel(double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); }
}  // namespace

// d/dx tanh = 1 − t², d²/dx² = −2t(1 − t²), d³/dx³ = −2(1 − t²)(1 − 3t²), t = tanh x.
BOOST_AUTO_TEST_CASE(third_derivative_of_tanh_matches_the_closed_form)
{
    for (double x0 : {-1.3, -0.2, 0.0, 0.4, 2.1}) {
        Tape<double> tape;
        const V x = tape.variable(Tensor<double>{x0});
        const V y = sum(tanh(x));
        const V d1 = grad(y, {x}, GradOptions{true})[0];
        const V d2 = grad(sum(d1), {x}, GradOptions{true})[0];
        const V d3 = grad(sum(d2), {x}, GradOptions{true})[0];
        const double t = std::tanh(x0);
        BOOST_TEST(rel(d1.value()(0), 1 - t * t) < 1e-14);
        BOOST_TEST(rel(d2.value()(0), -2 * t * (1 - t * t)) < 1e-14);
        BOOST_TEST(rel(d3.value()(0), -2 * (1 - t * t) * (1 - 3 * t * t)) < 1e-13);
    }
}

BOOST_AUTO_TEST_CASE(grad_without_create_graph_leaves_parameters_alone)
{
    Parameter<double> w(test::rnd(Shape{3}, 1));
    w.zero_grad();
    Tape<double> tape;
    const V p = tape.param(w);
    const V x = tape.variable(test::rnd(Shape{3}, 2));
    const V y = sum(p * x * x);
    const auto g = grad(y, {p, x});
    BOOST_TEST(!g[0].requires_grad());  // a constant without create_graph
    for (std::size_t i = 0; i < 3; ++i) {
        BOOST_TEST(rel(g[0].value()(i), x.value()(i) * x.value()(i)) < 1e-15);
        BOOST_TEST(rel(g[1].value()(i), 2 * w.value()(i) * x.value()(i)) < 1e-15);
        BOOST_TEST(w.grad()(i) == 0.0);
    }
}

BOOST_AUTO_TEST_CASE(unused_inputs_throw_unless_allowed)
{
    Tape<double> tape;
    const V x = tape.variable(test::rnd(Shape{2}, 3));
    const V z = tape.variable(test::rnd(Shape{2}, 4));
    const V y = sum(exp(x));
    BOOST_CHECK_EXCEPTION(grad(y, {x, z}, GradOptions{true}), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()).find("input 1") != std::string::npos;
    });
    const auto g = grad(y, {x, z}, GradOptions{true, true});
    BOOST_TEST(g[1].value()(0) == 0.0);
    BOOST_TEST(g[1].value()(1) == 0.0);
}

BOOST_AUTO_TEST_CASE(an_op_without_a_recorded_vjp_names_itself)
{
    Tape<double> tape;
    const V x = tape.variable(test::rnd(Shape{3}, 5));
    auto op = begin_op("first_order_only", {x});
    op.value() = x.value() * 2.0;
    const V y = op.finish([](BackwardContext<double>& c) { c.accumulate(0, c.grad() * 2.0); });
    BOOST_CHECK_EXCEPTION(grad(sum(y), {x}, GradOptions{true}), std::logic_error, [](const std::logic_error& e) {
        return std::string(e.what()) == "double backward not implemented for first_order_only";
    });
}

// f(x) = Σ exp(x_i)·x_{i+1}: H is tridiagonal, written out elementwise.
BOOST_AUTO_TEST_CASE(hessian_hvp_and_jvp_agree_with_the_closed_form)
{
    const Tensor<double> x0 = test::rnd(Shape{4}, 6);
    auto f = [](const V& x) {
        return sum(exp(slice(x, 0, 0, 3)) * slice(x, 0, 1, 4));
    };
    const Tensor<double> h = hessian(f, x0);
    BOOST_TEST(h.shape() == (Shape{4, 4}));
    Tensor<double> want = xt::zeros<double>(Shape{4, 4});
    for (std::size_t i = 0; i < 3; ++i) {
        want(i, i) += std::exp(x0(i)) * x0(i + 1);
        want(i, i + 1) += std::exp(x0(i));
        want(i + 1, i) += std::exp(x0(i));
    }
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) BOOST_TEST(rel(h(i, j), want(i, j)) < 1e-14);
    const Tensor<double> v = test::rnd(Shape{4}, 7);
    const Tensor<double> hv = hvp(f, x0, v);
    for (std::size_t i = 0; i < 4; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < 4; ++j) s += want(i, j) * v(j);
        BOOST_TEST(rel(hv(i), s) < 1e-14);
    }
    // jacobian of the gradient is the Hessian; jvp of it is H·v.
    auto df = [&](const V& x) { return grad(f(x), {x}, GradOptions{true})[0]; };
    const Tensor<double> j = jacobian(df, x0);
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t k = 0; k < 4; ++k) BOOST_TEST(rel(j(i, k), want(i, k)) < 1e-14);
    const auto [y, jv] = jvp(df, x0, v);
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(rel(jv(i), hv(i)) < 1e-14);
    BOOST_TEST(y.shape() == (Shape{4}));
}

BOOST_AUTO_TEST_CASE(gradgradcheck_passes_on_elementwise_ops_and_catches_a_wrong_recorded_vjp)
{
    const Tensor<double> a = test::rnd(Shape{2, 3}, 8, 0.5, 1.5);
    const Tensor<double> b = test::rnd(Shape{3}, 9, 0.5, 1.5);
    test::expect_gradgradcheck([](const std::vector<V>& v) { return v[0] * v[1] / (v[0] + v[1]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return tanh(v[0]) * sigmoid(v[1]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return pow(v[0], 3) - log(v[1]) + sqrt(v[0]); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return softmax(v[0] * v[1], 1); }, {a, b});
    test::expect_gradgradcheck([](const std::vector<V>& v) { return log_softmax(v[0] * v[1], 0); }, {a, b});

    // y = x³ whose recorded VJP forgets the factor 3: the second derivative is wrong by 1/3.
    auto cube = [](const V& x) {
        auto op = begin_op("cube", {x});
        op.value() = x.value() * x.value() * x.value();
        return op.finish([](BackwardContext<double>& c) { c.accumulate(0, 3.0 * c.grad() * c.input(0) * c.input(0)); },
                         [](GraphBackwardContext<double>& c) { c.accumulate(0, c.grad() * c.input(0) * c.input(0)); });
    };
    GradcheckOptions opt;
    opt.input_names({"x"});
    const GradcheckReport r = gradgradcheck([&](const std::vector<V>& v) { return cube(v[0]); }, {a}, opt);
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.output_op == "grad of cube");
    BOOST_TEST(r.summary().find("x") != std::string::npos);

    // y = x³ whose recorded VJP takes G as a constant: right in x, wrong in the cotangent, which
    // only the grad_output entry of the report can show.
    auto cube_g = [](const V& x) {
        auto op = begin_op("cube_g", {x});
        op.value() = x.value() * x.value() * x.value();
        return op.finish([](BackwardContext<double>& c) { c.accumulate(0, 3.0 * c.grad() * c.input(0) * c.input(0)); },
                         [](GraphBackwardContext<double>& c) {
                             c.accumulate(0, 3.0 * c.constant(c.grad().value()) * c.input(0) * c.input(0));
                         });
    };
    const GradcheckReport rg = gradgradcheck([&](const std::vector<V>& v) { return cube_g(v[0]); }, {a}, opt);
    BOOST_TEST(!rg.ok);
    BOOST_TEST(!rg.vacuous);
    BOOST_REQUIRE(rg.inputs.size() == 2u);
    BOOST_TEST(rg.inputs[0].failures == 0u);  // x: the second derivative in x is right
    BOOST_TEST(rg.inputs[1].name == "grad_output");
    BOOST_TEST(rg.inputs[1].failures == a.size());  // every element of the cotangent is wrong
}

// Softmax regression, L(W) = Σ_n CE(W x_n, y_n), W (C,D). With p_n = softmax(W x_n):
//   ∂²L / ∂W_cd ∂W_c'd' = Σ_n (δ_cc' p_nc − p_nc p_nc') x_nd x_nd'
// i.e. per sample (diag(p) − ppᵀ) ⊗ x xᵀ, summed: Xᵀ(diag(p) − ppᵀ)X in the notation.
BOOST_AUTO_TEST_CASE(softmax_regression_hessian_matches_the_hand_derived_formula)
{
    const std::size_t N = 5, D = 4, C = 3;
    const Tensor<double> X = test::rnd(Shape{N, D}, 11);
    const IndexTensor labels = {0, 2, 1, 2, 0};
    const Tensor<double> W0 = test::rnd(Shape{C, D}, 12);
    auto f = [&](const V& w) {
        const V x = w.tape().constant(X);
        return cross_entropy(linear(x, w), labels, Reduction::sum);
    };
    const Tensor<double> h = hessian(f, W0);
    BOOST_TEST(h.shape() == (Shape{C, D, C, D}));
    double worst = 0;
    Tensor<double> want = xt::zeros<double>(Shape{C, D, C, D});
    for (std::size_t n = 0; n < N; ++n) {
        std::vector<double> z(C), p(C);
        double m = -1e300, s = 0;
        for (std::size_t c = 0; c < C; ++c) {
            for (std::size_t d = 0; d < D; ++d) z[c] += W0(c, d) * X(n, d);
            m = std::max(m, z[c]);
        }
        for (std::size_t c = 0; c < C; ++c) s += p[c] = std::exp(z[c] - m);
        for (auto& v : p) v /= s;
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t d = 0; d < D; ++d)
                for (std::size_t c2 = 0; c2 < C; ++c2)
                    for (std::size_t d2 = 0; d2 < D; ++d2)
                        want(c, d, c2, d2) += ((c == c2 ? p[c] : 0.0) - p[c] * p[c2]) * X(n, d) * X(n, d2);
    }
    for (std::size_t i = 0; i < h.size(); ++i) worst = std::max(worst, rel(h.data()[i], want.data()[i]));
    BOOST_TEST(worst < 1e-12);
}

// Two-layer tanh MLP under squared error, θ = (W1 (H,D), W2 (O,H)), per sample x, target t:
//   a = W1 x, h = tanh(a), y = W2 h, r = y − t, L = ½ Σ_n ‖r‖², s = 1 − h² (elementwise), e = W2ᵀ r.
//   ∂²L/∂W2_pq ∂W2_p'q' = δ_pp' h_q h_q'
//   ∂²L/∂W2_pq ∂W1_kl   = (W2_pk s_k h_q + δ_qk r_p s_k) x_l
//   ∂²L/∂W1_ij ∂W1_kl   = x_j x_l ((W2ᵀW2)_ik s_i s_k − 2 δ_ik e_i h_i s_i)
// summed over the samples; θ is packed as one vector [vec W1, vec W2] and the test compares all of H.
BOOST_AUTO_TEST_CASE(tanh_mlp_squared_error_hessian_matches_the_hand_derived_formula)
{
    const std::size_t N = 3, D = 3, H = 4, O = 2, P1 = H * D, P = H * D + O * H;
    const Tensor<double> X = test::rnd(Shape{N, D}, 21);
    const Tensor<double> Tg = test::rnd(Shape{N, O}, 22);
    const Tensor<double> theta = test::rnd(Shape{P}, 23);
    auto f = [&](const V& th) {
        Tape<double>& tape = th.tape();
        const V w1 = reshape(slice(th, 0, 0, std::ptrdiff_t(P1)), {std::ptrdiff_t(H), std::ptrdiff_t(D)});
        const V w2 = reshape(slice(th, 0, std::ptrdiff_t(P1), std::ptrdiff_t(P)), {std::ptrdiff_t(O), std::ptrdiff_t(H)});
        const V r = linear(tanh(linear(tape.constant(X), w1)), w2) - tape.constant(Tg);
        return 0.5 * sum(r * r);
    };
    const Tensor<double> h = hessian(f, theta);
    auto W1 = [&](std::size_t i, std::size_t j) { return theta(i * D + j); };
    auto W2 = [&](std::size_t p, std::size_t q) { return theta(P1 + p * H + q); };
    Tensor<double> want = xt::zeros<double>(Shape{P, P});
    for (std::size_t n = 0; n < N; ++n) {
        std::vector<double> hh(H), s(H), r(O), e(H, 0.0);
        for (std::size_t i = 0; i < H; ++i) {
            double a = 0;
            for (std::size_t j = 0; j < D; ++j) a += W1(i, j) * X(n, j);
            hh[i] = std::tanh(a);
            s[i] = 1 - hh[i] * hh[i];
        }
        for (std::size_t p = 0; p < O; ++p) {
            r[p] = -Tg(n, p);
            for (std::size_t q = 0; q < H; ++q) r[p] += W2(p, q) * hh[q];
        }
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t p = 0; p < O; ++p) e[i] += W2(p, i) * r[p];
        for (std::size_t p = 0; p < O; ++p)  // W2-W2
            for (std::size_t q = 0; q < H; ++q)
                for (std::size_t q2 = 0; q2 < H; ++q2) want(P1 + p * H + q, P1 + p * H + q2) += hh[q] * hh[q2];
        for (std::size_t p = 0; p < O; ++p)  // W2-W1 and its mirror
            for (std::size_t q = 0; q < H; ++q)
                for (std::size_t k = 0; k < H; ++k)
                    for (std::size_t l = 0; l < D; ++l) {
                        const double v = (W2(p, k) * s[k] * hh[q] + (q == k ? r[p] * s[k] : 0.0)) * X(n, l);
                        want(P1 + p * H + q, k * D + l) += v;
                        want(k * D + l, P1 + p * H + q) += v;
                    }
        for (std::size_t i = 0; i < H; ++i)  // W1-W1
            for (std::size_t j = 0; j < D; ++j)
                for (std::size_t k = 0; k < H; ++k)
                    for (std::size_t l = 0; l < D; ++l) {
                        double w2tw2 = 0;
                        for (std::size_t p = 0; p < O; ++p) w2tw2 += W2(p, i) * W2(p, k);
                        const double diag = i == k ? -2 * e[i] * hh[i] * s[i] : 0.0;
                        want(i * D + j, k * D + l) += X(n, j) * X(n, l) * (w2tw2 * s[i] * s[k] + diag);
                    }
    }
    double worst = 0;
    for (std::size_t i = 0; i < h.size(); ++i) worst = std::max(worst, rel(h.data()[i], want.data()[i]));
    BOOST_TEST(worst < 1e-12);
}

// The README's snippet, "Gradients of gradients".
BOOST_AUTO_TEST_CASE(readme_snippet)
{
    Tape<double> tape;
    auto x = tape.variable(Tensor<double>{0.5});
    auto d1 = grad(sum(tanh(x)), {x}, GradOptions{true})[0];   // 1 − tanh²x, a Var
    auto d2 = grad(sum(d1), {x}, GradOptions{true})[0];        // −2 tanh x (1 − tanh²x)
    auto f = [](const Vard& w) { return sum(exp(w) * w); };
    Tensor<double> h = hessian(f, Tensor<double>{1.0, 2.0});   // diag((x + 2)eˣ)
    Tensor<double> hv = hvp(f, Tensor<double>{1.0, 2.0}, Tensor<double>{1.0, 0.0});

    const double t = std::tanh(0.5);
    BOOST_TEST(rel(d1.value()(0), 1 - t * t) < 1e-15);
    BOOST_TEST(rel(d2.value()(0), -2 * t * (1 - t * t)) < 1e-15);
    BOOST_TEST(rel(h(0, 0), 3 * std::exp(1.0)) < 1e-15);
    BOOST_TEST(rel(h(1, 1), 4 * std::exp(2.0)) < 1e-15);
    BOOST_TEST(h(0, 1) == 0.0);
    BOOST_TEST(h(1, 0) == 0.0);
    BOOST_TEST(rel(hv(0), 3 * std::exp(1.0)) < 1e-15);
    BOOST_TEST(hv(1) == 0.0);
}

// diagnose(): hand derivations written as a student would, each with one deliberate mistake (or
// none), against the tape. Every case asserts which quantity is the first mistake, what follows
// from it, and the kind (and wording) of the top explanation; the correct derivations assert that
// nothing is reported. The hand formulas are written out with loops and xtensor, never with ops.
#define BOOST_TEST_MODULE diagnose
#include <boost/test/unit_test.hpp>

#include <map>

#include <xtensor/xview.hpp>

#include "test_util.hpp"
#include "xgrad/diagnose.hpp"
#include "xgrad/nn/losses.hpp"
#include "xgrad/ops.hpp"
#include "xgrad/reference/backprop.hpp"
#include "xgrad/reference/hand_math.hpp"

using namespace xgrad;
using namespace xgrad::reference::hand;
using xgrad::test::rnd;

namespace {

/// The hand side's class means: μ_c = mean of the rows of z labelled c.
std::map<Index, Tens> class_means(const Tens& z, const IndexTensor& y)
{
    std::map<Index, Tens> mu;
    std::map<Index, double> n;
    for (std::size_t i = 0; i < z.shape()[0]; ++i) {
        if (!mu.count(y(i))) mu[y(i)] = xt::zeros<double>({z.shape()[1]});
        mu[y(i)] += xt::view(z, i, xt::all());
        n[y(i)] += 1;
    }
    for (auto& [c, v] : mu) v /= n[c];
    return mu;
}

const QuantityCheck& top(const DiagnosisReport& r) { return r.at(r.mistakes().at(0)); }

void expect_clean(const DiagnosisReport& r)
{
    BOOST_TEST(r.ok(), r.table());
    BOOST_TEST(r.mistakes().empty());
}

/// The first mistake is `label`, its best explanation is of `kind` and mentions `words`; the
/// quantities in `follows` follow from it; no other mistake.
void expect_root(const DiagnosisReport& r, const std::string& label, const std::string& kind, const std::string& words,
                 const std::vector<std::string>& follows = {})
{
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST_INFO(r.table());
    BOOST_TEST_REQUIRE(r.mistakes().size() == 1u);
    BOOST_TEST(r.mistakes()[0] == label);
    const QuantityCheck& q = top(r);
    BOOST_TEST_REQUIRE(!q.hypotheses.empty());
    BOOST_TEST(q.hypotheses[0].kind == kind);
    BOOST_TEST(q.hypotheses[0].explanation.find(words) != std::string::npos, q.hypotheses[0].explanation);
    BOOST_TEST(q.hypotheses[0].residual < 1e-9);
    for (const auto& f : follows) {
        BOOST_TEST(r.at(f).verdict == Verdict::follows, f);
        BOOST_TEST(r.at(f).follows_from == label, f);
    }
}

// ---- model A: 2-layer sigmoid MLP under squared error ------------------------------------------

struct Mlp {
    Parameter<double> W1{rnd({5, 3}, 1), "W1"}, b1{rnd({5}, 2), "b1"}, W2{rnd({2, 5}, 3), "W2"}, b2{rnd({2}, 4), "b2"};
    Tens x = rnd({4, 3}, 5), t = rnd({4, 2}, 6, 0, 1);
    Reduction reduction = Reduction::half_sum;
    std::string act = "sigmoid";

    Var<double> model(Tape<double>& tp)
    {
        auto f = [&](const Var<double>& z) { return act == "sigmoid" ? sigmoid(z) : act == "tanh" ? tanh(z) : relu(z); };
        auto z1 = tp.observe("z1", linear(tp.constant(x), tp.param(W1), tp.param(b1)));
        auto a1 = tp.observe("a1", f(z1));
        auto z2 = tp.observe("z2", linear(a1, tp.param(W2), tp.param(b2)));
        auto a2 = tp.observe("a2", sigmoid(z2));
        return tp.observe("loss", mse_loss(a2, tp.constant(t), reduction));
    }
};

enum class MlpSlip {
    none, half_dropped, sign, transpose_w2, sigma_as_sigma, sigma_at_activation, sigma_of_z, output_derivative_missing,
    bias_not_summed, activation_skipped, two_mistakes, one_element, unknown_name, bias_shape, mean_dropped,
    tanh_one_minus_x, tanh_one_minus_a, tanh_at_activation, relu_as_relu, hidden_slip
};

void mlp_hand(Mlp& m, MlpSlip slip, HandDerivation& h)
{
    const double c = m.reduction == Reduction::half_sum ? 1.0 : m.reduction == Reduction::sum ? 2.0 : 2.0 / 8.0;
    auto f = [&](const Tens& z) -> Tens {
        if (m.act == "sigmoid") return sig(z);
        if (m.act == "tanh") return xt::tanh(z);
        return xt::maximum(z, 0.0);
    };
    auto fprime = [&](const Tens& z, const Tens& a) -> Tens {
        if (m.act == "sigmoid") return a * (1 - a);
        if (m.act == "tanh") return 1 - a * a;
        return xt::cast<double>(z > 0.0);
    };
    const Tens& z1 = h.value("z1", affine(m.x, m.W1.value(), m.b1.value()));
    Tens a1v = slip == MlpSlip::activation_skipped ? z1 : f(z1);
    if (slip == MlpSlip::hidden_slip) a1v(2, 3) += 0.1;  // an arithmetic slip in one printed number
    const Tens& a1 = h.value("a1", a1v);
    const Tens& z2 = h.value("z2", affine(a1, m.W2.value(), m.b2.value()));
    const Tens& a2 = h.value("a2", sig(z2));
    double cc = slip == MlpSlip::half_dropped || slip == MlpSlip::two_mistakes ? 2 * c : c;
    if (slip == MlpSlip::mean_dropped) cc = 2.0;
    Tens d2v = cc * (a2 - m.t) * a2 * (1 - a2);
    if (slip == MlpSlip::sign) d2v = cc * (m.t - a2) * a2 * (1 - a2);
    if (slip == MlpSlip::output_derivative_missing) d2v = cc * (a2 - m.t);
    const Tens& d2 = h.grad("z2", d2v);
    Tens dw2 = mm(tr(d2), a1);
    if (slip == MlpSlip::transpose_w2) dw2 = mm(tr(a1), d2);
    if (slip == MlpSlip::one_element) dw2(0, 1) += 0.05;
    h.grad("W2", dw2);
    h.grad("b2", slip == MlpSlip::bias_not_summed ? d2 : colsum(d2));
    const Tens back = mm(d2, m.W2.value());
    Tens d1v = back * fprime(z1, a1);
    if (slip == MlpSlip::sigma_as_sigma) d1v = back * a1;
    if (slip == MlpSlip::sigma_at_activation) d1v = back * sig(a1) * (1 - sig(a1));
    if (slip == MlpSlip::sigma_of_z) d1v = back * z1 * (1 - z1);
    if (slip == MlpSlip::tanh_one_minus_x) d1v = back * (1 - z1);
    if (slip == MlpSlip::tanh_one_minus_a) d1v = back * (1 - a1);
    if (slip == MlpSlip::tanh_at_activation) d1v = back * (1 - xt::tanh(a1) * xt::tanh(a1));
    if (slip == MlpSlip::relu_as_relu) d1v = back * a1;
    const Tens& d1 = h.grad("z1", d1v);
    Tens dw1 = mm(tr(d1), m.x);
    if (slip == MlpSlip::two_mistakes) dw1 = mm(tr(m.x), d1);
    h.grad("W1", dw1);
    Tens db1 = colsum(d1);
    if (slip == MlpSlip::bias_shape) db1 = xt::stack(xt::xtuple(colsum(d1), colsum(d1)));  // (2,5)
    h.grad("b1", db1);
    if (slip == MlpSlip::unknown_name) h.grad("W3", dw1);
}

DiagnosisReport run_mlp(MlpSlip slip, Reduction reduction = Reduction::half_sum, const std::string& act = "sigmoid")
{
    Mlp m;
    m.reduction = reduction;
    m.act = act;
    return diagnose([&](Tape<double>& t) { return m.model(t); }, [&](HandDerivation& h) { mlp_hand(m, slip, h); });
}

const std::vector<std::string> after_z2 = {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"};

}  // namespace

BOOST_AUTO_TEST_SUITE(correct_derivations)

BOOST_AUTO_TEST_CASE(sigmoid_mlp_each_reduction)
{
    expect_clean(run_mlp(MlpSlip::none, Reduction::half_sum));
    expect_clean(run_mlp(MlpSlip::none, Reduction::sum));
    expect_clean(run_mlp(MlpSlip::none, Reduction::mean));
}

BOOST_AUTO_TEST_CASE(tanh_and_relu_mlp)
{
    expect_clean(run_mlp(MlpSlip::none, Reduction::half_sum, "tanh"));
    expect_clean(run_mlp(MlpSlip::none, Reduction::sum, "relu"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(mlp_mistakes)

BOOST_AUTO_TEST_CASE(a_dropped_half_is_the_square_factor_and_everything_below_follows)
{
    const auto r = run_mlp(MlpSlip::half_dropped);
    expect_root(r, "dL/dz2", "factor", "square", after_z2);
    BOOST_TEST(r.at("a2").verdict == Verdict::ok);
    BOOST_TEST(r.table().find("first mistake: dL/dz2") != std::string::npos, r.table());
}

BOOST_AUTO_TEST_CASE(sign_flip)
{
    expect_root(run_mlp(MlpSlip::sign), "dL/dz2", "sign", "wrong sign", after_z2);
}

BOOST_AUTO_TEST_CASE(mean_over_elements_dropped)
{
    // reduction mean over B·C = 8 elements; the hand sums: factor 8, named as the squared error's count
    expect_root(run_mlp(MlpSlip::mean_dropped, Reduction::mean), "dL/dz2", "factor", "8 elements", after_z2);
}

BOOST_AUTO_TEST_CASE(transposed_weight_gradient)
{
    const auto r = run_mlp(MlpSlip::transpose_w2);
    expect_root(r, "dL/dW2", "transpose", "transposed");
    BOOST_TEST(r.at("dL/dW2").verdict == Verdict::shape_mismatch);
    BOOST_TEST(r.at("dL/dz1").verdict == Verdict::ok);  // W2's gradient feeds nothing downstream
}

BOOST_AUTO_TEST_CASE(sigmoid_derivative_mistakes)
{
    const std::vector<std::string> after_z1 = {"dL/dW1", "dL/db1"};
    expect_root(run_mlp(MlpSlip::sigma_as_sigma), "dL/dz1", "activation derivative", "σ′ written as σ", after_z1);
    expect_root(run_mlp(MlpSlip::sigma_at_activation), "dL/dz1", "activation derivative", "evaluated at the activation",
                after_z1);
    expect_root(run_mlp(MlpSlip::sigma_of_z), "dL/dz1", "activation derivative", "pre-activation z", after_z1);
    expect_root(run_mlp(MlpSlip::output_derivative_missing), "dL/dz2", "missing derivative", "sigmoid", after_z2);
}

BOOST_AUTO_TEST_CASE(tanh_and_relu_derivative_mistakes)
{
    const std::vector<std::string> after_z1 = {"dL/dW1", "dL/db1"};
    expect_root(run_mlp(MlpSlip::tanh_one_minus_x, Reduction::half_sum, "tanh"), "dL/dz1", "activation derivative",
                "1 − x", after_z1);
    expect_root(run_mlp(MlpSlip::tanh_one_minus_a, Reduction::half_sum, "tanh"), "dL/dz1", "activation derivative",
                "1 − a instead of 1 − a²", after_z1);
    expect_root(run_mlp(MlpSlip::tanh_at_activation, Reduction::half_sum, "tanh"), "dL/dz1", "activation derivative",
                "evaluated at the activation", after_z1);
    expect_root(run_mlp(MlpSlip::relu_as_relu, Reduction::half_sum, "relu"), "dL/dz1", "activation derivative",
                "ReLU′ written as ReLU", after_z1);
}

BOOST_AUTO_TEST_CASE(bias_gradient_not_summed_over_the_batch)
{
    const auto r = run_mlp(MlpSlip::bias_not_summed);
    expect_root(r, "dL/db2", "sum over axis", "sum over the batch");
    BOOST_TEST(r.at("dL/db2").verdict == Verdict::shape_mismatch);
}

BOOST_AUTO_TEST_CASE(per_sample_loss_left_per_class)
{
    // softmax regression observed per sample: ℓ_n = −Σ_c t_nc log p_nc; the hand forgets Σ_c and
    // keeps (n, c). The class axis is named, not the batch.
    const Tens x = rnd(Shape{4, 3}, 81), w = rnd(Shape{5, 3}, 82), b = rnd(Shape{5}, 83);
    IndexTensor y = IndexTensor::from_shape({4});
    for (std::size_t i = 0; i < 4; ++i) y(i) = Index((3 * i + 1) % 5);
    const auto r = diagnose(
        [&](Tape<double>& t) {
            auto logp = log_softmax(matmul(t.constant(x), transpose(t.variable(w))) + t.variable(b), 1);
            auto per_sample = -sum(logp * one_hot(t, y, 5), {1});
            t.observe("l", per_sample);
            return mean(per_sample);
        },
        [&](HandDerivation& h) {
            const Tens p = softmax_rows(affine(x, w, b));
            h.value("l", -(xt::log(p) * one_hot_rows(y, 5)));  // (4, 5): Σ over classes missing
        });
    expect_root(r, "l", "sum over axis", "keeps the last axis (axis 1: classes or features)");
    BOOST_TEST(r.at("l").verdict == Verdict::shape_mismatch);
}

BOOST_AUTO_TEST_CASE(activation_skipped_is_the_layer_before)
{
    // a1 written as z1: the forward value equals the tape's z1; everything after follows
    const auto r = run_mlp(MlpSlip::activation_skipped);
    expect_root(r, "a1", "off-by-one layer", "the tape's z1", {"z2", "a2", "dL/dz2", "dL/dW2"});
}

BOOST_AUTO_TEST_CASE(numbers_consistent_with_an_earlier_slip_follow_from_it)
{
    // one wrong number in a1; z2, a2 and every gradient below are computed correctly from it, so
    // they disagree with the tape only because of a1
    const auto r = run_mlp(MlpSlip::hidden_slip);
    BOOST_TEST_INFO(r.table());
    BOOST_TEST_REQUIRE(r.mistakes() == std::vector<std::string>{"a1"});
    BOOST_TEST(r.at("a1").pattern.find("1 of 20 elements differ, only in row 2") != std::string::npos, r.at("a1").pattern);
    for (const char* l : {"z2", "a2", "dL/dz2", "dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}) {
        BOOST_TEST(r.at(l).verdict == Verdict::follows, l);
        BOOST_TEST(r.at(l).follows_from == "a1", l);
    }
    BOOST_TEST(r.at("z1").verdict == Verdict::ok);
}

BOOST_AUTO_TEST_CASE(two_independent_mistakes)
{
    const auto r = run_mlp(MlpSlip::two_mistakes);
    BOOST_TEST_INFO(r.table());
    BOOST_TEST_REQUIRE(r.mistakes().size() == 2u);
    BOOST_TEST(r.mistakes()[0] == "dL/dz2");
    BOOST_TEST(r.mistakes()[1] == "dL/dW1");
    BOOST_TEST(r.at("dL/dz2").hypotheses.at(0).kind == "factor");
    BOOST_TEST(r.at("dL/dW1").hypotheses.at(0).kind == "transpose");
    BOOST_TEST(r.at("dL/dz1").follows_from == "dL/dz2");
    BOOST_TEST(r.at("dL/db1").follows_from == "dL/dz2");
}

BOOST_AUTO_TEST_CASE(one_wrong_element_is_located)
{
    const auto r = run_mlp(MlpSlip::one_element);
    BOOST_TEST_REQUIRE(r.mistakes() == std::vector<std::string>{"dL/dW2"});
    BOOST_TEST(r.at("dL/dW2").hypotheses.empty());
    BOOST_TEST(r.at("dL/dW2").pattern.find("1 of 10 elements differ, only in row 0") != std::string::npos,
               r.at("dL/dW2").pattern);
}

BOOST_AUTO_TEST_CASE(unknown_names_and_shapes_are_reported_as_such)
{
    const auto r = run_mlp(MlpSlip::unknown_name);
    BOOST_TEST(r.at("dL/dW3").verdict == Verdict::unmatched);
    BOOST_TEST(!r.ok());
    BOOST_TEST(r.table().find("no observed quantity or parameter is named 'W3'") != std::string::npos, r.table());
    const auto s = run_mlp(MlpSlip::bias_shape);
    BOOST_TEST(s.at("dL/db1").verdict == Verdict::shape_mismatch);
    BOOST_TEST(s.table().find("(2,5)≠(5)") != std::string::npos, s.table());
    BOOST_TEST(s.table().find("inf inf") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model B: tanh MLP under softmax cross-entropy (mean over B = 4, C = 3) ---------------------

namespace {

enum class CeSlip { none, batch_mean_dropped, divided_by_classes };

DiagnosisReport run_ce(CeSlip slip)
{
    Parameter<double> W1(rnd({6, 3}, 11), "W1"), b1(rnd({6}, 12), "b1"), W2(rnd({3, 6}, 13), "W2"), b2(rnd({3}, 14), "b2");
    const Tens x = rnd({4, 3}, 15);
    const IndexTensor y = {0, 2, 1, 2};
    return diagnose(
        [&](Tape<double>& t) {
            auto z1 = t.observe("z1", linear(t.constant(x), t.param(W1), t.param(b1)));
            auto a1 = t.observe("a1", tanh(z1));
            auto z2 = t.observe("z2", linear(a1, t.param(W2), t.param(b2)));
            return cross_entropy(z2, y);
        },
        [&](HandDerivation& h) {
            const Tens& a1 = h.value("a1", xt::tanh(affine(x, W1.value(), b1.value())));
            const Tens p = softmax_rows(affine(a1, W2.value(), b2.value()));
            Tens d2 = (p - one_hot_rows(y, 3)) / 4.0;
            if (slip == CeSlip::batch_mean_dropped) d2 = p - one_hot_rows(y, 3);
            if (slip == CeSlip::divided_by_classes) d2 = (p - one_hot_rows(y, 3)) / 12.0;
            const Tens& g2 = h.grad("z2", d2);
            h.grad("W2", mm(tr(g2), a1));
            const Tens& g1 = h.grad("z1", mm(g2, W2.value()) * (1 - a1 * a1));
            h.grad("W1", mm(tr(g1), x));
            h.grad("b1", colsum(g1));
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cross_entropy_mistakes)

BOOST_AUTO_TEST_CASE(correct) { expect_clean(run_ce(CeSlip::none)); }

BOOST_AUTO_TEST_CASE(batch_mean_forgotten_names_the_batch_size)
{
    expect_root(run_ce(CeSlip::batch_mean_dropped), "dL/dz2", "factor", "batch size B = 4",
                {"dL/dW2", "dL/dz1", "dL/dW1", "dL/db1"});
}

BOOST_AUTO_TEST_CASE(divided_by_the_classes_too)
{
    expect_root(run_ce(CeSlip::divided_by_classes), "dL/dz2", "factor", "number of classes C = 3");
}

BOOST_AUTO_TEST_CASE(no_pooling_factor_in_a_network_without_pooling)
{
    // a factor 4 here is the batch size, never a pooling area: the model has no pooling
    const auto r = run_ce(CeSlip::batch_mean_dropped);
    for (const auto& h : r.at("dL/dz2").hypotheses) BOOST_TEST(h.explanation.find("pooling") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model C: softmax output under squared error (its Jacobian) --------------------------------

namespace {

DiagnosisReport run_softmax_mse(bool elementwise)
{
    Parameter<double> W(rnd({4, 3}, 21), "W"), b(rnd({4}, 22), "b");
    const Tens x = rnd({5, 3}, 23), target = rnd({5, 4}, 24, 0, 1);
    return diagnose(
        [&](Tape<double>& t) {
            auto z = t.observe("z", linear(t.constant(x), t.param(W), t.param(b)));
            auto s = t.observe("s", softmax(z, 1));
            return mse_loss(s, t.constant(target), Reduction::half_sum);
        },
        [&](HandDerivation& h) {
            const Tens& s = h.value("s", softmax_rows(affine(x, W.value(), b.value())));
            const Tens& g = h.grad("s", s - target);
            Tens dz = xt::zeros<double>(s.shape());
            if (elementwise) {
                dz = g * s * (1 - s);  // the document's shortcut
            } else {
                for (std::size_t i = 0; i < s.shape()[0]; ++i) {
                    double gs = 0;
                    for (std::size_t j = 0; j < s.shape()[1]; ++j) gs += g(i, j) * s(i, j);
                    for (std::size_t j = 0; j < s.shape()[1]; ++j) dz(i, j) = s(i, j) * (g(i, j) - gs);
                }
            }
            const Tens& d = h.grad("z", dz);
            h.grad("W", mm(tr(d), x));
            h.grad("b", colsum(d));
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(softmax_jacobian)

BOOST_AUTO_TEST_CASE(correct) { expect_clean(run_softmax_mse(false)); }

BOOST_AUTO_TEST_CASE(elementwise_derivative_where_the_jacobian_belongs)
{
    expect_root(run_softmax_mse(true), "dL/dz", "elementwise derivative", "Jacobian", {"dL/dW", "dL/db"});
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model D: conv → ReLU → pooling → linear, cross-entropy -----------------------------------

namespace {

enum class PoolSlip { none, spread_evenly, copied_to_window, first_cell, avg_no_quarter, avg_rows_two_apart, relu_as_relu,
                      avg_all_windows, avg_value_rows_two_apart };

DiagnosisReport run_pool(bool max_pool, PoolSlip slip)
{
    Parameter<double> K(rnd({2, 1, 3, 3}, 31), "K"), W(rnd({3, 8}, 32), "W");
    const Tens x = rnd({2, 1, 6, 6}, 33);
    const IndexTensor y = {1, 2};
    return diagnose(
        [&](Tape<double>& t) {
            auto z = t.observe("z", conv2d(t.constant(x), t.param(K)));
            auto a = t.observe("a", relu(z));
            auto p = t.observe("p", max_pool ? max_pool2d(a, 2) : avg_pool2d(a, 2));
            return cross_entropy(linear(reshape(p, {2, 8}), t.param(W)), y);
        },
        [&](HandDerivation& h) {
            // the forward by hand is the tape's (the derivation under test starts at the pooling)
            Tape<double> t;
            auto z = conv2d(t.constant(x), t.constant(K.value()));
            const Tens a = xt::maximum(z.value(), 0.0);
            Tens p = xt::zeros<double>({2, 2, 2, 2});
            Tens arg = xt::zeros<double>(a.shape());  // 1 at each window's maximum
            for (std::size_t n = 0; n < 2; ++n)
                for (std::size_t c = 0; c < 2; ++c)
                    for (std::size_t i = 0; i < 2; ++i)
                        for (std::size_t j = 0; j < 2; ++j) {
                            double best = -INFINITY, sum = 0;
                            std::size_t bi = 0, bj = 0;
                            for (std::size_t u = 0; u < 2; ++u)
                                for (std::size_t v = 0; v < 2; ++v) {
                                    const double val = a(n, c, 2 * i + u, 2 * j + v);
                                    sum += val;
                                    if (val > best) best = val, bi = u, bj = v;
                                }
                            p(n, c, i, j) = max_pool ? best : sum / 4;
                            if (!max_pool && slip == PoolSlip::avg_value_rows_two_apart)  // rows 2i and 2i + 2
                                p(n, c, i, j) = (a(n, c, 2 * i, 2 * j) + a(n, c, 2 * i, 2 * j + 1) +
                                                 (2 * i + 2 < 4 ? a(n, c, 2 * i + 2, 2 * j) + a(n, c, 2 * i + 2, 2 * j + 1)
                                                                : 0.0)) / 4;
                            arg(n, c, 2 * i + bi, 2 * j + bj) = 1;
                        }
            Tens pf = h.value("p", p);
            pf.reshape({2, 8});
            const Tens dlogits = (softmax_rows(mm(pf, tr(W.value()))) - one_hot_rows(y, 3)) / 2.0;
            h.grad("W", mm(tr(dlogits), pf));
            Tens dp = mm(dlogits, W.value());
            dp.reshape({2, 2, 2, 2});
            const Tens& gp = h.grad("p", dp);
            Tens da = xt::zeros<double>(a.shape());
            for (std::size_t n = 0; n < 2; ++n)
                for (std::size_t c = 0; c < 2; ++c)
                    for (std::size_t r = 0; r < 4; ++r)
                        for (std::size_t s = 0; s < 4; ++s) {
                            const double g = gp(n, c, r / 2, s / 2);
                            if (!max_pool && slip == PoolSlip::avg_rows_two_apart) {
                                // a window's second row taken two rows down (r, s the cell of window
                                // (r/2, s/2) in its first row); past the image: lost
                                if (r % 2 == 0 && r + 2 < 4) da(n, c, r + 2, s) += g / 4;
                                if (r % 2 == 0) da(n, c, r, s) += g / 4;
                            } else if (!max_pool && slip == PoolSlip::avg_all_windows) {
                                // Σ over every window j of the map for each cell, as if ∂p_j/∂a_l = ¼ for all l
                                double total = 0;
                                for (std::size_t i = 0; i < 2; ++i)
                                    for (std::size_t j = 0; j < 2; ++j) total += gp(n, c, i, j);
                                da(n, c, r, s) = total / 4;
                            } else if (!max_pool)
                                da(n, c, r, s) = slip == PoolSlip::avg_no_quarter ? g : g / 4;
                            else if (slip == PoolSlip::spread_evenly)
                                da(n, c, r, s) = g / 4;
                            else if (slip == PoolSlip::copied_to_window)
                                da(n, c, r, s) = g;
                            else if (slip == PoolSlip::first_cell)
                                da(n, c, r, s) = (r % 2 == 0 && s % 2 == 0) ? g : 0;
                            else
                                da(n, c, r, s) = arg(n, c, r, s) * g;
                        }
            const Tens& ga = h.grad("a", da);
            h.grad("z", slip == PoolSlip::relu_as_relu ? Tens(ga * a) : Tens(ga * xt::cast<double>(z.value() > 0.0)));
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pooling_mistakes)

BOOST_AUTO_TEST_CASE(correct)
{
    expect_clean(run_pool(true, PoolSlip::none));
    expect_clean(run_pool(false, PoolSlip::none));
}

BOOST_AUTO_TEST_CASE(max_pool_gradient_spread_copied_or_misrouted)
{
    expect_root(run_pool(true, PoolSlip::spread_evenly), "dL/da", "pooling routing", "spread evenly", {"dL/dz"});
    expect_root(run_pool(true, PoolSlip::copied_to_window), "dL/da", "pooling routing", "copied to every cell", {"dL/dz"});
    expect_root(run_pool(true, PoolSlip::first_cell), "dL/da", "pooling routing", "first cell", {"dL/dz"});
}

BOOST_AUTO_TEST_CASE(average_pool_without_its_quarter)
{
    const auto r = run_pool(false, PoolSlip::avg_no_quarter);
    BOOST_TEST_INFO(r.table());
    BOOST_TEST_REQUIRE(r.mistakes() == std::vector<std::string>{"dL/da"});
    // both readings fit exactly: the factor 4 is this model's 2×2 pooling area, and the routing story
    bool area = false, routing = false;
    for (const auto& h : r.at("dL/da").hypotheses) {
        area |= h.kind == "factor" && h.explanation.find("2×2 pooling area 4") != std::string::npos;
        routing |= h.kind == "pooling routing" && h.explanation.find("without the 1/4") != std::string::npos;
    }
    BOOST_TEST(area);
    BOOST_TEST(routing);
    BOOST_TEST(r.at("dL/dz").follows_from == "dL/da");
}

BOOST_AUTO_TEST_CASE(average_pool_window_rows_two_apart)
{
    expect_root(run_pool(false, PoolSlip::avg_rows_two_apart), "dL/da", "pooling routing",
                "routed to cells 2 rows and 1 column apart in the 4×4 image instead of its own (window 0: cells "
                "{0, 1, 8, 9} for {0, 1, 4, 5}), with the 1/4",
                {"dL/dz"});
}

BOOST_AUTO_TEST_CASE(average_pool_gradient_summed_over_all_windows)
{
    // document 002's (15): Σ over all positions l for each pooled value, the ¼ kept
    expect_root(run_pool(false, PoolSlip::avg_all_windows), "dL/da", "pooling routing",
                "summed over all 4 2×2 windows of each feature map and sent to every cell of it instead of each "
                "window's to its own 4 cells (a sum over all positions where only a window's own have a nonzero "
                "derivative), with the 1/4",
                {"dL/dz"});
}

BOOST_AUTO_TEST_CASE(average_pool_value_over_the_wrong_cells)
{
    // the forward pooling over rows 2i and 2i + 2: the pooled value is the first mistake, the dense
    // layer's gradient follows from it
    expect_root(run_pool(false, PoolSlip::avg_value_rows_two_apart), "p", "pooling routing",
                "each 2×2 average-pooling window taken over cells 2 rows and 1 column apart in the 4×4 image instead "
                "of its own (window 0: cells {0, 1, 8, 9} for {0, 1, 4, 5}), with the 1/4",
                {"dL/dW", "dL/dp", "dL/da", "dL/dz"});
}

BOOST_AUTO_TEST_CASE(relu_derivative_as_relu)
{
    expect_root(run_pool(true, PoolSlip::relu_as_relu), "dL/dz", "activation derivative", "ReLU′ written as ReLU");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model E: loss terms (weight decay, the trace regularizer) ----------------------------------

namespace {

enum class TermSlip { none, decay_missing, decay_twice, trace_missing, trace_between_dropped, trace_between_sign,
                      trace_halved, trace_per_class };

DiagnosisReport run_terms(TermSlip slip)
{
    Parameter<double> W(rnd({3, 4}, 41), "W");
    const Tens x = rnd({6, 4}, 42);
    const IndexTensor y = {0, 1, 2, 0, 1, 2};
    const double lambda = 0.3, gamma = 0.1;
    return diagnose(
        [&](Tape<double>& t) {
            auto w = t.param(W);
            auto z = t.observe("z", linear(t.constant(x), w));
            auto data = t.observe("data", cross_entropy(z, y, Reduction::sum));
            auto decay = t.observe("decay", 0.5 * lambda * sum(square(w)));
            auto trace = t.observe("trace", nn::trace_scatter_loss(z, y, gamma));
            return data + decay + trace;
        },
        [&](HandDerivation& h) {
            const Tens z = mm(x, tr(W.value()));
            Tens dz = softmax_rows(z) - one_hot_rows(y, 3);
            // ½γ(tr S_w − tr S_b): d/dz_i = γ((z_i − μ_c) − n_c(μ_c − μ)/… ) — written out per sample:
            // tr S_w = Σ_i ‖z_i − μ_{c(i)}‖², tr S_b = Σ_c n_c‖μ_c − μ‖²
            // ⇒ ∂/∂z_i [½γ(tr S_w − tr S_b)] = γ((z_i − μ_{c(i)}) − (μ_{c(i)} − μ)).
            if (slip != TermSlip::trace_missing) {
                std::map<Index, Tens> mu = class_means(z, y);
                Tens mean = colsum(z) / 6.0;
                if (slip == TermSlip::trace_per_class) {  // the right per-sample gradient, summed over each class
                    std::map<Index, Tens> per;
                    for (std::size_t i = 0; i < 6; ++i) {
                        Tens row = xt::view(z, i, xt::all());
                        if (!per.count(y(i))) per[y(i)] = xt::zeros<double>({3});
                        per[y(i)] += gamma * ((row - mu[y(i)]) - (mu[y(i)] - mean));
                    }
                    for (std::size_t i = 0; i < 6; ++i) xt::view(dz, i, xt::all()) += per[y(i)];
                }
                for (std::size_t i = 0; i < 6 && slip != TermSlip::trace_per_class; ++i) {
                    Tens row = xt::view(z, i, xt::all());
                    // fresh slips: the between-class part left out, its sign flipped, the whole halved
                    const double within = slip == TermSlip::trace_halved ? 0.5 : 1.0;
                    const double between = slip == TermSlip::trace_between_dropped ? 0.0
                                           : slip == TermSlip::trace_between_sign ? 1.0
                                           : slip == TermSlip::trace_halved       ? -0.5
                                                                                  : -1.0;
                    xt::view(dz, i, xt::all()) += gamma * (within * (row - mu[y(i)]) + between * (mu[y(i)] - mean));
                }
            }
            const Tens& g = h.grad("z", dz);
            Tens dw = mm(tr(g), x);
            if (slip != TermSlip::decay_missing) dw += lambda * W.value();
            if (slip == TermSlip::decay_twice) dw += lambda * W.value();
            h.grad("W", dw);
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(loss_terms)

BOOST_AUTO_TEST_CASE(correct) { expect_clean(run_terms(TermSlip::none)); }

BOOST_AUTO_TEST_CASE(weight_decay_left_out_or_counted_twice)
{
    expect_root(run_terms(TermSlip::decay_missing), "dL/dW", "missing term", "'decay'");
    expect_root(run_terms(TermSlip::decay_twice), "dL/dW", "extra term", "'decay' twice");
}

BOOST_AUTO_TEST_CASE(trace_regularizer_left_out)
{
    expect_root(run_terms(TermSlip::trace_missing), "dL/dz", "missing term", "'trace'", {"dL/dW"});
}

BOOST_AUTO_TEST_CASE(trace_regularizer_with_wrong_coefficients)
{
    // the fused op keeps the classes (two samples each, N = 6): the coefficients are fitted per class
    expect_root(run_terms(TermSlip::trace_between_dropped), "dL/dz", "scatter coefficients",
                "class 0 (n_c = 2): 1 and 0; class 1 (n_c = 2): 1 and 0; class 2 (n_c = 2): 1 and 0, i.e. 1 and 0 "
                "instead of 1 and −1",
                {"dL/dW"});
    expect_root(run_terms(TermSlip::trace_between_sign), "dL/dz", "scatter coefficients", "i.e. 1 and 1 instead of",
                {"dL/dW"});
    expect_root(run_terms(TermSlip::trace_halved), "dL/dz", "scatter coefficients", "i.e. ½ and −½ instead of",
                {"dL/dW"});
}

BOOST_AUTO_TEST_CASE(trace_regularizer_summed_over_each_class)
{
    // Σ_{i∈c} of the right per-sample gradient, given to each sample: one vector per class, −n_c(μ_c − μ)
    expect_root(run_terms(TermSlip::trace_per_class), "dL/dz", "sum over class",
                "summed over the samples of each class and given to every sample of it, one vector per class (the sum "
                "drops the within-class term: Σ_{i∈c}(yᵢ − m_c) = 0); per sample, a coefficient (in units of its γ) "
                "on (m_c − m) of class 0 (n_c = 2): -1; class 1 (n_c = 2): -1; class 2 (n_c = 2): -1, i.e. −1 "
                "instead of a per-sample gradient with 1 and −1",
                {"dL/dW"});
    // the same numbers per sample: nothing on (yᵢ − m_c), −n_c = −2 on (m_c − m)
    const auto r = run_terms(TermSlip::trace_per_class);
    BOOST_TEST_REQUIRE(r.at("dL/dz").hypotheses.size() >= 2u);
    BOOST_TEST(r.at("dL/dz").hypotheses[1].kind == "scatter coefficients");
    BOOST_TEST(r.at("dL/dz").hypotheses[1].explanation.find("i.e. 0 and −2 instead of 1 and −1") != std::string::npos,
               r.at("dL/dz").hypotheses[1].explanation);
}

BOOST_AUTO_TEST_CASE(trace_coefficients_only_where_the_regularizer_is_wrong)
{
    // a mistake elsewhere is not blamed on the regularizer; a regularizer left out is a missing term first
    for (auto slip : {TermSlip::decay_missing, TermSlip::decay_twice, TermSlip::trace_missing}) {
        const auto r = run_terms(slip);
        for (const auto& q : r.quantities)
            for (std::size_t k = 0; k < q.hypotheses.size(); ++k)
                BOOST_TEST(((q.hypotheses[k].kind != "scatter coefficients" && q.hypotheses[k].kind != "sum over class") ||
                            k > 0),
                           q.hypotheses[k].explanation);
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model E′: the trace regularizer written from primitive ops ---------------------------------

namespace {

enum class PrimSlip { none, between_sign, halved, per_class, missing };

/// ½‖z − T‖² + ½γ(tr S_w − tr S_b) with the regularizer built from one_hot, matmul, mean, square and
/// sum (reference::trace_regularizer_on_tape), not the fused op. The targets T are one-hot too, but of
/// other labels: two class partitions on the tape, and only the regularizer's fits.
DiagnosisReport run_primitive_trace(PrimSlip slip, bool observe_term, bool averaging_matrix = false)
{
    Parameter<double> W(rnd({3, 4}, 61), "W");
    const Tens x = rnd({7, 4}, 62);
    const IndexTensor y = {2, 0, 0, 1, 2, 2, 1}, targets = {0, 1, 2, 0, 1, 2, 0};
    const double gamma = 0.2;
    const Tens T = one_hot_rows(targets, 3);
    return diagnose(
        [&](Tape<double>& t) {
            auto z = t.observe("z", linear(t.constant(x), t.param(W)));
            auto data = mse_loss(z, t.constant(T), Reduction::half_sum);
            Var<double> reg;
            if (!averaging_matrix) {
                reg = reference::trace_regularizer_on_tape(z, y, 3, gamma);
            } else {
                // another user's form: class means by a (K,B) matrix of 1/n_c, the traces expanded as
                // tr S_w = Σ‖zᵢ‖² − Σ n_c‖m_c‖², tr S_b = Σ n_c‖m_c − m‖²; no one-hot anywhere
                Tens avg = xt::zeros<double>({std::size_t(3), std::size_t(7)}), n_col = xt::zeros<double>({std::size_t(3), std::size_t(1)});
                for (std::size_t i = 0; i < 7; ++i) n_col(std::size_t(y(i)), 0) += 1;
                for (std::size_t i = 0; i < 7; ++i) avg(std::size_t(y(i)), i) = 1 / n_col(std::size_t(y(i)), 0);
                auto means = matmul(t.constant(avg), z);
                auto within = sum(square(z)) - sum(t.constant(n_col) * square(means));
                auto between = sum(t.constant(n_col) * square(means - mean(z, {0}, true)));
                reg = 0.5 * gamma * (within - between);
            }
            if (observe_term) t.observe("trace", reg);
            return data + reg;
        },
        [&](HandDerivation& h) {
            const Tens z = mm(x, tr(W.value()));
            Tens dz = z - T;
            std::map<Index, Tens> mu = class_means(z, y);
            const Tens mean = colsum(z) / 7.0;
            std::map<Index, Tens> per;  // per_class: Σ over the class of the right per-sample gradient
            for (std::size_t i = 0; i < 7; ++i) {
                Tens row = xt::view(z, i, xt::all());
                const double within = slip == PrimSlip::halved ? 0.5 : 1.0;
                const double between = slip == PrimSlip::between_sign ? 1.0 : slip == PrimSlip::halved ? -0.5 : -1.0;
                const Tens g = gamma * (within * (row - mu[y(i)]) + between * (mu[y(i)] - mean));
                if (slip == PrimSlip::per_class) {
                    if (!per.count(y(i))) per[y(i)] = xt::zeros<double>({3});
                    per[y(i)] += g;
                } else if (slip != PrimSlip::missing) {
                    xt::view(dz, i, xt::all()) += g;
                }
            }
            if (slip == PrimSlip::per_class)
                for (std::size_t i = 0; i < 7; ++i) xt::view(dz, i, xt::all()) += per[y(i)];
            const Tens& g = h.grad("z", dz);
            h.grad("W", mm(tr(g), x));
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(primitive_trace_regularizer)

BOOST_AUTO_TEST_CASE(correct)
{
    expect_clean(run_primitive_trace(PrimSlip::none, false));
    expect_clean(run_primitive_trace(PrimSlip::none, true));
}

BOOST_AUTO_TEST_CASE(coefficients_fitted_with_the_classes_of_its_one_hot)
{
    // the classes are the regularizer's labels {2,0,0,1,2,2,1} (2, 2 and 3 samples), read from the one-hot
    // constant its means are taken with, not the targets' {0,1,2,0,1,2,0} (3, 2, 2)
    const std::string counts = "class 0 (n_c = 2): 1 and 1; class 1 (n_c = 2): 1 and 1; class 2 (n_c = 3): 1 and 1";
    for (bool observed : {false, true}) {
        const auto r = run_primitive_trace(PrimSlip::between_sign, observed);
        expect_root(r, "dL/dz", "scatter coefficients", counts + ", i.e. 1 and 1 instead of 1 and −1", {"dL/dW"});
        BOOST_TEST(r.at("dL/dz").hypotheses[0].explanation.find("its classes from the one-hot (7,3) constant #") !=
                       std::string::npos,
                   r.at("dL/dz").hypotheses[0].explanation);
        BOOST_TEST(r.at("dL/dz").hypotheses[0].explanation.find(observed ? "'trace' (mul_scalar)" : "the scalar mul_scalar #") !=
                       std::string::npos,
                   r.at("dL/dz").hypotheses[0].explanation);
    }
    expect_root(run_primitive_trace(PrimSlip::halved, false), "dL/dz", "scatter coefficients",
                "class 2 (n_c = 3): 0.5 and -0.5, i.e. ½ and −½ instead of 1 and −1", {"dL/dW"});
}

BOOST_AUTO_TEST_CASE(classes_from_a_matrix_of_class_means)
{
    // the means taken with a (3,7) matrix of 1/n_c: its one nonzero per sample gives the classes
    expect_clean(run_primitive_trace(PrimSlip::none, false, true));
    const auto r = run_primitive_trace(PrimSlip::between_sign, false, true);
    expect_root(r, "dL/dz", "scatter coefficients",
                "class 0 (n_c = 2): 1 and 1; class 1 (n_c = 2): 1 and 1; class 2 (n_c = 3): 1 and 1, i.e. 1 and 1 "
                "instead of 1 and −1",
                {"dL/dW"});
    BOOST_TEST(r.at("dL/dz").hypotheses[0].explanation.find(
                   "its classes from the class-membership (3,7) constant (samples as columns)") != std::string::npos,
               r.at("dL/dz").hypotheses[0].explanation);
    expect_root(run_primitive_trace(PrimSlip::per_class, false, true), "dL/dz", "sum over class", "i.e. −1 instead",
                {"dL/dW"});
}

BOOST_AUTO_TEST_CASE(summed_over_each_class)
{
    expect_root(run_primitive_trace(PrimSlip::per_class, false), "dL/dz", "sum over class",
                "on (m_c − m) of class 0 (n_c = 2): -1; class 1 (n_c = 2): -1; class 2 (n_c = 3): -1, i.e. −1 instead "
                "of a per-sample gradient with 1 and −1",
                {"dL/dW"});
}

BOOST_AUTO_TEST_CASE(left_out_unobserved_or_observed)
{
    // not observed: the regularizer found on the tape is the term left out; observed: the named term
    expect_root(run_primitive_trace(PrimSlip::missing, false), "dL/dz", "missing term",
                "leaves out the gradient of the trace regularizer (the scalar mul_scalar #", {"dL/dW"});
    expect_root(run_primitive_trace(PrimSlip::missing, true), "dL/dz", "missing term", "the term 'trace'", {"dL/dW"});
    // the term's own "missing term" is said once, by the observed name
    const auto r = run_primitive_trace(PrimSlip::missing, true);
    for (const auto& h : r.at("dL/dz").hypotheses)
        BOOST_TEST(h.explanation.find("leaves out the gradient of the trace regularizer") == std::string::npos,
                   h.explanation);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- model F: a square weight (a transpose has the right shape) --------------------------------

namespace {

DiagnosisReport run_square(bool transposed)
{
    Parameter<double> W(rnd({3, 3}, 51), "W");
    const Tens x = rnd({4, 3}, 52);
    return diagnose(
        [&](Tape<double>& t) {
            auto z = t.observe("z", linear(t.constant(x), t.param(W)));
            return t.observe("loss", sum(square(z)));
        },
        [&](HandDerivation& h) {
            const Tens& z = h.value("z", mm(x, tr(W.value())));
            const Tens& g = h.grad("z", 2.0 * z);
            h.grad("W", transposed ? mm(tr(x), g) : mm(tr(g), x));
        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(square_weight)

BOOST_AUTO_TEST_CASE(correct) { expect_clean(run_square(false)); }

BOOST_AUTO_TEST_CASE(transposed_square_gradient)
{
    const auto r = run_square(true);
    expect_root(r, "dL/dW", "transpose", "square matrix");
    BOOST_TEST(r.at("dL/dW").verdict == Verdict::mistake);  // the shapes agree
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(reports)

BOOST_AUTO_TEST_CASE(json_and_dot_carry_the_verdicts)
{
    const auto r = run_mlp(MlpSlip::half_dropped);
    const std::string j = r.json();
    BOOST_TEST(j.find("\"mistakes\": [\n    \"dL/dz2\"\n  ]") != std::string::npos, j);
    BOOST_TEST(j.find("\"follows_from\": \"dL/dz2\"") != std::string::npos);
    BOOST_TEST(r.dot.find("digraph tape") != std::string::npos);
    BOOST_TEST(r.dot.find("(z2)") != std::string::npos);
    BOOST_TEST(r.dot.find("tomato") != std::string::npos);     // z2's node: the mistake
    BOOST_TEST(r.dot.find("orange") != std::string::npos);     // z1's: follows from it
    BOOST_TEST(r.dot.find("palegreen") != std::string::npos);  // a1's: agrees
}

BOOST_AUTO_TEST_CASE(misuse_is_an_error)
{
    Parameter<double> W(rnd({2, 2}, 1), "W");
    BOOST_CHECK_THROW(diagnose([&](Tape<double>& t) { return t.param(W); }, [](HandDerivation&) {}), ShapeError);
    BOOST_CHECK_THROW(diagnose([&](Tape<double>& t) { return sum(t.param(W)); },
                               [&](HandDerivation& h) {
                                   h.grad("W", W.value());
                                   h.grad("W", W.value());
                               }),
                      std::logic_error);
    Tape<double> t;
    auto v = t.variable(W.value());
    t.observe("v", v);
    BOOST_CHECK_THROW(t.observe("v", v), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- printed numbers with their formulas (a document's worked example) --------------------------

namespace {

Tens rounded(const Tens& t, int digits)  // as printed with `digits` significant digits
{
    Tens r = t;
    for (double& v : r) {
        if (v == 0) continue;
        const double scale = std::pow(10.0, digits - 1 - int(std::floor(std::log10(std::abs(v)))));
        v = std::round(v * scale) / scale;
    }
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(printed_numbers)

BOOST_AUTO_TEST_CASE(right_numbers_to_their_digits_and_gaps_are_ok)
{
    Mlp m;
    auto r = diagnose([&](Tape<double>& t) { return m.model(t); },
                      [&](HandDerivation& h) {
                          const Tens z1f = affine(m.x, m.W1.value(), m.b1.value());
                          Tens p = rounded(z1f, 8);
                          p(0, 0) = NAN;  // not printed
                          const Tens& z1 = h.value("z1", p, z1f);
                          BOOST_TEST(z1(0, 0) == z1f(0, 0));  // the gap is filled from the formula
                          h.value("a1", rounded(sig(z1), 9), sig(z1));
                      });
    expect_clean(r);
    BOOST_TEST(r.at("z1").printed);
    BOOST_TEST(!r.at("z1").slip);
}

BOOST_AUTO_TEST_CASE(consistent_numbers_follow_the_root_and_a_misprint_is_a_slip_of_its_own)
{
    Mlp m;
    auto r = diagnose([&](Tape<double>& t) { return m.model(t); },
                      [&](HandDerivation& h) {
                          Tens b1 = m.b1.value();
                          b1(2) += 0.5;  // the formula's arithmetic with another bias
                          const Tens& z1 = h.value("z1", Tens(xt::full_like(b1, NAN) * xt::ones<double>({4, 5})),
                                                   affine(m.x, m.W1.value(), b1));
                          const Tens& a1 = h.value("a1", rounded(sig(z1), 10), sig(z1));
                          const Tens z2f = affine(a1, m.W2.value(), m.b2.value());
                          Tens z2p = rounded(z2f, 10);
                          z2p(1, 0) *= 10;  // a misprint
                          const Tens& z2 = h.value("z2", z2p, z2f);
                          h.value("a2", rounded(sig(z2), 10), sig(z2));
                      });
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == (std::vector<std::string>{"z1", "z2"}));
    BOOST_TEST(r.at("z1").hypotheses.at(0).kind == "wrong bias");
    BOOST_TEST(r.at("z1").hypotheses.at(0).explanation.find("b1[2] = ") != std::string::npos,
               r.at("z1").hypotheses.at(0).explanation);
    BOOST_TEST(r.at("a1").verdict == Verdict::follows);
    BOOST_TEST(r.at("a1").follows_from == "z1");
    BOOST_TEST(r.at("z2").slip);
    BOOST_TEST(r.at("z2").hypotheses.at(0).kind == "printing slip");
    BOOST_TEST(r.at("z2").hypotheses.at(0).explanation.find("10^1 × what its own formula gives") != std::string::npos,
               r.at("z2").hypotheses.at(0).explanation);
    BOOST_TEST(r.at("z2").hypotheses.at(0).explanation.find("(1,0) (1 of 8 printed entries)") != std::string::npos);
    BOOST_TEST(r.at("z2").follows_from == "z1");  // its formula's value inherits z1's mistake
    BOOST_TEST(r.at("a2").verdict == Verdict::follows);  // computed from the printed z2, misprint included
    BOOST_TEST(r.at("a2").follows_from == "z1");
}

BOOST_AUTO_TEST_CASE(a_misprint_that_propagates_nowhere_else)
{
    Mlp m;
    auto r = diagnose([&](Tape<double>& t) { return m.model(t); },
                      [&](HandDerivation& h) {
                          const Tens z1f = affine(m.x, m.W1.value(), m.b1.value());
                          Tens p = z1f;
                          p(0, 1) = -p(0, 1);  // a sign dropped in print
                          h.value("z1", p, z1f);
                          h.value("a1", sig(z1f), sig(z1f));  // the arithmetic goes on with the right value
                      });
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"z1"});
    BOOST_TEST(r.at("z1").hypotheses.at(0).explanation.find("wrong sign in (0,1)") != std::string::npos,
               r.at("z1").hypotheses.at(0).explanation);
    BOOST_TEST(r.at("z1").follows_from.empty());
    BOOST_TEST(r.at("a1").verdict == Verdict::ok);
}

BOOST_AUTO_TEST_CASE(printed_and_formula_of_different_shapes_is_an_error)
{
    Mlp m;
    BOOST_CHECK_THROW(diagnose([&](Tape<double>& t) { return m.model(t); },
                               [&](HandDerivation& h) { h.value("z1", Tens(xt::zeros<double>({4, 5})), Tens(xt::zeros<double>({5, 4}))); }),
                      ShapeError);
}

BOOST_AUTO_TEST_SUITE_END()

// The documents' hand-derived backprop (xgrad::reference) against the tape and finite differences,
// the comparison API's diagnosis of deliberately wrong gradients, and node-level checking.
#define BOOST_TEST_MODULE reference
#include <cmath>

#include "test_util.hpp"
#include "xgrad/reference/backprop.hpp"
#include "xgrad/reference/hand_steps.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/op.hpp"
#include "xgrad/random.hpp"

#include <xtensor/xview.hpp>

using namespace xgrad;
using xgrad::test::expect_gradcheck;
using xgrad::test::rnd;
namespace tt = boost::test_tools;
using V = Var<double>;

namespace {

Var<double> apply(nn::Activation a, const V& x)
{
    switch (a) {
        case nn::Activation::sigmoid: return sigmoid(x);
        case nn::Activation::tanh: return tanh(x);
        case nn::Activation::relu: return relu(x);
        default: return x;
    }
}

/// The same MLP on the tape, weights (out, in) as in the documents: z = x·Wᵀ + b.
V mlp_on_tape(const std::vector<V>& ws, const std::vector<V>& bs, const std::vector<nn::Activation>& acts, V x)
{
    for (std::size_t l = 0; l < ws.size(); ++l) x = apply(acts[l], linear(x, ws[l], bs[l]));
    return x;
}

std::vector<reference::Layer<double>> random_layers(const std::vector<std::size_t>& sizes, const std::vector<nn::Activation>& acts,
                                                 unsigned seed)
{
    std::vector<reference::Layer<double>> ls;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l)
        ls.push_back({rnd(Shape{sizes[l + 1], sizes[l]}, seed + 2 * l), rnd(Shape{sizes[l + 1]}, seed + 2 * l + 1), acts[l]});
    return ls;
}

/// Automatic gradients of `loss(tape, params)` w.r.t. the given tensors, by name.
NamedTensors tape_gradients(const NamedTensors& params, const std::function<V(const std::vector<V>&)>& loss)
{
    Tape<double> t;
    std::vector<V> vs;
    for (const auto& [n, v] : params) vs.push_back(t.variable(v));
    t.backward(loss(vs));
    NamedTensors out;
    for (std::size_t i = 0; i < vs.size(); ++i) out.emplace_back(params[i].first, vs[i].grad());
    return out;
}

void expect_agree(const NamedTensors& automatic, const NamedTensors& hand, double rtol = 1e-10)
{
    CompareOptions o;
    o.rtol(rtol);
    const ComparisonReport r = compare_gradients(automatic, hand, o);
    BOOST_TEST(r.all_pass(), "\n" << r.table());
    for (const auto& e : r.entries) BOOST_TEST_MESSAGE(e.name << " max rel error " << e.max_rel_error);
}

V trace_reg_from_primitives(const V& Y, const IndexTensor& labels, std::size_t K, double gamma)
{
    return reference::trace_regularizer_on_tape(Y, labels, K, gamma);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(three_way)

BOOST_AUTO_TEST_CASE(mlp_l_layer_notes)
{
    using nn::Activation;
    const std::vector<std::pair<std::vector<std::size_t>, std::vector<Activation>>> nets = {
        {{3, 4, 2}, {Activation::sigmoid, Activation::identity}},
        {{5, 7, 6, 3}, {Activation::tanh, Activation::relu, Activation::sigmoid}},
        {{8, 16, 16, 16, 4}, {Activation::sigmoid, Activation::tanh, Activation::sigmoid, Activation::identity}}};
    unsigned seed = 1;
    for (const auto& net : nets)
        for (std::size_t B : {1u, 6u}) {
            const auto& sizes = net.first;
            const auto& acts = net.second;  // not a structured binding: a lambda below reads it (C++17)
            BOOST_TEST_CONTEXT("layers " << sizes.size() - 1 << " batch " << B)
            {
                const auto layers = random_layers(sizes, acts, seed);
                const Tensor<double> X = rnd(Shape{B, sizes.front()}, seed + 50), T = rnd(Shape{B, sizes.back()}, seed + 51);
                ++seed;
                const auto hand = reference::mlp_backprop(layers, X, reference::half_squared_error(T));
                NamedTensors params, hand_grads;
                for (std::size_t l = 0; l < layers.size(); ++l) {
                    params.emplace_back("W" + std::to_string(l + 1), layers[l].W);
                    params.emplace_back("b" + std::to_string(l + 1), layers[l].b);
                    hand_grads.emplace_back("W" + std::to_string(l + 1), hand.dW[l]);
                    hand_grads.emplace_back("b" + std::to_string(l + 1), hand.db[l]);
                }
                auto loss = [&](const std::vector<V>& p) {
                    std::vector<V> ws, bs;
                    for (std::size_t l = 0; l < layers.size(); ++l) ws.push_back(p[2 * l]), bs.push_back(p[2 * l + 1]);
                    auto y = mlp_on_tape(ws, bs, acts, p[0].tape().constant(X));
                    return mse_loss(y, p[0].tape().constant(T), Reduction::half_sum);
                };
                expect_agree(tape_gradients(params, loss), hand_grads);
                std::vector<Tensor<double>> values;
                for (const auto& [n, v] : params) values.push_back(v);
                if (B == 6) expect_gradcheck(loss, values);  // and both against finite differences
            }
        }
}

BOOST_AUTO_TEST_CASE(trace_regularizer)
{
    const IndexTensor labels = {0, 1, 1, 2, 0, 2, 2, 1};
    const std::size_t B = 8, K = 3;
    const double gamma = 0.7;
    const Tensor<double> Y = rnd(Shape{B, K}, 3, -2, 2);
    // hand formula γ(y_i − 2m_c + m) vs the tape's derivation through primitive ops
    Tensor<double> dR;
    const double r_hand = reference::trace_regularizer(Y, labels, gamma, dR);
    Tape<double> t;
    auto y = t.variable(Y);
    auto r = trace_reg_from_primitives(y, labels, K, gamma);
    t.backward(r);
    BOOST_TEST(r.item() == r_hand, tt::tolerance(1e-12));
    expect_agree({{"Y", y.grad()}}, {{"Y", dR}});
    // the fused op agrees with both, and all three with finite differences
    auto rf = nn::trace_scatter_loss(t.variable(Y), labels, gamma);
    BOOST_TEST(rf.item() == r_hand, tt::tolerance(1e-12));
    expect_gradcheck([&](const std::vector<V>& v) { return trace_reg_from_primitives(v[0], labels, K, gamma); }, {Y});
    // a class absent from the batch (label 3 never appears, K = 5) contributes nothing
    auto r5 = trace_reg_from_primitives(t.variable(Y), labels, 5, gamma);
    BOOST_TEST(r5.item() == r_hand, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(mlp_trace_regularizer)
{
    using nn::Activation;
    const IndexTensor labels = {0, 1, 1, 2, 0, 2};
    const Tensor<double> X = rnd(Shape{6, 4}, 7);
    Tensor<double> D = xt::zeros<double>({6, 3});
    for (std::size_t i = 0; i < 6; ++i) D(i, std::size_t(labels(i))) = 1;
    const auto layers = random_layers({4, 5, 3}, {Activation::sigmoid, Activation::identity}, 9);
    const double gamma = 0.3;
    const auto hand = reference::mlp_backprop(layers, X, reference::squared_error_with_trace_regularizer(D, labels, gamma));
    NamedTensors params = {{"W1", layers[0].W}, {"b1", layers[0].b}, {"W2", layers[1].W}, {"b2", layers[1].b}};
    auto loss = [&](const std::vector<V>& p) {
        Tape<double>& t = p[0].tape();
        auto y = mlp_on_tape({p[0], p[2]}, {p[1], p[3]}, {Activation::sigmoid, Activation::identity}, t.constant(X));
        return mse_loss(y, t.constant(D), Reduction::half_sum) + trace_reg_from_primitives(y, labels, 3, gamma);
    };
    expect_agree(tape_gradients(params, loss), {{"W1", hand.dW[0]}, {"b1", hand.db[0]}, {"W2", hand.dW[1]}, {"b2", hand.db[1]}});
    expect_gradcheck(loss, {layers[0].W, layers[0].b, layers[1].W, layers[1].b});
}

BOOST_AUTO_TEST_CASE(cnn_sigmoid_avgpool)
{
    for (const auto& [n, c, h, o, k] : std::vector<std::tuple<std::size_t, std::size_t, std::size_t, std::size_t, std::size_t>>{
             {2, 1, 8, 3, 3}, {3, 2, 9, 2, 4}, {1, 1, 12, 4, 5}}) {
        BOOST_TEST_CONTEXT("batch " << n << " channels " << c << " size " << h << " filters " << o << " kernel " << k)
        {
            const std::size_t oh = h - k + 1, F = o * (oh / 2) * (oh / 2);
            reference::CnnParams<double> p{rnd(Shape{o, c, k, k}, 1), rnd(Shape{o}, 2), rnd(Shape{4, F}, 3), rnd(Shape{4}, 4)};
            const Tensor<double> X = rnd(Shape{n, c, h, h}, 5, 0, 1);
            IndexTensor labels = xt::arange<Index>(0, Index(n)) % 4;
            const auto hand = reference::cnn_sigmoid_avgpool_backprop(p, X, labels);
            auto loss = [&](const std::vector<V>& v) {
                Tape<double>& t = v[0].tape();
                auto a = flatten(avg_pool2d(sigmoid(conv2d(t.constant(X), v[0], v[1])), 2));
                return cross_entropy(matmul(a, transpose(v[2])) + v[3], labels, Reduction::sum);
            };
            const NamedTensors params = {{"V", p.V}, {"q", p.q}, {"W", p.W}, {"b", p.b}};
            expect_agree(tape_gradients(params, loss), {{"V", hand.dV}, {"q", hand.dq}, {"W", hand.dW}, {"b", hand.db}});
            expect_gradcheck(loss, {p.V, p.q, p.W, p.b});
        }
    }
}

BOOST_AUTO_TEST_CASE(mnist_softmax_sgd)
{
    for (std::size_t B : {1u, 5u}) {
        const Tensor<double> X = rnd(Shape{B, 12}, 1, 0, 1), b0 = rnd(Shape{12}, 2), W1 = rnd(Shape{12, 4}, 3),
                             b1 = rnd(Shape{4}, 4);
        Tensor<double> T = xt::zeros<double>({B, std::size_t(4)});
        for (std::size_t i = 0; i < B; ++i) T(i, i % 4) = 1;
        const auto hand = reference::mnist_softmax_sgd_backprop(b0, W1, b1, X, T);
        auto loss = [&](const std::vector<V>& v) {
            Tape<double>& t = v[0].tape();
            auto y = softmax(matmul(tanh(t.constant(X) + v[0]), v[1]) + v[2], 1);
            return mse_loss(y, t.constant(T), Reduction::sum);
        };
        expect_agree(tape_gradients({{"b0", b0}, {"W1", W1}, {"b1", b1}}, loss),
                     {{"b0", hand.db0}, {"W1", hand.dW1}, {"b1", hand.db1}});
        expect_gradcheck(loss, {b0, W1, b1});
    }
}

// The bn_conv benchmark's hand-written step (batch norm's backward by hand) against the tape on the
// same inputs, in float: gradients of the conv weight, γ and β, the loss and the running statistics.
BOOST_AUTO_TEST_CASE(hand_bn_conv_matches_the_tape)
{
    using F = float;
    const std::size_t B = 6, C = 5;
    const Tensor<F> x = rand_uniform<F>({B, C, 9, 9}, 3);
    nn::Sequential<F> net;
    net.emplace<nn::Conv2d<F>>(nn::Conv2dOptions(C, C, 3).padding(1).bias(false), 7);
    auto& bn = net.emplace<nn::BatchNorm2d<F>>(nn::BatchNorm2dOptions(C));
    net.emplace<nn::ReLU<F>>();
    auto ps = net.parameters();
    // γ, β away from 1, 0 so that the affine map is exercised
    ps[1]->value() = rand_uniform<F>({C}, 4, 0.5f, 1.5f);
    ps[2]->value() = rand_uniform<F>({C}, 5, -0.2f, 0.2f);
    reference::HandBnConv hand(net);
    Tape<F> tape;
    const Var<F> loss = mean(net(tape.borrow(x)));
    tape.backward(loss);
    const F hand_loss = hand.step(x, 0.0f);  // lr 0: the gradients only
    auto rel = [](const Tensor<F>& got, const Tensor<F>& want) {
        return double(xt::amax(xt::abs(got - want))()) / double(xt::amax(xt::abs(want))());
    };
    BOOST_TEST(double(hand_loss) == double(loss.value()()), tt::tolerance(1e-4));
    BOOST_TEST(rel(hand.dw, ps[0]->grad()) <= 1e-4);
    BOOST_TEST(rel(hand.dgamma, ps[1]->grad()) <= 1e-4);
    BOOST_TEST(rel(hand.dbeta, ps[2]->grad()) <= 1e-4);
    BOOST_TEST(rel(hand.running_mean, *bn.running_mean()) <= 1e-4);
    BOOST_TEST(rel(hand.running_var, *bn.running_var()) <= 1e-4);
}

BOOST_AUTO_TEST_CASE(worked_example_2_3_2_1)
{
    const auto layers = reference::worked_example_2_3_2_1_parameters();
    const Tensor<double> x = {1.0, 2.0};
    const auto tr = reference::worked_example_2_3_2_1_step(layers, x, 1.0, 0.1);
    // Independent closed form: σ(z) = 1/(1 + e^−z).
    auto sig = [](double z) { return 1 / (1 + std::exp(-z)); };
    // z⁽¹⁾ = W1·x + b1 = [2+2+1, 1+6+2, 3+4+3] = [5, 9, 10] exactly
    BOOST_TEST(tr.z[0] == (Tensor<double>{5, 9, 10}));
    const double n1[] = {sig(5), sig(9), sig(10)};
    // The reference's activations against the closed form and against the three values the
    // document prints correctly (0.993307149075715, 0.999876605424014, 0.999954602131298).
    const double printed[] = {0.993307149075715, 0.999876605424014, 0.999954602131298};
    for (std::size_t i = 0; i < 3; ++i) {
        BOOST_TEST(tr.n[0](i) == n1[i], tt::tolerance(1e-15));
        BOOST_TEST(tr.n[0](i) == printed[i], tt::tolerance(1e-14));
    }
    const double z4 = n1[0] + n1[1] + 2 * n1[2] + 2, z5 = 3 * n1[0] + 2 * n1[1] + 2 * n1[2] + 1;
    const double n4 = sig(z4), n5 = sig(z5), z6 = n4 + 3 * n5 + 2, n6 = sig(z6);
    BOOST_TEST(tr.z[1](0) == z4, tt::tolerance(1e-15));
    BOOST_TEST(z4 == 5.993092958762325, tt::tolerance(1e-14));  // the document's z4: correct
    BOOST_TEST(tr.n[1](1) == n5, tt::tolerance(1e-15));
    BOOST_TEST(tr.n[2](0) == n6, tt::tolerance(1e-15));
    const double d6 = (n6 - 1) * n6 * (1 - n6);                 // δ⁽³⁾ = (ŷ − y) σ′(z6)
    const double d4 = n4 * (1 - n4) * 1 * d6, d5 = n5 * (1 - n5) * 3 * d6;
    BOOST_TEST(tr.delta[2](0) == d6, tt::tolerance(1e-13));
    BOOST_TEST(tr.delta[1](0) == d4, tt::tolerance(1e-13));
    BOOST_TEST(tr.delta[1](1) == d5, tt::tolerance(1e-13));
    // δ⁽¹⁾ = σ′(z⁽¹⁾) ⊙ W2ᵀ δ⁽²⁾, a 3-vector
    const double d1[] = {n1[0] * (1 - n1[0]) * (1 * d4 + 3 * d5), n1[1] * (1 - n1[1]) * (1 * d4 + 2 * d5),
                         n1[2] * (1 - n1[2]) * (2 * d4 + 2 * d5)};
    for (int i = 0; i < 3; ++i) BOOST_TEST(tr.delta[0](i) == d1[i], tt::tolerance(1e-12));
    // update W ← W − η(δ nᵀ + W): W1[0][0] = 2 − 0.1(δ1₀·1 + 2)
    BOOST_TEST(tr.after[0].W(0, 0) == 2 - 0.1 * (d1[0] * 1 + 2), tt::tolerance(1e-15));
    BOOST_TEST(tr.after[0].W(2, 1) == 2 - 0.1 * (d1[2] * 2 + 2), tt::tolerance(1e-15));
    BOOST_TEST(tr.after[2].b(0) == 2 - 0.1 * d6, tt::tolerance(1e-15));
    // the tape agrees on every gradient
    NamedTensors params, hand;
    for (std::size_t l = 0; l < 3; ++l) {
        params.emplace_back("W" + std::to_string(l + 1), layers[l].W);
        params.emplace_back("b" + std::to_string(l + 1), layers[l].b);
        hand.emplace_back("W" + std::to_string(l + 1), tr.dW[l]);
        hand.emplace_back("b" + std::to_string(l + 1), tr.db[l]);
    }
    const Tensor<double> X = {{1.0, 2.0}};
    expect_agree(tape_gradients(params,
                                [&](const std::vector<V>& p) {
                                    auto y = mlp_on_tape({p[0], p[2], p[4]}, {p[1], p[3], p[5]},
                                                         {nn::Activation::sigmoid, nn::Activation::sigmoid, nn::Activation::sigmoid},
                                                         p[0].tape().constant(X));
                                    return mse_loss(y, p[0].tape().constant(Tensor<double>(xt::ones<double>({1, 1}))), Reduction::half_sum);
                                }),
                 hand);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(diagnosis)

namespace {
// A real gradient pair: the 2-layer MLP of mlp_l_layer_notes (source document 001) on a batch of 4, loss = mse mean + L2 term.
struct Case {
    Tensor<double> W = rnd(Shape{3, 5}, 11), b = rnd(Shape{3}, 12), X = rnd(Shape{4, 5}, 13), T = rnd(Shape{4, 3}, 14);
    Tape<double> tape;
    V w = tape.variable(W), bb = tape.variable(b);
    V y = sigmoid(matmul(tape.constant(X), transpose(w)) + bb);
    V data = mse_loss(y, tape.constant(T), Reduction::mean);
    V l2 = sum(square(w)) * 0.01;
    NamedTensors grads()
    {
        tape.backward(data + l2);
        return {{"W", w.grad()}, {"b", bb.grad()}};
    }
    std::string diagnosis_of(const Tensor<double>& hand_w, std::size_t batch = 0)
    {
        const Tensor<double> gb = grads()[1].second;
        CompareOptions o;
        o.batch_size(batch);
        auto r = compare_gradients(tape, {{"data", data}, {"l2", l2}}, {{"W", w}, {"b", bb}}, {{"W", hand_w}, {"b", gb}}, o);
        BOOST_TEST(!r.entries[0].pass);
        BOOST_TEST(r.entries[1].pass, r.table());
        return r.entries[0].diagnosis;
    }
};
void expect_contains(const std::string& s, const std::string& part) { BOOST_TEST(s.find(part) != std::string::npos, "'" << part << "' not in: " << s); }
}  // namespace

BOOST_AUTO_TEST_CASE(names_each_deliberate_mistake)
{
    Case c;
    const Tensor<double> g = c.grads()[0].second;
    expect_contains(c.diagnosis_of(2.0 * g), "constant factor 2");
    expect_contains(c.diagnosis_of(-g), "sign flip");
    expect_contains(c.diagnosis_of(xt::eval(xt::transpose(g))), "transposed");
    expect_contains(c.diagnosis_of(4.0 * g, 4), "sum vs mean");
    expect_contains(c.diagnosis_of(g / 4.0, 4), "mean vs sum");
    // the L2 term dropped
    Tape<double>& t = c.tape;
    t.backward(c.data);
    const Tensor<double> data_only = c.w.grad();
    expect_contains(c.diagnosis_of(data_only), "missing term");
    expect_contains(c.diagnosis_of(data_only), "'l2' is left out");
    // per-sample gradients not summed over the batch
    Tensor<double> per_sample = xt::zeros<double>({4, 3, 5});
    for (std::size_t n = 0; n < 4; ++n) xt::view(per_sample, n) = g / 4.0;
    expect_contains(c.diagnosis_of(per_sample), "missing sum over the batch axis");
    // an unrelated error
    Tensor<double> noisy = g;
    noisy(1, 2) += 0.5;
    expect_contains(c.diagnosis_of(noisy), "only in row(s) 1");
}

BOOST_AUTO_TEST_CASE(printed_trace_regularizer_gradient_is_diagnosed_wrong)
{
    // Source document 000 writes ∂R/∂y_i = γ[(1 − 1/n)(y_i − m_c) − n_c(1/n − 1/N)(m_c − m)] (and calls it
    // "not very sure"); taking n as n_c, its per-sample version is below. The correct one is γ(y_i − 2m_c + m).
    const IndexTensor labels = {0, 1, 1, 2, 0, 2, 2, 1};
    const Tensor<double> Y = rnd(Shape{8, 3}, 3, -2, 2);
    const double gamma = 0.5;
    Tensor<double> correct;
    reference::trace_regularizer(Y, labels, gamma, correct);
    Tensor<double> doc = xt::zeros<double>({8, 3});
    Tensor<double> mc = xt::zeros<double>({3, 3});
    std::vector<double> n(3, 0);
    for (std::size_t i = 0; i < 8; ++i) n[std::size_t(labels(i))] += 1, xt::view(mc, labels(i)) += xt::view(Y, i);
    for (std::size_t c = 0; c < 3; ++c) xt::view(mc, c) /= n[c];
    const Tensor<double> m = xt::mean(Y, {0});
    for (std::size_t i = 0; i < 8; ++i) {
        const auto c = std::size_t(labels(i));
        xt::view(doc, i) = gamma * ((1 - 1 / n[c]) * (xt::view(Y, i) - xt::view(mc, c)) -
                                    n[c] * (1 / n[c] - 1.0 / 8) * (xt::view(mc, c) - m));
    }
    Tape<double> t;
    auto y = t.variable(Y);
    t.backward(trace_reg_from_primitives(y, labels, 3, gamma));
    const auto r = compare_gradients({{"Y", y.grad()}}, {{"Y", doc}});
    BOOST_TEST(!r.all_pass());
    BOOST_TEST(r.entries[0].max_rel_error > 0.1, r.table());
    const auto ok = compare_gradients({{"Y", y.grad()}}, {{"Y", correct}});
    BOOST_TEST(ok.all_pass(), ok.table());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(node_level)

namespace {
/// y = x² with a wrong backward (3x·G instead of 2x·G).
V bad_square(const V& x)
{
    auto op = begin_op("bad_square", {x});
    op.value() = x.value() * x.value();
    return op.finish([](BackwardContext<double>& c) { c.accumulate(0, 3.0 * c.input(0) * c.grad()); });
}
}  // namespace

BOOST_AUTO_TEST_CASE(finds_the_broken_op_among_many)
{
    const Tensor<double> X = rnd(Shape{4, 6}, 1), W1 = rnd(Shape{6, 5}, 2), W2 = rnd(Shape{5, 3}, 3);
    const IndexTensor labels = {0, 2, 1, 1};
    auto build = [&](Tape<double>& t, bool broken) {
        ScopeGuard<double> net(t, "net");
        auto h = V();
        {
            ScopeGuard<double> l1(t, "layer1");
            h = tanh(matmul(t.constant(X), t.variable(W1)));
        }
        ScopeGuard<double> l2(t, "layer2");
        auto z = broken ? bad_square(h) : square(h);
        auto logits = matmul(z, t.variable(W2)) * 0.5 + 0.1;
        return cross_entropy(log_softmax(logits, 1), labels) + mean(exp(logits));
    };
    const NodeCheckReport good = check_nodes([&](Tape<double>& t) { return build(t, false); });
    BOOST_TEST(good.ok(), good.summary());
    BOOST_TEST(good.nodes_checked >= 9u);
    const NodeCheckReport bad = check_nodes([&](Tape<double>& t) { return build(t, true); });
    BOOST_REQUIRE(!bad.ok());
    BOOST_TEST(bad.failures.size() == 1u, bad.summary());
    const NodeFailure& f = bad.failures.front();
    BOOST_TEST(f.op == "bad_square");
    BOOST_TEST(f.scope == "net/layer2");
    BOOST_TEST(f.output_shape == (Shape{4, 5}));
    BOOST_TEST(f.analytic == 1.5 * f.numeric, tt::tolerance(1e-6));
    BOOST_TEST(bad.summary().find("op 'bad_square' at tape position #") != std::string::npos, bad.summary());
}

BOOST_AUTO_TEST_CASE(sequential_layers_name_their_nodes)
{
    nn::Sequential<double> net;
    net.emplace<nn::Linear<double>>(4, 3, true, 1);
    net.emplace<nn::Tanh<double>>();
    net.emplace<nn::Linear<double>>(3, 2, true, 2);
    Tape<double> t;
    ScopeGuard<double> top(t, "net");
    auto y = net(t.constant(rnd(Shape{2, 4}, 3)));
    BOOST_TEST(t.scope_at(y.index()) == "net/2:Linear(3→2)");
    BOOST_TEST(t.scope_at(y.index() - 3) == "net/1:Tanh");  // layer 2 recorded W, b and the fused linear
}

BOOST_AUTO_TEST_CASE(every_built_in_op_passes_node_checking)
{
    // A graph touching most op families; check_nodes tests each node's VJP on its own.
    const Tensor<double> X = rnd(Shape{2, 1, 6, 6}, 5, 0, 1), V1 = rnd(Shape{2, 1, 3, 3}, 6), q = rnd(Shape{2}, 7),
                         W = rnd(Shape{8, 3}, 8);
    const IndexTensor labels = {1, 2};
    auto r = check_nodes([&](Tape<double>& t) {
        auto c = tanh(conv2d(t.constant(X), t.variable(V1), t.variable(q), Conv2dOptions().padding(1)));  // no ties for max pooling
        auto p = concatenate<double>({max_pool2d(c, 2), avg_pool2d(c, 2)}, 1);   // (2,4,3,3)
        auto f = slice(flatten(p), 1, 0, 8);                                    // (2,8)
        auto logits = matmul(relu(sigmoid(f) + 0.3), t.variable(W));
        auto s = sum(softmax(logits, 1) * logits, {1}, true) + max(logits, 1, true) + sqrt(abs(logits) + 1.0);
        return cross_entropy(logits, labels) + mean(pow(s, 2.0)) + sum(pick(log_softmax(logits), labels));
    });
    BOOST_TEST(r.ok(), r.summary());
    BOOST_TEST_MESSAGE(r.summary());
    // ok() also holds when nothing was checked: count, independently, the nodes that have a
    // backward (an op, not a leaf, with an input that requires grad) on the same graph.
    Tape<double> t;
    auto c = tanh(conv2d(t.constant(X), t.variable(V1), t.variable(q), Conv2dOptions().padding(1)));
    auto p = concatenate<double>({max_pool2d(c, 2), avg_pool2d(c, 2)}, 1);
    auto f = slice(flatten(p), 1, 0, 8);
    auto logits = matmul(relu(sigmoid(f) + 0.3), t.variable(W));
    auto s = sum(softmax(logits, 1) * logits, {1}, true) + max(logits, 1, true) + sqrt(abs(logits) + 1.0);
    cross_entropy(logits, labels) + mean(pow(s, 2.0)) + sum(pick(log_softmax(logits), labels));
    std::size_t with_backward = 0;
    for (std::uint32_t i = 0; i < t.size(); ++i) {
        const Var<double> v = t.at(i);
        const std::string op = v.op();
        if (v.requires_grad() && op != "variable" && op != "constant" && op != "param") ++with_backward;
    }
    BOOST_TEST(with_backward >= 25u);
    BOOST_TEST(r.nodes_checked == with_backward);
    BOOST_TEST(r.elements_checked > 100u);
}

BOOST_AUTO_TEST_SUITE_END()

// Hand-derived vs automatic gradients for the five source documents: for each, the hand formula
// (xgrad::reference) is compared with the tape, parameter by parameter, and the table says where they
// differ and why. The worked 2-3-2-1 example (source document 003) is printed value by value with
// 17 significant digits. docs/sources.md describes each document and names each network.
// Usage: check_gradients [NAME|NUMBER]...   (default: all), e.g. check_gradients mnist_softmax_sgd 002
#include <fmt/core.h>

#include <cmath>
#include <set>

#include "xgrad/reference/backprop.hpp"
#include "xgrad/nn.hpp"

#include <xtensor/xview.hpp>

using namespace xgrad;
using V = Var<double>;

namespace {

Tensor<double> rnd(const Shape& s, unsigned seed, double lo = -1, double hi = 1)
{
    return rand_uniform(s, seed, lo, hi);
}

V act(nn::Activation a, const V& x)
{
    switch (a) {
        case nn::Activation::sigmoid: return sigmoid(x);
        case nn::Activation::tanh: return tanh(x);
        case nn::Activation::relu: return relu(x);
        default: return x;
    }
}

/// The network of `layers` on the tape (z = x·Wᵀ + b, the documents' layout), with Vars for W, b.
struct TapeMlp {
    std::vector<std::pair<std::string, V>> params;
    V out;
    TapeMlp(Tape<double>& t, const std::vector<reference::Layer<double>>& layers, const Tensor<double>& X)
    {
        out = t.constant(X);
        for (std::size_t l = 0; l < layers.size(); ++l) {
            auto w = t.variable(layers[l].W), b = t.variable(layers[l].b);
            params.emplace_back("W" + std::to_string(l + 1), w);
            params.emplace_back("b" + std::to_string(l + 1), b);
            out = act(layers[l].act, matmul(out, transpose(w)) + b);
        }
    }
};

NamedTensors hand_of(const reference::MlpPass<double>& p)
{
    NamedTensors h;
    for (std::size_t l = 0; l < p.dW.size(); ++l) {
        h.emplace_back("W" + std::to_string(l + 1), p.dW[l]);
        h.emplace_back("b" + std::to_string(l + 1), p.db[l]);
    }
    return h;
}

void header(const std::string& title) { fmt::print("\n=== {} ===\n", title); }

void check_mlp_trace_regularizer()
{
    header("mlp_trace_regularizer (source document 000): 3-layer MLP (sigmoid hidden, linear output), ½Σ‖y − d‖² + ½γ(tr S_w − tr S_b)");
    using nn::Activation;
    const IndexTensor labels = {0, 1, 1, 2, 0, 2, 2, 1};
    const Tensor<double> X = rnd({8, 4}, 1);
    Tensor<double> D = xt::zeros<double>({8, 3});
    for (std::size_t i = 0; i < 8; ++i) D(i, std::size_t(labels(i))) = 1;
    const std::vector<reference::Layer<double>> layers = {{rnd({5, 4}, 2), rnd({5}, 3), Activation::sigmoid},
                                                        {rnd({3, 5}, 4), rnd({3}, 5), Activation::identity}};
    const double gamma = 0.3;
    Tape<double> t;
    TapeMlp net(t, layers, X);
    auto data = mse_loss(net.out, t.constant(D), Reduction::half_sum);
    auto reg = reference::trace_regularizer_on_tape(net.out, labels, 3, gamma);
    const auto hand = reference::mlp_backprop(layers, X, reference::squared_error_with_trace_regularizer(D, labels, gamma));
    fmt::print("hand: δ⁽²⁾ = (y − d) + γ(y_i − 2m_c + m)  vs  tape (regularizer from primitive ops)\n");
    fmt::print("{}", compare_gradients(t, {{"squared error", data}, {"regularizer", reg}}, net.params, hand_of(hand)).table());
    // The document's own regularizer gradient, γ[(1 − 1/n_c)(y_i − m_c) − n_c(1/n_c − 1/N)(m_c − m)]:
    const auto doc = reference::mlp_backprop<double>(layers, X, [&](const Tensor<double>& Y, Tensor<double>& dY) {
        Tensor<double> mc = xt::zeros<double>({3, 3}), m = xt::mean(Y, {0});
        std::vector<double> n(3, 0);
        for (std::size_t i = 0; i < 8; ++i) {
            n[std::size_t(labels(i))] += 1;
            for (std::size_t d = 0; d < 3; ++d) mc(std::size_t(labels(i)), d) += Y(i, d);
        }
        for (std::size_t c = 0; c < 3; ++c)
            for (std::size_t d = 0; d < 3; ++d) mc(c, d) /= n[c];
        dY = Y - D;
        for (std::size_t i = 0; i < 8; ++i) {
            const auto c = std::size_t(labels(i));
            for (std::size_t d = 0; d < 3; ++d)
                dY(i, d) += gamma * ((1 - 1 / n[c]) * (Y(i, d) - mc(c, d)) - n[c] * (1 / n[c] - 1.0 / 8) * (mc(c, d) - m(d)));
        }
        return 0.0;
    });
    fmt::print("the document's formula for the regularizer gradient, same comparison:\n");
    fmt::print("{}", compare_gradients(t, {{"squared error", data}, {"regularizer", reg}}, net.params, hand_of(doc)).table());
}

void check_mlp_l_layer_notes()
{
    header("mlp_l_layer_notes (source document 001): L-layer MLP, E = ½Σ‖y − t‖², δ⁽ˡ⁻¹⁾ = h′(a⁽ˡ⁻¹⁾) ⊙ W⁽ˡ⁻¹⁾ᵀδ⁽ˡ⁾, ∂E/∂W = δzᵀ (batch of 6)");
    using nn::Activation;
    const std::vector<reference::Layer<double>> layers = {
        {rnd({7, 5}, 11), rnd({7}, 12), Activation::sigmoid}, {rnd({6, 7}, 13), rnd({6}, 14), Activation::relu}, {rnd({3, 6}, 15), rnd({3}, 16), Activation::identity}};
    const Tensor<double> X = rnd({6, 5}, 17), T = rnd({6, 3}, 18);
    Tape<double> t;
    TapeMlp net(t, layers, X);
    auto loss = mse_loss(net.out, t.constant(T), Reduction::half_sum);
    const auto hand = reference::mlp_backprop(layers, X, reference::half_squared_error(T));
    fmt::print("{}", compare_gradients(t, {{"loss", loss}}, net.params, hand_of(hand)).table());
    // Equation (44) of the document drops the ½: with E = Σ(y − t)² the tape's gradient is twice the δ-recursion's.
    auto loss44 = mse_loss(net.out, t.constant(T), Reduction::sum);
    fmt::print("with the document's equation (44), E = ΣΣ(y − T)² (no ½), against the same hand gradients:\n");
    CompareOptions o;
    fmt::print("{}", compare_gradients(t, {{"loss (44)", loss44}}, net.params, hand_of(hand), o).table());
}

void check_cnn_sigmoid_avgpool()
{
    header("cnn_sigmoid_avgpool (source document 002): CNN: conv (valid) → sigmoid → 2×2 average pool → fully connected → softmax cross-entropy");
    const std::size_t n = 3, h = 10, o = 3, k = 3, F = o * 4 * 4;
    const reference::CnnParams<double> p{rnd({o, 1, k, k}, 21), rnd({o}, 22), rnd({4, F}, 23), rnd({4}, 24)};
    const Tensor<double> X = rnd({n, 1, h, h}, 25, 0, 1);
    const IndexTensor labels = {0, 3, 1};
    Tape<double> t;
    auto V_ = t.variable(p.V), q = t.variable(p.q), W = t.variable(p.W), b = t.variable(p.b);
    auto a = flatten(avg_pool2d(sigmoid(conv2d(t.constant(X), V_, q)), 2));
    auto loss = cross_entropy(matmul(a, transpose(W)) + b, labels, Reduction::sum);
    const auto g = reference::cnn_sigmoid_avgpool_backprop(p, X, labels);
    const std::vector<std::pair<std::string, V>> wrt = {{"V (conv)", V_}, {"q (conv)", q}, {"W (fc)", W}, {"b (fc)", b}};
    fmt::print("{}", compare_gradients(t, {{"cross-entropy", loss}}, wrt,
                                       {{"V (conv)", g.dV}, {"q (conv)", g.dq}, {"W (fc)", g.dW}, {"b (fc)", g.db}})
                         .table());
    // The document: "the pooling derivative is always ¼, so it has no effect on gradient descent" — dropping it:
    fmt::print("dropping the pooling factor ¼, as the document suggests:\n");
    fmt::print("{}", compare_gradients(t, {{"cross-entropy", loss}}, wrt,
                                       {{"V (conv)", 4.0 * g.dV}, {"q (conv)", 4.0 * g.dq}, {"W (fc)", g.dW}, {"b (fc)", g.db}})
                         .table());
}

void print_vec(const std::string& name, const Tensor<double>& v)
{
    fmt::print("  {:<10}", name);
    for (double x : v) fmt::print(" {:>24.17g}", x);
    fmt::print("\n");
}

void check_worked_example_2_3_2_1()
{
    header("worked_example_2_3_2_1 (source document 003): the worked 2-3-2-1 sigmoid example, x = [1 2], y = 1, E = ½(y − ŷ)², W ← W − η(δ nᵀ + W), η = 0.1");
    const auto layers = reference::worked_example_2_3_2_1_parameters();
    const auto tr = reference::worked_example_2_3_2_1_step(layers, Tensor<double>{1.0, 2.0}, 1.0, 0.1);
    fmt::print("forward\n");
    for (std::size_t k = 0; k < 3; ++k) {
        print_vec("z(" + std::to_string(k + 1) + ")", tr.z[k]);
        print_vec("n(" + std::to_string(k + 1) + ")", tr.n[k]);
    }
    fmt::print("  {:<10} {:>24.17g}\n  {:<10} {:>24.17g}\n", "y − ŷ", 1.0 - tr.n[2](0), "E", tr.loss);
    fmt::print("error terms δ(k) = ∂E/∂z(k)\n");
    for (std::size_t k = 3; k-- > 0;) print_vec("δ(" + std::to_string(k + 1) + ")", tr.delta[k]);
    fmt::print("updated parameters\n");
    for (std::size_t k = 0; k < 3; ++k) {
        const auto& W = tr.after[k].W;
        for (std::size_t r = 0; r < W.shape()[0]; ++r)
            print_vec(r == 0 ? "W(" + std::to_string(k + 1) + ")" : "", xt::eval(xt::view(W, r, xt::all())));
        print_vec("b(" + std::to_string(k + 1) + ")", tr.after[k].b);
    }
    Tape<double> t;
    const Tensor<double> X = {{1.0, 2.0}};
    TapeMlp net(t, layers, X);
    auto loss = mse_loss(net.out, t.constant(Tensor<double>(xt::ones<double>({1, 1}))), Reduction::half_sum);
    NamedTensors hand;
    for (std::size_t k = 0; k < 3; ++k) {
        hand.emplace_back("W" + std::to_string(k + 1), tr.dW[k]);
        hand.emplace_back("b" + std::to_string(k + 1), tr.db[k]);
    }
    fmt::print("gradients, hand vs tape\n{}", compare_gradients(t, {{"E", loss}}, net.params, hand).table());
    fmt::print("where the document is wrong (its printed value → the correct one):\n");
    fmt::print("  f5′(z5) = σ′(z5):  0.000125939063189 → {:.15g}   (z5 = {:.15g})\n", tr.n[1](1) * (1 - tr.n[1](1)), tr.z[1](1));
    fmt::print("  δ(2)₁:  −0.0000000015233151 → {:.15g}   (a factor 10 lost)\n", tr.delta[1](0));
    fmt::print("  δ(2)₂:  −0.000000002317415 → {:.15g}   (from the wrong f5′)\n", tr.delta[1](1));
    fmt::print("  δ(1) is a 3-vector: [{:.15g}, {:.15g}, {:.15g}] (the document prints 2 entries, then 3 other values)\n",
               tr.delta[0](0), tr.delta[0](1), tr.delta[0](2));
}

void check_mnist_softmax_sgd()
{
    header("mnist_softmax_sgd (source document 004): softmax network l0 = tanh(x + b0), y = softmax(l0·W1 + b1), E = Σ(y − t)² (batch of 4, 784 inputs)");
    const Tensor<double> X = rnd({4, 784}, 31, 0, 1), b0 = rnd({784}, 32, -0.1, 0.1), W1 = rnd({784, 10}, 33, -0.087, 0.087),
                         b1 = rnd({10}, 34, -0.1, 0.1);
    Tensor<double> T = xt::zeros<double>({4, 10});
    for (std::size_t i = 0; i < 4; ++i) T(i, (3 * i) % 10) = 1;
    Tape<double> t;
    auto vb0 = t.variable(b0), vW1 = t.variable(W1), vb1 = t.variable(b1);
    auto y = softmax(matmul(tanh(t.constant(X) + vb0), vW1) + vb1, 1);
    auto loss = mse_loss(y, t.constant(T), Reduction::sum);
    const auto g = reference::mnist_softmax_sgd_backprop(b0, W1, b1, X, T);
    fmt::print("{}", compare_gradients(t, {{"E", loss}}, {{"b0", vb0}, {"W1", vW1}, {"b1", vb1}},
                                       {{"b0", g.db0}, {"W1", g.dW1}, {"b1", g.db1}})
                         .table());
}

}  // namespace

int main(int argc, char** argv)
{
    std::set<std::string> which;
    for (int i = 1; i < argc; ++i) which.insert(argv[i]);
    // Each network by its name or by its source document's number.
    auto want = [&](const char* name, const char* number) { return which.empty() || which.count(name) || which.count(number); };
    try {
        if (want("mlp_trace_regularizer", "000")) check_mlp_trace_regularizer();
        if (want("mlp_l_layer_notes", "001")) check_mlp_l_layer_notes();
        if (want("cnn_sigmoid_avgpool", "002")) check_cnn_sigmoid_avgpool();
        if (want("worked_example_2_3_2_1", "003")) check_worked_example_2_3_2_1();
        if (want("mnist_softmax_sgd", "004")) check_mnist_softmax_sgd();
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
    }
    return 0;
}

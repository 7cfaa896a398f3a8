// nn: layers through gradcheck_module (float64), optimizers against hand-computed updates,
// weight files (round trip, corrupt and mismatched files, atomic save), training smoke tests.
#define BOOST_TEST_MODULE nn
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::test::rnd;
namespace tt = boost::test_tools;
namespace fs = std::filesystem;

namespace {
void expect_module_ok(Module<double>& m, const Tensor<double>& x,
                      const std::function<Var<double>(const Var<double>&)>& loss = nullptr)
{
    auto r = gradcheck_module(m, x, loss);
    BOOST_TEST(r.ok, r.summary());
    for (const auto& in : r.inputs) BOOST_TEST_MESSAGE(in.name << " max abs error " << in.max_abs_error);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(layers)

BOOST_AUTO_TEST_CASE(linear_and_mlp_gradcheck)
{
    Linear<double> lin(5, 3, true, 1);
    expect_module_ok(lin, rnd(Shape{4, 5}, 1));
    Linear<double> nobias(5, 2, false, 2);
    BOOST_TEST(nobias.named_parameters().size() == 1u);
    expect_module_ok(nobias, rnd(Shape{1, 5}, 2));
    MLP<double> mlp({6, 8, 4, 3}, Activation::sigmoid, Activation::identity, 3);
    BOOST_TEST(mlp.named_parameters()[2].first == "2.weight");  // Linear, Sigmoid, Linear, ...
    BOOST_TEST(mlp.num_parameters() == 6u * 8 + 8 + 8 * 4 + 4 + 4 * 3 + 3);
    expect_module_ok(mlp, rnd(Shape{5, 6}, 3));
    MLP<double> tanh_mlp({4, 6, 2}, Activation::tanh, Activation::sigmoid, 4);
    expect_module_ok(tanh_mlp, rnd(Shape{3, 4}, 4));
}

BOOST_AUTO_TEST_CASE(conv_and_pool_modules_gradcheck)
{
    for (auto spec : {Conv2dOptions(2, 3, 3).padding(1), Conv2dOptions(1, 2, 3).stride(2).bias(false), Conv2dOptions(2, 2, 2).stride(2).padding(1)}) {
        Conv2d<double> conv(spec, 5);
        expect_module_ok(conv, rnd(Shape{2, spec.in_channels(), 7, 6}, 6));
    }
    // a small CNN in the style of cnn_sigmoid_avgpool (source document 002): conv → sigmoid → avgpool → flatten → linear, cross-entropy
    Sequential<double> net;
    net.emplace<Conv2d<double>>(Conv2dOptions(1, 2, 3), 7);
    net.emplace<Sigmoid<double>>();
    net.emplace<AvgPool2d<double>>(2);
    net.emplace<Flatten<double>>();
    net.emplace<Linear<double>>(2 * 3 * 3, 3, true, 8);
    const IndexTensor labels = {0, 2};
    expect_module_ok(net, rnd(Shape{2, 1, 8, 8}, 9), [&](const Var<double>& y) { return cross_entropy(y, labels); });
    Sequential<double> mp;
    mp.emplace<Conv2d<double>>(Conv2dOptions(1, 2, 3).padding(1), 10);
    mp.emplace<MaxPool2d<double>>(2);
    expect_module_ok(mp, rnd(Shape{1, 1, 5, 5}, 11));
}

BOOST_AUTO_TEST_CASE(losses_with_modules_gradcheck)
{
    MLP<double> net({4, 5, 3}, Activation::sigmoid, Activation::identity, 12);
    const IndexTensor labels = {0, 1, 1, 2, 0};
    const Tensor<double> x = rnd(Shape{5, 4}, 13);
    // mlp_trace_regularizer (source document 000): ½Σ‖y − d‖² + ½γ(tr S_w − tr S_b)
    expect_module_ok(net, x, [&](const Var<double>& y) {
        auto d = one_hot(y.tape(), labels, 3);
        return mse_loss(y, d, Reduction::half_sum) + trace_scatter_loss(y, labels, 0.1);
    });
    expect_module_ok(net, x, [&](const Var<double>& y) { return nll_loss(log_softmax(y, 1), labels); });
}

BOOST_AUTO_TEST_CASE(float_module_gradcheck_in_a_double_twin)
{
    MLP<float> net({4, 5, 3}, Activation::tanh, Activation::identity, 21);
    MLP<double> twin({4, 5, 3}, Activation::tanh, Activation::identity, 99);  // other values: overwritten
    const Tensor<float> before = net.at<Linear<float>>(0).weight().value();
    const IndexTensor labels = {0, 2};
    const GradcheckReport r = gradcheck_module(net, twin, xt::cast<float>(rnd(Shape{2, 4}, 22)),
                                               [&](const Var<double>& y) { return cross_entropy(y, labels); });
    BOOST_TEST(r.ok, r.summary());
    BOOST_TEST(r.inputs.size() == 5u);  // 4 parameters and the input
    BOOST_TEST(r.inputs[0].name == "0.weight");
    BOOST_TEST(twin.at<Linear<double>>(2).weight().value() == xt::cast<double>(net.at<Linear<float>>(2).weight().value()));
    BOOST_TEST(net.at<Linear<float>>(0).weight().value() == before);
    MLP<double> other({4, 6, 3}, Activation::tanh, Activation::identity, 1);
    try {
        gradcheck_module(net, other, Tensor<float>::from_shape({1, 4}));
        BOOST_ERROR("a twin of another shape was accepted");
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()) == "gradcheck_module: parameter 0 is '0.weight' (5,4) in the float module but "
                                            "'0.weight' (6,4) in its double twin");
    }
}

BOOST_AUTO_TEST_CASE(layers_are_classes_with_typed_access)
{
    Sequential<double> net;
    net.emplace<Conv2d<double>>(Conv2dOptions(1, 2, 3), 1);
    net.emplace<ReLU<double>>();
    net.emplace<MaxPool2d<double>>(2);
    net.emplace<Flatten<double>>();
    net.emplace<Linear<double>>(2 * 3 * 3, 4, true, 2);
    net.emplace<LogSoftmax<double>>(1);
    Linear<double>& fc = net.at<Linear<double>>(4);
    BOOST_TEST(&fc == &net[4]);
    BOOST_TEST(fc.in_features() == 18u);
    BOOST_TEST(fc.out_features() == 4u);
    BOOST_TEST(&fc.weight() == net.named_parameters()[2].second);  // "4.weight"
    BOOST_TEST(net.named_parameters()[2].first == "4.weight");
    BOOST_TEST(net.at<MaxPool2d<double>>(2).kernel_size() == 2u);
    BOOST_TEST(net.at<MaxPool2d<double>>(2).stride() == 2u);  // 0 means the kernel size
    BOOST_TEST(MaxPool2d<double>(3, 1).stride() == 1u);
    BOOST_TEST(net.at<LogSoftmax<double>>(5).dim() == 1);
    BOOST_TEST(net.at<Flatten<double>>(3).start_dim() == 1);
    MLP<float> mlp({3, 2, 2});
    BOOST_TEST(mlp.at<Linear<float>>(2).in_features() == 2u);
    BOOST_TEST(mlp.at<ReLU<float>>(1).describe() == "ReLU");
    // the classes compute what the ops compute
    Tape<double> t;
    const Tensor<double> x = Tensor<double>{{-1, 0.5, 2}};
    BOOST_TEST(ReLU<double>()(t.constant(x)).value() == (Tensor<double>{{0, 0.5, 2}}));
    BOOST_TEST(xt::amax(xt::abs(Tanh<double>()(t.constant(x)).value() - xt::tanh(x)))() < 1e-15);
    BOOST_TEST(Sigmoid<double>()(t.constant(x)).value() == sigmoid(t.constant(x)).value());
    BOOST_TEST(Softmax<double>(1)(t.constant(x)).value() == softmax(t.constant(x), 1).value());
    BOOST_TEST(AvgPool2d<double>(2)(t.constant(Tensor<double>{{{{1, 2}, {3, 6}}}})).value()(0, 0, 0, 0) == 3.0);
    BOOST_TEST(Lambda<double>("double", [](const Var<double>& v) { return v * 2.0; })(t.constant(x)).value() == 2.0 * x);
}

BOOST_AUTO_TEST_CASE(lookup_by_name)
{
    Sequential<double> net;
    net.emplace<Linear<double>>(3, 4, true, 1);
    net.emplace<ReLU<double>>();
    net.emplace<Linear<double>>(4, 2, false, 2);
    BOOST_TEST(&net.parameter("0.weight") == &net.at<Linear<double>>(0).weight());
    BOOST_TEST(&net.parameter("0.bias") == net.at<Linear<double>>(0).bias());
    BOOST_TEST(&net.parameter("2.weight") == &net.at<Linear<double>>(2).weight());
    BOOST_TEST(&net.child("2") == &net[2]);
    const auto children = net.named_children();
    BOOST_TEST(children.size() == 3u);
    BOOST_TEST(children[1].first == "1");
    BOOST_TEST(children[1].second == &net[1]);
    try {
        net.parameter("2.bias");
        BOOST_ERROR("no throw");
    } catch (const std::out_of_range& e) {
        BOOST_TEST(std::string(e.what()) ==
                   "Module::parameter: '2.bias' not found; the parameters are: 0.weight, 0.bias, 2.weight");
    }
    try {
        net[1].child("x");
        BOOST_ERROR("no throw");
    } catch (const std::out_of_range& e) {
        BOOST_TEST(std::string(e.what()) == "Module::child: 'x' not found; the children are: none");
    }
}

BOOST_AUTO_TEST_CASE(layers_without_a_seed_differ_and_manual_seed_repeats_them)
{
    init::manual_seed(42);
    Linear<double> a(5, 5), b(5, 5);
    MLP<double> m1({5, 5, 5});
    BOOST_TEST(xt::amax(xt::abs(a.weight().value() - b.weight().value()))() > 0.01);  // not the same draw twice
    const auto w1 = m1.named_parameters();
    BOOST_TEST(xt::amax(xt::abs(w1[0].second->value() - w1[2].second->value()))() > 0.01);
    init::manual_seed(42);
    Linear<double> a2(5, 5), b2(5, 5);
    MLP<double> m2({5, 5, 5});
    BOOST_TEST(a2.weight().value() == a.weight().value());  // bit-identical
    BOOST_TEST(b2.weight().value() == b.weight().value());
    const auto w2 = m2.named_parameters();
    for (std::size_t i = 0; i < w1.size(); ++i) BOOST_TEST(w2[i].second->value() == w1[i].second->value());
    // an explicit seed does not draw from the generator, and gives the same layer every time
    Linear<double> s1(5, 5, true, 7), s2(5, 5, true, 7);
    BOOST_TEST(s1.weight().value() == s2.weight().value());
    init::manual_seed(42);
    Linear<double> a3(5, 5);
    BOOST_TEST(a3.weight().value() == a.weight().value());
}

BOOST_AUTO_TEST_CASE(shape_errors_name_the_layer)
{
    Linear<float> lin(784, 10);
    Tape<float> t;
    try {
        lin(t.constant(Tensor<float>::from_shape({64, 100})));
        BOOST_ERROR("no throw");
    } catch (const ShapeError& e) {
        BOOST_TEST(std::string(e.what()) == "Linear(784→10): expected input (B,784), got (64,100)");
    }
    Conv2d<float> conv(Conv2dOptions(3, 8, 3));
    BOOST_CHECK_THROW(conv(t.constant(Tensor<float>::from_shape({2, 1, 8, 8}))), ShapeError);
}

BOOST_AUTO_TEST_CASE(dropout_train_and_eval)
{
    Dropout<double> d(0.5, 1);
    Tape<double> t;
    auto x = t.variable(xt::ones<double>({1000}));
    auto y = d(x);
    const double kept = double(xt::sum(xt::cast<double>(xt::not_equal(y.value(), 0.0)))());
    BOOST_TEST(kept > 430.0);
    BOOST_TEST(kept < 570.0);
    BOOST_TEST(xt::amax(y.value())() == 2.0);  // survivors scaled by 1/(1−p)
    d.eval();
    BOOST_TEST(d(x).value() == x.value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(optimizers)

namespace {
// One parameter w = [1, −2] whose gradient we set by hand.
struct OneParam {
    Parameter<double> p{Tensor<double>{1.0, -2.0}};
    void set_grad(double a, double b) { p.grad() = Tensor<double>{a, b}; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(sgd_plain_momentum_nesterov_decay)
{
    {  // plain: w − lr·g = [1 − 0.1·0.5, −2 − 0.1·(−1)] = [0.95, −1.9]
        OneParam o;
        SGD<double> sgd({&o.p}, {0.1});
        o.set_grad(0.5, -1.0);
        sgd.step();
        BOOST_TEST(o.p.value()(0) == 0.95, tt::tolerance(1e-15));
        BOOST_TEST(o.p.value()(1) == -1.9, tt::tolerance(1e-15));
    }
    {  // momentum 0.9: v1 = g1 = 0.5, w = 1 − 0.05 = 0.95; v2 = 0.9·0.5 + 0.2 = 0.65, w = 0.95 − 0.065 = 0.885
        OneParam o;
        SGD<double> sgd({&o.p}, SGDOptions(0.1).momentum(0.9));
        o.set_grad(0.5, 0);
        sgd.step();
        o.set_grad(0.2, 0);
        sgd.step();
        BOOST_TEST(o.p.value()(0) == 0.885, tt::tolerance(1e-14));
    }
    {  // nesterov: step 1 d = g + μv = 0.5 + 0.45 = 0.95 → w = 0.905; step 2 v = 0.65, d = 0.2 + 0.585 = 0.785 → 0.8265
        OneParam o;
        SGD<double> sgd({&o.p}, SGDOptions(0.1).momentum(0.9).nesterov(true));
        o.set_grad(0.5, 0);
        sgd.step();
        BOOST_TEST(o.p.value()(0) == 0.905, tt::tolerance(1e-14));
        o.set_grad(0.2, 0);
        sgd.step();
        BOOST_TEST(o.p.value()(0) == 0.8265, tt::tolerance(1e-14));
    }
    {  // worked_example_2_3_2_1 (source document 003): W ← W − η(δnᵀ + W), η = 0.1: w = 1 − 0.1(0.5 + 1) = 0.85; −2 − 0.1(−1 − 2) = −1.7
        OneParam o;
        SGD<double> sgd({&o.p}, SGDOptions(0.1).weight_decay(1.0));
        o.set_grad(0.5, -1.0);
        sgd.step();
        BOOST_TEST(o.p.value()(0) == 0.85, tt::tolerance(1e-15));
        BOOST_TEST(o.p.value()(1) == -1.7, tt::tolerance(1e-15));
    }
}

BOOST_AUTO_TEST_CASE(adam_bias_correction_and_decay)
{
    {  // step 1: m̂ = g, v̂ = g² → w −= lr·g/(|g| + ε) ≈ lr·sign(g)
        OneParam o;
        Adam<double> adam({&o.p}, {0.01});
        o.set_grad(0.5, -3.0);
        adam.step();
        BOOST_TEST(o.p.value()(0) == 1.0 - 0.01 * 0.5 / (0.5 + 1e-8), tt::tolerance(1e-14));
        BOOST_TEST(o.p.value()(1) == -2.0 + 0.01 * 3.0 / (3.0 + 1e-8), tt::tolerance(1e-14));
        // step 2 with g = 0.1: m = 0.9·0.05 + 0.01 = 0.055, v = 0.999·0.00025 + 0.001·0.01 = 0.00025975
        o.set_grad(0.1, 0);
        const double before = o.p.value()(0);
        adam.step();
        const double mhat = 0.055 / (1 - 0.81), vhat = 0.00025975 / (1 - 0.998001);
        BOOST_TEST(o.p.value()(0) == before - 0.01 * mhat / (std::sqrt(vhat) + 1e-8), tt::tolerance(1e-12));
    }
    {  // coupled (Adam, wd 0.1): g' = g + 0.1·w = 0.5 + 0.1 = 0.6, step ≈ lr. Decoupled (AdamW): w·(1 − lr·wd) − lr·g/|g|
        OneParam a, b;
        Adam<double> adam({&a.p}, AdamOptions(0.01).weight_decay(0.1));
        AdamW<double> adamw({&b.p}, AdamOptions(0.01).betas(0.9, 0.999).eps(1e-8).weight_decay(0.1));
        a.set_grad(0.5, 0);
        b.set_grad(0.5, 0);
        adam.step();
        adamw.step();
        BOOST_TEST(a.p.value()(0) == 1.0 - 0.01 * 0.6 / (0.6 + 1e-8), tt::tolerance(1e-14));
        BOOST_TEST(b.p.value()(0) == 1.0 * (1 - 0.01 * 0.1) - 0.01 * 0.5 / (0.5 + 1e-8), tt::tolerance(1e-14));
    }
}

BOOST_AUTO_TEST_CASE(lr_schedules)
{
    StepLR step(0.1, 3, 0.5);
    BOOST_TEST(step.lr(0) == 0.1);
    BOOST_TEST(step.lr(2) == 0.1);
    BOOST_TEST(step.lr(3) == 0.05);
    BOOST_TEST(step.lr(7) == 0.025);
    CosineLR cos(1.0, 10, 0.1);
    BOOST_TEST(cos.lr(0) == 1.0, tt::tolerance(1e-15));
    BOOST_TEST(cos.lr(5) == 0.55, tt::tolerance(1e-15));
    BOOST_TEST(cos.lr(10) == 0.1, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(initializers_bounds_and_seeds)
{
    init::Rng r1(7), r2(7);
    Tensor<float> a = Tensor<float>::from_shape({784, 10}), b = Tensor<float>::from_shape({784, 10});
    init::xavier_uniform(a, 784, 10, r1);
    init::xavier_uniform(b, 784, 10, r2);
    BOOST_TEST(a == b);  // same seed, same weights
    const double bound = std::sqrt(6.0 / 794.0);
    BOOST_TEST(double(xt::amax(xt::abs(a))()) <= bound);
    BOOST_TEST(double(xt::amax(xt::abs(a))()) > 0.95 * bound);  // 7840 draws reach the edge
    const double var = double(xt::mean(xt::square(a))());      // U(±a) has variance a²/3
    BOOST_TEST(var == bound * bound / 3, tt::tolerance(0.05));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(weight_files)

namespace {
fs::path temp_dir()
{
    fs::path d = fs::temp_directory_path() / ("xgrad_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
}
std::string read_all(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_is_bit_exact)
{
    const fs::path f = temp_dir() / "mlp.safetensors";
    MLP<float> a({7, 5, 3}, Activation::relu, Activation::identity, 1), b({7, 5, 3}, Activation::relu, Activation::identity, 2);
    BOOST_TEST(a.parameters()[0]->value() != b.parameters()[0]->value());
    save_weights(a, f.string());
    load_weights(b, f.string());
    for (std::size_t i = 0; i < a.parameters().size(); ++i) {
        const auto& x = a.parameters()[i]->value();
        const auto& y = b.parameters()[i]->value();
        BOOST_TEST(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
    }
    // the header is the documented safetensors layout
    const std::string bytes = read_all(f);
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    const std::string header = bytes.substr(8, n);
    BOOST_TEST(header.find("\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,7],\"data_offsets\":[0,140]}") != std::string::npos,
               header);
    BOOST_TEST(bytes.size() == 8 + n + 4 * (35 + 5 + 15 + 3));
}

BOOST_AUTO_TEST_CASE(bad_files_are_rejected_with_path_and_reason)
{
    const fs::path dir = temp_dir();
    const fs::path good = dir / "good.safetensors";
    MLP<float> a({4, 3, 2}, Activation::relu, Activation::identity, 1);
    save_weights(a, good.string());
    const std::string bytes = read_all(good);
    auto expect = [&](const fs::path& p, Module<float>& m, const std::vector<std::string>& parts) {
        const Tensor<float> before = m.parameters()[0]->value();
        try {
            load_weights(m, p.string());
            BOOST_ERROR("no throw for " << p);
        } catch (const WeightFileError& e) {
            const std::string msg = e.what();
            BOOST_TEST(msg.find(p.string()) != std::string::npos, msg);
            for (const auto& s : parts) BOOST_TEST(msg.find(s) != std::string::npos, "'" << s << "' not in " << msg);
        }
        BOOST_TEST(m.parameters()[0]->value() == before);  // unchanged on error
    };
    const fs::path trunc = dir / "truncated.safetensors";
    std::ofstream(trunc, std::ios::binary) << bytes.substr(0, bytes.size() - 10);
    expect(trunc, a, {"truncated"});
    const fs::path tiny = dir / "tiny.safetensors";
    std::ofstream(tiny, std::ios::binary) << "abc";
    expect(tiny, a, {"truncated", "3 bytes"});
    const fs::path garbage = dir / "garbage.safetensors";
    std::string g = bytes;
    g[8] = '#';  // the header's opening brace
    std::ofstream(garbage, std::ios::binary) << g;
    expect(garbage, a, {"not valid JSON"});
    MLP<float> other({4, 6, 2}, Activation::relu, Activation::identity, 1);
    expect(good, other, {"'0.weight' has shape (3,4), the module wants (6,4)", "'2.weight' has shape (2,3)"});
    MLP<float> deeper({4, 3, 2, 2}, Activation::relu, Activation::identity, 1);
    expect(good, deeper, {"missing '4.weight'"});
    MLP<double> dbl({4, 3, 2}, Activation::relu, Activation::identity, 1);
    try {
        load_weights(dbl, good.string());
        BOOST_ERROR("no throw");
    } catch (const WeightFileError& e) {
        BOOST_TEST(std::string(e.what()).find("dtype F32, the module wants F64") != std::string::npos, e.what());
    }
    expect(dir / "does_not_exist.safetensors", a, {"cannot open"});
}

BOOST_AUTO_TEST_CASE(linear_weights_are_out_in_and_old_in_out_files_are_refused)
{
    // PyTorch's layout: weight (out, in), y = x·Wᵀ + b.
    Linear<double> lin(3, 2, true, 1);
    BOOST_TEST(lin.weight().shape() == (Shape{2, 3}), boost::test_tools::per_element());
    lin.weight().value() = Tensor<double>{{1, 2, 3}, {4, 5, 6}};
    lin.bias()->value() = Tensor<double>{10, 20};
    Tape<double> t;
    BOOST_TEST(lin(t.constant(Tensor<double>{{1, 0, -1}})).value() == (Tensor<double>{{8, 18}}));
    // A file of the old (in, out) layout: the load fails naming each tensor and both shapes, and
    // nothing is transposed behind the user's back.
    const fs::path f = temp_dir() / "old_layout.safetensors";
    const Tensor<float> w0 = xt::zeros<float>({4, 3}), b0 = xt::zeros<float>({3}), w2 = xt::zeros<float>({3, 2}),
                        b2 = xt::zeros<float>({2});
    save_tensors<float>(f.string(), {{"0.weight", &w0}, {"0.bias", &b0}, {"2.weight", &w2}, {"2.bias", &b2}});
    MLP<float> m({4, 3, 2}, Activation::relu, Activation::identity, 1);
    const Tensor<float> before = m.parameters()[0]->value();
    try {
        load_weights(m, f.string());
        BOOST_ERROR("an (in, out) file loaded");
    } catch (const WeightFileError& e) {
        const std::string msg = e.what();
        BOOST_TEST(msg.find("'0.weight' has shape (4,3), the module wants (3,4)") != std::string::npos, msg);
        BOOST_TEST(msg.find("'2.weight' has shape (3,2), the module wants (2,3)") != std::string::npos, msg);
    }
    BOOST_TEST(m.parameters()[0]->value() == before);
}

BOOST_AUTO_TEST_CASE(failed_save_keeps_the_previous_file)
{
    const fs::path f = temp_dir() / "keep.safetensors";
    MLP<float> small({2, 2}, Activation::relu, Activation::identity, 1);
    save_weights(small, f.string());
    const std::string before = read_all(f);
    // A file-size limit makes the write of a large model fail half way (EFBIG), like a full disk.
    MLP<float> big({512, 512, 512}, Activation::relu, Activation::identity, 1);
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit old{};
    getrlimit(RLIMIT_FSIZE, &old);
    rlimit lim = old;
    lim.rlim_cur = 4096;
    setrlimit(RLIMIT_FSIZE, &lim);
    BOOST_CHECK_THROW(save_weights(big, f.string()), WeightFileError);
    setrlimit(RLIMIT_FSIZE, &old);
    BOOST_TEST(read_all(f) == before);
    std::size_t leftovers = 0;
    for (const auto& e : fs::directory_iterator(f.parent_path()))
        leftovers += e.path().filename().string().find(".tmp.") != std::string::npos;
    BOOST_TEST(leftovers == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(training)

BOOST_AUTO_TEST_CASE(mlp_fits_xor)
{
    const Tensor<float> x = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const IndexTensor y = {0, 1, 1, 0};
    MLP<float> net({2, 8, 2}, Activation::tanh, Activation::identity, 3);
    SGD<float> opt(net.parameters(), SGDOptions(0.5).momentum(0.9));
    Tape<float> tape;
    float loss = 0;
    for (int step = 0; step < 300; ++step) {
        opt.zero_grad();
        auto l = cross_entropy(net(tape.borrow(x)), y);
        tape.backward(l);
        opt.step();
        loss = l.item();
        tape.clear();
    }
    BOOST_TEST(loss < 0.05f);
    auto logits = net(tape.borrow(x)).value();
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST((logits(i, 1) > logits(i, 0)) == (y(i) == 1));
}

BOOST_AUTO_TEST_CASE(small_cnn_learns_bar_orientation)
{
    // 8×8 images with one horizontal (label 0) or vertical (label 1) bar at a random place, plus noise.
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> pos(0, 7), lab(0, 1);
    std::normal_distribution<float> noise(0, 0.2f);
    auto make = [&](std::size_t n, Tensor<float>& x, IndexTensor& y) {
        x = Tensor<float>::from_shape({n, 1, 8, 8});
        y = IndexTensor::from_shape({n});
        for (std::size_t i = 0; i < n; ++i) {
            y(i) = lab(rng);
            const int p = pos(rng);
            for (std::size_t r = 0; r < 8; ++r)
                for (std::size_t c = 0; c < 8; ++c)
                    x(i, 0, r, c) = noise(rng) + ((y(i) == 0 ? int(r) : int(c)) == p ? 1.0f : 0.0f);
        }
    };
    Tensor<float> xtr, xte;
    IndexTensor ytr, yte;
    make(256, xtr, ytr);
    make(200, xte, yte);
    Sequential<float> net;
    net.emplace<Conv2d<float>>(Conv2dOptions(1, 4, 3).padding(1), 1);
    net.emplace<ReLU<float>>();
    net.emplace<MaxPool2d<float>>(2);
    net.emplace<Flatten<float>>();
    net.emplace<Linear<float>>(4 * 4 * 4, 2, true, 2);
    Adam<float> opt(net.parameters(), {0.01});
    Tape<float> tape;
    for (int epoch = 0; epoch < 30; ++epoch) {
        opt.zero_grad();
        tape.backward(cross_entropy(net(tape.borrow(xtr)), ytr));
        opt.step();
        tape.clear();
    }
    const Tensor<float> logits = net(tape.borrow(xte)).value();
    std::size_t correct = 0;
    for (std::size_t i = 0; i < 200; ++i) correct += (logits(i, 1) > logits(i, 0)) == (yte(i) == 1);
    BOOST_TEST_MESSAGE("bar orientation test accuracy " << correct / 2.0 << "%");
    BOOST_TEST(correct >= 190u);
}

BOOST_AUTO_TEST_SUITE_END()

// Every code snippet of docs/api.md and docs/modules.md, compiled and run, each asserting what the
// snippet claims. The last test case checks that each ```cpp block of those pages appears here
// verbatim (line by line, indentation aside), so the pages and this file cannot drift apart.
#define BOOST_TEST_MODULE docs_examples
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <xgrad/nn.hpp>
using namespace xgrad;
using namespace xgrad::nn;

namespace fs = std::filesystem;
namespace tt = boost::test_tools;

namespace {

/// A fresh directory for the files a test writes, removed by the destructor.
struct TempDir {
    fs::path path = fs::temp_directory_path() / ("xgrad_docs_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// $XGRAD_DATA/mnist, else <source>/data/mnist.
std::string mnist_dir()
{
    const char* env = std::getenv("XGRAD_DATA");
    return (fs::path(env ? env : XGRAD_SOURCE_DIR "/data") / "mnist").string();
}

bool have_mnist() { return fs::exists(fs::path(mnist_dir()) / "train-images-idx3-ubyte"); }

/// Stand-in for MNIST when it is not on this machine: 10 classes of 28×28 "images", each a fixed
/// random prototype in [0, 1] plus noise, from a fixed seed. Harder than it sounds only a little;
/// the accuracy bound asserted on it is the same.
Dataset synthetic_digits(std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 proto_rng(42), rng(seed);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    std::normal_distribution<float> noise(0.f, 0.35f);
    Tensor<float> protos = Tensor<float>::from_shape({10, 784});
    for (auto& v : protos) v = u(proto_rng) < 0.2f ? 1.f : 0.f;
    Dataset d;
    d.rows = d.cols = 28;
    d.images = Tensor<float>::from_shape({n, 784});
    d.labels = IndexTensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t c = rng() % 10;
        d.labels(i) = Index(c);
        for (std::size_t j = 0; j < 784; ++j) d.images(i, j) = std::clamp(protos(c, j) + noise(rng), 0.f, 1.f);
    }
    return d;
}

}  // namespace

// ======================================================================================== api.md

// ---- Tapes and Vars

BOOST_AUTO_TEST_CASE(tapes_and_vars)
{
    Tape<double> tape;
    Tensor<double> data = {10.0, 20.0, 30.0};
    auto x = tape.variable(Tensor<double>{1.0, 2.0, 3.0});  // a leaf that requires grad (copied)
    auto c = tape.constant(2.0);                            // a 0-d constant (broadcasts)
    auto d = tape.borrow(data);                             // a constant without a copy: `data` must outlive the record
    Parameter<double> w(Tensor<double>{0.5, 0.5, 0.5}, "w");
    auto y = sum(x * tape.param(w) * c + d);                // y = Σ 2·w·x + d = 66
    tape.backward(y);                                       // seed dy/dy = 1
    // x.grad() = 2w = {1, 1, 1};  w.grad() = 2x = {2, 4, 6} (a Parameter's gradient accumulates)
    auto frozen = tape.detach(x * x);                       // a constant copy of x², cut from the graph
    BOOST_TEST(!frozen.requires_grad());

    BOOST_TEST(y.item() == 66.0);
    BOOST_TEST(x.grad() == (Tensor<double>{1.0, 1.0, 1.0}));
    BOOST_TEST(w.grad() == (Tensor<double>{2.0, 4.0, 6.0}));
    BOOST_TEST(!c.requires_grad());
    BOOST_TEST(std::string(y.op()) == "sum");
    BOOST_TEST(frozen.value() == (Tensor<double>{1.0, 4.0, 9.0}));
    BOOST_TEST((x.shape() == Shape{3}));
}

BOOST_AUTO_TEST_CASE(backward_with_a_seed)
{
    Tape<double> tape;
    auto x = tape.variable(Tensor<double>{1.0, 2.0});
    auto y = x * x;                                         // not a scalar: give dL/dy
    tape.backward(y, Tensor<double>{1.0, 0.5});             // x.grad() = 2x ⊙ seed = {2, 2}
    BOOST_CHECK_THROW(tape.backward(y), std::logic_error);  // without a seed the output must have one element
    BOOST_CHECK_THROW(tape.backward(y, Tensor<double>{1.0}), ShapeError);  // seed of the wrong shape

    BOOST_TEST(x.grad() == (Tensor<double>{2.0, 2.0}));
}

BOOST_AUTO_TEST_CASE(clear_and_stale_vars)
{
    Parameter<float> w(Tensor<float>{1.0f}, "w");
    Tape<float> tape;
    for (int step = 0; step < 3; ++step) {
        auto loss = sum(tape.param(w) * 3.0f);
        tape.backward(loss);
        tape.clear();                                   // every Var of this step is now invalid
    }
    // w.grad() = 3 + 3 + 3: parameters accumulate until zero_grad()
    BOOST_TEST(w.grad()(0) == 9.0f);
    w.zero_grad();

    auto v = tape.variable(Tensor<float>{1.0f});
    tape.clear();
    BOOST_TEST(!v.valid());
    BOOST_CHECK_THROW(v.value(), std::logic_error);     // "xgrad: Var: Var #0 is stale: used after ..."
    Tape<float> other;
    auto a = tape.variable(Tensor<float>{1.0f}), b = other.variable(Tensor<float>{2.0f});
    BOOST_CHECK_THROW(a + b, std::logic_error);         // Vars of two tapes do not mix
    BOOST_TEST(w.grad()(0) == 0.0f);
}

BOOST_AUTO_TEST_CASE(no_grad_guard)
{
    Tape<float> tape;
    Parameter<float> w(Tensor<float>{2.0f}, "w");
    Var<float> y;
    {
        NoGradGuard<float> no_grad(tape);               // values only, no backward closures
        y = tape.param(w) * 3.0f;
    }
    BOOST_TEST(!y.requires_grad());
    BOOST_CHECK_THROW(tape.backward(y), std::logic_error);  // nothing to differentiate
    BOOST_TEST(tape.grad_enabled());                    // restored when the guard ends

    BOOST_TEST(y.item() == 6.0f);
}

BOOST_AUTO_TEST_CASE(scopes_and_retained_gradients)
{
    Tape<double> tape;
    auto x = tape.variable(Tensor<double>{1.0, -2.0});
    Var<double> h;
    {
        ScopeGuard<double> scope(tape, "encoder");      // nodes made now record "encoder"
        h = relu(x) * 2.0;
    }
    auto y = sum(h);
    tape.backward(y);
    BOOST_CHECK_THROW(h.grad(), std::logic_error);      // intermediate gradients are released ...
    tape.set_retain_grad(true);                         // ... unless retained
    tape.backward(y);
    // h.grad() = {1, 1};  x.grad() = {2, 0}

    BOOST_TEST(tape.scope_at(h.index()) == "encoder");
    BOOST_TEST(h.grad() == (Tensor<double>{1.0, 1.0}));
    BOOST_TEST(x.grad() == (Tensor<double>{2.0, 0.0}));
}

BOOST_AUTO_TEST_CASE(anomaly_detection_and_shape_errors)
{
    Tape<double> tape;
    tape.set_anomaly_detection(true);                   // every op checks for NaN and Inf
    auto x = tape.variable(Tensor<double>{-1.0});
    BOOST_CHECK_THROW(log(x), AnomalyError);            // "... 'log' (#1 on the tape) produced nan ..."

    auto a = tape.variable(xt::zeros<double>({2, 3}));
    auto b = tape.variable(xt::zeros<double>({2, 3}));
    BOOST_CHECK_THROW(matmul(a, b), ShapeError);        // "matmul: (2,3) x (2,3): inner dimensions 3 and 2 differ"
    try {
        matmul(a, b);
    } catch (const ShapeError& e) {
        BOOST_TEST(std::string(e.what()).find("matmul") != std::string::npos);
    }
}

// ---- Ops

BOOST_AUTO_TEST_CASE(ops_tour)
{
    Tape<double> tape;
    auto x = tape.variable(Tensor<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});  // (2,3)
    auto w = tape.variable(Tensor<double>{{1.0, 0.0, 1.0}, {0.0, 1.0, 0.0}});  // (out 2, in 3)
    auto b = tape.variable(Tensor<double>{0.5, -0.5});

    auto z = linear(x, w, b);                           // x·wᵀ + b: (2,2) = {{4.5, 1.5}, {10.5, 4.5}}
    auto p = softmax(z, 1);                             // rows sum to 1
    auto row_max = max(x, 1);                           // (2) = {3, 6}
    auto col_mean = mean(x, {0});                       // (3) = {2.5, 3.5, 4.5}
    auto flat = reshape(x, {-1});                       // (6)
    auto firsts = slice(x, 1, 0, 2);                    // x[:, 0:2]: (2,2)
    auto both = concatenate({x, x}, 0);                 // (4,3)
    auto chosen = pick(x, IndexTensor{2, 0});           // x[0,2], x[1,0] = {3, 4}
    auto hot = one_hot(tape, IndexTensor{1, 0}, 3);     // (2,3) constant
    auto loss = sum(square(chosen)) + mean(pow(x, 2) * hot);
    tape.backward(loss);                                // x.grad()(0, 2) = 2·3, x.grad()(0, 1) = 2·2/6

    BOOST_TEST(z.value() == (Tensor<double>{{4.5, 1.5}, {10.5, 4.5}}));
    BOOST_TEST(xt::allclose(xt::sum(p.value(), {1}), Tensor<double>{1.0, 1.0}));
    BOOST_TEST(row_max.value() == (Tensor<double>{3.0, 6.0}));
    BOOST_TEST(col_mean.value() == (Tensor<double>{2.5, 3.5, 4.5}));
    BOOST_TEST((flat.shape() == Shape{6}));
    BOOST_TEST((firsts.shape() == Shape{2, 2}));
    BOOST_TEST((both.shape() == Shape{4, 3}));
    BOOST_TEST(chosen.value() == (Tensor<double>{3.0, 4.0}));
    BOOST_TEST((x.grad().shape() == Shape{2, 3}));
    BOOST_TEST(x.grad()(0, 2) == 6.0, tt::tolerance(1e-12));
    BOOST_TEST(x.grad()(0, 1) == 2.0 / 3, tt::tolerance(1e-12));
    BOOST_TEST(x.grad()(1, 0) == 8.0 + 4.0 / 3, tt::tolerance(1e-12));
    BOOST_TEST(w.grad()(0, 0) == 0.0);                  // backward did not reach w: zeros
}

// ---- Reduction and losses

BOOST_AUTO_TEST_CASE(reductions_and_losses)
{
    Tape<float> tape;
    auto logits = tape.variable(Tensor<float>{{2.0f, 0.5f, -1.0f}, {0.0f, 0.0f, 3.0f}});
    IndexTensor labels = {0, 2};
    auto mean_ce = cross_entropy(logits, labels);                  // Reduction::mean: / batch
    auto sum_ce = cross_entropy(logits, labels, Reduction::sum);
    auto same = nll_loss(log_softmax(logits, 1), labels);          // = mean_ce
    auto target = tape.constant(Tensor<float>{{1.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 1.0f}});
    auto half_se = mse_loss(softmax(logits, 1), target, Reduction::half_sum);  // ½ Σ (y − d)²
    BOOST_CHECK_THROW(cross_entropy(logits, labels, Reduction::half_sum), std::invalid_argument);

    auto features = tape.variable(Tensor<float>{{0.0f, 1.0f}, {0.2f, 0.8f}, {1.0f, 0.0f}, {0.8f, 0.2f}});
    IndexTensor classes = {0, 0, 1, 1};
    auto reg = trace_scatter_loss(features, classes, 0.1);          // ½γ (tr S_w − tr S_b)
    ScatterTraces traces = scatter_traces(features.value(), classes);  // no tape: for monitoring

    BOOST_TEST(sum_ce.item() == 2 * mean_ce.item(), tt::tolerance(1e-6f));
    BOOST_TEST(same.item() == mean_ce.item(), tt::tolerance(1e-6f));
    BOOST_TEST(half_se.item() > 0.0f);
    BOOST_TEST(double(reg.item()) == 0.05 * (traces.within - traces.between), tt::tolerance(1e-5));
    BOOST_TEST(traces.within == 0.08, tt::tolerance(1e-5));   // each row 0.1·√2 from its class mean
    BOOST_TEST(traces.between == 1.28, tt::tolerance(1e-5));  // 2 · 2 · ‖(0.4, −0.4)‖²
}

// ---- Data loading

BOOST_AUTO_TEST_CASE(data_loading)
{
    TempDir dir;
    // Two 2×2 images in IDX format, the format MNIST and Fashion-MNIST ship in.
    write_idx(dir / "train-images-idx3-ubyte", IdxArray{{2, 2, 2}, {0, 255, 255, 0, 51, 51, 51, 51}});
    write_idx(dir / "train-labels-idx1-ubyte", IdxArray{{2}, {7, 3}});

    Dataset data = load_idx_dataset(dir.path.string(), "train", "run scripts/fetch-data mnist");
    // data.images (2, 4) floats in [0, 1]; data.labels (2); data.rows = data.cols = 2
    Dataset first = data.slice(0, 1);
    std::vector<std::size_t> order = epoch_order(data.size(), /*seed*/ 1, /*epoch*/ 0);
    Tensor<float> batch;
    IndexTensor batch_labels;
    gather_batch(data, order, 0, 2, batch, batch_labels);          // rows order[0], order[1]
    BOOST_CHECK_THROW(load_idx_dataset(dir.path.string(), "t10k"), DataError);  // missing files

    BOOST_TEST(data.size() == 2u);
    BOOST_TEST(data.rows == 2u);
    BOOST_TEST(data.images(0, 1) == 1.0f);
    BOOST_TEST(data.images(1, 0) == 0.2f, tt::tolerance(1e-6f));
    BOOST_TEST(data.labels(0) == 7);
    BOOST_TEST(first.size() == 1u);
    BOOST_TEST((batch.shape() == Shape{2, 4}));
    BOOST_TEST(batch_labels(0) == data.labels(order[0]));
    IdxArray raw = read_idx(dir / "train-labels-idx1-ubyte");
    BOOST_TEST(raw.data[1] == 3);
}

BOOST_AUTO_TEST_CASE(mnist_loader, *boost::unit_test::precondition([](boost::unit_test::test_unit_id) {
    tt::assertion_result r(have_mnist());
    r.message() << "MNIST not in " << mnist_dir();
    return r;
}))
{
    const std::string mnist = mnist_dir();              // e.g. $XGRAD_DATA/mnist
    Dataset train = load_idx_dataset(mnist, "train");   // 60000 images (60000, 784), labels (60000)
    Dataset test = load_idx_dataset(mnist, "t10k");     // 10000

    BOOST_TEST(train.size() == 60000u);
    BOOST_TEST(test.size() == 10000u);
    BOOST_TEST(train.rows == 28u);
    BOOST_TEST(xt::amax(train.images)() <= 1.0f);
}

// ---- Modules

BOOST_AUTO_TEST_CASE(sequential_mlp_and_lambda)
{
    MLP<float> mlp({784, 128, 10}, Activation::relu, Activation::identity, /*seed*/ 1);
    Linear<float>& first = mlp.at<Linear<float>>(0);   // typed access: Linear, ReLU, Linear
    // first.weight() is (128, 784) as in PyTorch; mlp.named_parameters(): "0.weight", "0.bias", "2.weight", "2.bias"
    BOOST_CHECK_THROW(mlp.at<Linear<float>>(1), std::invalid_argument);  // layer 1 is the ReLU

    Sequential<float> net;
    net.emplace<Linear<float>>(4, 8, /*bias*/ true, /*seed*/ 2);
    net.emplace<Lambda<float>>("swish", [](const Var<float>& v) { return v * sigmoid(v); });
    net.emplace<Dropout<float>>(0.5, /*seed*/ 3);
    net.emplace<Linear<float>>(8, 2, true, 4);
    net.eval();                                         // Dropout is the identity now
    Tape<float> tape;
    Tensor<float> x = xt::ones<float>({5, 4});
    auto y = net(tape.constant(x));
    net.train();                                        // back to training mode

    BOOST_TEST((first.weight().shape() == Shape{128, 784}));
    BOOST_TEST(mlp.named_parameters()[2].first == "2.weight");
    BOOST_TEST(mlp.num_parameters() == 784u * 128 + 128 + 128 * 10 + 10);
    BOOST_TEST((y.shape() == Shape{5, 2}));
    BOOST_TEST(net.is_training());
    BOOST_TEST(net.at<Lambda<float>>(1).name() == "swish");
}

BOOST_AUTO_TEST_CASE(convolutional_layers)
{
    Sequential<float> cnn;
    cnn.emplace<Conv2d<float>>(Conv2dOptions(1, 6, 5).stride(1).padding(2));  // (N,1,28,28) → (N,6,28,28)
    cnn.emplace<ReLU<float>>();
    cnn.emplace<MaxPool2d<float>>(2);                   // → (N,6,14,14)
    cnn.emplace<Conv2d<float>>(Conv2dOptions(6, 16, 5));   // → (N,16,10,10)
    cnn.emplace<Tanh<float>>();
    cnn.emplace<AvgPool2d<float>>(2);                   // → (N,16,5,5)
    cnn.emplace<Flatten<float>>();                      // → (N,400)
    cnn.emplace<Linear<float>>(400, 10);
    cnn.emplace<LogSoftmax<float>>(1);
    Tape<float> tape;
    Tensor<float> images = xt::zeros<float>({3, 784});  // as a Dataset holds them
    auto logp = cnn(reshape(tape.borrow(images), {-1, 1, 28, 28}));

    BOOST_TEST((logp.shape() == Shape{3, 10}));
    BOOST_TEST((cnn.at<Conv2d<float>>(3).weight().shape() == Shape{16, 6, 5, 5}));
    BOOST_TEST(std::exp(logp.value()(0, 0)) > 0.0f);
}

// ---- Optimizers and schedules

BOOST_AUTO_TEST_CASE(optimizers_and_schedules)
{
    Parameter<float> w(Tensor<float>{1.0f}, "w");
    SGD<float> sgd({&w}, SGDOptions(/*lr*/ 0.1).momentum(0.9));
    Tape<float> tape;
    sgd.zero_grad();
    tape.backward(sum(square(tape.param(w))));          // dw = 2w = 2
    sgd.step();                                         // w = 1 − 0.1·2 = 0.8
    tape.clear();

    Parameter<float> u(Tensor<float>{1.0f}, "u");
    Adam<float> adam({&u}, AdamOptions(0.01));                        // AdamW<float> for decoupled weight decay
    u.grad()(0) = 5.0f;
    adam.step();                                        // the first Adam step moves by lr: u = 0.99

    CosineLR cosine(/*base*/ 0.1, /*total_epochs*/ 10);
    StepLR step_lr(0.1, /*step_size*/ 2, /*gamma*/ 0.5);
    for (int epoch = 0; epoch < 4; ++epoch) sgd.set_lr(cosine.lr(epoch));

    BOOST_TEST(w.value()(0) == 0.8f, tt::tolerance(1e-6f));
    BOOST_TEST(u.value()(0) == 0.99f, tt::tolerance(1e-5f));
    BOOST_TEST(adam.steps() == 1u);
    BOOST_TEST(cosine.lr(5) == 0.05, tt::tolerance(1e-12));
    BOOST_TEST(step_lr.lr(3) == 0.05, tt::tolerance(1e-12));
    BOOST_CHECK_THROW(SGD<float>({&w}, {-1.0}), std::invalid_argument);
}

// ---- Training helpers

BOOST_AUTO_TEST_CASE(training_helpers)
{
    // A Dataset from your own arrays: 300 points of three Gaussian blobs in 2-D.
    Dataset blobs;
    blobs.images = Tensor<float>::from_shape({300, 2});
    blobs.labels = IndexTensor::from_shape({300});
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    const float centers[3][2] = {{0, 2}, {2, -1}, {-2, -1}};
    for (std::size_t i = 0; i < 300; ++i) {
        blobs.labels(i) = Index(i % 3);
        blobs.images(i, 0) = centers[i % 3][0] + noise(rng);
        blobs.images(i, 1) = centers[i % 3][1] + noise(rng);
    }

    MLP<float> net({2, 16, 3}, Activation::tanh, Activation::identity, /*seed*/ 5);
    Adam<float> opt(net.parameters(), AdamOptions(0.05));
    Tape<float> tape;
    auto forward = [&](Tape<float>& t, const Tensor<float>& x) { return net(t.borrow(x)); };
    auto loss = [](const Var<float>& out, const IndexTensor& y) { return cross_entropy(out, y); };
    EpochStats stats;
    for (std::size_t epoch = 0; epoch < 5; ++epoch)
        stats = train_epoch(tape, opt, blobs, forward, loss, EpochOptions().batch_size(32).seed(1).epoch(epoch));
    Evaluation<float> eval = evaluate(net, tape, blobs, forward, loss, /*batch*/ 100, /*keep_outputs*/ true);
    auto counts = confusion_matrix(eval.outputs, blobs.labels);  // (3,3): row = label, column = prediction

    BOOST_TEST(eval.accuracy > 0.9);
    BOOST_TEST(accuracy(eval.outputs, blobs.labels) == eval.accuracy);
    BOOST_TEST(count_correct(eval.outputs, blobs.labels) == counts(0, 0) + counts(1, 1) + counts(2, 2));
    BOOST_TEST(stats.loss < 0.5);
}

// ---- Saving and loading

BOOST_AUTO_TEST_CASE(saving_and_loading)
{
    TempDir dir;
    MLP<float> net({4, 8, 3}, Activation::relu, Activation::identity, /*seed*/ 1);
    save_weights(net, dir / "mlp.safetensors");          // "0.weight" (8,4), "0.bias", "2.weight", "2.bias"
    MLP<float> copy({4, 8, 3}, Activation::relu, Activation::identity, /*seed*/ 2);
    load_weights(copy, dir / "mlp.safetensors");         // names, shapes and dtypes must match
    MLP<float> wider({4, 9, 3});
    BOOST_CHECK_THROW(load_weights(wider, dir / "mlp.safetensors"), WeightFileError);

    Adam<float> opt(net.parameters(), AdamOptions()), copy_opt(copy.parameters(), AdamOptions());
    save_checkpoint(dir / "ckpt.safetensors", net, opt, {{"epoch", "3"}});     // weights, moments, steps
    auto meta = load_checkpoint(dir / "ckpt.safetensors", copy, copy_opt, {"epoch"});
    int epoch = std::stoi(meta.at("epoch"));             // checked to be a number by load_checkpoint

    Tensor<double> table = {{1.0, 2.0}, {3.0, 4.0}};
    save_tensors<double>(dir / "t.safetensors", {{"table", &table}}, {{"note", "any tensors"}});
    Tensor<double> back = xt::zeros<double>({2, 2});
    auto note = load_tensors<double>(dir / "t.safetensors", {{"table", &back}}).at("note");

    BOOST_TEST(copy.at<Linear<float>>(0).weight().value() == net.at<Linear<float>>(0).weight().value());
    BOOST_TEST(epoch == 3);
    BOOST_TEST(back == table);
    BOOST_TEST(note == "any tensors");
}

// ---- Gradient checks

BOOST_AUTO_TEST_CASE(gradient_checks)
{
    Tensor<double> x = {{0.3, -0.7, 1.1}}, w = {{0.2, -0.4}, {0.5, 0.1}, {-0.3, 0.8}};
    GradcheckReport report = gradcheck(
        [](const std::vector<Var<double>>& v) { return tanh(matmul(v[0], v[1])); }, {x, w},
        GradcheckOptions().eps(1e-6).atol(1e-8).input_names({"x", "w"}));
    // report.ok; report.summary() names each input, its worst element and both gradients

    MLP<double> mlp({3, 5, 2}, Activation::tanh, Activation::identity, 1);
    GradcheckReport module_report = gradcheck_module(mlp, x);   // every parameter and the input

    MLP<float> net({3, 5, 2}, Activation::tanh, Activation::identity, 1);
    MLP<double> twin({3, 5, 2}, Activation::tanh, Activation::identity);  // same architecture in double
    GradcheckReport float_report = gradcheck_module(net, twin, Tensor<float>{{0.3f, -0.7f, 1.1f}},
        [](const Var<double>& out) { return cross_entropy(out, IndexTensor{1}); });

    NodeCheckReport nodes = check_nodes([&](Tape<double>& t) {
        ScopeGuard<double> scope(t, "block");
        return sum(sigmoid(matmul(t.constant(x), t.variable(w))));
    });                                                  // each op's backward checked on its own

    BOOST_TEST(report.ok, report.summary());
    BOOST_TEST(report.inputs[1].name == "w");
    BOOST_TEST(module_report.ok, module_report.summary());
    BOOST_TEST(float_report.ok, float_report.summary());
    BOOST_TEST(nodes.ok(), nodes.summary());
    BOOST_TEST(nodes.nodes_checked >= 2u);
}

// ---- Comparing a hand-derived gradient with the tape

BOOST_AUTO_TEST_CASE(comparing_hand_gradients)
{
    // L = ½ Σ (X·W − T)²; by hand dL/dW = Xᵀ (X·W − T).
    Tensor<double> X = {{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}}, T = {{1.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}};
    Tensor<double> W0 = {{0.1, 0.3}, {-0.2, 0.4}};
    Tape<double> tape;
    auto W = tape.variable(W0);
    auto loss = mse_loss(matmul(tape.constant(X), W), tape.constant(T), Reduction::half_sum);

    Tensor<double> right = xt::zeros<double>({2, 2}), wrong = xt::zeros<double>({2, 2});
    for (std::size_t n = 0; n < 3; ++n)
        for (std::size_t j = 0; j < 2; ++j) {
            const double r = X(n, 0) * W0(0, j) + X(n, 1) * W0(1, j) - T(n, j);  // residual (X·W − T)[n, j]
            for (std::size_t i = 0; i < 2; ++i) {
                right(i, j) += X(n, i) * r;
                wrong(i, j) += 2 * X(n, i) * r;         // the ½ forgotten
            }
        }
    std::vector<std::pair<std::string, Var<double>>> terms = {{"loss", loss}}, wrt = {{"W", W}};
    ComparisonReport good = compare_gradients(tape, terms, wrt, {{"W", right}});
    ComparisonReport bad = compare_gradients(tape, terms, wrt, {{"W", wrong}}, CompareOptions().rtol(1e-8).batch_size(3));
    std::cout << bad.table();   // ... MISMATCH, then "W: constant factor 2: hand = 2 × automatic ..."

    BOOST_TEST(good.all_pass(), good.table());
    BOOST_TEST(!bad.all_pass());
    BOOST_TEST(bad.entries[0].diagnosis.find("factor 2") != std::string::npos, bad.entries[0].diagnosis);
    BOOST_TEST(diagnose_gradient(right, wrong).find("factor 2") != std::string::npos);
}

// ==================================================================================== modules.md

/// y = x + α ⊙ (W₂·relu(W₁·x + b₁) + b₂): a residual block, which Sequential cannot express (the
/// input is used twice). α (width) is a learned per-feature gain, initialised to 1.
template <class T>
class Residual : public Module<T> {
public:
    Residual(std::size_t width, std::uint64_t seed)
        : fc1_(this->register_module("fc1", std::make_unique<Linear<T>>(width, width, true, seed))),
          fc2_(this->register_module("fc2", std::make_unique<Linear<T>>(width, width, true, seed + 1))),
          alpha_(this->register_parameter("alpha", xt::ones<T>({width})))
    {
    }

    Var<T> forward(const Var<T>& x) override
    {
        Var<T> f = fc2_(relu(fc1_(x)));
        return x + x.tape().param(alpha_) * f;          // α (width) broadcasts over the batch
    }

    std::string describe() const override { return "Residual(" + std::to_string(alpha_.size()) + ")"; }

private:
    Linear<T>& fc1_;
    Linear<T>& fc2_;
    Parameter<T>& alpha_;
};

/// 784 → width → k residual blocks → 10.
template <class T>
std::unique_ptr<Sequential<T>> residual_mlp(std::size_t width, std::size_t blocks, std::uint64_t seed)
{
    auto net = std::make_unique<Sequential<T>>();
    net->template emplace<Linear<T>>(784, width, true, seed);
    net->template emplace<ReLU<T>>();
    for (std::size_t k = 0; k < blocks; ++k) net->template emplace<Residual<T>>(width, seed + 10 * (k + 1));
    net->template emplace<Linear<T>>(width, 10, true, seed + 100);
    return net;
}

BOOST_AUTO_TEST_CASE(residual_block_gradcheck)
{
    Residual<double> block(4, /*seed*/ 1);
    // block.named_parameters(): "alpha", then the children's "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"
    std::mt19937_64 rng(3);
    Tensor<double> x = Tensor<double>::from_shape({5, 4});
    for (auto& v : x) v = std::uniform_real_distribution<double>(-1, 1)(rng);
    GradcheckReport r = gradcheck_module(block, x);     // all five parameters and the input

    BOOST_TEST(r.ok, r.summary());
    BOOST_TEST(r.inputs.size() == 6u);
    BOOST_TEST(block.named_parameters()[0].first == "alpha");
    BOOST_TEST(block.named_parameters()[4].first == "fc2.bias");
    BOOST_TEST(block.num_parameters() == 2u * (16 + 4) + 4);

    auto net = residual_mlp<double>(6, 2, /*seed*/ 7);
    BOOST_TEST(net->named_parameters()[2].first == "2.alpha");
    BOOST_TEST(net->named_parameters()[3].first == "2.fc1.weight");
    Tensor<double> batch = Tensor<double>::from_shape({3, 784});
    for (auto& v : batch) v = std::uniform_real_distribution<double>(0, 1)(rng);
    GradcheckReport whole = gradcheck_module(*net, batch, [](const Var<double>& out) {
        return cross_entropy(out, IndexTensor{1, 7, 3});
    });
    BOOST_TEST(whole.ok, whole.summary());
}

/// Trains a residual MLP on `train`, evaluates it on `test`, saves its weights; returns the test accuracy.
double train_and_evaluate(const Dataset& train, const Dataset& test, const std::string& weights_path)
{
    auto net = residual_mlp<float>(/*width*/ 64, /*blocks*/ 2, /*seed*/ 1);
    Adam<float> opt(net->parameters(), AdamOptions(2e-3));
    CosineLR schedule(2e-3, /*total_epochs*/ 8);
    Tape<float> tape;
    auto forward = [&](Tape<float>& t, const Tensor<float>& x) { return (*net)(t.borrow(x)); };
    auto loss = [](const Var<float>& out, const IndexTensor& y) { return cross_entropy(out, y); };
    for (std::size_t epoch = 0; epoch < 8; ++epoch) {
        opt.set_lr(schedule.lr(int(epoch)));
        EpochStats s = train_epoch(tape, opt, train, forward, loss, EpochOptions().batch_size(32).seed(1).epoch(epoch));
        std::printf("epoch %zu: loss %.4f, train accuracy %.3f\n", epoch + 1, s.loss, s.accuracy);
    }
    Evaluation<float> result = evaluate(*net, tape, test, forward, loss, 1000, /*keep_outputs*/ true);
    auto confusion = confusion_matrix(result.outputs, test.labels);
    std::printf("test accuracy %.3f, test loss %.4f; 7s taken for 1s: %zu\n", result.accuracy, result.loss,
                std::size_t(confusion(7, 1)));
    save_weights(*net, weights_path);                   // "0.weight", "0.bias", "2.alpha", "2.fc1.weight", ...
    return result.accuracy;
}

BOOST_AUTO_TEST_CASE(residual_mlp_on_mnist)
{
    Dataset train, test;
    if (have_mnist()) {
        Dataset all = load_idx_dataset(mnist_dir(), "train");
        train = all.slice(0, 800);                      // a few hundred images: seconds, not minutes
        test = load_idx_dataset(mnist_dir(), "t10k").slice(0, 1000);
    } else {
        BOOST_TEST_MESSAGE("MNIST not in " << mnist_dir() << ": synthetic digits from a fixed seed");
        train = synthetic_digits(800, 1);
        test = synthetic_digits(1000, 2);
    }
    TempDir dir;
    const double acc = train_and_evaluate(train, test, dir / "residual_mlp.safetensors");
    BOOST_TEST_MESSAGE("residual MLP test accuracy " << acc);
    BOOST_TEST(acc > 0.75);                             // chance is 0.1
    BOOST_TEST(fs::exists(dir.path / "residual_mlp.safetensors"));
}

BOOST_AUTO_TEST_CASE(float_residual_mlp_checked_in_double)
{
    auto net = residual_mlp<float>(/*width*/ 8, /*blocks*/ 1, /*seed*/ 1);   // the model you train
    auto twin = residual_mlp<double>(8, 1, /*seed*/ 0);                      // its weights are overwritten
    Tensor<float> x = xt::zeros<float>({2, 784});
    x(0, 100) = 0.5f, x(1, 400) = 1.0f;
    auto loss = [](const Var<double>& out) { return cross_entropy(out, IndexTensor{3, 8}); };
    GradcheckReport r = gradcheck_module(*net, *twin, x, loss);   // the float net's gradients, in double

    BOOST_TEST(r.ok, r.summary());
    BOOST_TEST(r.inputs.size() == net->named_parameters().size() + 1);
}

// ==================================================================== docs and this file agree

namespace {

std::string read_text(const fs::path& p)
{
    std::ifstream in(p);
    BOOST_TEST_REQUIRE(in.good(), "cannot read " << p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// Lines stripped of surrounding whitespace, empty ones dropped, joined by '\n'.
std::string normalized(const std::string& text)
{
    std::istringstream in(text);
    std::string line, out;
    while (std::getline(in, line)) {
        const auto b = line.find_first_not_of(" \t\r");
        if (b == std::string::npos) continue;
        const auto e = line.find_last_not_of(" \t\r");
        out += line.substr(b, e - b + 1);
        out += '\n';
    }
    return out;
}

/// The ```cpp blocks of a markdown file.
std::vector<std::string> cpp_blocks(const std::string& md)
{
    std::vector<std::string> blocks;
    std::istringstream in(md);
    std::string line, cur;
    bool inside = false;
    while (std::getline(in, line)) {
        if (!inside && line.rfind("```cpp", 0) == 0) {
            inside = true;
            cur.clear();
        } else if (inside && line.rfind("```", 0) == 0) {
            inside = false;
            blocks.push_back(cur);
        } else if (inside) {
            cur += line + '\n';
        }
    }
    return blocks;
}

}  // namespace

BOOST_AUTO_TEST_CASE(threads_parallel_ranges)
{
    const std::size_t n = std::size_t(1) << 17;  // above the split threshold
    Tensor<float> w = xt::ones<float>({n}), g = xt::ones<float>({n}) * 2.0f;
    const float lr = 0.25f;
    set_num_threads(max_num_threads());
    xgrad::parallel_ranges(w.size(), [&](std::size_t b, std::size_t e) {
        for (std::size_t k = b; k < e; ++k) w.data()[k] -= lr * g.data()[k];
    });
    set_num_threads(1);
    BOOST_TEST(xt::amin(w)() == 0.5f);  // every element once: 1 − 0.25·2
    BOOST_TEST(xt::amax(w)() == 0.5f);
}

BOOST_AUTO_TEST_CASE(profiling_a_step)
{
    MLP<float> mlp({784, 128, 10}, Activation::relu, Activation::identity, /*seed*/ 1);
    SGD<float> opt(mlp.parameters(), {0.01});
    Tape<float> tape;
    Tensor<float> x = rand_uniform<float>({64, 784}, /*seed*/ 2);
    IndexTensor labels = xt::zeros<Index>({64});
    Profiler<float> prof(tape);                         // times every op recorded on `tape`
    for (int step = 0; step < 20; ++step) {
        if (step == 5) prof.reset();                    // forget the warm-up steps
        opt.zero_grad();
        auto loss = cross_entropy(mlp(tape.borrow(x)), labels);
        tape.backward(loss);
        opt.step();
        tape.clear();
    }
    ProfileReport r = prof.report();                    // one row per op, the largest total first
    std::cout << r.table();                             // per step: calls, forward µs, backward µs, % of the wall time
    ProfileReport layers = prof.report(ProfileGroup::scope_and_op);  // rows per (layer, op)

    BOOST_TEST(r.sweeps == 15u);
    BOOST_TEST(r.rows.size() == 3u);  // linear, relu, cross_entropy
    for (const OpProfile& p : r.rows) {
        BOOST_TEST(p.forward_calls == (p.op == "linear" ? 30u : 15u), p.op);
        BOOST_TEST(p.backward_calls == p.forward_calls, p.op);
        BOOST_TEST(p.forward_seconds > 0.0);
    }
    BOOST_TEST(r.rows[0].total_seconds() >= r.rows[2].total_seconds());
    BOOST_TEST(r.op_seconds() < r.wall_seconds);
    BOOST_TEST(r.table().find("15 backward sweeps") == 0u);
    BOOST_TEST(layers.rows.size() == 4u);  // 0:Linear · linear, 1:ReLU · relu, 2:Linear · linear, cross_entropy
    bool first_linear = false;
    for (const OpProfile& p : layers.rows) first_linear = first_linear || (p.scope == "0:Linear(784→128)" && p.op == "linear");
    BOOST_TEST(first_linear);
}

BOOST_AUTO_TEST_CASE(docs_snippets_are_in_this_file)
{
    const std::string self = normalized(read_text(XGRAD_SOURCE_DIR "/tests/nn/test_docs_examples.cpp"));
    for (const char* page : {"docs/api.md", "docs/modules.md"}) {
        const auto blocks = cpp_blocks(read_text(fs::path(XGRAD_SOURCE_DIR) / page));
        BOOST_TEST(blocks.size() >= 2u, page);
        for (std::size_t i = 0; i < blocks.size(); ++i)
            BOOST_TEST(self.find(normalized(blocks[i])) != std::string::npos,
                       page << ", cpp block " << i + 1 << " is not in tests/nn/test_docs_examples.cpp:\n" << blocks[i]);
    }
}

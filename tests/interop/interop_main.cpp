// The xgrad side of the PyTorch interop test; tests/interop/torch_interop.py drives it.
//   interop export DIR  builds the MLP and the LeNet with fixed seeds and writes, for each model M,
//                       DIR/M_weights.safetensors (save_weights, PyTorch's state-dict names) and
//                       DIR/M_io.safetensors: "input", "labels", "output", "loss" and "grad.<name>"
//                       for every parameter (mean cross-entropy of the output); the weights are
//                       written before that pass, and "buffer.<name>" holds every buffer after it
//                       (BatchNorm's running statistics, updated by the pass in training mode).
//   interop import DIR  reads DIR/M_torch_weights.safetensors and DIR/M_torch_io.safetensors written
//                       by torch, loads the weights with load_weights, recomputes and checks output,
//                       loss and every gradient against torch's to 1e-5 relative to the largest
//                       magnitude, and the buffers after the pass against torch's. Exit status 0 when
//                       everything matches, 1 otherwise.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <string>

#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;

namespace {

constexpr std::size_t kBatch = 8;
constexpr double kTolerance = 1e-5;

struct Model {
    std::string name;
    std::unique_ptr<Sequential<float>> net;
    Shape input_shape;
};

/// torch.nn.Sequential(Linear(784, 32), ReLU(), Linear(32, 10))
Model mlp()
{
    return {"mlp", std::make_unique<MLP<float>>(std::vector<std::size_t>{784, 32, 10}, Activation::relu,
                                                 Activation::identity, 11),
            Shape{kBatch, 784}};
}

/// torch.nn.Sequential(Conv2d(1, 6, 5, padding=2), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(),
/// MaxPool2d(2), Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10))
Model lenet()
{
    auto net = std::make_unique<Sequential<float>>();
    net->emplace<Conv2d<float>>(Conv2dOptions(1, 6, 5).padding(2), 21);
    net->emplace<ReLU<float>>();
    net->emplace<MaxPool2d<float>>(2);
    net->emplace<Conv2d<float>>(Conv2dOptions(6, 16, 5), 22);
    net->emplace<ReLU<float>>();
    net->emplace<MaxPool2d<float>>(2);
    net->emplace<Flatten<float>>();
    net->emplace<Linear<float>>(400, 120, true, 23);
    net->emplace<ReLU<float>>();
    net->emplace<Linear<float>>(120, 84, true, 24);
    net->emplace<ReLU<float>>();
    net->emplace<Linear<float>>(84, 10, true, 25);
    return {"lenet", std::move(net), Shape{kBatch, 1, 28, 28}};
}

/// torch.nn.Sequential(Conv2d(1, 4, 3, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(),
/// Linear(676, 32, bias=False), BatchNorm1d(32), ReLU(), Linear(32, 16), LayerNorm(16), Linear(16, 10)),
/// in training mode: batch statistics, and the running statistics updated with the unbiased variance.
/// No bias before a batch norm: it cancels, and its gradient is 0 up to rounding (nothing to compare).
Model norm()
{
    auto net = std::make_unique<Sequential<float>>();
    net->emplace<Conv2d<float>>(Conv2dOptions(1, 4, 3).bias(false), 31);
    net->emplace<BatchNorm2d<float>>(BatchNormOptions(4));
    net->emplace<ReLU<float>>();
    net->emplace<MaxPool2d<float>>(2);
    net->emplace<Flatten<float>>();
    net->emplace<Linear<float>>(676, 32, false, 32);
    net->emplace<BatchNorm1d<float>>(BatchNormOptions(32));
    net->emplace<ReLU<float>>();
    net->emplace<Linear<float>>(32, 16, true, 33);
    net->emplace<LayerNorm<float>>(LayerNormOptions({16}));
    net->emplace<Linear<float>>(16, 10, true, 34);
    // not the defaults (ones, zeros), so that a swapped γ and β would show
    for (const auto& [name, p] : net->named_parameters())
        if (p->shape().size() == 1 && (name.rfind("1.", 0) == 0 || name.rfind("6.", 0) == 0 || name.rfind("9.", 0) == 0))
            for (std::size_t i = 0; i < p->size(); ++i)
                p->value()(i) = name.find("weight") != std::string::npos ? 1.0f + 0.05f * float(i % 7) : 0.1f * float(i % 5);
    return {"norm", std::move(net), Shape{kBatch, 1, 28, 28}};
}

/// Output, loss and parameter gradients of one forward/backward pass.
struct Pass {
    Tensor<float> output, loss;
    std::vector<std::pair<std::string, Tensor<float>>> grads;
};

Pass run(Sequential<float>& net, const Tensor<float>& x, const IndexTensor& labels)
{
    Tape<float> tape;
    net.zero_grad();
    auto y = net(tape.constant(x));
    auto loss = cross_entropy(y, labels);
    tape.backward(loss);
    Pass p{y.value(), loss.value(), {}};
    for (auto& [name, param] : net.named_parameters()) p.grads.emplace_back(name, param->grad());
    return p;
}

IndexTensor as_labels(const Tensor<float>& v)
{
    IndexTensor l = IndexTensor::from_shape({v.size()});
    for (std::size_t i = 0; i < v.size(); ++i) l(i) = Index(v(i));
    return l;
}

void export_model(Model m, const std::string& dir)
{
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    Tensor<float> x = Tensor<float>::from_shape(m.input_shape);
    for (auto& v : x) v = u(rng);
    Tensor<float> labels = Tensor<float>::from_shape({kBatch});
    for (std::size_t i = 0; i < kBatch; ++i) labels(i) = float((3 * i + 1) % 10);
    save_weights(*m.net, fmt::format("{}/{}_weights.safetensors", dir, m.name));  // before the pass moves the buffers
    const Pass p = run(*m.net, x, as_labels(labels));
    std::vector<std::pair<std::string, const Tensor<float>*>> io = {
        {"input", &x}, {"labels", &labels}, {"output", &p.output}, {"loss", &p.loss}};
    for (const auto& [name, g] : p.grads) io.emplace_back("grad." + name, &g);
    for (const auto& [name, b] : m.net->named_buffers()) io.emplace_back("buffer." + name, b);
    save_tensors(fmt::format("{}/{}_io.safetensors", dir, m.name), io, {{"model", m.name}});
    std::printf("%s: wrote weights, batch, output, loss %.6f and %zu gradients\n", m.name.c_str(), double(p.loss()),
                p.grads.size());
}

/// max|got − want| / max|want| (or the absolute error when want is all zeros), printed; true when within tolerance.
bool check(const std::string& what, const Tensor<float>& got, const Tensor<float>& want)
{
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        err = std::max(err, std::abs(double(got.data()[i]) - double(want.data()[i])));
        scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    const double rel = scale > 0 ? err / scale : err;
    const bool ok = got.shape() == want.shape() && rel <= kTolerance;
    std::printf("  %-16s %-16s max |xgrad - torch| / max |torch| = %.3g  %s\n", what.c_str(),
                shape_str(want.shape()).c_str(), rel, ok ? "ok" : "MISMATCH");
    return ok;
}

bool import_model(Model m, const std::string& dir)
{
    load_weights(*m.net, fmt::format("{}/{}_torch_weights.safetensors", dir, m.name));
    Tensor<float> x = Tensor<float>::from_shape(m.input_shape), labels = Tensor<float>::from_shape({kBatch}),
                  output = Tensor<float>::from_shape({kBatch, 10}), loss = Tensor<float>(0.0f);
    std::vector<std::pair<std::string, Tensor<float>>> grads;
    for (auto& [name, param] : m.net->named_parameters()) grads.emplace_back(name, Tensor<float>::from_shape(param->shape()));
    std::vector<std::pair<std::string, Tensor<float>*>> io = {
        {"input", &x}, {"labels", &labels}, {"output", &output}, {"loss", &loss}};
    for (auto& [name, g] : grads) io.emplace_back("grad." + name, &g);
    std::vector<std::pair<std::string, Tensor<float>>> buffers;
    for (auto& [name, b] : m.net->named_buffers()) buffers.emplace_back(name, Tensor<float>::from_shape(b->shape()));
    for (auto& [name, b] : buffers) io.emplace_back("buffer." + name, &b);
    load_tensors(fmt::format("{}/{}_torch_io.safetensors", dir, m.name), io);
    const Pass p = run(*m.net, x, as_labels(labels));
    std::printf("%s: torch's weights in xgrad\n", m.name.c_str());
    bool ok = check("output", p.output, output);
    ok = check("loss", p.loss, loss) && ok;
    for (std::size_t i = 0; i < grads.size(); ++i) ok = check("grad." + grads[i].first, p.grads[i].second, grads[i].second) && ok;
    for (auto& [name, b] : buffers) ok = check("buffer." + name, m.net->buffer(name), b) && ok;
    return ok;
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string mode = argc == 3 ? argv[1] : "";
    if (mode != "export" && mode != "import") {
        std::fprintf(stderr, "usage: %s export|import DIR\n", argv[0]);
        return 2;
    }
    try {
        if (mode == "export") {
            export_model(mlp(), argv[2]);
            export_model(lenet(), argv[2]);
            export_model(norm(), argv[2]);
            return 0;
        }
        bool ok = import_model(mlp(), argv[2]);
        ok = import_model(lenet(), argv[2]) && ok;
        return import_model(norm(), argv[2]) && ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "interop %s: %s\n", mode.c_str(), e.what());
        return 1;
    }
}

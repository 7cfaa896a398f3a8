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
// The sequence models (an LSTM and a GRU of 2 layers, MultiheadAttention with a causal mask, a
// pre-LayerNorm GELU TransformerEncoderLayer) go the same two ways with DIR/M_weights.safetensors and
// DIR/M_io.safetensors holding "input.<name>" (x and the initial states), "R.<name>" and "output.<name>"
// for every output (output, h_n, c_n, attn_weights), "loss" = Σ_outputs Σ R ⊙ output, "grad.<param>"
// and "grad_input.<name>".
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
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

// ---- sequence models ----

constexpr std::size_t kSteps = 5, kSeqBatch = 3, kIn = 4, kHidden = 6, kEmbed = 8, kFeedforward = 16;

using Outputs = std::vector<std::pair<std::string, Var<float>>>;

/// A sequence model: its inputs (name, shape) and a forward to its named outputs.
struct SeqModel {
    std::string name;
    std::unique_ptr<Module<float>> module;
    std::vector<std::pair<std::string, Shape>> inputs;
    std::function<Outputs(const std::vector<Var<float>>&)> forward;
};

/// torch.nn.LSTM(4, 6, num_layers=2): x (L, B, I), (h0, c0) given
SeqModel lstm_model()
{
    auto m = std::make_unique<LSTM<float>>(LSTMOptions(kIn, kHidden).num_layers(2), 41);
    LSTM<float>* p = m.get();
    return {"lstm", std::move(m),
            {{"x", Shape{kSteps, kSeqBatch, kIn}}, {"h0", Shape{2, kSeqBatch, kHidden}}, {"c0", Shape{2, kSeqBatch, kHidden}}},
            [p](const std::vector<Var<float>>& in) {
                auto [out, state] = p->forward(in[0], std::make_tuple(in[1], in[2]));
                return Outputs{{"output", out}, {"h_n", std::get<0>(state)}, {"c_n", std::get<1>(state)}};
            }};
}

/// torch.nn.GRU(4, 6, num_layers=2, batch_first=True): x (B, L, I), h0 given
SeqModel gru_model()
{
    auto m = std::make_unique<GRU<float>>(GRUOptions(kIn, kHidden).num_layers(2).batch_first(true), 42);
    GRU<float>* p = m.get();
    return {"gru", std::move(m), {{"x", Shape{kSeqBatch, kSteps, kIn}}, {"h0", Shape{2, kSeqBatch, kHidden}}},
            [p](const std::vector<Var<float>>& in) {
                auto [out, hn] = p->forward(in[0], in[1]);
                return Outputs{{"output", out}, {"h_n", hn}};
            }};
}

/// torch.nn.MultiheadAttention(8, 2, batch_first=True), self-attention with the causal mask,
/// the head-averaged weights as a second output
SeqModel mha_model()
{
    auto m = std::make_unique<MultiheadAttention<float>>(MultiheadAttentionOptions(kEmbed, 2).batch_first(true), 43);
    MultiheadAttention<float>* p = m.get();
    return {"mha", std::move(m), {{"x", Shape{kSeqBatch, kSteps, kEmbed}}},
            [p, mask = generate_square_subsequent_mask<float>(kSteps)](const std::vector<Var<float>>& in) {
                auto [out, weights] = p->forward(in[0], in[0], in[0], &mask, true);
                return Outputs{{"output", out}, {"attn_weights", weights}};
            }};
}

/// torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu",
/// batch_first=True, norm_first=True), the causal mask as src_mask
SeqModel transformer_model()
{
    auto m = std::make_unique<TransformerEncoderLayer<float>>(TransformerEncoderLayerOptions(kEmbed, 2)
                                                                  .dim_feedforward(kFeedforward)
                                                                  .dropout(0.0)
                                                                  .activation("gelu")
                                                                  .batch_first(true)
                                                                  .norm_first(true),
                                                              44);
    TransformerEncoderLayer<float>* p = m.get();
    return {"transformer", std::move(m), {{"x", Shape{kSeqBatch, kSteps, kEmbed}}},
            [p, mask = generate_square_subsequent_mask<float>(kSteps)](const std::vector<Var<float>>& in) {
                return Outputs{{"output", p->forward(in[0], &mask)}};
            }};
}

std::vector<SeqModel (*)()> seq_models() { return {lstm_model, gru_model, mha_model, transformer_model}; }

/// Outputs, loss = Σ_k Σ R_k ⊙ output_k, parameter and input gradients of one pass.
struct SeqPass {
    std::vector<std::pair<std::string, Tensor<float>>> outputs, grads, input_grads;
    Tensor<float> loss;
};

SeqPass run_seq(SeqModel& m, const std::vector<Tensor<float>>& inputs, const std::vector<Tensor<float>>& rs)
{
    Tape<float> tape;
    m.module->zero_grad();
    std::vector<Var<float>> in;
    for (const auto& x : inputs) in.push_back(tape.variable(x));
    const Outputs outs = m.forward(in);
    Var<float> loss;
    for (std::size_t k = 0; k < outs.size(); ++k) {
        const Var<float> term = sum(outs[k].second * tape.constant(rs[k]));
        loss = k ? loss + term : term;
    }
    tape.backward(loss);
    SeqPass p;
    p.loss = loss.value();
    for (const auto& [name, y] : outs) p.outputs.emplace_back(name, y.value());
    for (auto& [name, param] : m.module->named_parameters()) p.grads.emplace_back(name, param->grad());
    for (std::size_t i = 0; i < in.size(); ++i) p.input_grads.emplace_back(m.inputs[i].first, in[i].grad());
    return p;
}

/// The outputs' names and shapes (a pass on zeros).
std::vector<std::pair<std::string, Shape>> output_shapes(SeqModel& m)
{
    Tape<float> tape;
    std::vector<Var<float>> in;
    for (const auto& [name, shape] : m.inputs) in.push_back(tape.constant(Tensor<float>(xt::zeros<float>(shape))));
    std::vector<std::pair<std::string, Shape>> shapes;
    for (const auto& [name, y] : m.forward(in)) shapes.emplace_back(name, y.shape());
    return shapes;
}

void export_seq(SeqModel m, const std::string& dir)
{
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto fill = [&](const Shape& s) {
        Tensor<float> t = Tensor<float>::from_shape(s);
        for (auto& v : t) v = u(rng);
        return t;
    };
    // biases and LayerNorm's γ away from their zero / one initial values, so that a swap would show
    for (auto& [name, p] : m.module->named_parameters())
        if (name.find("bias") != std::string::npos || name.find("norm") != std::string::npos)
            for (auto& v : p->value()) v = (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos ? 1.0f : 0.0f) + 0.5f * u(rng);
    std::vector<Tensor<float>> inputs, rs;
    for (const auto& [name, shape] : m.inputs) inputs.push_back(fill(shape));
    const auto shapes = output_shapes(m);
    for (const auto& [name, shape] : shapes) rs.push_back(fill(shape));
    save_weights(*m.module, fmt::format("{}/{}_weights.safetensors", dir, m.name));
    const SeqPass p = run_seq(m, inputs, rs);
    std::vector<std::pair<std::string, const Tensor<float>*>> io = {{"loss", &p.loss}};
    for (std::size_t i = 0; i < inputs.size(); ++i) io.emplace_back("input." + m.inputs[i].first, &inputs[i]);
    for (std::size_t k = 0; k < rs.size(); ++k) {
        io.emplace_back("R." + shapes[k].first, &rs[k]);
        io.emplace_back("output." + shapes[k].first, &p.outputs[k].second);
    }
    for (const auto& [name, g] : p.grads) io.emplace_back("grad." + name, &g);
    for (const auto& [name, g] : p.input_grads) io.emplace_back("grad_input." + name, &g);
    save_tensors(fmt::format("{}/{}_io.safetensors", dir, m.name), io, {{"model", m.name}});
    std::printf("%s: wrote weights, inputs, %zu outputs, loss %.6f and %zu gradients\n", m.name.c_str(), p.outputs.size(),
                double(p.loss()), p.grads.size() + p.input_grads.size());
}

bool import_seq(SeqModel m, const std::string& dir)
{
    load_weights(*m.module, fmt::format("{}/{}_torch_weights.safetensors", dir, m.name));
    const auto shapes = output_shapes(m);
    std::vector<Tensor<float>> inputs, rs, outputs, input_grads;
    for (const auto& [name, shape] : m.inputs) {
        inputs.push_back(Tensor<float>::from_shape(shape));
        input_grads.push_back(Tensor<float>::from_shape(shape));
    }
    for (const auto& [name, shape] : shapes) {
        rs.push_back(Tensor<float>::from_shape(shape));
        outputs.push_back(Tensor<float>::from_shape(shape));
    }
    Tensor<float> loss(0.0f);
    std::vector<std::pair<std::string, Tensor<float>>> grads;
    for (auto& [name, param] : m.module->named_parameters()) grads.emplace_back(name, Tensor<float>::from_shape(param->shape()));
    std::vector<std::pair<std::string, Tensor<float>*>> io = {{"loss", &loss}};
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        io.emplace_back("input." + m.inputs[i].first, &inputs[i]);
        io.emplace_back("grad_input." + m.inputs[i].first, &input_grads[i]);
    }
    for (std::size_t k = 0; k < shapes.size(); ++k) {
        io.emplace_back("R." + shapes[k].first, &rs[k]);
        io.emplace_back("output." + shapes[k].first, &outputs[k]);
    }
    for (auto& [name, g] : grads) io.emplace_back("grad." + name, &g);
    load_tensors(fmt::format("{}/{}_torch_io.safetensors", dir, m.name), io);
    const SeqPass p = run_seq(m, inputs, rs);
    std::printf("%s: torch's weights in xgrad\n", m.name.c_str());
    bool ok = check("loss", p.loss, loss);
    for (std::size_t k = 0; k < outputs.size(); ++k) ok = check("output." + shapes[k].first, p.outputs[k].second, outputs[k]) && ok;
    for (std::size_t i = 0; i < grads.size(); ++i) ok = check("grad." + grads[i].first, p.grads[i].second, grads[i].second) && ok;
    for (std::size_t i = 0; i < inputs.size(); ++i)
        ok = check("grad_input." + m.inputs[i].first, p.input_grads[i].second, input_grads[i]) && ok;
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
            for (auto make : seq_models()) export_seq(make(), argv[2]);
            return 0;
        }
        bool ok = import_model(mlp(), argv[2]);
        ok = import_model(lenet(), argv[2]) && ok;
        ok = import_model(norm(), argv[2]) && ok;
        for (auto make : seq_models()) ok = import_seq(make(), argv[2]) && ok;
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "interop %s: %s\n", mode.c_str(), e.what());
        return 1;
    }
}

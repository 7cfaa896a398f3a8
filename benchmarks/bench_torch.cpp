// libtorch (C++ API) side of the benchmark workloads, exactly as docs/benchmarks.md defines
// them: bench_torch <workload> <threads> [grad] [channels_last] [dump PREFIX]. Prints one JSON line
// like bench_xgrad. threads 0 = libtorch's default threading (neither torch::set_num_threads nor
// openblas_set_num_threads called). `grad` (second-order workloads hvp_*, double_backprop_mlp only)
// times the same step without its second-order part, as bench_xgrad's impl grad does.
// `channels_last` (convolution workloads) keeps the conv weights and the input in
// torch::MemoryFormat::ChannelsLast. `dump PREFIX` times nothing: it writes the initial weights, the
// data, and the loss and gradients of one run of the timed step for bench_xgrad's check
// (seq_workloads.hpp). Every step returns its loss (timing.hpp keeps the first and checks all are finite).
#include <cblas.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "seq_workloads.hpp"
#include "timing.hpp"

using namespace xgrad::bench;
namespace nn = torch::nn;

namespace {

int fail(const std::string& why)
{
    std::fprintf(stderr, "bench_torch: %s\n", why.c_str());
    return 2;
}

torch::Tensor labels_mod10(int64_t B) { return torch::arange(B, torch::kLong) % 10; }

/// torchvision's BasicBlock, as xgrad::nn::BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
/// shortcut = conv 1×1 (stride, no bias) + BatchNorm2d when the stride or the channels change.
struct BasicBlockImpl : nn::Module {
    nn::Conv2d conv1{nullptr}, conv2{nullptr};
    nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
    nn::Sequential downsample{nullptr};
    BasicBlockImpl(int64_t in, int64_t out, int64_t stride)
    {
        conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
        bn1 = register_module("bn1", nn::BatchNorm2d(out));
        conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
        bn2 = register_module("bn2", nn::BatchNorm2d(out));
        if (stride != 1 || in != out)
            downsample = register_module(
                "downsample",
                nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)), nn::BatchNorm2d(out)));
    }
    torch::Tensor forward(const torch::Tensor& x)
    {
        auto h = torch::relu(bn1(conv1(x)));
        return torch::relu(bn2(conv2(h)) + (downsample ? downsample->forward(x) : x));
    }
};
TORCH_MODULE(BasicBlock);

namespace seq = xgrad::bench::seq;

/// lstm_step / gru_step: tokens (L, B) → Embedding(V, E) → LSTM or GRU (E → H, 2 layers, time-major)
/// → Linear(H, V) on every position → cross-entropy (mean over L·B). State dict: embedding.weight,
/// rnn.{weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, … _l1}, head.weight, head.bias.
struct SeqLMImpl : nn::Module {
    nn::Embedding embedding{nullptr};
    nn::LSTM lstm{nullptr};
    nn::GRU gru{nullptr};
    nn::Linear head{nullptr};
    explicit SeqLMImpl(bool use_lstm)
    {
        embedding = register_module("embedding", nn::Embedding(seq::V, seq::E));
        if (use_lstm)
            lstm = register_module("rnn", nn::LSTM(nn::LSTMOptions(seq::E, seq::H).num_layers(seq::LAYERS)));
        else
            gru = register_module("rnn", nn::GRU(nn::GRUOptions(seq::E, seq::H).num_layers(seq::LAYERS)));
        head = register_module("head", nn::Linear(seq::H, seq::V));
    }
    torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& y)
    {
        const auto e = embedding(x);
        const auto h = lstm ? std::get<0>(lstm->forward(e)) : std::get<0>(gru->forward(e));
        return torch::nn::functional::cross_entropy(head(h.reshape({-1, int64_t(seq::H)})), y);
    }
};
TORCH_MODULE(SeqLM);

/// MultiheadAttention's parameters under its state-dict names and with its initialization
/// (in_proj_weight Xavier-uniform, both biases zero); the attention itself is composed in PreLnBlock.
struct SelfAttnImpl : nn::Module {
    torch::Tensor in_proj_weight, in_proj_bias;
    nn::Linear out_proj{nullptr};
    SelfAttnImpl()
    {
        in_proj_weight = register_parameter("in_proj_weight", torch::empty({int64_t(3 * seq::D), int64_t(seq::D)}));
        in_proj_bias = register_parameter("in_proj_bias", torch::zeros({int64_t(3 * seq::D)}));
        out_proj = register_module("out_proj", nn::Linear(seq::D, seq::D));
        nn::init::xavier_uniform_(in_proj_weight);
        nn::init::constant_(out_proj->bias, 0.0);
    }
};
TORCH_MODULE(SelfAttn);

/// attention_step: the pre-LayerNorm transformer block, batch-first x (BA, LA, D), composed by hand
/// (libtorch 1.13's C++ TransformerEncoderLayer has no norm_first):
///   a = norm1(x); [q k v] = a·in_projᵀ + b; per head softmax(q·kᵀ/√d + causal mask)·v; x1 = x + out_proj(heads)
///   y = x1 + linear2(gelu(linear1(norm2(x1))))
/// State dict as torch::nn::TransformerEncoderLayer's: self_attn.{in_proj_weight, in_proj_bias,
/// out_proj.weight, out_proj.bias}, linear1.*, linear2.*, norm1.*, norm2.*.
struct PreLnBlockImpl : nn::Module {
    SelfAttn self_attn{nullptr};
    nn::Linear linear1{nullptr}, linear2{nullptr};
    nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    torch::Tensor mask;  // (LA, LA): 0 on and below the diagonal, −∞ above
    PreLnBlockImpl()
    {
        self_attn = register_module("self_attn", SelfAttn());
        linear1 = register_module("linear1", nn::Linear(seq::D, seq::FF));
        linear2 = register_module("linear2", nn::Linear(seq::FF, seq::D));
        norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({int64_t(seq::D)})));
        norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({int64_t(seq::D)})));
        const int64_t n = seq::LA;
        mask = torch::full({n, n}, -std::numeric_limits<float>::infinity()).triu(1);
    }
    torch::Tensor forward(const torch::Tensor& x)
    {
        const int64_t Bn = x.size(0), Ln = x.size(1), Dn = seq::D, h = seq::NH, d = Dn / h;
        const auto qkv = torch::linear(norm1(x), self_attn->in_proj_weight, self_attn->in_proj_bias).chunk(3, -1);
        auto heads = [&](const torch::Tensor& t) { return t.reshape({Bn, Ln, h, d}).transpose(1, 2); };  // (B, h, L, d)
        const auto s = torch::matmul(heads(qkv[0]), heads(qkv[1]).transpose(-2, -1)) * (1.0 / std::sqrt(double(d))) + mask;
        const auto o = torch::matmul(torch::softmax(s, -1), heads(qkv[2])).transpose(1, 2).reshape({Bn, Ln, Dn});
        const auto x1 = x + self_attn->out_proj(o);
        return x1 + linear2(torch::gelu(linear1(norm2(x1))));
    }
};
TORCH_MODULE(PreLnBlock);

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

/// The check's files (seq_workloads.hpp): PREFIX.weights.safetensors (the parameters before the step),
/// PREFIX.input.safetensors ("input.<name>", when there are data) and PREFIX.ref.safetensors ("loss",
/// "grad.<name>") after one run of `step`; `grads`
/// gives the gradient per parameter afterwards (default: the parameters' grad()).
int dump(const Named& params, const Named& inputs, const std::string& prefix, const std::function<double()>& step,
         const std::function<std::vector<torch::Tensor>()>& grads)
{
    auto add = [](seq::SafetensorsWriter& w, const std::string& name, const torch::Tensor& t) {
        const auto c = t.detach().contiguous();
        w.add(name, c.sizes().vec(), c.data_ptr<float>(), std::size_t(c.numel()));
    };
    seq::SafetensorsWriter weights, data, ref;
    for (const auto& [name, p] : params) add(weights, name, p);
    for (const auto& [name, t] : inputs) add(data, "input." + name, t);
    const double loss = step();
    const float lf = float(loss);
    ref.add("loss", {1}, &lf, 1);
    std::vector<torch::Tensor> g;
    if (grads) g = grads();
    for (std::size_t k = 0; k < params.size(); ++k) {
        const torch::Tensor gk = grads ? g[k] : params[k].second.grad();
        if (!gk.defined()) return fail("dump: no gradient for " + params[k].first);
        add(ref, "grad." + params[k].first, gk);
    }
    if (!weights.write(prefix + ".weights.safetensors") || !ref.write(prefix + ".ref.safetensors") ||
        (!inputs.empty() && !data.write(prefix + ".input.safetensors")))
        return fail("dump: cannot write " + prefix + ".*.safetensors");
    std::printf("{\"impl\":\"dump\",\"loss\":%.9g}\n", loss);
    return 0;
}

Named named(nn::Module& m)
{
    Named out;
    for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
    return out;
}

}  // namespace

int main(int argc, char** argv)
{
    const char* usage = "usage: bench_torch <workload> <threads, 0 = default> [grad] [channels_last] [dump PREFIX]";
    if (argc < 3) return fail(usage);
    const std::string wl = argv[1];
    bool first_order = false, channels_last = false;  // grad: second-order workloads' first-order baseline
    std::string dump_prefix;                          // the check's files
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "grad")
            first_order = true;
        else if (a == "channels_last")
            channels_last = true;
        else if (a == "dump" && i + 1 < argc)
            dump_prefix = argv[++i];
        else
            return fail(usage);
    }
    const int threads = std::atoi(argv[2]);
    if (threads > 0) {
        torch::set_num_threads(threads);
        openblas_set_num_threads(threads);  // libtorch_cpu links the same libopenblas.so.0
    }
    torch::manual_seed(1);
    {
        auto v = torch::ones({1}, torch::requires_grad());
        (v * v).sum().backward();
    }
    const double base = vm_hwm_mib();
    const char* I = first_order ? "libtorch_grad" : "libtorch";
    if (first_order && wl.rfind("hvp_", 0) != 0 && wl != "double_backprop_mlp")
        return fail("grad: only for the second-order workloads (hvp_*, double_backprop_mlp)");
    auto mlp = [] {
        return nn::Sequential(nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128), nn::ReLU(), nn::Linear(128, 10));
    };
    auto lenet = [] {
        return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 6, 5).padding(2)), nn::ReLU(), nn::AvgPool2d(2),
                              nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), nn::ReLU(), nn::AvgPool2d(2), nn::Flatten(),
                              nn::Linear(400, 120), nn::ReLU(), nn::Linear(120, 84), nn::ReLU(), nn::Linear(84, 10));
    };
    // channels_last: the 4-d parameters (conv weights) and 4-d inputs in NHWC memory order.
    auto layout = [&](nn::Module& m) {
        if (!channels_last) return;
        torch::NoGradGuard ng;
        for (auto& p : m.parameters())
            if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    };
    auto input = [&](torch::Tensor x) {
        return channels_last && x.dim() == 4 ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x;
    };
    auto train_step = [&](nn::Sequential& model, torch::optim::SGD& opt, const torch::Tensor& x, const torch::Tensor& y) {
        opt.zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        opt.step();
        return loss.item<double>();
    };

    // What every workload sets: its parameters and data by name (the check's files), the timed step
    // (returns the loss), a setup outside the clock if any, and where the step leaves its gradients.
    Named params, inputs;
    std::function<double()> step;
    std::function<void()> setup = [] {};
    std::function<std::vector<torch::Tensor>()> grads;  // null: the parameters' grad()
    std::string unit = "ms", extra;
    double scale = 1e3;
    double gflop = 0;  // mm_*: GFLOP per step, for the GFLOP/s in the report
    auto seq_train = [&](nn::Sequential net, torch::Tensor x, torch::Tensor y) {
        layout(*net);
        x = input(x);
        params = named(*net);
        inputs = {{"x", x}};
        auto n = std::make_shared<nn::Sequential>(net);
        auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01));
        auto xy = std::make_shared<std::pair<torch::Tensor, torch::Tensor>>(x, y);
        step = [&train_step, n, opt, xy] { return train_step(*n, *opt, xy->first, xy->second); };
    };

    if (wl == "mnist_softmax_sgd") {
        const int64_t B = 64;
        auto x = torch::rand({B, 784});
        auto t = torch::one_hot(labels_mod10(B), 10).to(torch::kFloat);
        auto b0 = torch::zeros({784}, torch::requires_grad());
        const double bound = 1 / std::sqrt(784.0);
        auto W1 = torch::empty({784, 10}).uniform_(-bound, bound).requires_grad_();
        auto b1 = torch::zeros({10}, torch::requires_grad());
        params = {{"b0", b0}, {"W1", W1}, {"b1", b1}};
        inputs = {{"x", x}};
        auto opt = std::make_shared<torch::optim::SGD>(std::vector<torch::Tensor>{b0, W1, b1}, torch::optim::SGDOptions(0.001));
        step = [=] {
            opt->zero_grad();
            auto y = torch::softmax(torch::mm(torch::tanh(x + b0), W1) + b1, 1);
            auto loss = (y - t).pow(2).sum();
            loss.backward();
            opt->step();
            return loss.item<double>();
        };
    } else if (wl == "mlp_b64" || wl == "mlp_b256") {
        const int64_t B = wl == "mlp_b64" ? 64 : 256;
        seq_train(mlp(), torch::rand({B, 784}), labels_mod10(B));
    } else if (wl == "lenet" || wl == "lenet_nomkldnn") {
        if (wl == "lenet_nomkldnn") at::globalContext().setUserEnabledMkldnn(false);
        seq_train(lenet(), torch::rand({64, 1, 28, 28}), labels_mod10(64));
    } else if (wl == "cnn_sigmoid_avgpool") {
        // Source document 002's CNN with 8 filters: conv 5×5 (valid) → sigmoid → 2×2 average pool → dense.
        seq_train(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 8, 5)), nn::Sigmoid(), nn::AvgPool2d(2), nn::Flatten(),
                                 nn::Linear(8 * 12 * 12, 10)),
                  torch::rand({64, 1, 28, 28}), labels_mod10(64));
    } else if (wl == "resnet_b64") {
        nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16), nn::ReLU(),
                           BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
                           nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)), nn::Flatten(), nn::Linear(64, 10));
        net->train();
        seq_train(net, torch::rand({64, 1, 28, 28}), labels_mod10(64));
    } else if (wl == "bn_conv") {
        // conv 3×3 (16→16, pad 1, no bias) → BatchNorm2d (train) → ReLU → mean, SGD
        nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(16, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16), nn::ReLU());
        net->train();
        layout(*net);
        auto x = input(torch::rand({64, 16, 28, 28}));
        params = named(*net);
        inputs = {{"x", x}};
        auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01));
        step = [=]() mutable {
            opt->zero_grad();
            auto loss = net->forward(x).mean();
            loss.backward();
            opt->step();
            return loss.item<double>();
        };
    } else if (wl == "layernorm_mlp") {
        nn::Sequential net(nn::Linear(784, 256), nn::LayerNorm(nn::LayerNormOptions({256})), nn::GELU(), nn::Linear(256, 128),
                           nn::LayerNorm(nn::LayerNormOptions({128})), nn::GELU(), nn::Linear(128, 10));
        seq_train(net, torch::rand({64, 784}), labels_mod10(64));
    } else if (wl == "hvp_mlp" || wl == "hvp_lenet") {
        // Hessian-vector product of the loss w.r.t. all parameters, v ~ U(−1, 1) per parameter:
        // grad(create_graph) of the loss, then grad of Σ_k sum(g_k ⊙ v_k). grad: zero_grad, forward, backward.
        nn::Sequential net = wl == "hvp_mlp" ? mlp() : lenet();
        layout(*net);
        auto x = input(wl == "hvp_mlp" ? torch::rand({64, 784}) : torch::rand({64, 1, 28, 28}));
        auto y = labels_mod10(64);
        params = named(*net);
        inputs = {{"x", x}};
        const std::vector<torch::Tensor> ps = net->parameters();
        std::vector<torch::Tensor> v;
        for (std::size_t k = 0; k < ps.size(); ++k) {
            v.push_back(torch::empty_like(ps[k]).uniform_(-1, 1));
            inputs.emplace_back("v." + params[k].first, v.back());
        }
        auto hv = std::make_shared<std::vector<torch::Tensor>>();
        if (first_order) {
            step = [=]() mutable {
                net->zero_grad();
                auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
                loss.backward();
                return loss.item<double>();
            };
        } else {
            step = [=]() mutable {
                auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
                auto g = torch::autograd::grad({loss}, ps, {}, /*retain_graph=*/true, /*create_graph=*/true);
                auto dot = (g[0] * v[0]).sum();
                for (std::size_t k = 1; k < g.size(); ++k) dot = dot + (g[k] * v[k]).sum();
                *hv = torch::autograd::grad({dot}, ps);  // Hv, one tensor per parameter
                return loss.item<double>();
            };
            grads = [hv] { return *hv; };
        }
    } else if (wl == "double_backprop_mlp") {
        // One SGD step on loss = CE + λ‖∂CE/∂x‖², λ = 0.1; grad: the same step on CE alone (mlp_b64's step).
        const double lambda = 0.1;
        nn::Sequential net = mlp();
        const std::vector<torch::Tensor> ps = net->parameters();
        auto opt = std::make_shared<torch::optim::SGD>(ps, torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 784});
        auto y = labels_mod10(64);
        auto xg = x.clone().requires_grad_();
        params = named(*net);
        inputs = {{"x", x}};
        if (first_order) {
            step = [=, &train_step]() mutable { return train_step(net, *opt, x, y); };
        } else {
            step = [=]() mutable {
                opt->zero_grad();
                auto ce = torch::nn::functional::cross_entropy(net->forward(xg), y);
                auto gx = torch::autograd::grad({ce}, {xg}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
                auto loss = ce + lambda * (gx * gx).sum();
                loss.backward({}, c10::nullopt, false, ps);  // parameters only, not x
                opt->step();
                return loss.item<double>();
            };
        }
    } else if (wl == "lstm_step" || wl == "gru_step") {
        SeqLM net(wl == "lstm_step");
        const auto tok = seq::tokens();
        const auto all = torch::tensor(tok, torch::kLong).reshape({int64_t(seq::L + 1), int64_t(seq::B)});
        const auto x = all.slice(0, 0, seq::L).contiguous(), y = all.slice(0, 1).reshape({-1}).contiguous();
        params = named(*net);
        auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01));
        step = [=]() mutable {
            opt->zero_grad();
            auto loss = net->loss(x, y);
            loss.backward();
            opt->step();
            return loss.item<double>();
        };
    } else if (wl == "attention_step") {
        PreLnBlock net;
        const auto x = torch::rand({int64_t(seq::BA), int64_t(seq::LA), int64_t(seq::D)});
        params = named(*net);
        inputs = {{"x", x}};
        auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01));
        step = [=]() mutable {
            opt->zero_grad();
            const auto y = net->forward(x);
            auto loss = (y * y).mean();
            loss.backward();
            opt->step();
            return loss.item<double>();
        };
    } else if (wl == "tape_1" || wl == "tape_64x64") {
        const std::vector<int64_t> shape = wl == "tape_1" ? std::vector<int64_t>{1} : std::vector<int64_t>{64, 64};
        const int N = 10000;
        auto x0 = torch::full(shape, 0.5, torch::requires_grad());
        auto w = torch::ones(shape, torch::requires_grad());
        params = {{"x0", x0}, {"w", w}};
        auto fb = std::make_shared<std::pair<double, double>>(0.0, 0.0);  // forward, backward seconds
        step = [=]() mutable {
            // Both gradients reset to undefined inside the clock (xgrad's tape.clear() releases its own there too).
            x0.mutable_grad() = torch::Tensor();
            w.mutable_grad() = torch::Tensor();
            const auto t0 = std::chrono::steady_clock::now();
            auto x = x0;
            for (int i = 0; i < N; ++i) {
                switch (i % 4) {
                    case 0: x = x * 1.0001; break;
                    case 1: x = x + 0.0001; break;
                    case 2: x = torch::tanh(x); break;
                    default: x = x * w; break;
                }
            }
            auto loss = x.sum();
            const auto t1 = std::chrono::steady_clock::now();
            loss.backward();
            const double l = loss.item<double>();
            x = torch::Tensor();
            loss = torch::Tensor();
            const auto t2 = std::chrono::steady_clock::now();
            fb->first += std::chrono::duration<double>(t1 - t0).count();
            fb->second += std::chrono::duration<double>(t2 - t1).count();
            return l;
        };
        unit = "ns/op";
        scale = 1e9 / double(N);
        if (dump_prefix.empty()) {
            const Stats s = run(setup, step);
            char e[96];
            std::snprintf(e, sizeof e, ",\"fwd_share\":%.3f", fb->first / (fb->first + fb->second));
            report(I, wl, threads, unit.c_str(), scale, s, base, e);
            return 0;
        }
    } else if (wl == "mm_512" || wl == "mm_1024") {
        const int64_t n = wl == "mm_512" ? 512 : 1024;
        auto A = torch::randn({n, n}, torch::requires_grad());
        auto B = torch::randn({n, n}, torch::requires_grad());
        params = {{"A", A}, {"B", B}};
        step = [=]() mutable {
            // Gradients zeroed in place inside the clock, as xgrad's Parameter::zero_grad (both sides).
            if (A.grad().defined()) A.mutable_grad().zero_();
            if (B.grad().defined()) B.mutable_grad().zero_();
            auto loss = torch::mm(A, B).sum();
            loss.backward();
            return loss.item<double>();
        };
        gflop = 6.0 * double(n) * double(n) * double(n) / 1e9;
    } else {
        return fail("unknown workload " + wl);
    }
    if (!dump_prefix.empty()) return dump(params, inputs, dump_prefix, step, grads);
    const Stats s = run(setup, step);
    if (gflop > 0) {
        char e[64];
        std::snprintf(e, sizeof e, ",\"gflops\":%.1f", gflop / s.median);
        extra = e;
    }
    report(I, wl, threads, unit.c_str(), scale, s, base, extra);
    return 0;
}

// libtorch (C++ API) side of the benchmark workloads, exactly as docs/benchmarks.md defines
// them: bench_torch <workload> <threads> [grad | dump PREFIX]. Prints one JSON line like bench_xgrad.
// The optional `grad` (second-order workloads hvp_*, double_backprop_mlp only) times the same step
// without its second-order part, as bench_xgrad's impl grad does. `dump PREFIX` (sequence workloads
// lstm_step, gru_step, attention_step only) times nothing: it writes the initial weights, the input,
// the loss and the gradients of one forward + backward for bench_xgrad's check (seq_workloads.hpp).
#include <cblas.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

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

/// The check's files (seq_workloads.hpp): PREFIX.weights.safetensors (the parameters, state-dict names)
/// and PREFIX.ref.safetensors (input, loss, grad.<name>) after one forward + backward of `loss_fn`.
template <class LossFn>
int dump(nn::Module& m, const std::string& prefix, LossFn loss_fn, const torch::Tensor* input)
{
    auto add = [](seq::SafetensorsWriter& w, const std::string& name, const torch::Tensor& t) {
        const auto c = t.detach().contiguous();
        w.add(name, c.sizes().vec(), c.data_ptr<float>(), std::size_t(c.numel()));
    };
    seq::SafetensorsWriter weights, ref;
    for (const auto& p : m.named_parameters()) add(weights, p.key(), p.value());
    m.zero_grad();
    const torch::Tensor loss = loss_fn();
    loss.backward();
    if (input) add(ref, "input", *input);
    add(ref, "loss", loss.reshape({1}));
    for (const auto& p : m.named_parameters()) add(ref, "grad." + p.key(), p.value().grad());
    if (!weights.write(prefix + ".weights.safetensors") || !ref.write(prefix + ".ref.safetensors"))
        return fail("dump: cannot write " + prefix + ".*.safetensors");
    std::printf("{\"impl\":\"dump\",\"loss\":%.9g}\n", loss.item<double>());
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 3 && !(argc == 4 && std::string(argv[3]) == "grad") && !(argc == 5 && std::string(argv[3]) == "dump"))
        return fail("usage: bench_torch <workload> <threads> [grad | dump PREFIX]");
    const std::string wl = argv[1];
    const bool first_order = argc == 4;  // second-order workloads: their first-order baseline
    const std::string dump_prefix = argc == 5 ? argv[4] : "";  // sequence workloads: the check's files
    const int threads = std::atoi(argv[2]);
    torch::set_num_threads(threads);
    openblas_set_num_threads(threads);  // libtorch_cpu links the same libopenblas.so.0
    torch::manual_seed(1);
    {
        auto v = torch::ones({1}, torch::requires_grad());
        (v * v).sum().backward();
    }
    const double base = vm_hwm_mib();
    const char* I = first_order ? "libtorch_grad" : "libtorch";
    if (first_order && wl.rfind("hvp_", 0) != 0 && wl != "double_backprop_mlp")
        return fail("grad: only for the second-order workloads (hvp_*, double_backprop_mlp)");
    if (!dump_prefix.empty() && wl != "lstm_step" && wl != "gru_step" && wl != "attention_step")
        return fail("dump: only for the sequence workloads (lstm_step, gru_step, attention_step)");
    auto mlp = [] {
        return nn::Sequential(nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128), nn::ReLU(), nn::Linear(128, 10));
    };
    auto lenet = [] {
        return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 6, 5).padding(2)), nn::ReLU(), nn::AvgPool2d(2),
                              nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), nn::ReLU(), nn::AvgPool2d(2), nn::Flatten(),
                              nn::Linear(400, 120), nn::ReLU(), nn::Linear(120, 84), nn::ReLU(), nn::Linear(84, 10));
    };
    auto train_step = [&](nn::Sequential& model, torch::optim::SGD& opt, const torch::Tensor& x, const torch::Tensor& y) {
        opt.zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        opt.step();
    };

    if (wl == "mnist_softmax_sgd") {
        const int64_t B = 64;
        auto x = torch::rand({B, 784});
        auto t = torch::one_hot(labels_mod10(B), 10).to(torch::kFloat);
        auto b0 = torch::zeros({784}, torch::requires_grad());
        const double bound = 1 / std::sqrt(784.0);
        auto W1 = torch::empty({784, 10}).uniform_(-bound, bound).requires_grad_();
        auto b1 = torch::zeros({10}, torch::requires_grad());
        torch::optim::SGD opt({b0, W1, b1}, torch::optim::SGDOptions(0.001));
        auto step = [&] {
            opt.zero_grad();
            auto y = torch::softmax(torch::mm(torch::tanh(x + b0), W1) + b1, 1);
            (y - t).pow(2).sum().backward();
            opt.step();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "mlp_b64" || wl == "mlp_b256") {
        const int64_t B = wl == "mlp_b64" ? 64 : 256;
        nn::Sequential net = mlp();
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto x = torch::rand({B, 784});
        auto y = labels_mod10(B);
        report(I, wl, threads, "ms", 1e3, run([] {}, [&] { train_step(net, opt, x, y); }), base);
    } else if (wl == "lenet" || wl == "lenet_nomkldnn") {
        if (wl == "lenet_nomkldnn") at::globalContext().setUserEnabledMkldnn(false);
        nn::Sequential net = lenet();
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 1, 28, 28});
        auto y = labels_mod10(64);
        report(I, wl, threads, "ms", 1e3, run([] {}, [&] { train_step(net, opt, x, y); }), base);
    } else if (wl == "resnet_b64") {
        nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16), nn::ReLU(),
                           BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
                           nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)), nn::Flatten(), nn::Linear(64, 10));
        net->train();
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 1, 28, 28});
        auto y = labels_mod10(64);
        report(I, wl, threads, "ms", 1e3, run([] {}, [&] { train_step(net, opt, x, y); }), base);
    } else if (wl == "bn_conv") {
        // conv 3×3 (16→16, pad 1, no bias) → BatchNorm2d (train) → ReLU → mean, SGD
        nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(16, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16), nn::ReLU());
        net->train();
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 16, 28, 28});
        auto step = [&] {
            opt.zero_grad();
            net->forward(x).mean().backward();
            opt.step();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "layernorm_mlp") {
        nn::Sequential net(nn::Linear(784, 256), nn::LayerNorm(nn::LayerNormOptions({256})), nn::GELU(), nn::Linear(256, 128),
                           nn::LayerNorm(nn::LayerNormOptions({128})), nn::GELU(), nn::Linear(128, 10));
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 784});
        auto y = labels_mod10(64);
        report(I, wl, threads, "ms", 1e3, run([] {}, [&] { train_step(net, opt, x, y); }), base);
    } else if (wl == "hvp_mlp" || wl == "hvp_lenet") {
        // Hessian-vector product of the loss w.r.t. all parameters, v ~ U(−1, 1) per parameter:
        // grad(create_graph) of the loss, then grad of Σ_k sum(g_k ⊙ v_k). grad: zero_grad, forward, backward.
        nn::Sequential net = wl == "hvp_mlp" ? mlp() : lenet();
        auto x = wl == "hvp_mlp" ? torch::rand({64, 784}) : torch::rand({64, 1, 28, 28});
        auto y = labels_mod10(64);
        const std::vector<torch::Tensor> params = net->parameters();
        std::vector<torch::Tensor> v;
        for (const auto& p : params) v.push_back(torch::empty_like(p).uniform_(-1, 1));
        auto hvp = [&] {
            auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
            auto g = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
            auto dot = (g[0] * v[0]).sum();
            for (std::size_t k = 1; k < g.size(); ++k) dot = dot + (g[k] * v[k]).sum();
            torch::autograd::grad({dot}, params);  // Hv, one tensor per parameter
        };
        auto grad = [&] {
            net->zero_grad();
            torch::nn::functional::cross_entropy(net->forward(x), y).backward();
        };
        if (first_order)
            report(I, wl, threads, "ms", 1e3, run([] {}, grad), base);
        else
            report(I, wl, threads, "ms", 1e3, run([] {}, hvp), base);
    } else if (wl == "double_backprop_mlp") {
        // One SGD step on loss = CE + λ‖∂CE/∂x‖², λ = 0.1; grad: the same step on CE alone (mlp_b64's step).
        const double lambda = 0.1;
        nn::Sequential net = mlp();
        const std::vector<torch::Tensor> params = net->parameters();
        torch::optim::SGD opt(params, torch::optim::SGDOptions(0.01));
        auto x = torch::rand({64, 784});
        auto y = labels_mod10(64);
        auto xg = x.clone().requires_grad_();
        auto step = [&] {
            opt.zero_grad();
            auto ce = torch::nn::functional::cross_entropy(net->forward(xg), y);
            auto gx = torch::autograd::grad({ce}, {xg}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
            (ce + lambda * (gx * gx).sum()).backward({}, c10::nullopt, false, params);  // parameters only, not x
            opt.step();
        };
        if (first_order)
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { train_step(net, opt, x, y); }), base);
        else
            report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "lstm_step" || wl == "gru_step") {
        SeqLM net(wl == "lstm_step");
        const auto tok = seq::tokens();
        const auto all = torch::tensor(tok, torch::kLong).reshape({int64_t(seq::L + 1), int64_t(seq::B)});
        const auto x = all.slice(0, 0, seq::L).contiguous(), y = all.slice(0, 1).reshape({-1}).contiguous();
        if (!dump_prefix.empty()) return dump(*net, dump_prefix, [&] { return net->loss(x, y); }, nullptr);
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto step = [&] {
            opt.zero_grad();
            net->loss(x, y).backward();
            opt.step();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "attention_step") {
        PreLnBlock net;
        const auto x = torch::rand({int64_t(seq::BA), int64_t(seq::LA), int64_t(seq::D)});
        auto loss = [&] {
            const auto y = net->forward(x);
            return (y * y).mean();
        };
        if (!dump_prefix.empty()) return dump(*net, dump_prefix, loss, &x);
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
        auto step = [&] {
            opt.zero_grad();
            loss().backward();
            opt.step();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "tape_1" || wl == "tape_64x64") {
        const std::vector<int64_t> shape = wl == "tape_1" ? std::vector<int64_t>{1} : std::vector<int64_t>{64, 64};
        const int N = 10000;
        auto x0 = torch::full(shape, 0.5, torch::requires_grad());
        auto w = torch::ones(shape, torch::requires_grad());
        double fwd = 0, bwd = 0;
        auto setup = [&] {
            x0.mutable_grad() = torch::Tensor();
            w.mutable_grad() = torch::Tensor();
        };
        auto rep = [&] {
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
            x = torch::Tensor();
            loss = torch::Tensor();
            const auto t2 = std::chrono::steady_clock::now();
            fwd += std::chrono::duration<double>(t1 - t0).count();
            bwd += std::chrono::duration<double>(t2 - t1).count();
        };
        const Stats s = run(setup, rep);
        char extra[96];
        std::snprintf(extra, sizeof extra, ",\"fwd_share\":%.3f", fwd / (fwd + bwd));
        report(I, wl, threads, "ns/op", 1e9 / double(N), s, base, extra);
    } else if (wl == "mm_512" || wl == "mm_1024") {
        const int64_t n = wl == "mm_512" ? 512 : 1024;
        auto A = torch::randn({n, n}, torch::requires_grad());
        auto B = torch::randn({n, n}, torch::requires_grad());
        auto setup = [&] {
            A.mutable_grad() = torch::Tensor();
            B.mutable_grad() = torch::Tensor();
        };
        auto rep = [&] { torch::mm(A, B).sum().backward(); };
        const Stats s = run(setup, rep);
        char extra[64];
        std::snprintf(extra, sizeof extra, ",\"gflops\":%.1f", 6.0 * double(n) * double(n) * double(n) / s.median / 1e9);
        report(I, wl, threads, "ms", 1e3, s, base, extra);
    } else {
        return fail("unknown workload " + wl);
    }
    return 0;
}

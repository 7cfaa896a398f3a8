// libtorch (C++ API) side of the benchmark workloads, exactly as docs/benchmarks.md defines
// them: bench_torch <workload> <threads> [grad]. Prints one JSON line like bench_xgrad.
// The optional `grad` (second-order workloads hvp_*, double_backprop_mlp only) times the same step
// without its second-order part, as bench_xgrad's impl grad does.
#include <cblas.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

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

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 3 && !(argc == 4 && std::string(argv[3]) == "grad"))
        return fail("usage: bench_torch <workload> <threads> [grad]");
    const std::string wl = argv[1];
    const bool first_order = argc == 4;  // second-order workloads: their first-order baseline
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

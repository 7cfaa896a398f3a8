// xgrad side of the benchmark workloads (docs/benchmarks.md), one (impl, workload, threads)
// per process: bench_xgrad <tape|hand|grad|blas|sgemm> <workload> <threads>. Prints one JSON line.
//   bench_xgrad check <lstm_step|gru_step|attention_step> <threads> PREFIX: times nothing; loads the
//   files `bench_torch W T dump PREFIX` wrote (libtorch's weights by state-dict name, its input, loss and
//   gradients), runs one forward + backward on them and prints how far xgrad's loss and gradients are
//   from libtorch's (seq_workloads.hpp).
//   tape: xgrad's tape and nn library;  hand: hand-written backprop on the same kernels
//   (reference/steps/xgrad/reference/hand_steps.hpp);  blas: OpenBLAS's plain cblas_sgemm and sgemm: the GEMM xgrad uses (oneDNN's
//   dnnl_sgemm when built with it), the ceilings for workloads gemm_512, gemm_1024;  grad (second-order
//   workloads hvp_*, double_backprop_mlp only): the same step without its second-order part, the
//   tape's first-order gradient of the same network, the time the second-order step is divided by.

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "second_order.hpp"
#include "seq_workloads.hpp"
#include "timing.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/reference/hand_steps.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::bench;
using namespace xgrad::reference;

namespace {

IndexTensor labels_mod10(std::size_t B)
{
    IndexTensor l = IndexTensor::from_shape({B});
    for (std::size_t i = 0; i < B; ++i) l(i) = Index(i % 10);
    return l;
}

Tensor<F> one_hot_mod10(std::size_t B)
{
    Tensor<F> t = xt::zeros<F>({B, std::size_t(10)});
    for (std::size_t i = 0; i < B; ++i) t(i, i % 10) = 1;
    return t;
}

/// Times the tape's training step of `net`: cross-entropy on (x, y), backward, SGD(lr).
Stats tape_ce_steps(nn::Module<F>& net, const Tensor<F>& x, const IndexTensor& y, F lr)
{
    Tape<F> tape;
    nn::SGD<F> opt(net.parameters(), {lr});
    return run([] {}, [&] {
        opt.zero_grad();
        tape.backward(cross_entropy(net(tape.borrow(x)), y));
        opt.step();
        tape.clear();
    });
}

int fail(const std::string& why)
{
    std::fprintf(stderr, "bench_xgrad: %s\n", why.c_str());
    return 2;
}

namespace seq = xgrad::bench::seq;

/// lstm_step / gru_step (R = nn::LSTM<F> or nn::GRU<F>): tokens (L, B) → Embedding(V, E) → R(E → H, 2
/// layers, time-major) → Linear(H, V) on every position → cross-entropy (mean over L·B). Named as
/// bench_torch's SeqLM: embedding.weight, rnn.{weight_ih_l0, …}, head.weight, head.bias.
template <class R>
class SeqLM : public nn::Module<F> {
public:
    explicit SeqLM(std::uint64_t seed)
        : embedding_(register_module("embedding", std::make_unique<nn::Embedding<F>>(nn::EmbeddingOptions(seq::V, seq::E), seed))),
          rnn_(register_module("rnn", std::make_unique<R>(nn::LSTMOptions(seq::E, seq::H).num_layers(seq::LAYERS), seed + 1))),
          head_(register_module("head", std::make_unique<nn::Linear<F>>(seq::H, seq::V, true, seed + 2)))
    {
    }
    /// x (L, B) token ids, y (L·B) the next tokens, time-major.
    Var<F> loss(Tape<F>& tape, const IndexTensor& x, const IndexTensor& y)
    {
        const Var<F> h = rnn_(embedding_.forward(tape, x));  // (L, B, H)
        return cross_entropy(head_(reshape(h, rows_)), y);
    }
    Var<F> forward(const Var<F>&) override { throw std::logic_error("SeqLM: call loss(tape, x, y)"); }

private:
    nn::Embedding<F>& embedding_;
    R& rnn_;
    nn::Linear<F>& head_;
    const std::vector<std::ptrdiff_t> rows_{-1, std::ptrdiff_t(seq::H)};  // (L, B, H) → (L·B, H); kept: no allocation per step
};

/// The sequence workloads' token data (seq::tokens): inputs x (L, B), next-token targets y (L·B).
std::pair<IndexTensor, IndexTensor> seq_tokens()
{
    const auto tok = seq::tokens();
    IndexTensor x = IndexTensor::from_shape({seq::L, seq::B}), y = IndexTensor::from_shape({seq::L * seq::B});
    for (std::size_t i = 0; i < seq::L * seq::B; ++i) {
        x.data()[i] = Index(tok[i]);
        y.data()[i] = Index(tok[i + seq::B]);
    }
    return {x, y};
}

/// attention_step's block: pre-LayerNorm, causal self-attention (4 heads), GELU MLP (4·D), no dropout, batch-first.
nn::TransformerEncoderLayerOptions attention_block_options()
{
    return nn::TransformerEncoderLayerOptions(seq::D, seq::NH)
        .dim_feedforward(seq::FF)
        .dropout(0.0)
        .activation("gelu")
        .batch_first(true)
        .norm_first(true);
}

/// The check against libtorch (seq_workloads.hpp): loads PREFIX.weights.safetensors into `net` by
/// name, PREFIX.ref.safetensors (input if `input` is given, loss, grad.<name>), runs loss_of(tape,
/// input) forward and backward once, prints the relative differences as one JSON line. Exit status 0
/// when all are within seq::check_tolerance, 1 when not.
template <class LossOf>
int check_against_torch(nn::Module<F>& net, const std::string& wl, const std::string& prefix, Tensor<F>* input, LossOf loss_of)
{
    try {
        nn::load_weights(net, prefix + ".weights.safetensors");
    } catch (const std::exception& e) {
        return fail(std::string("check: ") + e.what());
    }
    const auto named = net.named_parameters();
    Tensor<F> ref_loss = Tensor<F>::from_shape({1});
    std::vector<Tensor<F>> ref_grads;
    ref_grads.reserve(named.size());
    std::vector<std::pair<std::string, Tensor<F>*>> entries{{"loss", &ref_loss}};
    if (input) entries.emplace_back("input", input);
    for (const auto& [name, p] : named) {
        ref_grads.push_back(Tensor<F>::from_shape(p->shape()));
        entries.emplace_back("grad." + name, &ref_grads.back());
    }
    try {
        nn::load_tensors<F>(prefix + ".ref.safetensors", entries);
    } catch (const std::exception& e) {
        return fail(std::string("check: ") + e.what());
    }
    Tape<F> tape;
    net.zero_grad();
    const Var<F> loss = loss_of(tape);
    tape.backward(loss);
    const double lx = double(loss.value().data()[0]), lt = double(ref_loss(0));
    const double loss_rel = std::abs(lx - lt) / std::max(std::abs(lt), 1e-30);
    double worst = 0;
    std::string worst_name;
    for (std::size_t k = 0; k < named.size(); ++k) {
        const Tensor<F>& g = named[k].second->grad();
        const Tensor<F>& r = ref_grads[k];
        double diff = 0, scale = 0;
        for (std::size_t i = 0; i < r.size(); ++i) {
            diff = std::max(diff, std::abs(double(g.data()[i]) - double(r.data()[i])));
            scale = std::max(scale, std::abs(double(r.data()[i])));
        }
        const double rel = std::isfinite(diff) ? diff / std::max(scale, 1e-30) : 1e300;
        if (rel >= worst) worst = rel, worst_name = named[k].first;
    }
    const bool ok = loss_rel <= seq::check_tolerance && worst <= seq::check_tolerance;
    std::printf("{\"impl\":\"check\",\"workload\":\"%s\",\"loss_libtorch\":%.9g,\"loss_xgrad\":%.9g,\"loss_rel\":%.3g,"
                "\"grad_max_rel\":%.3g,\"worst\":\"%s\",\"parameters\":%zu,\"tolerance\":%g,\"ok\":%s}\n",
                wl.c_str(), lt, lx, loss_rel, worst, worst_name.c_str(), named.size(), seq::check_tolerance,
                ok ? "true" : "false");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 4 && !(argc == 5 && std::string(argv[1]) == "check"))
        return fail("usage: bench_xgrad <tape|hand|grad|blas|sgemm> <workload> <threads>  |  bench_xgrad check <workload> <threads> PREFIX");
    const std::string impl = argv[1], wl = argv[2];
    if (impl == "check" && argc != 5) return fail("check: needs the PREFIX of bench_torch's dump");
    const int threads = std::atoi(argv[3]);
    xgrad::set_num_threads(threads);  // OpenBLAS and OpenMP (oneDNN)
    {  // base memory: library loaded and one tiny op done
        Tape<F> t;
        auto v = t.variable(Tensor<F>{1.0f});
        t.backward(sum(v * v));
    }
    const double base = vm_hwm_mib();
    const char* I = impl.c_str();
    const F lr = 0.01f;

    if (wl == "mnist_softmax_sgd") {
        const std::size_t B = 64;
        const Tensor<F> x = rand_uniform<F>({B, 784}, 1), t = one_hot_mod10(B);
        const F bound = 1 / std::sqrt(784.0f);
        Parameter<F> b0(xt::zeros<F>({784})), W1(rand_uniform<F>({784, 10}, 2, -bound, bound)), b1(xt::zeros<F>({10}));
        if (impl == "tape") {
            Tape<F> tape;
            nn::SGD<F> opt({&b0, &W1, &b1}, {0.001});
            auto step = [&] {
                opt.zero_grad();
                auto y = softmax(matmul(tanh(tape.borrow(x) + tape.param(b0)), tape.param(W1)) + tape.param(b1), 1);
                tape.backward(mse_loss(y, tape.borrow(t), Reduction::sum));
                opt.step();
                tape.clear();
            };
            report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
        } else if (impl == "hand") {
            HandMnistSoftmaxSgd h(b0.value(), W1.value(), b1.value());
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { h.step(x, t, 0.001f); }), base);
        } else {
            return fail("no " + impl + " for " + wl);
        }
    } else if (wl == "mlp_b64" || wl == "mlp_b256") {
        const std::size_t B = wl == "mlp_b64" ? 64 : 256;
        const Tensor<F> x = rand_uniform<F>({B, 784}, 1);
        const IndexTensor y = labels_mod10(B);
        nn::MLP<F> net({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3);
        if (impl == "tape") {
            report(I, wl, threads, "ms", 1e3, tape_ce_steps(net, x, y, lr), base);
        } else if (impl == "hand") {
            HandMlp h(net);
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { h.step(x, y, lr); }), base);
        } else {
            return fail("no " + impl + " for " + wl);
        }
    } else if (wl == "lenet") {
        const std::size_t B = 64;
        const Tensor<F> x = rand_uniform<F>({B, 1, 28, 28}, 1);
        const IndexTensor y = labels_mod10(B);
        auto net = reference::lenet<F>(5, false);
        if (impl == "tape") {
            report(I, wl, threads, "ms", 1e3, tape_ce_steps(*net, x, y, lr), base);
        } else if (impl == "hand") {
            HandLenet h(*net);
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { h.step(x, y, lr); }), base);
        } else {
            return fail("no " + impl + " for " + wl);
        }
    } else if (wl == "resnet_b64" || wl == "layernorm_mlp") {
        // Networks with normalization layers, tape only (no hand-written step): BatchNorm2d in train mode
        // (batch statistics, running statistics updated), LayerNorm + GELU.
        if (impl != "tape") return fail("no " + impl + " for " + wl);
        const std::size_t B = 64;
        const bool res = wl == "resnet_b64";
        const Tensor<F> x = rand_uniform<F>(res ? Shape{B, 1, 28, 28} : Shape{B, 784}, 1);
        const IndexTensor y = labels_mod10(B);
        auto net = res ? reference::mnist_resnet<F>(5) : reference::layernorm_mlp<F>(5, 0.0);
        net->train();
        report(I, wl, threads, "ms", 1e3, tape_ce_steps(*net, x, y, lr), base);
    } else if (wl == "bn_conv") {
        // x (64,16,28,28) → conv 3×3 (16→16, pad 1, no bias) → BatchNorm2d (train) → ReLU → mean, SGD.
        const std::size_t B = 64, C = 16;
        const Tensor<F> x = rand_uniform<F>({B, C, 28, 28}, 1);
        nn::Sequential<F> net;
        net.emplace<nn::Conv2d<F>>(nn::Conv2dOptions(C, C, 3).padding(1).bias(false), 5);
        net.emplace<nn::BatchNorm2d<F>>(nn::BatchNorm2dOptions(C));
        net.emplace<nn::ReLU<F>>();
        if (impl == "tape") {
            Tape<F> tape;
            nn::SGD<F> opt(net.parameters(), {lr});
            auto step = [&] {
                opt.zero_grad();
                tape.backward(mean(net(tape.borrow(x))));
                opt.step();
                tape.clear();
            };
            report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
        } else if (impl == "hand") {
            HandBnConv h(net);
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { h.step(x, lr); }), base);
        } else {
            return fail("no " + impl + " for " + wl);
        }
    } else if (wl == "hvp_mlp" || wl == "hvp_lenet") {
        // Hessian-vector product of the loss w.r.t. all parameters (second_order.hpp); impl grad: the
        // plain gradient of the same loss (zero the gradients, forward, backward).
        if (impl != "tape" && impl != "grad") return fail("no " + impl + " for " + wl);
        const std::size_t B = 64;
        const bool le = wl == "hvp_lenet";
        const Tensor<F> x = rand_uniform<F>(le ? Shape{B, 1, 28, 28} : Shape{B, 784}, 1);
        const IndexTensor y = labels_mod10(B);
        std::unique_ptr<nn::Sequential<F>> net;
        if (le)
            net = reference::lenet<F>(5, false);
        else
            net = std::make_unique<nn::MLP<F>>(std::vector<std::size_t>{784, 256, 128, 10}, nn::Activation::relu,
                                               nn::Activation::identity, 3);
        ParamHvp<F> hvp(*net, 11);
        Tape<F> tape;
        if (impl == "tape")
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { hvp.step(tape, x, y); }), base);
        else
            report(I, wl, threads, "ms", 1e3, run([] {}, [&] { hvp.gradient(tape, x, y); }), base);
    } else if (wl == "double_backprop_mlp") {
        // One SGD step on loss = CE + λ‖∂CE/∂x‖², λ = 0.1 (input-gradient penalty); impl grad: the
        // same step on CE alone (= mlp_b64's step).
        if (impl != "tape" && impl != "grad") return fail("no " + impl + " for " + wl);
        const std::size_t B = 64;
        const F lambda = 0.1f;
        const Tensor<F> x = rand_uniform<F>({B, 784}, 1);
        const IndexTensor y = labels_mod10(B);
        nn::MLP<F> net({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3);
        Tape<F> tape;
        nn::SGD<F> opt(net.parameters(), {lr});
        auto step = [&] {
            opt.zero_grad();
            const Var<F> xv = tape.variable(x);
            const Var<F> ce = cross_entropy(net(xv), y);
            const Var<F> gx = grad(ce, {xv}, GradOptions{true})[0];
            tape.backward(ce + lambda * sum(gx * gx));
            opt.step();
            tape.clear();
        };
        auto first_order = [&] {
            opt.zero_grad();
            tape.backward(cross_entropy(net(tape.borrow(x)), y));
            opt.step();
            tape.clear();
        };
        if (impl == "tape")
            report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
        else
            report(I, wl, threads, "ms", 1e3, run([] {}, first_order), base);
    } else if (wl == "lstm_step" || wl == "gru_step") {
        // Embedding → LSTM / GRU (2 layers) → Linear head → cross-entropy over all positions, SGD (seq_workloads.hpp).
        if (impl != "tape" && impl != "check") return fail("no " + impl + " for " + wl);
        const auto data = seq_tokens();
        const IndexTensor &x = data.first, &y = data.second;
        std::unique_ptr<nn::Module<F>> owner;
        std::function<Var<F>(Tape<F>&)> loss;
        if (wl == "lstm_step") {
            auto m = std::make_unique<SeqLM<nn::LSTM<F>>>(5);
            loss = [net = m.get(), &x, &y](Tape<F>& tape) { return net->loss(tape, x, y); };
            owner = std::move(m);
        } else {
            auto m = std::make_unique<SeqLM<nn::GRU<F>>>(5);
            loss = [net = m.get(), &x, &y](Tape<F>& tape) { return net->loss(tape, x, y); };
            owner = std::move(m);
        }
        if (impl == "check") return check_against_torch(*owner, wl, argv[4], nullptr, loss);
        Tape<F> tape;
        nn::SGD<F> opt(owner->parameters(), {lr});
        auto step = [&] {
            opt.zero_grad();
            tape.backward(loss(tape));
            opt.step();
            tape.clear();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "attention_step") {
        // One pre-LayerNorm transformer block (causal self-attention, GELU MLP) on x (BA, LA, D),
        // loss = mean(y²), SGD (seq_workloads.hpp).
        if (impl != "tape" && impl != "check") return fail("no " + impl + " for " + wl);
        nn::TransformerEncoderLayer<F> block(attention_block_options(), 5);
        block.train();
        Tensor<F> x = rand_uniform<F>({seq::BA, seq::LA, seq::D}, 1);
        auto loss = [&](Tape<F>& tape) {
            const Var<F> out = block.forward(tape.borrow(x), nullptr, true);
            return mean(out * out);
        };
        if (impl == "check") return check_against_torch(block, wl, argv[4], &x, loss);
        Tape<F> tape;
        nn::SGD<F> opt(block.parameters(), {lr});
        auto step = [&] {
            opt.zero_grad();
            tape.backward(loss(tape));
            opt.step();
            tape.clear();
        };
        report(I, wl, threads, "ms", 1e3, run([] {}, step), base);
    } else if (wl == "tape_1" || wl == "tape_64x64") {
        if (impl != "tape") return fail("no " + impl + " for " + wl);
        const Shape shape = wl == "tape_1" ? Shape{1} : Shape{64, 64};
        const std::size_t N = 10000;
        const Tensor<F> x0 = xt::full_like(Tensor<F>::from_shape(shape), 0.5f), w0 = xt::ones<F>(shape);
        Tape<F> tape;
        double fwd = 0, bwd = 0;
        auto rep = [&] {
            const auto t0 = std::chrono::steady_clock::now();
            auto x = tape.variable(x0);
            auto w = tape.variable(w0);
            for (std::size_t i = 0; i < N; ++i) {
                switch (i % 4) {
                    case 0: x = x * 1.0001f; break;
                    case 1: x = x + 0.0001f; break;
                    case 2: x = tanh(x); break;
                    default: x = x * w; break;
                }
            }
            auto loss = sum(x);
            const auto t1 = std::chrono::steady_clock::now();
            tape.backward(loss);
            tape.clear();
            const auto t2 = std::chrono::steady_clock::now();
            fwd += std::chrono::duration<double>(t1 - t0).count();
            bwd += std::chrono::duration<double>(t2 - t1).count();
        };
        const Stats s = run([] {}, rep);
        char extra[96];
        std::snprintf(extra, sizeof extra, ",\"fwd_share\":%.3f", fwd / (fwd + bwd));
        report(I, wl, threads, "ns/op", 1e9 / double(N), s, base, extra);
    } else if (wl == "mm_512" || wl == "mm_1024" || wl == "gemm_512" || wl == "gemm_1024") {
        const std::size_t n = std::stoul(wl.substr(wl.find('_') + 1));
        std::mt19937 rng(7);
        std::normal_distribution<F> d(0, 1);
        Tensor<F> a0 = Tensor<F>::from_shape({n, n}), b0 = Tensor<F>::from_shape({n, n});
        for (auto& v : a0) v = d(rng);
        for (auto& v : b0) v = d(rng);
        const double flops = (wl[0] == 'm' ? 6.0 : 2.0) * double(n) * double(n) * double(n);
        auto gflops = [&](const Stats& s) {
            char e[64];
            std::snprintf(e, sizeof e, ",\"gflops\":%.1f", flops / s.median / 1e9);
            return std::string(e);
        };
        if (wl[0] == 'g') {  // GEMM ceiling: warm ≥ 2 calls and 0.3 s, then ≥ 5 calls and ≥ 1 s
            // impl blas: OpenBLAS's plain cblas_sgemm; impl sgemm: the GEMM xgrad uses (oneDNN if built with it)
            if (impl != "blas" && impl != "sgemm") return fail("gemm_* needs impl blas or sgemm");
            Tensor<F> c = Tensor<F>::from_shape({n, n});
            const int N = int(n);
            auto call = [&] {
                if (impl == "blas")
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a0.data(), N, b0.data(), N, 0.0f,
                                c.data(), N);
                else
                    gemm(false, false, n, n, n, F(1), a0.data(), n, b0.data(), n, F(0), c.data(), n);
            };
            const Stats s = run([] {}, call, 2, 0.3, 5, 1.0);
            report(I, wl, threads, "ms", 1e3, s, base, gflops(s));
        } else if (impl == "tape") {
            Parameter<F> A(a0), B(b0);
            Tape<F> tape;
            auto setup = [&] {
                A.zero_grad();
                B.zero_grad();
            };
            auto rep = [&] {
                tape.backward(sum(matmul(tape.param(A), tape.param(B))));
                tape.clear();
            };
            const Stats s = run(setup, rep);
            report(I, wl, threads, "ms", 1e3, s, base, gflops(s));
        } else if (impl == "hand") {  // C = AB, G = 1, dA = G·Bᵀ, dB = Aᵀ·G with the same sgemm calls
            Tensor<F> c = Tensor<F>::from_shape({n, n}), g = xt::ones<F>({n, n}), da = c, db = c;
            auto rep = [&] {
                gemm(false, false, n, n, n, F(1), a0.data(), n, b0.data(), n, F(0), c.data(), n);
                std::fill(g.begin(), g.end(), F(1));
                gemm(false, true, n, n, n, F(1), g.data(), n, b0.data(), n, F(0), da.data(), n);
                gemm(true, false, n, n, n, F(1), a0.data(), n, g.data(), n, F(0), db.data(), n);
            };
            const Stats s = run([] {}, rep);
            report(I, wl, threads, "ms", 1e3, s, base, gflops(s));
        } else {
            return fail("no " + impl + " for " + wl);
        }
    } else {
        return fail("unknown workload " + wl);
    }
    return 0;
}

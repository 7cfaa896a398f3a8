// xgrad side of the benchmark workloads (docs/benchmarks.md), one (impl, workload, threads)
// per process: bench_xgrad <tape|hand|grad|blas|sgemm> <workload> <threads> [PREFIX]. Prints one JSON
// line. `bench_xgrad profile <workload> <threads>` prints instead where the tape step's time goes, op by op
// and layer by layer (xgrad::Profiler: 0.5 s of warm-up, then 3 s of steps). With PREFIX (the files of `bench_torch W 1 dump PREFIX`), the step starts from libtorch's
// weights and data, so the loss of its first step (reported as loss_first) is libtorch's.
//   bench_xgrad check <workload> <threads> PREFIX: times nothing; loads those files (libtorch's weights
//   and data by name, its loss and gradients), runs the timed tape step once and prints how far xgrad's
//   loss and gradients are from libtorch's (seq_workloads.hpp).
//   tape: xgrad's tape and nn library;  hand: hand-written backprop on the same kernels
//   (reference/steps/xgrad/reference/hand_steps.hpp);  blas: OpenBLAS's plain cblas_sgemm and sgemm: the GEMM xgrad uses (oneDNN's
//   dnnl_sgemm when built with it), the ceilings for workloads gemm_512, gemm_1024;  grad (second-order
//   workloads hvp_*, double_backprop_mlp only): the same step without its second-order part, the
//   tape's first-order gradient of the same network, the time the second-order step is divided by.
//   bench_xgrad stream triad <threads>: the memory bandwidth probe of bench_run's host check (GB/s).

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
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

using ParamList = std::vector<std::pair<std::string, Parameter<F>*>>;
using LoadList = std::vector<std::pair<std::string, Tensor<F>*>>;

/// Loads libtorch's weights (PREFIX.weights.safetensors) into `params` and its data
/// (PREFIX.input.safetensors, "input.<name>") into `inputs`, by name; throws naming what does not match.
void load_from_torch(const std::string& prefix, const ParamList& params, const LoadList& inputs)
{
    LoadList w, in;
    for (const auto& [name, p] : params) w.emplace_back(name, &p->value());
    nn::load_tensors<F>(prefix + ".weights.safetensors", w);
    for (const auto& [name, t] : inputs) in.emplace_back("input." + name, t);
    if (!in.empty()) nn::load_tensors<F>(prefix + ".input.safetensors", in);
}

/// The check against libtorch (seq_workloads.hpp): the step has run once on libtorch's weights and
/// data and returned `loss`; compares it and each parameter's gradient (`grads`, in `params`' order)
/// with PREFIX.ref.safetensors and prints the relative differences as one JSON line. Exit status 0
/// when all are within check_tolerance, 1 when not.
int compare_with_torch(const std::string& wl, const std::string& prefix, const ParamList& params,
                       const std::vector<Tensor<F>>& grads, double loss)
{
    Tensor<F> ref_loss = Tensor<F>::from_shape({1});
    std::vector<Tensor<F>> ref_grads;
    ref_grads.reserve(params.size());
    LoadList entries{{"loss", &ref_loss}};
    for (const auto& [name, p] : params) {
        ref_grads.push_back(Tensor<F>::from_shape(p->shape()));
        entries.emplace_back("grad." + name, &ref_grads.back());
    }
    nn::load_tensors<F>(prefix + ".ref.safetensors", entries);
    const double lt = double(ref_loss(0));
    const double loss_rel = std::isfinite(loss) ? std::abs(loss - lt) / std::max(std::abs(lt), 1e-30) : 1e300;
    double worst = 0;
    std::string worst_name;
    for (std::size_t k = 0; k < params.size(); ++k) {
        const Tensor<F>& g = grads[k];
        const Tensor<F>& r = ref_grads[k];
        if (g.shape() != r.shape()) throw std::runtime_error("check: gradient of " + params[k].first + " has the wrong shape");
        double diff = 0, scale = 0;
        for (std::size_t i = 0; i < r.size(); ++i) {
            diff = std::max(diff, std::abs(double(g.data()[i]) - double(r.data()[i])));
            scale = std::max(scale, std::abs(double(r.data()[i])));
        }
        const double rel = std::isfinite(diff) ? diff / std::max(scale, 1e-30) : 1e300;
        if (rel >= worst) worst = rel, worst_name = params[k].first;
    }
    const bool ok = loss_rel <= check_tolerance && worst <= check_tolerance;
    std::printf("{\"impl\":\"check\",\"workload\":\"%s\",\"loss_libtorch\":%.9g,\"loss_xgrad\":%.9g,\"loss_rel\":%.3g,"
                "\"grad_max_rel\":%.3g,\"worst\":\"%s\",\"parameters\":%zu,\"tolerance\":%g,\"ok\":%s}\n",
                wl.c_str(), lt, loss, loss_rel, worst, worst_name.c_str(), params.size(), check_tolerance,
                ok ? "true" : "false");
    return ok ? 0 : 1;
}

ParamList named(nn::Module<F>& m) { return m.named_parameters(); }

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 4 && argc != 5)
        return fail("usage: bench_xgrad <tape|hand|grad|blas|sgemm|profile> <workload> <threads> [PREFIX]  |  bench_xgrad check <workload> <threads> PREFIX  |  bench_xgrad stream triad <threads>");
    const std::string impl = argv[1], wl = argv[2], prefix = argc == 5 ? argv[4] : "";
    if (impl == "check" && prefix.empty()) return fail("check: needs the PREFIX of bench_torch's dump");
    const int threads = std::atoi(argv[3]);
    if (threads < 1 || threads > xgrad::max_num_threads())
        return fail("threads must be 1 to " + std::to_string(xgrad::max_num_threads()) + ", got '" + argv[3] + "'");
    xgrad::set_num_threads(threads);  // OpenBLAS and OpenMP (oneDNN)
    {  // base memory: library loaded and one tiny op done
        Tape<F> t;
        auto v = t.variable(Tensor<F>{1.0f});
        t.backward(sum(v * v));
    }
    const double base = vm_hwm_mib();
    const char* I = impl.c_str();
    const F lr = 0.01f;

    // What every workload sets, in this order: its parameters and data under libtorch's names, loaded
    // from PREFIX when given (load()); then the steps, which return their loss: `tape` (impl tape, and
    // the step the check runs), `hand` or `grad` where the workload has them. `grads` gives the
    // gradients per parameter after a tape step when they are not the parameters' grad() (hvp: Hv;
    // tape_*: the leaves' gradients).
    ParamList params;
    LoadList inputs;
    std::function<double()> tape_step, hand_step, grad_step;
    std::function<std::vector<Tensor<F>>()> grads;
    std::string unit = "ms";
    double scale = 1e3;
    auto load = [&] {
        if (!prefix.empty()) load_from_torch(prefix, params, inputs);
    };
    // Models, tapes and optimizers the steps refer to live as long as main; released last made first.
    struct Keep {
        std::vector<std::shared_ptr<void>> v;
        ~Keep()
        {
            while (!v.empty()) v.pop_back();
        }
    } keep;
    auto own = [&](auto* p) {
        keep.v.emplace_back(std::shared_ptr<std::remove_pointer_t<decltype(p)>>(p));
        return p;
    };
    // Every tape a workload makes, for `profile`.
    std::vector<Tape<F>*> tapes;
    auto new_tape = [&] {
        Tape<F>* t = own(new Tape<F>);
        tapes.push_back(t);
        return t;
    };
    // The tape's training step of `net`: cross-entropy on (x, y), backward, SGD(lr).
    auto ce_step = [&](nn::Module<F>& net, const Tensor<F>& x, const IndexTensor& y) {
        auto* tape = new_tape();
        auto* opt = own(new nn::SGD<F>(net.parameters(), {lr}));
        return std::function<double()>([&net, &x, &y, tape, opt] {
            opt->zero_grad();
            const Var<F> loss = cross_entropy(net(tape->borrow(x)), y);
            tape->backward(loss);
            const F l = loss.item();
            opt->step();
            tape->clear();
            return double(l);
        });
    };
    // Data: made here, possibly replaced by libtorch's on load().
    Tensor<F> x;
    IndexTensor y;
    // A classifier workload: uniform input of `x_shape` (batch first), labels i mod 10, `net`'s
    // parameters and x loaded from libtorch, the tape's cross-entropy step.
    auto classifier = [&](nn::Module<F>& net, const Shape& x_shape) {
        x = rand_uniform<F>(x_shape, 1);
        y = labels_mod10(x_shape[0]);
        params = named(net);
        inputs = {{"x", &x}};
        load();
        tape_step = ce_step(net, x, y);
    };

    try {
        if (wl == "mnist_softmax_sgd") {
            const std::size_t B = 64;
            x = rand_uniform<F>({B, 784}, 1);
            const Tensor<F> t = one_hot_mod10(B);
            const F bound = 1 / std::sqrt(784.0f);
            auto* b0 = own(new Parameter<F>(xt::zeros<F>({784})));
            auto* W1 = own(new Parameter<F>(rand_uniform<F>({784, 10}, 2, -bound, bound)));
            auto* b1 = own(new Parameter<F>(xt::zeros<F>({10})));
            params = {{"b0", b0}, {"W1", W1}, {"b1", b1}};
            inputs = {{"x", &x}};
            load();
            auto* tape = new_tape();
            auto* opt = own(new nn::SGD<F>({b0, W1, b1}, {0.001}));
            // The loss as libtorch's side writes it, (y − t)² summed, not the fused mse_loss.
            tape_step = [=, &x] {
                opt->zero_grad();
                auto yv = softmax(matmul(tanh(tape->borrow(x) + tape->param(*b0)), tape->param(*W1)) + tape->param(*b1), 1);
                const Var<F> d = yv - tape->borrow(t);
                const Var<F> loss = sum(d * d);
                tape->backward(loss);
                const F l = loss.item();
                opt->step();
                tape->clear();
                return double(l);
            };
            auto* h = own(new HandMnistSoftmaxSgd(b0->value(), W1->value(), b1->value()));
            hand_step = [=, &x] { return double(h->step(x, t, 0.001f)); };
        } else if (wl == "mlp_b64" || wl == "mlp_b256") {
            const std::size_t B = wl == "mlp_b64" ? 64 : 256;
            auto* net = own(new nn::MLP<F>({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3));
            classifier(*net, {B, 784});
            auto* h = own(new HandMlp(*net));
            hand_step = [=, &x, &y] { return double(h->step(x, y, lr)); };
        } else if (wl == "lenet") {
            auto* net = own(reference::lenet<F>(5, false).release());
            classifier(*net, {64, 1, 28, 28});
            auto* h = own(new HandLenet(*net));
            hand_step = [=, &x, &y] { return double(h->step(x, y, lr)); };
        } else if (wl == "cnn_sigmoid_avgpool") {
            // Source document 002's CNN with 8 filters (docs/sources.md), tape only.
            auto* net = own(reference::cnn_sigmoid_avgpool<F>(5).release());
            classifier(*net, {64, 1, 28, 28});
        } else if (wl == "resnet_b64" || wl == "layernorm_mlp") {
            // Networks with normalization layers, tape only (no hand-written step): BatchNorm2d in train mode
            // (batch statistics, running statistics updated), LayerNorm + GELU.
            // The ResNet channels-last (libtorch's best configuration is channels_last too);
            // XGRAD_BENCH_RESNET_NCHW=1 runs the NCHW model, for comparing the two.
            const bool res = wl == "resnet_b64";
            const char* nchw = std::getenv("XGRAD_BENCH_RESNET_NCHW");
            const bool cl = res && !(nchw && std::string(nchw) == "1");
            auto* net = own((res ? reference::mnist_resnet<F>(5, cl) : reference::layernorm_mlp<F>(5, 0.0)).release());
            net->train();
            classifier(*net, res ? Shape{64, 1, 28, 28} : Shape{64, 784});
            if (cl) x.reshape({64, 28, 28, 1});  // one channel: (N,1,H,W) and (N,H,W,1) hold the same values
        } else if (wl == "bn_conv") {
            // x (64,16,28,28) → conv 3×3 (16→16, pad 1, no bias) → BatchNorm2d (train) → ReLU → mean, SGD.
            const std::size_t C = 16;
            x = rand_uniform<F>({64, C, 28, 28}, 1);
            auto* net = own(new nn::Sequential<F>);
            net->emplace<nn::Conv2d<F>>(nn::Conv2dOptions(C, C, 3).padding(1).bias(false), 5);
            net->emplace<nn::BatchNorm2d<F>>(nn::BatchNorm2dOptions(C));
            net->emplace<nn::ReLU<F>>();
            params = named(*net);
            inputs = {{"x", &x}};
            load();
            auto* tape = new_tape();
            auto* opt = own(new nn::SGD<F>(net->parameters(), {lr}));
            tape_step = [=, &x] {
                opt->zero_grad();
                const Var<F> loss = mean((*net)(tape->borrow(x)));
                tape->backward(loss);
                const F l = loss.item();
                opt->step();
                tape->clear();
                return double(l);
            };
            auto* h = own(new HandBnConv(*net));
            hand_step = [=, &x] { return double(h->step(x, lr)); };
        } else if (wl == "hvp_mlp" || wl == "hvp_lenet") {
            // Hessian-vector product of the loss w.r.t. all parameters (second_order.hpp); impl grad: the
            // plain gradient of the same loss (zero the gradients, forward, backward).
            const bool le = wl == "hvp_lenet";
            x = rand_uniform<F>(le ? Shape{64, 1, 28, 28} : Shape{64, 784}, 1);
            y = labels_mod10(64);
            nn::Sequential<F>* net;
            if (le)
                net = own(reference::lenet<F>(5, false).release());
            else
                net = own(new nn::MLP<F>(std::vector<std::size_t>{784, 256, 128, 10}, nn::Activation::relu,
                                         nn::Activation::identity, 3));
            auto* hvp = own(new ParamHvp<F>(*net, 11));
            params = named(*net);
            inputs = {{"x", &x}};
            for (std::size_t k = 0; k < params.size(); ++k) inputs.emplace_back("v." + params[k].first, &hvp->directions()[k]);
            load();
            auto* tape = new_tape();
            tape_step = [=, &x, &y] { return double(hvp->step(*tape, x, y)); };
            grad_step = [=, &x, &y] { return double(hvp->gradient(*tape, x, y)); };
        } else if (wl == "double_backprop_mlp") {
            // One SGD step on loss = CE + λ‖∂CE/∂x‖², λ = 0.1 (input-gradient penalty); impl grad: the
            // same step on CE alone (= mlp_b64's step).
            const F lambda = 0.1f;
            x = rand_uniform<F>({64, 784}, 1);
            y = labels_mod10(64);
            auto* net = own(new nn::MLP<F>({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, 3));
            params = named(*net);
            inputs = {{"x", &x}};
            load();
            auto* tape = new_tape();
            auto* opt = own(new nn::SGD<F>(net->parameters(), {lr}));
            tape_step = [=, &x, &y] {
                opt->zero_grad();
                const Var<F> xv = tape->variable(x);
                const Var<F> ce = cross_entropy((*net)(xv), y);
                const Var<F> gx = grad(ce, {xv}, GradOptions{true})[0];
                const Var<F> loss = ce + lambda * sum(gx * gx);
                tape->backward(loss);
                const F l = loss.item();
                opt->step();
                tape->clear();
                return double(l);
            };
            grad_step = ce_step(*net, x, y);
        } else if (wl == "lstm_step" || wl == "gru_step") {
            // Embedding → LSTM / GRU (2 layers) → Linear head → cross-entropy over all positions, SGD (seq_workloads.hpp).
            const auto data = seq_tokens();
            auto* xy = own(new std::pair<IndexTensor, IndexTensor>(data));
            nn::Module<F>* net;
            std::function<Var<F>(Tape<F>&)> loss;
            if (wl == "lstm_step") {
                auto* m = own(new SeqLM<nn::LSTM<F>>(5));
                loss = [m, xy](Tape<F>& tape) { return m->loss(tape, xy->first, xy->second); };
                net = m;
            } else {
                auto* m = own(new SeqLM<nn::GRU<F>>(5));
                loss = [m, xy](Tape<F>& tape) { return m->loss(tape, xy->first, xy->second); };
                net = m;
            }
            params = named(*net);
            load();
            auto* tape = new_tape();
            auto* opt = own(new nn::SGD<F>(net->parameters(), {lr}));
            tape_step = [=] {
                opt->zero_grad();
                const Var<F> l = loss(*tape);
                tape->backward(l);
                const F v = l.item();
                opt->step();
                tape->clear();
                return double(v);
            };
        } else if (wl == "attention_step") {
            // One pre-LayerNorm transformer block (causal self-attention, GELU MLP) on x (BA, LA, D),
            // loss = mean(y²), SGD (seq_workloads.hpp).
            auto* block = own(new nn::TransformerEncoderLayer<F>(attention_block_options(), 5));
            block->train();
            x = rand_uniform<F>({seq::BA, seq::LA, seq::D}, 1);
            params = named(*block);
            inputs = {{"x", &x}};
            load();
            auto* tape = new_tape();
            auto* opt = own(new nn::SGD<F>(block->parameters(), {lr}));
            tape_step = [=, &x] {
                opt->zero_grad();
                const Var<F> out = block->forward(tape->borrow(x), nullptr, true);
                const Var<F> loss = mean(out * out);
                tape->backward(loss);
                const F l = loss.item();
                opt->step();
                tape->clear();
                return double(l);
            };
        } else if (wl == "tape_1" || wl == "tape_64x64") {
            if (impl != "tape" && impl != "check") return fail("no " + impl + " for " + wl);
            const Shape shape = wl == "tape_1" ? Shape{1} : Shape{64, 64};
            const std::size_t N = 10000;
            // x0 and w as Parameters only to hold libtorch's values by name; the step records them as
            // fresh leaf variables (tape.variable), so their gradients live on the tape and go with clear().
            auto* x0 = own(new Parameter<F>(xt::full_like(Tensor<F>::from_shape(shape), 0.5f)));
            auto* w0 = own(new Parameter<F>(xt::ones<F>(shape)));
            params = {{"x0", x0}, {"w", w0}};
            load();
            auto* tape = new_tape();
            auto* fb = own(new std::pair<double, double>(0, 0));
            auto* leaf_grads = own(new std::vector<Tensor<F>>);
            const bool keep_grads = impl == "check";
            tape_step = [=] {
                const auto t0 = std::chrono::steady_clock::now();
                auto xv = tape->variable(x0->value());
                auto w = tape->variable(w0->value());
                const Var<F> x_leaf = xv;
                for (std::size_t i = 0; i < N; ++i) {
                    switch (i % 4) {
                        case 0: xv = xv * 1.0001f; break;
                        case 1: xv = xv + 0.0001f; break;
                        case 2: xv = tanh(xv); break;
                        default: xv = xv * w; break;
                    }
                }
                auto loss = sum(xv);
                const auto t1 = std::chrono::steady_clock::now();
                tape->backward(loss);
                const F l = loss.item();
                if (keep_grads) *leaf_grads = {x_leaf.grad(), w.grad()};
                tape->clear();
                const auto t2 = std::chrono::steady_clock::now();
                fb->first += std::chrono::duration<double>(t1 - t0).count();
                fb->second += std::chrono::duration<double>(t2 - t1).count();
                return double(l);
            };
            grads = [leaf_grads] { return *leaf_grads; };
            if (impl == "tape") {
                const Stats s = run([] {}, tape_step);
                char extra[96];
                std::snprintf(extra, sizeof extra, ",\"fwd_share\":%.3f", fb->first / (fb->first + fb->second));
                report(I, wl, threads, "ns/op", 1e9 / double(N), s, base, extra);
                return 0;
            }
        } else if (wl == "triad") {
            // The host check's memory probe: a[i] = b[i] + s·c[i] over three arrays of 64 MiB (twice
            // the L3 of the machines we run on), statically split over the threads; GB/s counts the 12
            // bytes per element the loop names (reads of b and c, the write of a).
            if (impl != "stream") return fail("triad needs impl stream");
            const std::size_t n = std::size_t(1) << 24;
            std::vector<F> a(n, F(0)), b(n, F(1)), c(n, F(2));
            const auto m = std::ptrdiff_t(n);
            auto call = [&] {
                F* __restrict pa = a.data();
                const F *__restrict pb = b.data(), *__restrict pc = c.data();
#pragma omp parallel for schedule(static) num_threads(threads)
                for (std::ptrdiff_t i = 0; i < m; ++i) pa[i] = pb[i] + F(0.5) * pc[i];
            };
            const Stats st = run([] {}, call, 3, 0.1, 20, 0.5);
            if (a[0] != F(2) || a[n / 2] != F(2) || a[n - 1] != F(2)) return fail("triad: wrong result");
            char e[64];
            std::snprintf(e, sizeof e, ",\"gbps\":%.1f", 12.0 * double(n) / st.median / 1e9);
            report(I, wl, threads, "ms", 1e3, st, base, e);
            return 0;
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
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a0.data(), N, b0.data(), N,
                                    0.0f, c.data(), N);
                    else
                        gemm(false, false, n, n, n, F(1), a0.data(), n, b0.data(), n, F(0), c.data(), n);
                };
                const Stats s = run([] {}, call, 2, 0.3, 5, 1.0);
                report(I, wl, threads, "ms", 1e3, s, base, gflops(s));
                return 0;
            }
            auto* A = own(new Parameter<F>(a0));
            auto* B = own(new Parameter<F>(b0));
            params = {{"A", A}, {"B", B}};
            load();
            auto* tape = new_tape();
            // Gradients zeroed in place inside the clock, as libtorch's side does.
            tape_step = [=] {
                A->zero_grad();
                B->zero_grad();
                const Var<F> loss = sum(matmul(tape->param(*A), tape->param(*B)));
                tape->backward(loss);
                const F l = loss.item();
                tape->clear();
                return double(l);
            };
            // C = AB, G = 1, dA = G·Bᵀ, dB = Aᵀ·G with the same sgemm calls; loss = sum(C) in double
            auto* bufs = own(new std::vector<Tensor<F>>{Tensor<F>::from_shape({n, n}), xt::ones<F>({n, n}),
                                                        Tensor<F>::from_shape({n, n}), Tensor<F>::from_shape({n, n})});
            hand_step = [=] {
                Tensor<F>&c = (*bufs)[0], &g = (*bufs)[1], &da = (*bufs)[2], &db = (*bufs)[3];
                const F *a = A->value().data(), *b = B->value().data();
                gemm(false, false, n, n, n, F(1), a, n, b, n, F(0), c.data(), n);
                std::fill(g.begin(), g.end(), F(1));
                gemm(false, true, n, n, n, F(1), g.data(), n, b, n, F(0), da.data(), n);
                gemm(true, false, n, n, n, F(1), a, n, g.data(), n, F(0), db.data(), n);
                double l = 0;
                for (const F v : c) l += v;
                return l;
            };
            if (impl == "tape" || impl == "hand") {
                const Stats s = run([] {}, impl == "tape" ? tape_step : hand_step);
                report(I, wl, threads, "ms", 1e3, s, base, gflops(s));
                return 0;
            }
        } else {
            return fail("unknown workload " + wl);
        }

        if (impl == "check") {
            const double loss = tape_step();
            std::vector<Tensor<F>> g;
            if (grads)
                g = grads();
            else
                for (const auto& [name, p] : params) g.push_back(p->grad());
            return compare_with_torch(wl, prefix, params, g, loss);
        }
        if (impl == "profile") {
            if (!tape_step || tapes.empty()) return fail("no tape step to profile for " + wl);
            std::vector<std::unique_ptr<Profiler<F>>> profs;
            for (Tape<F>* t : tapes) profs.push_back(std::make_unique<Profiler<F>>(*t));
            const auto t_end = [](double s) { return std::chrono::steady_clock::now() + std::chrono::duration<double>(s); };
            for (auto end = t_end(0.5); std::chrono::steady_clock::now() < end;) tape_step();  // warm-up
            for (auto& p : profs) p->reset();
            for (auto end = t_end(3.0); std::chrono::steady_clock::now() < end;) tape_step();
            for (std::size_t k = 0; k < profs.size(); ++k) {
                const ProfileReport r = profs[k]->report(ProfileGroup::scope_and_op);
                if (r.sweeps == 0 && r.rows.empty()) continue;
                std::printf("%s, %d thread(s), tape %zu\n%s", wl.c_str(), threads, k, profs[k]->report().table().c_str());
                std::printf("by layer:\n%s", r.table(40).c_str());
            }
            return 0;
        }
        std::function<double()> step;
        if (impl == "tape") step = tape_step;
        if (impl == "hand") step = hand_step;
        if (impl == "grad") step = grad_step;
        if (!step) return fail("no " + impl + " for " + wl);
        report(I, wl, threads, unit.c_str(), scale, run([] {}, step), base);
    } catch (const std::exception& e) {
        return fail(wl + ": " + e.what());
    }
    return 0;
}

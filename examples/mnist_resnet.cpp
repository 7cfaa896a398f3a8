// A small ResNet (BatchNorm, three BasicBlocks, global average pooling; xgrad::reference::mnist_resnet)
// with softmax cross-entropy. Default: AdamW (no decay on norms and biases), lr 2e-3 with a cosine
// schedule, batch 64, 10 epochs, 55,000 training / 5,000 validation images, training images shifted
// by up to --shift pixels (0: no augmentation).
// --dataset fashion for Fashion-MNIST.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>

#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

namespace {

/// Each 28×28 image of x (B, 784) moved by a random (dy, dx) ∈ [−s, s]², zeros shifted in. The
/// shifts are drawn from a generator seeded by the seed and the batch's bytes, so a resumed run
/// shifts the batches it sees as the uninterrupted run did.
void shift_images(const Tensor<F>& x, Tensor<F>& out, int s, std::uint64_t seed)
{
    out.resize(x.shape());
    std::uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a over the batch's bytes
    const auto* bytes = reinterpret_cast<const unsigned char*>(x.data());
    for (std::size_t i = 0; i < x.size() * sizeof(F); i += 61) h = (h ^ bytes[i]) * 1099511628211ull;
    std::mt19937_64 rng(h);
    std::uniform_int_distribution<int> d(-s, s);
    constexpr int n = 28;
    const std::size_t images = x.shape()[0];
    for (std::size_t b = 0; b < images; ++b) {
        const F* src = x.data() + b * n * n;
        F* dst = out.data() + b * n * n;
        const int dy = d(rng), dx = d(rng);
        std::fill(dst, dst + n * n, F(0));
        for (int r = std::max(0, dy); r < std::min(n, n + dy); ++r) {
            const int c0 = std::max(0, dx), c1 = std::min(n, n + dx);
            std::memcpy(dst + r * n + c0, src + (r - dy) * n + (c0 - dx), sizeof(F) * std::size_t(c1 - c0));
        }
    }
}

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_resnet", o.data_parallel = true;
    o.epochs = 10, o.batch = 64, o.lr = 2e-3, o.optimizer = "adamw", o.schedule = "cosine", o.val_size = 5000;
    int shift = 2;
    bool channels_last = true;  // NHWC: 2.6× faster per epoch than NCHW here (docs/results.md)
    CLI::App app{"MNIST: small ResNet (BatchNorm, residual blocks, global average pooling), softmax cross-entropy"};
    return run_example(
        app, o, argc, argv,
        [&] {
            auto net = reference::mnist_resnet<F>(o.seed, channels_last);
            Task task = classifier_task(o.example, *net, true);
            // one channel: (N,1,28,28) and (N,28,28,1) hold the same values
            const std::vector<std::ptrdiff_t> image =
                channels_last ? std::vector<std::ptrdiff_t>{-1, 28, 28, 1} : std::vector<std::ptrdiff_t>{-1, 1, 28, 28};
            Tensor<F> shifted;
            task.forward = [&, image, model = net.get()](Tape<F>& t, const Tensor<F>& x) {
                if (shift == 0 || !model->is_training()) return call_model(*model, reshape(t.borrow(x), image));
                shift_images(x, shifted, shift, o.seed);
                return call_model(*model, reshape(t.borrow(shifted), image));
            };
            train_task(task, o);
        },
        [&](CLI::App& a) {
            a.add_option("--shift", shift, "training images moved by up to this many pixels each way (0: none)")
                ->check(int_in(0, 8))
                ->capture_default_str();
            a.add_flag("--channels-last,!--no-channels-last", channels_last,
                       "activations (N,H,W,C), the default (oneDNN's NHWC convolutions); --no-channels-last: (N,C,H,W). "
                       "The same weights and checkpoints either way");
        });
}

// After warm-up, a training step allocates nothing: tape nodes, gradient buffers, op state and
// optimizer state are all reused. Counted with a malloc interposer (tests/support/alloc_count),
// on the benchmark workloads: the MNIST MLP, the LeNet (max pooling), the ResNet (NCHW and
// channels-last), and the trace-regularized sigmoid MLP. Synthetic data from fixed seeds; no data files.
// oneDNN allocates inside its calls (dnnl_sgemm's packing buffer, the argument map of every
// convolution primitive execution), and so does OpenBLAS's small-matrix sgemm kernel on some CPUs
// (with XGRAD_SGEMM=openblas); neither API takes a buffer. Those allocations are told apart by the
// call stack and reported; everything else — xgrad, xtensor, OpenMP — must allocate nothing.
#define BOOST_TEST_MODULE nn_steady_state
#include <boost/test/unit_test.hpp>

#include <functional>
#include <random>

#include "alloc_count.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/reference/models.hpp"
#include "xgrad/threads.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using F = float;

namespace {

struct Batch {
    Tensor<F> x;
    IndexTensor y;
};

Batch make_batch(const Shape& shape, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<F> u(0, 1);
    Batch b{Tensor<F>::from_shape(shape), IndexTensor::from_shape({shape[0]})};
    for (auto& v : b.x) v = u(rng);
    for (std::size_t i = 0; i < shape[0]; ++i) b.y(i) = Index((i * 7 + seed) % 10);
    return b;
}

struct Counts {
    std::size_t ours = 0;  ///< everything but oneDNN and OpenBLAS
    std::size_t blas = 0;  ///< inside them
};

/// Runs `warmup` steps, then counts the allocations of `counted` more; returns them, and the
/// first and last loss in `first`, `last`.
Counts allocations_after_warmup(const std::function<F(int)>& step, int warmup, int counted, F& first, F& last)
{
    for (int i = 0; i < warmup; ++i) {
        const F l = step(i);
        if (i == 0) first = l;
    }
    const std::size_t a0 = alloc::allocations(), d0 = alloc::blas_allocations();
    alloc::attribute_allocations(true);
    alloc::count_allocations(true);
    for (int i = 0; i < counted; ++i) last = step(warmup + i);
    alloc::count_allocations(false);
    alloc::attribute_allocations(false);
    const std::size_t blas = alloc::blas_allocations() - d0;
    return {alloc::allocations() - a0 - blas, blas};
}

/// One classifier step: zero grads, forward on a borrowed batch, cross-entropy, backward, Adam.
std::function<F(int)> classifier_step(Module<F>& net, Optimizer<F>& opt, Tape<F>& tape, const std::vector<Batch>& data)
{
    return [&net, &opt, &tape, &data](int i) {
        const Batch& b = data[std::size_t(i) % data.size()];
        opt.zero_grad();
        auto loss = cross_entropy(net(tape.borrow(b.x)), b.y);
        tape.backward(loss);
        opt.step();
        const F l = loss.item();
        tape.clear();
        return l;
    };
}

void check_steady(const char* what, const std::function<F(int)>& step)
{
    F first = 0, last = 0;
    const Counts c = allocations_after_warmup(step, 4, 12, first, last);
    BOOST_TEST_MESSAGE(what << ": in 12 steps after warm-up " << c.ours << " allocations outside oneDNN/OpenBLAS, " << c.blas
                            << " inside them; loss " << first << " -> " << last);
    BOOST_TEST(c.ours == 0u, what << ": " << c.ours << " allocations (outside oneDNN/OpenBLAS) in 12 steps after warm-up");
    BOOST_TEST(std::isfinite(last));
    BOOST_TEST(last < first, what << ": training made no progress (" << first << " -> " << last << ")");
}

struct OneThread {
    OneThread() { set_num_threads(1); }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(one_thread, OneThread)

BOOST_AUTO_TEST_CASE(mlp_adam_cross_entropy)
{
    MLP<F> net({784, 256, 128, 10}, Activation::relu, Activation::identity, 1);
    Adam<F> opt(net.parameters(), {1e-3});
    Tape<F> tape;
    const std::vector<Batch> data{make_batch({64, 784}, 1), make_batch({64, 784}, 2)};
    check_steady("mlp", classifier_step(net, opt, tape, data));
}

// Max pooling; average pooling fused with the ReLU before it (nothing kept) and, in document 002's
// CNN, with a sigmoid (σ(x) kept with the node): the fused op's closure and saved tensor are counted.
BOOST_AUTO_TEST_CASE(lenet_and_sigmoid_cnn_adam)
{
    const std::vector<Batch> data{make_batch({32, 1, 28, 28}, 3), make_batch({32, 1, 28, 28}, 4)};
    for (const int model : {0, 1, 2}) {
        auto net = model == 2 ? reference::cnn_sigmoid_avgpool<F>(5) : reference::lenet<F>(2, model == 0);
        Adam<F> opt(net->parameters(), {1e-3});
        Tape<F> tape;
        check_steady(model == 0 ? "lenet" : model == 1 ? "lenet, average pooling" : "document 002's CNN",
                     classifier_step(*net, opt, tape, data));
    }
}

// Batch norm in train mode (running statistics updated), the residual sums, both layouts.
BOOST_AUTO_TEST_CASE(resnet_sgd_both_layouts)
{
    for (bool channels_last : {false, true}) {
        auto net = reference::mnist_resnet<F>(7, channels_last);
        net->train();
        SGD<F> opt(net->parameters(), {0.05});
        Tape<F> tape;
        const Shape shape = channels_last ? Shape{16, 28, 28, 1} : Shape{16, 1, 28, 28};
        const std::vector<Batch> data{make_batch(shape, 8), make_batch(shape, 9)};
        check_steady(channels_last ? "resnet, channels_last" : "resnet", classifier_step(*net, opt, tape, data));
    }
}

BOOST_AUTO_TEST_CASE(trace_regularized_mlp_sgd)
{
    MLP<F> net({784, 64, 10}, Activation::sigmoid, Activation::identity, 3);
    SGD<F> opt(net.parameters(), {0.05});
    Tape<F> tape;
    const std::vector<Batch> data{make_batch({50, 784}, 5), make_batch({50, 784}, 6)};
    check_steady("trace-regularized mlp", [&](int i) {
        const Batch& b = data[std::size_t(i) % data.size()];
        opt.zero_grad();
        auto y = net(tape.borrow(b.x));
        auto loss = mse_loss(y, one_hot(tape, b.y, 10), Reduction::half_sum) / F(50)
                  + trace_scatter_loss(y, b.y, 0.01) / F(50);
        tape.backward(loss);
        opt.step();
        const F l = loss.item();
        tape.clear();
        return l;
    });
}

BOOST_AUTO_TEST_SUITE_END()

// LeNet-5 style CNN (conv, max pooling, fully connected; xgrad::reference::lenet), softmax
// cross-entropy. Default: Adam, lr 1e-3 with a cosine schedule, batch 64, 10 epochs (≥ 99% test
// accuracy on MNIST). Built twice: mnist_lenet, and fashion_mnist (XGRAD_FASHION: Fashion-MNIST by
// default; --dataset mnist for digits), the same program with another default dataset.
#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

#ifdef XGRAD_FASHION
constexpr const char* program = "fashion_mnist";
constexpr const char* title = "Fashion-MNIST: LeNet-5 style CNN, softmax cross-entropy";
constexpr const char* dataset = "fashion";
#else
constexpr const char* program = "mnist_lenet";
constexpr const char* title = "MNIST: LeNet-5 style CNN, softmax cross-entropy";
constexpr const char* dataset = "mnist";
#endif

int main(int argc, char** argv)
{
    Options o;
    o.example = program, o.dataset = dataset, o.data_parallel = true;
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    CLI::App app{title};
    return run_example(app, o, argc, argv, [&] {
        auto net = reference::lenet<F>(o.seed, true);
        Task task = classifier_task(o.example, *net, true);
        train_task(task, o);
    }, [&](CLI::App& a) { add_stop_option(a, o); });
}

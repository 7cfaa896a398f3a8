// LeNet-5 style CNN (conv, max pooling, fully connected; xgrad::reference::lenet) on MNIST,
// softmax cross-entropy. Default: Adam, lr 1e-3 with a cosine schedule, batch 64, 10 epochs
// (≥ 99% test accuracy).
#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_lenet";
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    CLI::App app{"MNIST: LeNet-5 style CNN, softmax cross-entropy"};
    return run_example(app, o, argc, argv, [&] {
        auto net = reference::lenet<F>(o.seed, true);
        Task task = classifier_task(o.example, *net, true);
        train_task(task, o);
    });
}

// The LeNet example (mnist_lenet.cpp) on Fashion-MNIST; --dataset mnist for digits.
#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "fashion_mnist", o.dataset = "fashion";
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    CLI::App app{"Fashion-MNIST: LeNet-5 style CNN, softmax cross-entropy"};
    return run_example(app, o, argc, argv, [&] {
        auto net = reference::lenet<F>(o.seed, true);
        Task task = classifier_task(o.example, *net, true);
        train_task(task, o);
    });
}

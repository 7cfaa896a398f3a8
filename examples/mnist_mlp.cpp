// A 784-256-128-10 ReLU MLP with softmax cross-entropy. Default: Adam, lr 1e-3 with a cosine
// schedule, batch 64, 10 epochs (≥ 98% test accuracy; without the schedule it plateaus near 97.8%).
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_mlp", o.data_parallel = true;
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    CLI::App app{"MNIST: 784-256-128-10 ReLU MLP, softmax cross-entropy"};
    return run_example(app, o, argc, argv, [&] {
        nn::MLP<F> net({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, o.seed);
        Task task = classifier_task(o.example, net);
        train_task(task, o);
    }, [&](CLI::App& a) { add_stop_option(a, o); });
}

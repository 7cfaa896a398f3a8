// A small ResNet (BatchNorm, three BasicBlocks, global average pooling; xgrad::reference::mnist_resnet)
// with softmax cross-entropy. Default: AdamW (no decay on norms and biases), lr 2e-3 with a cosine
// schedule, batch 64, 8 epochs. --dataset fashion for Fashion-MNIST.
#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_resnet";
    o.epochs = 8, o.batch = 64, o.lr = 2e-3, o.optimizer = "adamw", o.schedule = "cosine";
    CLI::App app{"MNIST: small ResNet (BatchNorm, residual blocks, global average pooling), softmax cross-entropy"};
    return run_example(app, o, argc, argv, [&] {
        auto net = reference::mnist_resnet<F>(o.seed);
        Task task = classifier_task(o.example, *net, true);
        train_task(task, o);
    });
}

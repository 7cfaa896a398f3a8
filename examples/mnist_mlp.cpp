// A 784-256-128-10 ReLU MLP with softmax cross-entropy. Default: Adam, lr 1e-3 with a cosine
// schedule, batch 64, 10 epochs (≥ 98% test accuracy; without the schedule it plateaus near 97.8%).
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_mlp";
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine";
    CLI::App app{"MNIST: 784-256-128-10 ReLU MLP, softmax cross-entropy"};
    add_options(app, o);
    int code = 0;
    if (!parse(app, argc, argv, code)) return code;
    return guarded([&] {
        nn::MLP<F> net({784, 256, 128, 10}, nn::Activation::relu, nn::Activation::identity, o.seed);
        Task task{"mnist_mlp", &net, [&](Tape<F>& t, const Tensor<F>& x) { return net(t.borrow(x)); },
                  [](const Var<F>& out, const IndexTensor& y) { return cross_entropy(out, y); }, nullptr};
        auto opt = make_optimizer(o, net);
        train(task, *opt, load_data(o), o);
    });
}

#pragma once
// The LeNet example's program, shared by mnist_lenet and fashion_mnist (which differ only in the
// default dataset).
#include "xgrad/reference/models.hpp"
#include "common/train.hpp"

namespace xgrad::examples {

/// LeNet-5 style CNN (conv, max pooling, fully connected), softmax cross-entropy. Defaults: Adam,
/// lr 1e-3 with a cosine schedule, batch 64, 10 epochs (≥ 99% on MNIST).
inline int lenet_main(int argc, char** argv, const char* name, const char* title, const char* dataset)
{
    Options o;
    o.example = name;
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine", o.dataset = dataset;
    CLI::App app{title};
    add_options(app, o);
    int code = 0;
    if (!parse(app, argc, argv, code)) return code;
    return guarded([&] {
        auto net = reference::lenet<F>(o.seed, true);
        Task task{name, net.get(),
                  [&](Tape<F>& t, const Tensor<F>& x) { return (*net)(reshape(t.borrow(x), {-1, 1, 28, 28})); },
                  [](const Var<F>& out, const IndexTensor& y) { return cross_entropy(out, y); }, nullptr};
        auto opt = make_optimizer(o, *net);
        train(task, *opt, load_data(o), o);
    });
}

}  // namespace xgrad::examples

// LeNet-5 style CNN (conv, max pooling, fully connected). Defaults to Fashion-MNIST; same options as mnist_lenet.
#include "common/models.hpp"
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adam", o.schedule = "cosine", o.dataset = "fashion";
    CLI::App app{"Fashion-MNIST: LeNet-5 style CNN, softmax cross-entropy (--dataset mnist for digits)"};
    add_options(app, o);
    int code = 0;
    if (!parse(app, argc, argv, code)) return code;
    return guarded([&] {
        auto net = lenet<F>(o.seed, true);
        Task task{"fashion_mnist", net.get(),
                  [&](Tape<F>& t, const Tensor<F>& x) { return (*net)(reshape(t.borrow(x), {-1, 1, 28, 28})); },
                  [](const Var<F>& out, const IndexTensor& y) { return cross_entropy(out, y); }, nullptr};
        auto opt = make_optimizer(o, *net);
        train(task, *opt, load_data(o), o);
    });
}

// An MLP with LayerNorm, GELU and dropout (xgrad::reference::layernorm_mlp), softmax cross-entropy:
// the layer set composing. Default: AdamW (no decay on norms and biases), lr 1e-3 with a cosine
// schedule, batch 64, 10 epochs, dropout 0.1.
#include "common/train.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::examples;

int main(int argc, char** argv)
{
    Options o;
    o.example = "mnist_layernorm_mlp", o.data_parallel = true;
    o.epochs = 10, o.batch = 64, o.lr = 1e-3, o.optimizer = "adamw", o.schedule = "cosine";
    double dropout = 0.1;
    CLI::App app{"MNIST: 784-256-128-10 MLP with LayerNorm, GELU and dropout, softmax cross-entropy"};
    return run_example(
        app, o, argc, argv,
        [&] {
            // --distributed: each rank draws its own dropout masks (its initial weights are replaced
            // by rank 0's); rank 0, and one process, seed as before.
            auto net = reference::layernorm_mlp<F>(o.seed + 1000 * std::uint64_t(process_rank()), dropout);
            Task task = classifier_task(o.example, *net);
            train_task(task, o);
        },
        [&](CLI::App& a) {
            a.add_option("--dropout", dropout, "dropout probability after each GELU")
                ->check(real_in(0, 1, true, false))
                ->capture_default_str();
        });
}

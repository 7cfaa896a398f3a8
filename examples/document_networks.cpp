// The networks of the five source documents (docs/sources.md) written with xgrad::nn, one training
// step each on random data. Each network is its block below: a few lines of layers, loss and optimizer.
#include <cstdio>

#include "xgrad/nn.hpp"
#include "xgrad/reference/models.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using F = float;

int main()
{
    Tape<F> tape;
    const IndexTensor labels = xt::arange<Index>(0, 32) % 10;
    const Tensor<F> x = rand_uniform<F>({32, 784}, 1);

    {  // mlp_trace_regularizer (source document 000): sigmoid hidden, linear output, ½Σ‖y − d‖² + ½γ(tr S_w − tr S_b)
        MLP<F> net({784, 64, 10}, Activation::sigmoid, Activation::identity);
        SGD<F> opt(net.parameters(), {0.01});
        auto y = net(tape.borrow(x));
        auto loss = mse_loss(y, one_hot(tape, labels, 10), Reduction::half_sum) + trace_scatter_loss(y, labels, F(0.01));
        tape.backward(loss);
        opt.step();
        std::printf("mlp_trace_regularizer: loss %.4f\n", loss.item());
        tape.clear();
    }
    {  // mlp_l_layer_notes (source document 001): L-layer sigmoid MLP under ½Σ‖y − d‖², SGD
        MLP<F> net({784, 128, 64, 32, 10}, Activation::sigmoid, Activation::sigmoid);
        SGD<F> opt(net.parameters(), {0.1});
        auto loss = mse_loss(net(tape.borrow(x)), one_hot(tape, labels, 10), Reduction::half_sum);
        tape.backward(loss);
        opt.step();
        std::printf("mlp_l_layer_notes: loss %.4f\n", loss.item());
        tape.clear();
    }
    {  // cnn_sigmoid_avgpool (source document 002): conv (valid, stride 1) → sigmoid → 2×2 average pooling → fully connected → softmax cross-entropy
        Sequential<F> net;
        net.emplace<Conv2d<F>>(Conv2dOptions(1, 6, 5));
        net.emplace<Sigmoid<F>>();
        net.emplace<AvgPool2d<F>>(2);
        net.emplace<Flatten<F>>();
        net.emplace<Linear<F>>(6 * 12 * 12, 10);
        SGD<F> opt(net.parameters(), {0.1});
        auto loss = cross_entropy(net(tape.constant(rand_uniform<F>({32, 1, 28, 28}, 2))), labels);
        tape.backward(loss);
        opt.step();
        std::printf("cnn_sigmoid_avgpool: loss %.4f\n", loss.item());
        tape.clear();
    }
    {  // worked_example_2_3_2_1 (source document 003): 2-3-2-1 sigmoid network, ½(y − ŷ)², W ← W − η(δnᵀ + W): SGD with coupled decay 1
        MLP<F> net({2, 3, 2, 1}, Activation::sigmoid, Activation::sigmoid);
        SGD<F> opt(net.parameters(), SGDOptions(0.1).weight_decay(1.0));
        auto loss = mse_loss(net(tape.constant(Tensor<F>{{1, 2}})), tape.constant(Tensor<F>(xt::ones<F>({1, 1}))), Reduction::half_sum);
        tape.backward(loss);
        opt.step();
        std::printf("worked_example_2_3_2_1: loss %.6f\n", loss.item());
        tape.clear();
    }
    {  // mnist_softmax_sgd (source document 004): softmax(tanh(x + b0)·W1 + b1) under Σ(y − t)², SGD lr 1
        reference::MnistSoftmaxSgd<F> net(0);
        SGD<F> opt(net.parameters(), {1.0});
        auto loss = mse_loss(net(tape.borrow(x)), one_hot(tape, labels, 10), Reduction::sum);
        tape.backward(loss);
        opt.step();
        std::printf("mnist_softmax_sgd: loss %.4f\n", loss.item());
        tape.clear();
    }
    return 0;
}

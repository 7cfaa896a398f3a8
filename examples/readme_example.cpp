// The README's example: build a small network from ops, backward, print gradients, gradcheck them.
#include <iostream>
#include <xtensor/xio.hpp>

#include "xgrad/autodiff.hpp"

int main()
{
    using namespace xgrad;
    Tape<double> tape;
    auto x = tape.constant(Tensor<double>{{0.5, -1.0, 2.0}});            // (1,3) input
    auto W = tape.variable(Tensor<double>{{0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}});  // (3,2)
    auto b = tape.variable(Tensor<double>{0.01, -0.02});                 // (2)
    auto loss = sum(tanh(matmul(x, W) + b));
    tape.backward(loss);
    std::cout << "loss " << loss.item() << "\ndL/dW\n" << W.grad() << "\ndL/db\n" << b.grad() << "\n";

    auto report = gradcheck([&](const std::vector<Vard>& v) {
        return sum(tanh(matmul(v[0].tape().constant(x.value()), v[0]) + v[1]));
    }, {W.value(), b.value()});
    std::cout << report.summary();
    return report.ok ? 0 : 1;
}

// Built against the installed package: d/dx Σ x² = 2x through autodiff, and an nn layer.
#include <xgrad/autodiff.hpp>
#include <xgrad/nn.hpp>

int main()
{
    xgrad::Tape<float> tape;
    auto x = tape.variable(xgrad::Tensor<float>{1.0f, -2.0f, 3.0f});
    tape.backward(xgrad::sum(x * x));
    const auto& g = x.grad();
    if (!(g(0) == 2.0f && g(1) == -4.0f && g(2) == 6.0f)) return 1;
    tape.clear();
    xgrad::nn::Linear<float> lin(3, 2);
    auto y = lin(tape.constant(xgrad::Tensor<float>{{1.0f, 2.0f, 3.0f}}));
    return y.shape() == xgrad::Shape{1, 2} ? 0 : 1;
}

// Built against the installed package: d/dx Σ x² = 2x.
#include <xgrad/autodiff.hpp>

int main()
{
    xgrad::Tape<float> tape;
    auto x = tape.variable(xgrad::Tensor<float>{1.0f, -2.0f, 3.0f});
    tape.backward(xgrad::sum(x * x));
    const auto& g = x.grad();
    return (g(0) == 2.0f && g(1) == -4.0f && g(2) == 6.0f) ? 0 : 1;
}

// Built against the installed package: d/dx Σ x² = 2x through autodiff, an nn layer and a training
// metric, and the hand-derived backprop of xgrad::reference.
#include <xgrad/autodiff.hpp>
#include <xgrad/nn.hpp>
#include <xgrad/reference/backprop.hpp>

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
    if (y.shape() != xgrad::Shape{1, 2}) return 1;
    // row argmaxes 1 and 0 against labels 1 and 1: half right
    if (xgrad::nn::accuracy(xgrad::Tensor<float>{{0.1f, 0.9f}, {0.8f, 0.2f}}, xgrad::IndexTensor{1, 1}) != 0.5) return 1;
    // y = [1 2]·[1 1]ᵀ = 3, E = ½(3 − 0)² = 4.5, ∂E/∂W = δ xᵀ = [3 3]
    namespace ref = xgrad::reference;
    const std::vector<ref::Layer<double>> layers{
        {xgrad::Tensor<double>(xt::xtensor<double, 2>{{1.0, 2.0}}), xgrad::Tensor<double>{0.0}, xgrad::nn::Activation::identity}};
    const auto p = ref::mlp_backprop(layers, xgrad::Tensor<double>(xt::xtensor<double, 2>{{1.0, 1.0}}),
                                     ref::half_squared_error(xgrad::Tensor<double>(xt::xtensor<double, 2>{{0.0}})));
    return p.loss == 4.5 && p.dW[0](0, 0) == 3.0 && p.dW[0](0, 1) == 3.0 ? 0 : 1;
}

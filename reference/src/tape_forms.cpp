#include "xgrad/autodiff.hpp"
#include "xgrad/reference/backprop.hpp"

namespace xgrad::reference {

template <class T>
Var<T> trace_regularizer_on_tape(const Var<T>& Y, const IndexTensor& labels, std::size_t K, T gamma)
{
    Tape<T>& t = Y.tape();
    auto M = one_hot(t, labels, K);                                   // (B,K) class indicator
    const Tensor<T> counts = xt::sum(M.value(), {0});                 // n_c
    const Tensor<T> n_col = xt::reshape_view(counts, {K, std::size_t(1)});
    const Tensor<T> safe = xt::maximum(n_col, T(1));                  // absent classes: mean 0, weight 0
    auto means = matmul(transpose(M), Y) / t.constant(safe);          // m_c (K,D)
    auto m = mean(Y, {0}, true);                                      // m (1,D)
    auto within = sum(square(Y - matmul(M, means)));                  // Σ_i ‖y_i − m_c(i)‖²
    auto between = sum(t.constant(n_col) * square(means - m));        // Σ_c n_c ‖m_c − m‖²
    return (within - between) * (T(0.5) * gamma);
}

template Var<float> trace_regularizer_on_tape(const Var<float>&, const IndexTensor&, std::size_t, float);
template Var<double> trace_regularizer_on_tape(const Var<double>&, const IndexTensor&, std::size_t, double);

}  // namespace xgrad::reference

#pragma once
// Activations and normalized exponentials.
#include <string>
#include <type_traits>

#include "xgrad/activation_kind.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// Y = 1 / (1 + e^−X), computed without overflow.   dX = G ⊙ Y ⊙ (1 − Y)
template <class T> Var<T> sigmoid(const Var<T>& x);
/// Y = tanh X.                                      dX = G ⊙ (1 − Y²)
template <class T> Var<T> tanh(const Var<T>& x);
/// Y = ln(1 + eˣ), computed as max(X, 0) + ln(1 + e^−|X|) (no overflow).
///                                                  dX = G ⊙ σ(X)
template <class T> Var<T> softplus(const Var<T>& x);
/// Y = X ⊙ σ(X) (SiLU, swish).                      dX = G ⊙ σ(X)(1 + X(1 − σ(X)))
template <class T> Var<T> silu(const Var<T>& x);
/// GELU: Y = X ⊙ Φ(X) with Φ the standard normal CDF (approximate = "none"), or PyTorch's tanh
/// form Y = ½X(1 + tanh(√(2/π)(X + 0.044715X³))) (approximate = "tanh"); other strings throw
/// std::invalid_argument.                           dX = G ⊙ (Φ(X) + X φ(X)), resp. the tanh form's
template <class T> Var<T> gelu(const Var<T>& x, const std::string& approximate = "none");
/// Y = X for X > 0, slope·X otherwise.              dX = G ⊙ (X > 0 ? 1 : slope)
template <class T> Var<T> leaky_relu(const Var<T>& x, typename std::common_type<T>::type negative_slope = 0.01);
/// Y = X for X > 0, α(eˣ − 1) otherwise.            dX = G ⊙ (X > 0 ? 1 : Y + α)
template <class T> Var<T> elu(const Var<T>& x, typename std::common_type<T>::type alpha = 1);
/// Y = max(X, 0).                                   dX = G ⊙ [X > 0]
/// (recorded: the internal op relu_backward(G, X) = G ⊙ [X > 0], whose VJP is relu_backward again)
template <class T> Var<T> relu(const Var<T>& x);
/// Y = max(A + B, 0) as one op (a residual block's end): one pass forward, and backward the mask
/// G ⊙ [Y > 0] written straight into both inputs' gradients. dA = dB = G ⊙ [Y > 0]; the same values
/// and gradients as relu(A + B), bit for bit. A and B of one shape; broadcasting shapes are
/// recorded as the two ops (add's errors for shapes that do not broadcast).
template <class T> Var<T> add_relu(const Var<T>& a, const Var<T>& b);
/// Y = softmax along `axis` (exp(X − max) / Σ exp(X − max)).
///                                                  dX = Y ⊙ (G − Σ_axis G ⊙ Y)
template <class T> Var<T> softmax(const Var<T>& x, int axis = -1);
/// Y = X − max − log Σ exp(X − max) along `axis`.   dX = G − softmax(X) ⊙ Σ_axis G
template <class T> Var<T> log_softmax(const Var<T>& x, int axis = -1);

}  // namespace xgrad

#pragma once
// Activations and normalized exponentials.
#include "xgrad/tape.hpp"

namespace xgrad {

/// Y = 1 / (1 + e^−X), computed without overflow.   dX = G ⊙ Y ⊙ (1 − Y)
template <class T> Var<T> sigmoid(const Var<T>& x);
/// Y = tanh X.                                      dX = G ⊙ (1 − Y²)
template <class T> Var<T> tanh(const Var<T>& x);
/// Y = max(X, 0).                                   dX = G ⊙ [X > 0]
/// (recorded: the internal op relu_backward(G, X) = G ⊙ [X > 0], whose VJP is relu_backward again)
template <class T> Var<T> relu(const Var<T>& x);
/// Y = softmax along `axis` (exp(X − max) / Σ exp(X − max)).
///                                                  dX = Y ⊙ (G − Σ_axis G ⊙ Y)
template <class T> Var<T> softmax(const Var<T>& x, int axis = -1);
/// Y = X − max − log Σ exp(X − max) along `axis`.   dX = G − softmax(X) ⊙ Σ_axis G
template <class T> Var<T> log_softmax(const Var<T>& x, int axis = -1);

}  // namespace xgrad

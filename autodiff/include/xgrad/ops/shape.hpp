#pragma once
// Ops that move data without arithmetic.
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

/// Same data, new shape; one entry may be −1 (inferred).          dX = reshape(G, X.shape)
template <class T> Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape);
/// Collapses dims start_dim.. into one: (N,C,H,W) → (N, C·H·W) for start_dim = 1.
template <class T> Var<T> flatten(const Var<T>& x, int start_dim = 1);
/// Y = X with its axes permuted: Y.shape[i] = X.shape[perm[i]].     dX = permute(G, perm⁻¹)
template <class T> Var<T> permute(const Var<T>& x, const std::vector<std::size_t>& perm);
/// Swaps the last two axes (2-D transpose; batched for rank 3+).    dX = transpose(G)
template <class T> Var<T> transpose(const Var<T>& x);
/// Y = X[start:stop:step] along `axis`.                            dX = G scattered into zeros
template <class T> Var<T> slice(const Var<T>& x, int axis, std::ptrdiff_t start, std::ptrdiff_t stop,
                                std::ptrdiff_t step = 1);
/// Y = [X₀, X₁, …] joined along `axis`.                           dXᵢ = the matching slice of G
template <class T> Var<T> concatenate(const std::vector<Var<T>>& xs, int axis = 0);
/// concatenate({x, y}, axis): the same, with T deduced from a braced list.
template <class T> Var<T> concatenate(std::initializer_list<Var<T>> xs, int axis = 0)
{
    return concatenate(std::vector<Var<T>>(xs), axis);
}
/// Y[…i…] = X[…index[…i…]…] along `axis` (torch.gather): index has X's rank and X's shape
/// except along `axis`.                                            dX = G scatter-added at index
template <class T> Var<T> gather(const Var<T>& x, int axis, const IndexTensor& index);
/// y_b = X[b, labels_b] for X (B,C), labels (B) → (B). gather along axis 1.
template <class T> Var<T> pick(const Var<T>& x, const IndexTensor& labels);
/// One-hot constant (B, num_classes) from integer labels (B); labels out of range throw.
template <class T> Var<T> one_hot(Tape<T>& tape, const IndexTensor& labels, std::size_t num_classes);

}  // namespace xgrad

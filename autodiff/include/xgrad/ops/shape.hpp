#pragma once
// Ops that move data without arithmetic.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <vector>

#include "xgrad/tape.hpp"

namespace xgrad {

/// Same data, new shape; one entry may be −1 (inferred).          dX = reshape(G, X.shape)
template <class T> Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape);
/// reshape(x, {B, -1}): the same, without allocating the list (a training step's shapes).
template <class T> Var<T> reshape(const Var<T>& x, std::initializer_list<std::ptrdiff_t> shape);
/// Collapses dims start_dim.. into one: (N,C,H,W) → (N, C·H·W) for start_dim = 1.
template <class T> Var<T> flatten(const Var<T>& x, int start_dim = 1);
/// Y = X with its axes permuted: Y.shape[i] = X.shape[perm[i]].     dX = permute(G, perm⁻¹)
template <class T> Var<T> permute(const Var<T>& x, const std::vector<std::size_t>& perm);
/// permute(x, {0, 2, 1, 3}): the same, without allocating the list.
template <class T> Var<T> permute(const Var<T>& x, std::initializer_list<std::size_t> perm);
/// Swaps the last two axes (2-D transpose; batched for rank 3+).    dX = transpose(G)
template <class T> Var<T> transpose(const Var<T>& x);
/// Y = X[start:stop:step] along `axis`.                            dX = G scattered into zeros
template <class T> Var<T> slice(const Var<T>& x, int axis, std::ptrdiff_t start, std::ptrdiff_t stop,
                                std::ptrdiff_t step = 1);
/// Y = X[…, index, …] along `axis`, without that axis (torch.select): (L,B,H), axis 0 → (B,H);
/// a negative index counts from the end.                          dX = G scattered into zeros
template <class T> Var<T> select(const Var<T>& x, int axis, std::ptrdiff_t index);
/// Y = [X₀, X₁, …] joined along `axis`.                           dXᵢ = the matching slice of G
template <class T> Var<T> concatenate(const std::vector<Var<T>>& xs, int axis = 0);
/// concatenate({x, y}, axis): the same, with T deduced from a braced list.
template <class T> Var<T> concatenate(std::initializer_list<Var<T>> xs, int axis = 0)
{
    return concatenate(std::vector<Var<T>>(xs), axis);
}
/// Y = X with a size-1 axis inserted at `dim` ∈ [−rank−1, rank] (negative counts from the end, as
/// torch.unsqueeze): (2,3), dim 1 → (2,1,3).                       dX = reshape(G, X.shape)
template <class T> Var<T> unsqueeze(const Var<T>& x, int dim);
/// Y = X without axis `dim`, which must have size 1: (2,1,3), dim 1 → (2,3).   dX = reshape(G, X.shape)
template <class T> Var<T> squeeze(const Var<T>& x, int dim);
/// Y = X broadcast to `shape` (torch.Tensor.expand): size-1 axes repeat, new leading axes are
/// added, −1 keeps an existing axis's size.                         dX = sum_to(G, X.shape)
template <class T> Var<T> expand(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape);
/// Y = X padded with `value` (torch.nn.functional.pad, mode "constant"): pads = (left, right) pairs
/// from the last axis backwards, 2·p ≤ 2·rank entries; a negative pad crops.
/// Y.shape[d] = X.shape[d] + left_d + right_d.                      dX = G at X's positions (a slice)
template <class T>
Var<T> pad(const Var<T>& x, const std::vector<std::ptrdiff_t>& pads, typename std::common_type<T>::type value = 0);
/// Y = [X₀, X₁, …] stacked along a new axis `axis` ∈ [−rank−1, rank] (torch.stack); all Xᵢ have one
/// shape S → Y (…, n, …).  Built as unsqueeze + concatenate.        dXᵢ = G[…, i, …]
template <class T> Var<T> stack(const std::vector<Var<T>>& xs, int axis = 0);
/// stack({x, y}, axis): the same, with T deduced from a braced list.
template <class T> Var<T> stack(std::initializer_list<Var<T>> xs, int axis = 0)
{
    return stack(std::vector<Var<T>>(xs), axis);
}
/// Y[…i…] = X[…index[…i…]…] along `axis` (torch.gather): index has X's rank and X's shape
/// except along `axis`.                                            dX = G scatter-added at index
template <class T> Var<T> gather(const Var<T>& x, int axis, const IndexTensor& index);
/// y_b = X[b, labels_b] for X (B,C), labels (B) → (B). gather along axis 1.
template <class T> Var<T> pick(const Var<T>& x, const IndexTensor& labels);
/// Y[i…, :] = W[indices[i…], :] (torch::nn::functional::embedding): W (num_embeddings, dim), indices
/// of any shape S → S ++ (dim). Indices outside [0, num_embeddings) throw std::out_of_range.
/// padding_idx (negative counts from num_embeddings, as PyTorch) gets no gradient.
/// dW[r, :] = Σ_{i: indices[i] = r, r ≠ padding_idx} G[i, :]  (scatter-add into the used rows only)
template <class T>
Var<T> embedding(const Var<T>& weight, const IndexTensor& indices, std::optional<std::int64_t> padding_idx = std::nullopt);
/// One-hot constant (B, num_classes) from integer labels (B); labels out of range throw.
template <class T> Var<T> one_hot(Tape<T>& tape, const IndexTensor& labels, std::size_t num_classes);

}  // namespace xgrad

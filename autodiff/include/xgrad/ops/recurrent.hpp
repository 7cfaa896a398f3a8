#pragma once
// Recurrent cells, fused: one node per step for the gate nonlinearities and the state update
// (the gate GEMMs stay outside, one for the input part of a whole sequence, one per step).
#include "xgrad/tape.hpp"

namespace xgrad {

/// LSTM cell, gates in PyTorch's order (input, forget, cell, output) as column blocks of width H:
/// A = gx + gh (B, 4H) (the input and hidden parts of the pre-activations), c (B, H) →
/// Y (2, B, H) = [h', c'] with i, f, o = σ(A_i, A_f, A_o), g = tanh(A_g), c' = f⊙c + i⊙g,
/// h' = o⊙tanh(c').  With G = [Gh, Gc] and dc' = Gc + Gh⊙o⊙(1 − tanh²c'):
///   dA_i = dc'⊙g⊙i(1−i), dA_f = dc'⊙c⊙f(1−f), dA_g = dc'⊙i⊙(1−g²), dA_o = Gh⊙tanh(c')⊙o(1−o),
///   dgx = dgh = dA,  dc = dc'⊙f.   Differentiable to any order.
template <class T> Var<T> lstm_cell(const Var<T>& gx, const Var<T>& gh, const Var<T>& c);

/// GRU cell, gates in PyTorch's order (reset, update, new): gx = x·W_ihᵀ + b_ih, gh = h·W_hhᵀ + b_hh
/// (B, 3H), h (B, H) → h' (B, H) with r = σ(gx_r + gh_r), z = σ(gx_z + gh_z),
/// n = tanh(gx_n + r⊙gh_n), h' = (1 − z)⊙n + z⊙h.  With dn = G⊙(1−z)⊙(1−n²):
///   dgx = [dr, dz, dn], dgh = [dr, dz, dn⊙r], dh = G⊙z,
///   dz = G⊙(h − n)⊙z(1−z), dr = dn⊙gh_n⊙r(1−r).   Differentiable to any order.
template <class T> Var<T> gru_cell(const Var<T>& gx, const Var<T>& gh, const Var<T>& h);

}  // namespace xgrad

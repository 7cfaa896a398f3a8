#pragma once
// Weight initializers, reproducible from a seed. A zero fan, a negative or non-finite gain and
// bounds that are not finite with lo <= hi throw std::invalid_argument naming the function.
#include <cstdint>
#include <optional>
#include <random>
#include <type_traits>

#include "xgrad/tensor.hpp"

namespace xgrad::nn::init {

using Rng = std::mt19937_64;

/// Seeds the process-wide generator that layers made without a seed draw their seeds from (as
/// torch::manual_seed). Its initial seed is 0, so a program that makes its layers in the same order
/// makes the same model every run; two layers made one after the other differ.
void manual_seed(std::uint64_t seed);
/// The next seed of that generator (thread-safe): what a layer made without a seed uses.
std::uint64_t next_seed();
/// `seed` if given, else next_seed().
inline std::uint64_t seed_or_next(std::optional<std::uint64_t> seed) { return seed ? *seed : next_seed(); }

/// U(−a, a) with a = gain·√(6/(fan_in + fan_out))  (Glorot & Bengio; document 004's initializer).
template <class T> void xavier_uniform(Tensor<T>& w, std::size_t fan_in, std::size_t fan_out, Rng& rng, double gain = 1);
/// U(−b, b) with b = √(6/fan_in) (He, for ReLU).
template <class T> void kaiming_uniform(Tensor<T>& w, std::size_t fan_in, Rng& rng);
/// N(0, 2/fan_in) (He, normal).
template <class T> void kaiming_normal(Tensor<T>& w, std::size_t fan_in, Rng& rng);
/// U(−1/√fan_in, 1/√fan_in): PyTorch's default for Linear and Conv2d weights and biases.
template <class T> void torch_default(Tensor<T>& w, std::size_t fan_in, Rng& rng);
template <class T> void uniform(Tensor<T>& w, double lo, double hi, Rng& rng);
/// N(mean, std²); std must be finite and >= 0 (PyTorch's Embedding init is normal(w, 0, 1)).
template <class T> void normal(Tensor<T>& w, double mean, double std, Rng& rng);
/// Fills w with value; the value converts to T (init::constant(w, 0.1) for a float tensor).
template <class T> void constant(Tensor<T>& w, typename std::common_type<T>::type value);
template <class T> void zeros(Tensor<T>& w) { constant(w, T(0)); }

}  // namespace xgrad::nn::init

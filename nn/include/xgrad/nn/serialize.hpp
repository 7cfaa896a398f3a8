#pragma once
// Weight files in the safetensors format (readable by PyTorch, NumPy via safetensors, Rust, ...):
// 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, raw data.
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/nn/module.hpp"
#include "xgrad/nn/optim.hpp"

namespace xgrad::nn {

/// A weight file that cannot be read or does not match the module: what and where.
class WeightFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Writes named tensors and string metadata to `path` atomically (temp file + rename).
template <class T>
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor<T>*>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

/// Reads the tensors of `path` into `tensors` (same names, shapes and dtypes, checked; nothing is
/// changed on error) and returns the file's metadata. An I64 entry (PyTorch's num_batches_tracked)
/// loads into a tensor of T when each value is an integer T holds exactly (|v| ≤ 2^24 for float).
template <class T>
std::map<std::string, std::string> load_tensors(const std::string& path,
                                                const std::vector<std::pair<std::string, Tensor<T>*>>& tensors);

/// A training checkpoint: the module's parameters and buffers ("model.<name>"), the optimizer's state
/// ("optim.<name>") and metadata (e.g. the epoch), written atomically.
template <class T>
void save_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer,
                     const std::map<std::string, std::string>& metadata);
/// Restores a checkpoint and returns its metadata. Besides load_tensors' checks, every value must
/// be finite, "optim.steps" a whole number, and each key of `integer_metadata` present as a
/// decimal number 0..999999999 (so that std::stoi on it cannot throw). On any problem throws
/// WeightFileError naming the path and the bad fields; the module and optimizer are then unchanged.
template <class T>
std::map<std::string, std::string> load_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer,
                                                   const std::vector<std::string>& integer_metadata = {});

/// The module's state as PyTorch's state_dict names and orders it: each module's parameters, then
/// its buffers (BatchNorm's running statistics), then its children's, recursively: ("0.weight",
/// tensor), …, ("1.running_mean", tensor). The pointers stay valid for the module's life.
template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> state_dict(Module<T>& module);

/// Writes the module's state to `path` as PyTorch's state_dict names and orders it: each module's
/// parameters, then its buffers (BatchNorm's running statistics), then its children's, recursively;
/// atomically (temp file in the same directory, then rename):
/// a failed save leaves the previous file intact.
template <class T>
void save_weights(Module<T>& module, const std::string& path);

/// Loads parameters and buffers by name; checks that names, shapes and dtypes match the module exactly and
/// throws WeightFileError listing every mismatch (the module is unchanged on error).
template <class T>
void load_weights(Module<T>& module, const std::string& path);

}  // namespace xgrad::nn

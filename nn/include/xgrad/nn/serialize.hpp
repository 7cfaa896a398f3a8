#pragma once
// Weight files in the safetensors format (readable by PyTorch, NumPy via safetensors, Rust, ...):
// 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, raw data.
#include <stdexcept>
#include <string>

#include "xgrad/nn/module.hpp"

namespace xgrad::nn {

/// A weight file that cannot be read or does not match the module: what and where.
class WeightFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Writes every named parameter to `path` atomically (temp file in the same directory, then rename):
/// a failed save leaves the previous file intact.
template <class T>
void save_weights(Module<T>& module, const std::string& path);

/// Loads parameters by name; checks that names, shapes and dtypes match the module exactly and
/// throws WeightFileError listing every mismatch (the module is unchanged on error).
template <class T>
void load_weights(Module<T>& module, const std::string& path);

}  // namespace xgrad::nn

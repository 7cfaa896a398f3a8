#pragma once
// Datasets in the IDX format (MNIST, Fashion-MNIST), plain or gzip, and seeded mini-batching.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad::nn {

/// A data file that is missing, truncated or malformed; the message names the path and the reason.
class DataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Contents of an IDX file of unsigned bytes (type code 0x08): its dimensions and data.
struct IdxArray {
    std::vector<std::size_t> dims;
    std::vector<std::uint8_t> data;
};

/// Reads an IDX file (gzip-compressed if it starts with the gzip magic). Checks the magic number,
/// the element type (unsigned byte), and that the data size equals the product of the dimensions.
IdxArray read_idx(const std::string& path);
/// Writes an uncompressed IDX file of unsigned bytes (used by tests and tools).
void write_idx(const std::string& path, const IdxArray& a);

/// Images flattened to (N, H·W) floats in [0, 1] and labels (N).
struct Dataset {
    Tensor<float> images;
    IndexTensor labels;
    std::size_t rows = 0, cols = 0;  ///< image height and width
    std::size_t size() const { return labels.size(); }
    /// Rows [begin, end) as a new dataset; std::out_of_range unless begin <= end <= size().
    Dataset slice(std::size_t begin, std::size_t end) const;
};

/// Loads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and `<dir>/<prefix>-labels-idx1-ubyte[.gz]`
/// (prefix "train" or "t10k") and checks that they agree. `fetch_hint` is appended to the
/// message when the files are missing (e.g. the command that fetches them).
Dataset load_idx_dataset(const std::string& dir, const std::string& prefix, const std::string& fetch_hint = {});

/// Seeded shuffling: the order of epoch e depends only on (seed, e), so a resumed run sees the
/// same batches as an uninterrupted one.
std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::size_t epoch);

/// Copies the rows `order[begin, end)` of a dataset into a batch (reusing the batch's buffers).
void gather_batch(const Dataset& d, const std::vector<std::size_t>& order, std::size_t begin, std::size_t end,
                  Tensor<float>& images, IndexTensor& labels);

}  // namespace xgrad::nn

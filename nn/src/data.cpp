#include "xgrad/nn/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

namespace xgrad::nn {

namespace {

std::vector<std::uint8_t> read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw DataError(path + ": cannot open: " + std::strerror(errno));
    return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::uint8_t> gunzip(const std::string& path, const std::vector<std::uint8_t>& z)
{
    z_stream s{};
    if (inflateInit2(&s, 15 + 16) != Z_OK) throw DataError(path + ": zlib initialisation failed");
    std::vector<std::uint8_t> out(z.size() * 4 + 1024);
    s.next_in = const_cast<Bytef*>(z.data());
    s.avail_in = uInt(z.size());
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (s.total_out == out.size()) out.resize(out.size() * 2);
        s.next_out = out.data() + s.total_out;
        s.avail_out = uInt(out.size() - s.total_out);
        rc = inflate(&s, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR && s.avail_in == 0) {
            inflateEnd(&s);
            throw DataError(path + ": truncated gzip stream");
        }
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            const std::string why = s.msg ? s.msg : "error " + std::to_string(rc);
            inflateEnd(&s);
            throw DataError(path + ": corrupt gzip data (" + why + ")");
        }
    }
    out.resize(s.total_out);
    inflateEnd(&s);
    return out;
}

std::string existing(const std::string& base)
{
    if (std::filesystem::exists(base)) return base;
    if (std::filesystem::exists(base + ".gz")) return base + ".gz";
    return {};
}

}  // namespace

IdxArray read_idx(const std::string& path)
{
    std::vector<std::uint8_t> raw = read_file(path);
    if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) raw = gunzip(path, raw);
    if (raw.size() < 4) throw DataError(path + ": truncated: " + std::to_string(raw.size()) + " bytes, no IDX header");
    if (raw[0] != 0 || raw[1] != 0)
        throw DataError(path + ": wrong magic number: IDX files start with two zero bytes (is this an IDX file?)");
    if (raw[2] != 0x08)
        throw DataError(path + ": element type 0x" + std::to_string(raw[2]) + " is not unsigned byte (0x08)");
    const std::size_t nd = raw[3];
    if (nd == 0 || nd > 4) throw DataError(path + ": " + std::to_string(nd) + " dimensions; expected 1 to 4");
    if (raw.size() < 4 + 4 * nd) throw DataError(path + ": truncated inside the dimension list");
    IdxArray a;
    std::size_t count = 1;
    for (std::size_t i = 0; i < nd; ++i) {
        const std::uint8_t* p = raw.data() + 4 + 4 * i;
        const std::size_t d = (std::size_t(p[0]) << 24) | (std::size_t(p[1]) << 16) | (std::size_t(p[2]) << 8) | p[3];
        a.dims.push_back(d);
        count *= d;
    }
    const std::size_t header = 4 + 4 * nd;
    if (raw.size() - header != count)
        throw DataError(path + ": dimensions " + shape_str(a.dims) + " need " + std::to_string(count) +
                        " bytes of data, the file has " + std::to_string(raw.size() - header) +
                        (raw.size() - header < count ? " (truncated)" : " (trailing bytes)"));
    a.data.assign(raw.begin() + std::ptrdiff_t(header), raw.end());
    return a;
}

void write_idx(const std::string& path, const IdxArray& a)
{
    std::ofstream out(path, std::ios::binary);
    if (!out) throw DataError(path + ": cannot create: " + std::strerror(errno));
    const char head[4] = {0, 0, 0x08, char(a.dims.size())};
    out.write(head, 4);
    for (std::size_t d : a.dims) {
        const char b[4] = {char(d >> 24), char(d >> 16), char(d >> 8), char(d)};
        out.write(b, 4);
    }
    out.write(reinterpret_cast<const char*>(a.data.data()), std::streamsize(a.data.size()));
    if (!out) throw DataError(path + ": write failed");
}

Dataset load_idx_dataset(const std::string& dir, const std::string& prefix, const std::string& fetch_hint)
{
    const std::string ib = dir + "/" + prefix + "-images-idx3-ubyte", lb = dir + "/" + prefix + "-labels-idx1-ubyte";
    const std::string ip = existing(ib), lp = existing(lb);
    if (ip.empty() || lp.empty())
        throw DataError((ip.empty() ? ib : lb) + "[.gz]: not found" + (fetch_hint.empty() ? "" : "; " + fetch_hint));
    const IdxArray im = read_idx(ip), lab = read_idx(lp);
    if (im.dims.size() != 3) throw DataError(ip + ": expected 3 dimensions (N,rows,cols), got " + shape_str(im.dims));
    if (lab.dims.size() != 1) throw DataError(lp + ": expected 1 dimension (N), got " + shape_str(lab.dims));
    if (im.dims[0] != lab.dims[0])
        throw DataError(ip + " has " + std::to_string(im.dims[0]) + " images but " + lp + " has " +
                        std::to_string(lab.dims[0]) + " labels");
    Dataset d;
    const std::size_t n = im.dims[0];
    d.rows = im.dims[1];
    d.cols = im.dims[2];
    d.images = Tensor<float>::from_shape({n, d.rows * d.cols});
    float* p = d.images.data();
    for (std::size_t i = 0; i < im.data.size(); ++i) p[i] = float(im.data[i]) * (1.0f / 255.0f);
    d.labels = IndexTensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
        if (lab.data[i] > 9) throw DataError(lp + ": label " + std::to_string(lab.data[i]) + " at " + std::to_string(i) + " is not a digit class 0-9");
        d.labels(i) = lab.data[i];
    }
    return d;
}

Dataset Dataset::slice(std::size_t begin, std::size_t end) const
{
    end = std::min(end, size());
    begin = std::min(begin, end);
    Dataset d;
    d.rows = rows;
    d.cols = cols;
    const std::size_t w = images.shape()[1];
    d.images = Tensor<float>::from_shape({end - begin, w});
    std::copy(images.data() + begin * w, images.data() + end * w, d.images.data());
    d.labels = IndexTensor::from_shape({end - begin});
    std::copy(labels.data() + begin, labels.data() + end, d.labels.data());
    return d;
}

std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::size_t epoch)
{
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + epoch);
    // Fisher-Yates with our own draw: std::shuffle's use of the engine is implementation-defined.
    for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    return order;
}

void gather_batch(const Dataset& d, const std::vector<std::size_t>& order, std::size_t begin, std::size_t end,
                  Tensor<float>& images, IndexTensor& labels)
{
    const std::size_t w = d.images.shape()[1], b = end - begin;
    images.resize(Shape{b, w});
    labels.resize({b});
    for (std::size_t i = 0; i < b; ++i) {
        const std::size_t r = order[begin + i];
        std::copy_n(d.images.data() + r * w, w, images.data() + i * w);
        labels(i) = d.labels(r);
    }
}

}  // namespace xgrad::nn

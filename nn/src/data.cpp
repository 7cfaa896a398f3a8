#include "xgrad/nn/data.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

namespace xgrad::nn {

namespace {

/// The bytes of an IDX file, read through zlib when the file starts with the gzip magic. Reads are
/// bounded by what the caller asks for, so a decompression bomb is never inflated past the size its
/// IDX header declares.
class IdxSource {
public:
    explicit IdxSource(const std::string& path) : path_(path)
    {
        fd_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_.fd < 0) throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
        struct stat st {};
        if (::fstat(fd_.fd, &st) != 0) fail_errno("cannot stat");
        if (S_ISDIR(st.st_mode)) fail("is a directory, not an IDX file");
        regular_ = S_ISREG(st.st_mode);
        file_size_ = regular_ ? std::uint64_t(st.st_size) : 0;
        fill_input();
        if (in_end_ - in_pos_ >= 2 && in_[in_pos_] == 0x1f && in_[in_pos_ + 1] == 0x8b) {
            if (inflateInit2(&z_, 15 + 16) != Z_OK) fail("zlib initialisation failed");
            gzip_ = true;  // last: nothing in the constructor throws after this
        }
    }
    IdxSource(const IdxSource&) = delete;
    IdxSource& operator=(const IdxSource&) = delete;
    ~IdxSource()
    {
        if (gzip_) inflateEnd(&z_);
    }

    bool gzip() const { return gzip_; }
    /// A regular file, whose (compressed) size file_size() is known; pipes and devices are not.
    bool regular() const { return regular_; }
    std::uint64_t file_size() const { return file_size_; }
    /// Bytes of (inflated) data delivered or inflated so far.
    std::uint64_t produced() const { return gzip_ ? z_.total_out : produced_; }

    /// Reads up to n bytes into dst; fewer only at the end of the data.
    std::size_t read(std::uint8_t* dst, std::size_t n)
    {
        std::size_t got = 0;
        while (got < n) {
            if (!gzip_) {
                if (in_pos_ == in_end_ && !fill_input()) break;
                const std::size_t k = std::min(n - got, in_end_ - in_pos_);
                std::memcpy(dst + got, in_.data() + in_pos_, k);
                in_pos_ += k;
                got += k;
                produced_ += k;
                continue;
            }
            if (stream_end_) break;
            if (in_pos_ == in_end_) fill_input();
            z_.next_in = in_.data() + in_pos_;
            z_.avail_in = uInt(in_end_ - in_pos_);
            const std::size_t want = std::min<std::size_t>(n - got, 1u << 30);
            z_.next_out = dst + got;
            z_.avail_out = uInt(want);
            const int rc = inflate(&z_, Z_NO_FLUSH);
            const std::size_t out = want - z_.avail_out;
            got += out;
            in_pos_ = in_end_ - z_.avail_in;
            if (rc == Z_STREAM_END) {
                stream_end_ = true;  // anything after the first gzip member is ignored
            } else if (rc == Z_BUF_ERROR || (rc == Z_OK && out == 0 && in_pos_ == in_end_)) {
                // no progress: the input is used up and the stream has not ended
                if (in_pos_ == in_end_ && input_eof_)
                    fail(fmt::format("truncated gzip stream (ends after {} inflated bytes)", z_.total_out));
            } else if (rc != Z_OK) {
                fail(fmt::format("corrupt gzip data ({})", z_.msg ? z_.msg : fmt::format("zlib error {}", rc)));
            }
        }
        return got;
    }

    [[noreturn]] void fail(const std::string& why) const { throw DataError(fmt::format("{}: {}", path_, why)); }

private:
    [[noreturn]] void fail_errno(const char* what) const
    {
        throw DataError(fmt::format("{}: {}: {}", path_, what, std::strerror(errno)));
    }

    /// Refills the input buffer if it is empty; false when nothing is left.
    bool fill_input()
    {
        if (in_pos_ < in_end_) return true;
        if (input_eof_) return false;
        in_pos_ = in_end_ = 0;
        for (;;) {
            const ssize_t r = ::read(fd_.fd, in_.data(), in_.size());
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) fail_errno("read failed");
            in_end_ = std::size_t(r);
            input_eof_ = r == 0;
            return r > 0;
        }
    }

    struct Fd {  // closes the file also when the constructor throws
        int fd = -1;
        ~Fd()
        {
            if (fd >= 0) ::close(fd);
        }
    };
    std::string path_;
    Fd fd_;
    bool regular_ = false, gzip_ = false, stream_end_ = false, input_eof_ = false;
    std::uint64_t file_size_ = 0, produced_ = 0;
    std::vector<std::uint8_t> in_ = std::vector<std::uint8_t>(1 << 16);
    std::size_t in_pos_ = 0, in_end_ = 0;
    z_stream z_{};
};

std::string existing(const std::string& base)
{
    std::error_code ec;  // an unreadable parent directory is "not found" here; read_idx says why
    if (std::filesystem::exists(base, ec)) return base;
    if (std::filesystem::exists(base + ".gz", ec)) return base + ".gz";
    return {};
}

}  // namespace

IdxArray read_idx(const std::string& path)
{
    IdxSource src(path);
    std::uint8_t head[4 + 4 * 4];
    const std::size_t got = src.read(head, 4);
    if (got < 4) src.fail(fmt::format("truncated: {} bytes, no IDX header", got));
    if (head[0] != 0 || head[1] != 0)
        src.fail("wrong magic number: IDX files start with two zero bytes (is this an IDX file?)");
    if (head[2] != 0x08) src.fail(fmt::format("element type {:#04x} is not unsigned byte (0x08)", head[2]));
    const std::size_t nd = head[3];
    if (nd == 0 || nd > 4) src.fail(fmt::format("{} dimensions; expected 1 to 4", nd));
    if (src.read(head + 4, 4 * nd) < 4 * nd) src.fail("truncated inside the dimension list");
    IdxArray a;
    std::size_t count = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < nd; ++i) {
        const std::uint8_t* p = head + 4 + 4 * i;
        const std::size_t d = (std::size_t(p[0]) << 24) | (std::size_t(p[1]) << 16) | (std::size_t(p[2]) << 8) | p[3];
        a.dims.push_back(d);
        overflow = overflow || __builtin_mul_overflow(count, d, &count);
    }
    if (std::find(a.dims.begin(), a.dims.end(), std::size_t(0)) != a.dims.end()) overflow = false, count = 0;
    // Even without wrap-around, no vector can hold more than PTRDIFF_MAX bytes.
    if (overflow || count > std::size_t(std::numeric_limits<std::ptrdiff_t>::max()))
        src.fail(fmt::format("dimensions too large: {} is more than {} bytes", shape_str(a.dims),
                             std::numeric_limits<std::ptrdiff_t>::max()));
    const std::size_t header = 4 + 4 * nd;
    auto size_mismatch = [&](std::uint64_t have) {
        src.fail(fmt::format("dimensions {} need {} bytes of data, the file has {}{}", shape_str(a.dims), count, have,
                             have < count ? " (truncated)" : " (trailing bytes)"));
    };
    // A plain file's size is known: check it before allocating anything.
    if (!src.gzip() && src.regular() && src.file_size() - header != count)
        size_mismatch(src.file_size() >= header ? src.file_size() - header : 0);
    // Deflate inflates at most 1032:1 (zlib's documented limit), so a larger claim cannot be met.
    const std::uint64_t gzip_cap = 1032 * src.file_size() + 1024;
    if (src.gzip() && src.regular() && count > gzip_cap)
        src.fail(fmt::format("dimensions {} need {} bytes of data, more than the {}-byte gzip file can inflate to "
                             "(at most {}; truncated)",
                             shape_str(a.dims), count, src.file_size(), gzip_cap));

    // Grow the buffer as data actually arrives (a gzip header may claim more than the stream holds),
    // never past the declared size; then one more byte tells whether anything follows. A plain
    // file's size is already checked, so it is read in one go.
    const bool size_known = !src.gzip() && src.regular();
    std::size_t have = 0;
    while (have < count) {
        const std::size_t next = size_known ? count : std::min(count, std::max<std::size_t>(have * 2, 1 << 20));
        a.data.resize(next);
        const std::size_t r = src.read(a.data.data() + have, next - have);
        have += r;
        if (have < next) break;
    }
    a.data.resize(have);
    if (have < count) size_mismatch(have);
    std::uint8_t extra = 0;
    if (src.read(&extra, 1) != 0) {
        if (src.gzip())
            src.fail(fmt::format("gzip data inflates to more than the {} bytes its IDX header declares (dimensions {}): "
                                 "trailing bytes or a decompression bomb; stopped after inflating {} bytes",
                                 header + count, shape_str(a.dims), src.produced()));
        size_mismatch(count + 1);  // not a regular file (pipe, device): it has at least one byte too many
    }
    return a;
}

void write_idx(const std::string& path, const IdxArray& a)
{
    if (a.dims.empty() || a.dims.size() > 4)
        throw DataError(fmt::format("{}: cannot write {} dimensions; IDX holds 1 to 4", path, a.dims.size()));
    std::size_t count = 1;
    for (std::size_t d : a.dims) {
        if (d > 0xffffffffu) throw DataError(fmt::format("{}: dimension {} does not fit IDX's 32 bits", path, d));
        count *= d;  // at most 4 factors below 2^32 each: checked against the data size below
    }
    if (count != a.data.size())
        throw DataError(fmt::format("{}: dimensions {} need {} bytes, the array has {}", path, shape_str(a.dims), count,
                                    a.data.size()));
    std::ofstream out(path, std::ios::binary);
    if (!out) throw DataError(fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
    const char head[4] = {0, 0, 0x08, char(a.dims.size())};
    out.write(head, 4);
    for (std::size_t d : a.dims) {
        const char b[4] = {char(d >> 24), char(d >> 16), char(d >> 8), char(d)};
        out.write(b, 4);
    }
    out.write(reinterpret_cast<const char*>(a.data.data()), std::streamsize(a.data.size()));
    out.close();
    if (!out) throw DataError(fmt::format("{}: write failed: {}", path, std::strerror(errno)));
}

Dataset load_idx_dataset(const std::string& dir, const std::string& prefix, const std::string& fetch_hint)
{
    const std::string ib = dir + "/" + prefix + "-images-idx3-ubyte", lb = dir + "/" + prefix + "-labels-idx1-ubyte";
    const std::string ip = existing(ib), lp = existing(lb);
    if (ip.empty() || lp.empty())
        throw DataError(fmt::format("{}[.gz]: not found{}{}", ip.empty() ? ib : lb, fetch_hint.empty() ? "" : "; ",
                                    fetch_hint));
    const IdxArray im = read_idx(ip), lab = read_idx(lp);
    if (im.dims.size() != 3)
        throw DataError(fmt::format("{}: expected 3 dimensions (N,rows,cols), got {}", ip, shape_str(im.dims)));
    if (lab.dims.size() != 1)
        throw DataError(fmt::format("{}: expected 1 dimension (N), got {}", lp, shape_str(lab.dims)));
    if (im.dims[0] != lab.dims[0])
        throw DataError(fmt::format("{} has {} images but {} has {} labels", ip, im.dims[0], lp, lab.dims[0]));
    Dataset d;
    const std::size_t n = im.dims[0];
    d.rows = im.dims[1];
    d.cols = im.dims[2];
    d.images = Tensor<float>::from_shape({n, d.rows * d.cols});
    float* p = d.images.data();
    for (std::size_t i = 0; i < im.data.size(); ++i) p[i] = float(im.data[i]) * (1.0f / 255.0f);
    // Labels are class indices 0-255, whatever the number of classes (the model checks its own range).
    d.labels = IndexTensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) d.labels(i) = lab.data[i];
    return d;
}
Dataset Dataset::slice(std::size_t begin, std::size_t end) const
{
    if (begin > end || end > size())
        throw std::out_of_range(fmt::format("Dataset::slice({}, {}): the dataset has {} rows", begin, end, size()));
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

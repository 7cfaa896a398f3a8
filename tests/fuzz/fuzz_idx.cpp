// libFuzzer harness for the IDX reader: each input is read as a plain file and, gzipped, through
// the inflate path. Only DataError may come out; an accepted file must hold exactly the product of
// its dimensions and write back byte for byte; an accepted 3-d file must load as a dataset.
#include <zlib.h>

#include "fuzz_util.hpp"
#include "xgrad/nn/data.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::fuzz::fail;

namespace {

std::string gzip(const void* data, std::size_t size)
{
    z_stream z{};
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) fail("deflateInit2");
    std::string out(deflateBound(&z, uLong(size)) + 64, '\0');
    z.next_in = static_cast<Bytef*>(const_cast<void*>(data));
    z.avail_in = uInt(size);
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) fail("deflate");
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

void check(const std::string& path, const std::string& plain_input)
{
    IdxArray a;
    try {
        a = read_idx(path);
    } catch (const DataError& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fail(std::string("error without the path: ") + e.what());
        return;
    }
    std::size_t count = 1;
    for (std::size_t d : a.dims) count *= d;
    if (a.dims.empty() || a.dims.size() > 4 || a.data.size() != count) fail("accepted an inconsistent IDX file");
    if (!plain_input.empty()) {  // the plain bytes were accepted: writing back gives the same bytes
        const std::string out = xgrad::fuzz::temp_dir() + "/written.idx";
        write_idx(out, a);
        if (xgrad::fuzz::read_file(out) != plain_input) fail("write_idx(read_idx(f)) != f");
    }
    if (a.dims.size() == 3 && a.dims[0] <= 4096) {
        const std::string dir = xgrad::fuzz::temp_dir() + "/ds";
        std::filesystem::create_directories(dir);
        write_idx(dir + "/train-images-idx3-ubyte", a);
        IdxArray labels{{a.dims[0]}, std::vector<std::uint8_t>(a.dims[0])};
        for (std::size_t i = 0; i < a.dims[0]; ++i) labels.data[i] = std::uint8_t(i * 37);
        write_idx(dir + "/train-labels-idx1-ubyte", labels);
        const Dataset ds = load_idx_dataset(dir, "train");
        if (ds.size() != a.dims[0] || ds.rows != a.dims[1] || ds.cols != a.dims[2] ||
            ds.images.size() != a.data.size())
            fail("load_idx_dataset disagrees with read_idx");
        for (std::size_t i = 0; i < a.data.size(); ++i)
            if (ds.images.data()[i] != float(a.data[i]) * (1.0f / 255.0f)) fail("dataset pixel differs");
    }
}

void make_corpus(const std::string& dir)
{
    auto idx = [](std::vector<std::size_t> dims, std::size_t seed) {
        IdxArray a{dims, {}};
        std::size_t n = 1;
        for (auto d : dims) n *= d;
        for (std::size_t i = 0; i < n; ++i) a.data.push_back(std::uint8_t(i * 31 + seed));
        return a;
    };
    const std::vector<std::pair<std::string, IdxArray>> files = {
        {"labels-5", idx({5}, 1)},           {"images-3x4x4", idx({3, 4, 4}, 2)},
        {"images-2x28x28", idx({2, 28, 28}, 3)}, {"four-dims-2x2x2x3", idx({2, 2, 2, 3}, 4)},
        {"empty-0x3x3", idx({0, 3, 3}, 5)}};
    for (const auto& [name, a] : files) {
        write_idx(dir + "/" + name + ".idx", a);
        const std::string raw = xgrad::fuzz::read_file(dir + "/" + name + ".idx");
        const std::string gz = gzip(raw.data(), raw.size());
        xgrad::fuzz::write_file(dir + "/" + name + ".idx.gz", gz.data(), gz.size());
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
{
    xgrad::fuzz::maybe_make_corpus(argc, argv, make_corpus);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string& dir = xgrad::fuzz::temp_dir();
    const std::string raw = dir + "/input.idx", gz = dir + "/input.idx.gz";
    xgrad::fuzz::write_file(raw, data, size);
    const bool is_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    check(raw, is_gzip ? std::string() : std::string(reinterpret_cast<const char*>(data), size));
    const std::string z = gzip(data, size);
    xgrad::fuzz::write_file(gz, z.data(), z.size());
    check(gz, {});
    return 0;
}

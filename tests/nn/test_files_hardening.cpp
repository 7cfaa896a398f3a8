// Hostile and damaged files: IDX (dimension overflow, gzip bomb, unknown type, directories, devices),
// safetensors (bad shape entries, bogus offsets, huge header lengths), checkpoints (truncated or
// edited: path and field named, nothing changed), file modes, and a save killed at random moments.
#define BOOST_TEST_MODULE nn_files
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include "test_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
namespace fs = std::filesystem;

namespace {

fs::path temp_root() { return fs::temp_directory_path() / ("xgrad_files_" + std::to_string(::getpid())); }

/// Removes the test's files (a 3 MB gzip bomb, a sparse 200 MB file) at exit.
struct RemoveTempRoot {
    ~RemoveTempRoot()
    {
        std::error_code ec;
        fs::remove_all(temp_root(), ec);
    }
};

fs::path temp_dir(const std::string& name)
{
    fs::path d = temp_root() / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::string read_all(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string be32(std::uint32_t v)
{
    return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

/// An IDX header of unsigned bytes with the given dimensions.
std::string idx_header(const std::vector<std::uint32_t>& dims, char type = 0x08)
{
    std::string h = {0, 0, type, char(dims.size())};
    for (auto d : dims) h += be32(d);
    return h;
}

std::string gzip(const std::string& s)
{
    z_stream z{};
    BOOST_REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, uLong(s.size())) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
    z.avail_in = uInt(s.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    BOOST_REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

/// Runs f, which must throw E whose message contains every part (the path among them).
template <class E, class F>
std::string expect_error(F&& f, const std::vector<std::string>& parts)
{
    try {
        f();
        BOOST_ERROR("no exception; expected one mentioning " << parts.front());
    } catch (const E& e) {
        const std::string msg = e.what();
        for (const auto& s : parts) BOOST_TEST(msg.find(s) != std::string::npos, "'" << s << "' not in: " << msg);
        BOOST_TEST_MESSAGE("message: " << msg);
        return msg;
    }
    return {};
}

void expect_idx_error(const fs::path& p, const std::vector<std::string>& parts)
{
    std::vector<std::string> all = {p.string()};
    all.insert(all.end(), parts.begin(), parts.end());
    expect_error<DataError>([&] { read_idx(p.string()); }, all);
}

/// The file with `from` replaced by `to` in its JSON header (header length rewritten to match).
std::string edit_header(const std::string& file, const std::string& from, const std::string& to)
{
    std::uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    std::string h = file.substr(8, n);
    const auto at = h.find(from);
    BOOST_REQUIRE_MESSAGE(at != std::string::npos, from << " not in " << h);
    h.replace(at, from.size(), to);
    std::string out(8, '\0');
    const std::uint64_t m = h.size();
    std::memcpy(out.data(), &m, 8);
    return out + h + file.substr(8 + n);
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(RemoveTempRoot);

BOOST_AUTO_TEST_SUITE(idx_files)

BOOST_AUTO_TEST_CASE(dimension_product_overflow_is_rejected)
{
    const fs::path d = temp_dir("overflow");
    // 2^31 · 2^31 · 4 = 2^64 wraps to 0: a header-only file used to load as an "empty" 3-d array.
    write_all(d / "wraps", idx_header({0x80000000u, 0x80000000u, 4}));
    expect_idx_error(d / "wraps", {"dimensions too large: (2147483648,2147483648,4)"});
    write_all(d / "wraps.gz", gzip(idx_header({0x80000000u, 0x80000000u, 4})));
    expect_idx_error(d / "wraps.gz", {"dimensions too large: (2147483648,2147483648,4)"});
    // (2^32−1)^4 overflows by far; 2^63 does not wrap but is more than any allocation can hold.
    write_all(d / "max", idx_header({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}) + "abc");
    expect_idx_error(d / "max", {"dimensions too large: (4294967295,4294967295,4294967295,4294967295)"});
    write_all(d / "half", idx_header({0x80000000u, 0x80000000u, 2}));
    expect_idx_error(d / "half", {"dimensions too large: (2147483648,2147483648,2) is more than 9223372036854775807 bytes"});
    // a zero dimension makes the product 0 even after a huge partial product
    write_all(d / "zero", idx_header({0xffffffffu, 0xffffffffu, 0xffffffffu, 0}));
    const IdxArray z = read_idx((d / "zero").string());
    BOOST_TEST(z.dims == (std::vector<std::size_t>{0xffffffffu, 0xffffffffu, 0xffffffffu, 0}));
    BOOST_TEST(z.data.empty());
}

BOOST_AUTO_TEST_CASE(unknown_type_byte_is_printed_in_hex)
{
    const fs::path d = temp_dir("type");
    write_all(d / "f32", idx_header({2}, 0x0D) + std::string(8, '\0'));
    BOOST_TEST(expect_error<DataError>([&] { read_idx((d / "f32").string()); }, {(d / "f32").string()}) ==
               (d / "f32").string() + ": element type 0x0d is not unsigned byte (0x08)");
    write_all(d / "ff", idx_header({2}, char(0xff)) + "ab");
    expect_idx_error(d / "ff", {"element type 0xff is not unsigned byte"});
}

BOOST_AUTO_TEST_CASE(directories_and_devices_name_the_path)
{
    const fs::path d = temp_dir("dir");
    fs::create_directories(d / "images");
    expect_idx_error(d / "images", {"is a directory, not an IDX file"});
    // as a dataset file: the directory's name, not "basic_filebuf::underflow error reading the file"
    fs::create_directories(d / "ds" / "train-images-idx3-ubyte");
    write_all(d / "ds" / "train-labels-idx1-ubyte", idx_header({1}) + "\x01");
    expect_error<DataError>([&] { load_idx_dataset((d / "ds").string(), "train"); },
                            {(d / "ds" / "train-images-idx3-ubyte").string() + ": is a directory"});
    // an endless device is read only as far as the header: type byte 0x00, no hang
    expect_idx_error("/dev/zero", {"element type 0x00 is not unsigned byte"});
    MLP<float> m({2, 2});
    expect_error<WeightFileError>([&] { load_weights(m, d.string()); }, {d.string(), "is a directory"});
    expect_error<WeightFileError>([&] { load_weights(m, "/dev/zero"); }, {"/dev/zero", "not a regular file"});
}

BOOST_AUTO_TEST_CASE(gzip_bomb_stops_at_the_declared_size)
{
    // A valid 10×28×28 IDX file followed by 3000 MiB of zeros, all in one deflate stream: the
    // zeros are one raw deflate chunk (1 MiB after a full flush, ~1 KB) repeated, with a correct
    // gzip trailer, so the file is a real 3.1 GB bomb of about 3 MB.
    const fs::path d = temp_dir("bomb");
    std::string plain = idx_header({10, 28, 28});
    for (int i = 0; i < 7840; ++i) plain.push_back(char(i * 13));
    z_stream z{};
    BOOST_REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    auto deflate_part = [&](const std::string& in, int flush) {
        std::string out(deflateBound(&z, uLong(in.size())) + 64, '\0');
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z.avail_in = uInt(in.size());
        z.next_out = reinterpret_cast<Bytef*>(out.data());
        z.avail_out = uInt(out.size());
        const int rc = deflate(&z, flush);
        BOOST_REQUIRE(rc == Z_OK || rc == Z_STREAM_END);
        BOOST_REQUIRE(z.avail_in == 0u);
        out.resize(out.size() - z.avail_out);
        return out;
    };
    const std::string zeros(1 << 20, '\0');
    const std::string head = deflate_part(plain, Z_FULL_FLUSH), chunk = deflate_part(zeros, Z_FULL_FLUSH),
                      tail = deflate_part("", Z_FINISH);
    deflateEnd(&z);
    const int reps = 3000;
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(plain.data()), uInt(plain.size()));
    const uLong zcrc = crc32(0, reinterpret_cast<const Bytef*>(zeros.data()), uInt(zeros.size()));
    std::string bomb = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 0, 3};  // gzip header, no name
    bomb += head;
    for (int i = 0; i < reps; ++i) {
        bomb += chunk;
        crc = crc32_combine(crc, zcrc, z_off_t(zeros.size()));
    }
    bomb += tail;
    const std::uint64_t total = plain.size() + std::uint64_t(reps) * zeros.size();
    for (int i = 0; i < 4; ++i) bomb.push_back(char(crc >> (8 * i)));
    for (int i = 0; i < 4; ++i) bomb.push_back(char(total >> (8 * i)));
    BOOST_TEST(bomb.size() < 4000000u);
    BOOST_TEST(total > 3100000000u);
    write_all(d / "train-images-idx3-ubyte.gz", bomb);
    // 16 header bytes + 7840 data bytes + the one byte that proves there is more
    expect_idx_error(d / "train-images-idx3-ubyte.gz",
                     {"gzip data inflates to more than the 7856 bytes its IDX header declares (dimensions (10,28,28))",
                      "decompression bomb; stopped after inflating 7857 bytes"});

    // A header claiming more than the compressed size can ever inflate to is refused up front.
    write_all(d / "claim.gz", gzip(idx_header({60000, 28, 28}) + std::string(100, 'x')));
    expect_idx_error(d / "claim.gz", {"dimensions (60000,28,28) need 47040000 bytes of data, more than the"});
    // An honest gzip file still loads, and a cut one still says so.
    std::string good = idx_header({3, 2, 2});
    for (int i = 0; i < 12; ++i) good.push_back(char(200 + i));
    write_all(d / "good.gz", gzip(good));
    const IdxArray a = read_idx((d / "good.gz").string());
    BOOST_TEST(a.dims == (std::vector<std::size_t>{3, 2, 2}));
    BOOST_TEST(int(a.data[11]) == 211);
    const std::string gz = gzip(good);
    write_all(d / "cut.gz", gz.substr(0, gz.size() - 12));
    expect_idx_error(d / "cut.gz", {"truncated gzip stream"});
}

BOOST_AUTO_TEST_CASE(labels_are_any_byte_value)
{
    const fs::path d = temp_dir("classes");
    const std::size_t n = 256;
    std::string images = idx_header({std::uint32_t(n), 2, 2}), labels = idx_header({std::uint32_t(n)});
    for (std::size_t i = 0; i < n; ++i) {
        images += std::string(4, char(i));
        labels.push_back(char(i % 100 == 99 ? 255 : i % 100));  // a 100-class set, plus label 255
    }
    write_all(d / "train-images-idx3-ubyte", images);
    write_all(d / "train-labels-idx1-ubyte.gz", gzip(labels));
    const Dataset ds = load_idx_dataset(d.string(), "train");
    BOOST_TEST(ds.size() == n);
    BOOST_TEST(ds.labels(42) == 42);
    BOOST_TEST(ds.labels(98) == 98);
    BOOST_TEST(ds.labels(99) == 255);
    BOOST_TEST(ds.labels(150) == 50);
    BOOST_TEST(ds.images(10, 3) == 10.0f / 255.0f);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(safetensors_files)

namespace {

struct WeightsFixture {
    fs::path dir = temp_dir("safetensors");
    fs::path good = dir / "good.safetensors";
    MLP<float> m{{4, 3, 2}, Activation::relu, Activation::identity, 1};
    std::string bytes;
    WeightsFixture()
    {
        save_weights(m, good.string());
        bytes = read_all(good);
    }
    /// Writes the edited file and expects load_weights to name the path, the tensor and the reason;
    /// the module must be unchanged.
    void expect(const std::string& name, const std::string& file, const std::vector<std::string>& parts)
    {
        const fs::path p = dir / (name + ".safetensors");
        write_all(p, file);
        const Tensor<float> before = m.parameters()[0]->value();
        std::vector<std::string> all = {"load_weights: '" + p.string() + "'"};
        all.insert(all.end(), parts.begin(), parts.end());
        expect_error<WeightFileError>([&] { load_weights(m, p.string()); }, all);
        BOOST_TEST(m.parameters()[0]->value() == before);
    }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(bad_shape_entries_are_named, WeightsFixture)
{
    const std::string shape = "\"shape\":[3,4]";
    BOOST_REQUIRE(bytes.find(shape) != std::string::npos);
    expect("huge", edit_header(bytes, shape, "\"shape\":[1e300,4]"),
           {"'0.weight' has a bad shape entry 1e+300 at position 0 (dimensions are non-negative integers)"});
    expect("negative", edit_header(bytes, shape, "\"shape\":[3,-4]"), {"'0.weight' has a bad shape entry -4 at position 1"});
    expect("fraction", edit_header(bytes, shape, "\"shape\":[3.5,4]"), {"'0.weight' has a bad shape entry 3.5"});
    expect("string", edit_header(bytes, shape, "\"shape\":[\"3\",4]"), {"'0.weight' has a bad shape entry \"3\""});
    expect("nested", edit_header(bytes, shape, "\"shape\":[[[[3]]],4]"), {"'0.weight' has a bad shape entry an array of 1"});
    expect("scalar", edit_header(bytes, shape, "\"shape\":12"), {"'0.weight' has a bad shape 12 (not an array)"});
    // 2^32 · 2^32 · 3 overflows size_t before the dtype size is applied
    expect("overflow", edit_header(bytes, shape, "\"shape\":[4294967296,4294967296,3]"),
           {"'0.weight' has shape (4294967296,4294967296,3), too large: more than 2^64 bytes of F32"});
    expect("no_dtype", edit_header(bytes, "\"dtype\":\"F32\",\"shape\":[3,4]", "\"shape\":[3,4]"),
           {"'0.weight' entry has no dtype"});
    expect("bad_dtype", edit_header(bytes, "\"dtype\":\"F32\",\"shape\":[3,4]", "\"dtype\":\"F31\",\"shape\":[3,4]"),
           {"'0.weight' has an unknown dtype \"F31\""});
    expect("not_object", edit_header(bytes, "\"0.bias\":{", "\"0.bias\":7,\"x\":{"), {"'0.bias' entry is 7, not an object"});
}

BOOST_FIXTURE_TEST_CASE(bogus_data_offsets_are_named, WeightsFixture)
{
    const std::string offsets = "\"data_offsets\":[0,48]";
    BOOST_REQUIRE(bytes.find(offsets) != std::string::npos);
    expect("reversed", edit_header(bytes, offsets, "\"data_offsets\":[48,0]"),
           {"'0.weight' data_offsets [48, 0] do not hold shape (3,4) of F32 (48 bytes)"});
    expect("wrap", edit_header(bytes, offsets, "\"data_offsets\":[18446744073709551600,32]"),
           {"'0.weight' data_offsets [18446744073709551600, 32] do not hold"});
    expect("past_end", edit_header(bytes, offsets, "\"data_offsets\":[1000000,1000048]"),
           {"'0.weight' data_offsets [1000000, 1000048] run past the 92 data bytes of the file"});
    expect("three", edit_header(bytes, offsets, "\"data_offsets\":[0,48,96]"),
           {"'0.weight' has bad data_offsets an array of 3 (expected [begin, end], non-negative integers)"});
    expect("negative", edit_header(bytes, offsets, "\"data_offsets\":[-48,0]"), {"'0.weight' has bad data_offsets [-48, 0]"});
    expect("float", edit_header(bytes, offsets, "\"data_offsets\":[0,4.8e1]"), {"'0.weight' has bad data_offsets [0, 48.0]"});
}

BOOST_FIXTURE_TEST_CASE(header_length_is_checked_before_allocating, WeightsFixture)
{
    std::string huge = bytes;
    const std::uint64_t n = std::uint64_t(1) << 63;
    std::memcpy(huge.data(), &n, 8);
    expect("huge_length", huge, {"truncated: header length 9223372036854775808 exceeds the file (" +
                                     std::to_string(bytes.size()) + " bytes)"});
    // A sparse 200 MB file whose header length is 150 MB: over the safetensors cap, refused unread.
    const fs::path sparse = dir / "sparse.safetensors";
    {
        const int fd = ::open(sparse.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        BOOST_REQUIRE(fd >= 0);
        const std::uint64_t len = 150000000;
        BOOST_REQUIRE(::write(fd, &len, 8) == 8);
        BOOST_REQUIRE(::ftruncate(fd, 200000000) == 0);
        ::close(fd);
    }
    expect_error<WeightFileError>([&] { load_weights(m, sparse.string()); },
                                  {sparse.string(), "header length 150000000 is over the safetensors limit of 100000000 bytes"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(checkpoints)

namespace {

/// A model and Adam optimizer whose every value is distinct and depends on `seed`.
struct Trainer {
    MLP<float> model;
    Adam<float> opt;
    explicit Trainer(std::uint64_t seed, std::vector<std::size_t> sizes = {3, 4, 2})
        : model(sizes, Activation::tanh, Activation::identity, seed), opt(model.parameters(), {})
    {
        float x = float(seed);
        for (auto& [name, t] : opt.state())
            for (auto& v : *t) v = (x += 0.25f);
        opt.set_steps(seed * 10);
    }
    /// Every value of the model and the optimizer, in order.
    std::vector<float> snapshot()
    {
        std::vector<float> s;
        for (auto* p : model.parameters()) s.insert(s.end(), p->value().begin(), p->value().end());
        for (auto& [name, t] : opt.state()) s.insert(s.end(), t->begin(), t->end());
        s.push_back(float(opt.steps()));
        return s;
    }
};

/// Offset in the file of the first data byte of tensor `name`.
std::size_t data_offset(const std::string& file, const std::string& name)
{
    std::uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    const std::string h = file.substr(8, n);
    const auto at = h.find("\"" + name + "\"");
    BOOST_REQUIRE(at != std::string::npos);
    const auto off = h.find("\"data_offsets\":[", at);
    return 8 + n + std::stoul(h.substr(off + 16));
}

}  // namespace

BOOST_AUTO_TEST_CASE(damaged_checkpoints_name_the_field_and_change_nothing)
{
    const fs::path d = temp_dir("checkpoints");
    Trainer saved(1), target(2);
    const fs::path good = d / "good.safetensors";
    save_checkpoint(good.string(), saved.model, saved.opt, {{"epoch", "3"}});
    const std::string bytes = read_all(good);
    const std::vector<float> before = target.snapshot();
    auto expect = [&](const std::string& name, const std::string& file, const std::vector<std::string>& parts) {
        const fs::path p = d / (name + ".safetensors");
        write_all(p, file);
        std::vector<std::string> all = {"load_checkpoint: '" + p.string() + "'"};
        all.insert(all.end(), parts.begin(), parts.end());
        const std::string msg = expect_error<WeightFileError>(
            [&] { load_checkpoint(p.string(), target.model, target.opt, {"epoch"}); }, all);
        for (const char* lib : {"map::at", "stoi", "stod", "basic_string"})
            BOOST_TEST(msg.find(lib) == std::string::npos, msg);
        BOOST_TEST(target.snapshot() == before);  // module and optimizer untouched
    };
    expect("truncated", bytes.substr(0, bytes.size() - 5),
           {"'optim.v.3' data_offsets", "run past the", "(truncated file?)"});
    expect("no_header", bytes.substr(0, 5), {"truncated: 5 bytes, no header length"});
    expect("renamed", edit_header(bytes, "\"optim.m.0\"", "\"optim.q.0\""),
           {"missing 'optim.m.0' (4,3)", "unexpected 'optim.q.0' in the file"});
    expect("no_epoch", edit_header(bytes, "\"epoch\":\"3\"", "\"epochs\":\"3\""), {"metadata 'epoch' is missing"});
    expect("bad_epoch", edit_header(bytes, "\"epoch\":\"3\"", "\"epoch\":\"3x\""),
           {"metadata 'epoch' is \"3x\", not a whole number"});
    expect("big_epoch", edit_header(bytes, "\"epoch\":\"3\"", "\"epoch\":\"99999999999\""),
           {"metadata 'epoch' is \"99999999999\""});
    auto with_value = [&](const std::string& name, float v) {
        std::string f = bytes;
        std::memcpy(f.data() + data_offset(bytes, name), &v, 4);
        return f;
    };
    expect("negative_steps", with_value("optim.steps", -1.0f),
           {"'optim.steps' is -1, not a step count (a whole number from 0 to 16777216)"});
    expect("fractional_steps", with_value("optim.steps", 2.5f), {"'optim.steps' is 2.5, not a step count"});
    expect("nan_steps", with_value("optim.steps", std::nanf("")), {"'optim.steps' holds nan at element 0"});
    expect("inf_weight", with_value("model.0.weight", std::numeric_limits<float>::infinity()),
           {"'model.0.weight' holds inf at element 0"});
    // F64 data under an F32 module: the dtype is the bad field
    expect("dtype", edit_header(bytes, "\"optim.steps\":{\"dtype\":\"F32\",\"shape\":[]", "\"optim.steps\":{\"dtype\":\"I32\",\"shape\":[]"),
           {"'optim.steps' has dtype I32, the module wants F32"});

    // an xgrad file from before the (out, in) Linear layout: refused, not loaded transposed
    expect("old_layout", edit_header(bytes, ",\"linear_weight\":\"out,in\"", ""),
           {"written by an xgrad from before Linear weights were stored (out, in)"});

    // metadata values of another type than string (the fuzzer's find: json::value threw type_error
    // through load_*): such a writer is not xgrad, and the file loads
    for (const char* writer : {"1", "[\"xgrad\"]", "{\"x\":null}"}) {
        const fs::path p = d / "odd_writer.safetensors";
        write_all(p, edit_header(bytes, "\"writer\":\"xgrad\"", std::string("\"writer\":") + writer));
        Trainer t(3);
        BOOST_CHECK_NO_THROW(load_checkpoint(p.string(), t.model, t.opt, {"epoch"}));
        BOOST_TEST(t.snapshot() == saved.snapshot(), "writer " << writer);
    }

    // the intact file restores everything bit for bit and returns the metadata
    const auto meta = load_checkpoint(good.string(), target.model, target.opt, {"epoch"});
    BOOST_TEST(meta.at("epoch") == "3");
    BOOST_TEST(target.snapshot() == saved.snapshot());
    BOOST_TEST(target.opt.steps() == 10u);
}

BOOST_AUTO_TEST_CASE(saved_files_get_the_umask_mode)
{
    const fs::path d = temp_dir("modes");
    MLP<float> m({2, 2});
    for (mode_t mask : {mode_t(022), mode_t(077), mode_t(002)}) {
        const mode_t old = ::umask(mask);
        const fs::path p = d / ("w" + std::to_string(mask) + ".safetensors");
        save_weights(m, p.string());
        ::umask(old);
        struct stat st {};
        BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 0777) == (0666 & ~mask), "umask " << std::oct << mask << ": mode " << (st.st_mode & 0777));
    }
    const mode_t old = ::umask(022);
    Trainer t(1);
    save_checkpoint((d / "ckpt.safetensors").string(), t.model, t.opt, {});
    ::umask(old);
    struct stat st {};
    BOOST_REQUIRE(::stat((d / "ckpt.safetensors").c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0644u);
}

BOOST_AUTO_TEST_CASE(killed_saves_never_tear_the_file)
{
    // A child saves two alternating checkpoints (~1 MB each) to one path as fast as it can; the
    // parent SIGKILLs it at random moments. Every time, the file must load and be one of the two.
    const fs::path d = temp_dir("kill");
    const fs::path path = d / "checkpoint.safetensors";
    Trainer a(1, {256, 256, 64}), b(2, {256, 256, 64}), c(3, {256, 256, 64});
    const std::vector<float> va = a.snapshot(), vb = b.snapshot();
    save_checkpoint(path.string(), a.model, a.opt, {{"which", "a"}});
    std::mt19937 rng(20261122);
    std::uniform_int_distribution<int> delay_us(0, 30000);
    int saw_a = 0, saw_b = 0;
    for (int kill = 0; kill < 20; ++kill) {
        const pid_t pid = ::fork();
        BOOST_REQUIRE(pid >= 0);
        if (pid == 0) {
            for (std::uint64_t i = 0;; ++i) {
                Trainer& t = i % 2 ? a : b;
                try {
                    save_checkpoint(path.string(), t.model, t.opt, {{"which", i % 2 ? "a" : "b"}});
                } catch (...) {
                    ::_exit(3);
                }
            }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
        BOOST_REQUIRE(::kill(pid, SIGKILL) == 0);
        int status = 0;
        BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
        BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "child ended by itself, status " << status);
        const auto meta = load_checkpoint(path.string(), c.model, c.opt);
        const std::vector<float> vc = c.snapshot();
        const bool is_a = vc == va, is_b = vc == vb;
        BOOST_TEST((is_a || is_b), "kill " << kill << ": the file is neither checkpoint");
        BOOST_TEST(meta.at("which") == (is_a ? "a" : "b"));
        saw_a += is_a;
        saw_b += is_b;
        for (const auto& e : fs::directory_iterator(d))  // a killed save leaves its temp file
            if (e.path() != path) fs::remove(e.path());
    }
    BOOST_TEST_MESSAGE("after 20 kills the file held checkpoint a " << saw_a << " times, b " << saw_b << " times");
    BOOST_TEST(saw_a + saw_b == 20);
}

BOOST_AUTO_TEST_SUITE_END()

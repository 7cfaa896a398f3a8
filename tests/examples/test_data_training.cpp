// The IDX reader on files made here (valid, gzip, truncated, wrong magic, wrong type, wrong sizes),
// and the examples' training loop on a small MNIST subset: accuracy reached, and resuming from a
// checkpoint gives bit-identical weights to an uninterrupted run.
#define BOOST_TEST_MODULE examples_data_training
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "common/train.hpp"
#include "test_util.hpp"

using namespace xgrad;
using namespace xgrad::nn;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name)
{
    fs::path d = fs::temp_directory_path() / ("xgrad_examples_" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

IdxArray sample_images(std::size_t n)
{
    IdxArray a{{n, 3, 2}, {}};
    for (std::size_t i = 0; i < n * 6; ++i) a.data.push_back(std::uint8_t(i * 7 % 256));
    return a;
}

std::string bytes_of(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

void gzip_file(const fs::path& src, const fs::path& dst)
{
    const std::string s = bytes_of(src);
    gzFile z = gzopen(dst.c_str(), "wb");
    gzwrite(z, s.data(), unsigned(s.size()));
    gzclose(z);
}

void expect_data_error(const fs::path& p, const std::string& reason)
{
    try {
        read_idx(p.string());
        BOOST_ERROR("no error for " << p);
    } catch (const DataError& e) {
        const std::string msg = e.what();
        BOOST_TEST(msg.find(p.string()) != std::string::npos, msg);
        BOOST_TEST(msg.find(reason) != std::string::npos, "'" << reason << "' not in: " << msg);
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(idx_round_trip_plain_and_gzip)
{
    const fs::path d = temp_dir("idx");
    const IdxArray a = sample_images(5);
    write_idx((d / "a.idx").string(), a);
    const IdxArray b = read_idx((d / "a.idx").string());
    BOOST_TEST(b.dims == a.dims);
    BOOST_TEST(b.data == a.data);
    gzip_file(d / "a.idx", d / "a.idx.gz");
    const IdxArray c = read_idx((d / "a.idx.gz").string());
    BOOST_TEST(c.dims == a.dims);
    BOOST_TEST(c.data == a.data);
}

BOOST_AUTO_TEST_CASE(idx_bad_files_name_path_and_reason)
{
    const fs::path d = temp_dir("bad");
    write_idx((d / "good").string(), sample_images(4));
    const std::string good = bytes_of(d / "good");
    write_bytes(d / "truncated", good.substr(0, good.size() - 5));
    expect_data_error(d / "truncated", "(truncated)");
    write_bytes(d / "trailing", good + "xyz");
    expect_data_error(d / "trailing", "trailing bytes");
    std::string magic = good;
    magic[0] = 'P';
    write_bytes(d / "magic", magic);
    expect_data_error(d / "magic", "wrong magic number");
    std::string type = good;
    type[2] = 0x0D;  // float32 elements
    write_bytes(d / "type", type);
    expect_data_error(d / "type", "is not unsigned byte");
    std::string dims = good;
    dims[7] = 9;  // first dimension 4 → 9: the data no longer fits
    write_bytes(d / "dims", dims);
    expect_data_error(d / "dims", "need 54 bytes of data, the file has 24");
    write_bytes(d / "tiny", "ab");
    expect_data_error(d / "tiny", "no IDX header");
    gzip_file(d / "good", d / "good.gz");
    const std::string gz = bytes_of(d / "good.gz");
    write_bytes(d / "cut.gz", gz.substr(0, gz.size() / 2));
    expect_data_error(d / "cut.gz", "gzip");
    expect_data_error(d / "missing", "cannot open");
}

BOOST_AUTO_TEST_CASE(dataset_checks_images_against_labels)
{
    const fs::path d = temp_dir("ds");
    write_idx((d / "train-images-idx3-ubyte").string(), sample_images(4));
    write_idx((d / "train-labels-idx1-ubyte").string(), IdxArray{{3}, {1, 2, 3}});
    try {
        load_idx_dataset(d.string(), "train");
        BOOST_ERROR("no error");
    } catch (const DataError& e) {
        BOOST_TEST(std::string(e.what()).find("has 4 images but") != std::string::npos, e.what());
    }
    write_idx((d / "train-labels-idx1-ubyte").string(), IdxArray{{4}, {1, 2, 3, 0}});
    const Dataset ds = load_idx_dataset(d.string(), "train");
    BOOST_TEST(ds.size() == 4u);
    BOOST_TEST(ds.images.shape() == (Shape{4, 6}));
    BOOST_TEST(ds.images(1, 0) == 42.0f / 255.0f);  // byte 6·7 = 42 scaled to [0,1]
    try {
        load_idx_dataset((d / "nowhere").string(), "t10k", "run scripts/fetch-data");
        BOOST_ERROR("no error");
    } catch (const DataError& e) {
        const std::string msg = e.what();
        BOOST_TEST(msg.find("t10k-images-idx3-ubyte[.gz]: not found; run scripts/fetch-data") != std::string::npos, msg);
    }
}

BOOST_AUTO_TEST_CASE(epoch_order_is_a_seeded_permutation)
{
    const auto a = epoch_order(1000, 7, 3), b = epoch_order(1000, 7, 3), c = epoch_order(1000, 7, 4);
    BOOST_TEST(a == b);
    BOOST_TEST(a != c);
    auto s = a;
    std::sort(s.begin(), s.end());
    for (std::size_t i = 0; i < s.size(); ++i) BOOST_TEST_REQUIRE(s[i] == i);
}

namespace {

/// Real MNIST from the cache if scripts/fetch-data has run; otherwise a generated stand-in:
/// 10 classes of noisy 28×28 prototypes (stated in the log).
examples::Data training_data(examples::Options& o, bool& real)
{
    const char* env = std::getenv("XGRAD_DATA");
    const fs::path dir = fs::path(env ? env : XGRAD_SOURCE_DIR "/data") / "mnist";
    real = fs::exists(dir / "train-images-idx3-ubyte");
    if (real) {
        o.data_dir = dir.string();
        o.train_limit = 2000;
        o.val_size = 1000;
        examples::Data d = examples::load_data(o);
        d.test = d.test.slice(0, 2000);
        return d;
    }
    std::mt19937 rng(3);
    std::normal_distribution<float> noise(0, 0.3f);
    Tensor<float> protos = xt::cast<float>(xgrad::test::rnd(Shape{10, 784}, 4, 0, 1));
    auto make = [&](std::size_t n) {
        Dataset ds;
        ds.rows = ds.cols = 28;
        ds.images = Tensor<float>::from_shape({n, 784});
        ds.labels = IndexTensor::from_shape({n});
        for (std::size_t i = 0; i < n; ++i) {
            ds.labels(i) = Index(i % 10);
            for (std::size_t j = 0; j < 784; ++j) ds.images(i, j) = protos(i % 10, j) + noise(rng);
        }
        return ds;
    };
    return {make(2000), make(500), make(500)};
}

examples::Task mlp_task(nn::MLP<float>& net)
{
    return {"test_mlp", &net, [&](Tape<float>& t, const Tensor<float>& x) { return net(t.borrow(x)); },
            [](const Var<float>& out, const IndexTensor& y) { return cross_entropy(out, y); }, nullptr};
}

}  // namespace

BOOST_AUTO_TEST_CASE(short_training_run_and_exact_resume)
{
    examples::Options o;
    o.epochs = 6, o.batch = 32, o.lr = 2e-3, o.optimizer = "adam", o.quiet = true;
    bool real = false;
    const examples::Data data = training_data(o, real);
    BOOST_TEST_MESSAGE((real ? "real MNIST subset: " : "generated stand-in (no MNIST in the cache): ")
                       << data.train.size() << " training images");

    // Uninterrupted: 6 epochs.
    o.out_dir = temp_dir("full").string();
    nn::MLP<float> a({784, 64, 10}, nn::Activation::relu, nn::Activation::identity, 1);
    auto task_a = mlp_task(a);
    auto opt_a = examples::make_optimizer(o, a);
    const auto full = examples::train(task_a, *opt_a, data, o);
    // Measured: 85.3% on the first 2,000 test images after 6 epochs on 2,000 real images (seed 1).
    BOOST_TEST(full.test_accuracy >= (real ? 0.82 : 0.95), "test accuracy " << full.test_accuracy);
    BOOST_TEST(full.history.back().train_loss < full.history.front().train_loss);

    // Interrupted after 2 epochs, then resumed in a fresh model and optimizer.
    examples::Options o2 = o;
    o2.out_dir = temp_dir("resumed").string();
    o2.epochs = 2;
    {
        nn::MLP<float> b({784, 64, 10}, nn::Activation::relu, nn::Activation::identity, 1);
        auto task_b = mlp_task(b);
        auto opt_b = examples::make_optimizer(o2, b);
        examples::train(task_b, *opt_b, data, o2);
    }
    o2.epochs = 6;
    o2.resume = true;
    nn::MLP<float> c({784, 64, 10}, nn::Activation::relu, nn::Activation::identity, 99);  // other init: overwritten
    auto task_c = mlp_task(c);
    auto opt_c = examples::make_optimizer(o2, c);
    const auto resumed = examples::train(task_c, *opt_c, data, o2);
    BOOST_TEST(resumed.history.size() == 6u);
    const auto pa = a.parameters(), pc = c.parameters();
    for (std::size_t i = 0; i < pa.size(); ++i)
        BOOST_TEST(std::memcmp(pa[i]->value().data(), pc[i]->value().data(), pa[i]->size() * sizeof(float)) == 0,
                   "parameter " << i << " differs after resume");
    BOOST_TEST(resumed.test_accuracy == full.test_accuracy);
    BOOST_TEST(fs::exists(fs::path(o.out_dir) / "metrics.csv"));
    BOOST_TEST(fs::exists(fs::path(o.out_dir) / "confusion.csv"));
}

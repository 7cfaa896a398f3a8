// libFuzzer harness for the safetensors reader: load_weights into a fixed MLP<float> and
// load_tensors into two float64 tensors. Only WeightFileError may come out, and then nothing may
// have changed; an accepted file must survive a save/load round trip unchanged.
#include <cstring>

#include "fuzz_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::fuzz::fail;

namespace {

MLP<float>& model()
{
    static MLP<float> m({4, 3, 2}, Activation::relu, Activation::identity, 7);
    return m;
}

std::vector<float> snapshot(Module<float>& m)
{
    std::vector<float> s;
    for (auto* p : m.parameters()) s.insert(s.end(), p->value().begin(), p->value().end());
    return s;
}

void restore(Module<float>& m, const std::vector<float>& s)
{
    std::size_t at = 0;
    for (auto* p : m.parameters()) {
        std::copy_n(s.begin() + std::ptrdiff_t(at), p->value().size(), p->value().data());
        at += p->value().size();
    }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void make_corpus(const std::string& dir)
{
    save_weights(model(), dir + "/mlp-4-3-2.safetensors");
    MLP<float> other({4, 2}, Activation::relu, Activation::identity, 3);
    save_weights(other, dir + "/mlp-4-2.safetensors");
    Tensor<double> a = {{1, 2, 3}, {4, 5, 6}}, b = Tensor<double>(0.5);
    save_tensors<double>(dir + "/doubles.safetensors", {{"a", &a}, {"b", &b}}, {{"note", "two tensors"}});
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
    const std::string path = dir + "/input.safetensors";
    xgrad::fuzz::write_file(path, data, size);

    MLP<float>& m = model();
    static const std::vector<float> baseline = snapshot(m);
    try {
        load_weights(m, path);
        const std::vector<float> loaded = snapshot(m);
        save_weights(m, dir + "/again.safetensors");
        restore(m, baseline);
        load_weights(m, dir + "/again.safetensors");
        if (!same_bits(snapshot(m), loaded)) fail("save_weights/load_weights round trip changed the values");
    } catch (const WeightFileError& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fail(std::string("error without the path: ") + e.what());
        if (!same_bits(snapshot(m), baseline)) fail("load_weights changed the module and then threw");
    }
    restore(m, baseline);

    Tensor<double> a = xt::zeros<double>({2, 3}), b = Tensor<double>(0.0);
    try {
        load_tensors<double>(path, {{"a", &a}, {"b", &b}});
    } catch (const WeightFileError&) {
        for (double v : a)
            if (v != 0) fail("load_tensors changed a tensor and then threw");
        if (b() != 0) fail("load_tensors changed a tensor and then threw");
    }
    return 0;
}

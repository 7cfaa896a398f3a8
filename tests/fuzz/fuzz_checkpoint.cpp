// libFuzzer harness for checkpoint resume: load_checkpoint into a fixed MLP<float> + Adam, asking
// for an integer "epoch". Only WeightFileError may come out, and then nothing may have changed; an
// accepted checkpoint must give a usable step count and epoch, and the optimizer must step.
#include <cstring>

#include "fuzz_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::fuzz::fail;

namespace {

struct Trainer {
    MLP<float> model{{3, 4, 2}, Activation::tanh, Activation::identity, 11};
    Adam<float> opt{model.parameters(), {}};
    std::vector<float> snapshot()
    {
        std::vector<float> s;
        for (auto* p : model.parameters()) s.insert(s.end(), p->value().begin(), p->value().end());
        for (auto& [name, t] : opt.state()) s.insert(s.end(), t->begin(), t->end());
        s.push_back(float(opt.steps()));
        return s;
    }
};

void make_corpus(const std::string& dir)
{
    Trainer t;
    save_checkpoint(dir + "/fresh.safetensors", t.model, t.opt, {{"epoch", "0"}});
    // two Adam steps on a made-up gradient: non-zero moments and step count
    for (int s = 0; s < 2; ++s) {
        float g = 0.1f;
        for (auto* p : t.model.parameters())
            for (auto& v : p->grad()) v = (g += 0.05f);
        t.opt.step();
    }
    save_checkpoint(dir + "/after-2-steps.safetensors", t.model, t.opt, {{"epoch", "2"}, {"example", "fuzz"}});
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
{
    xgrad::fuzz::maybe_make_corpus(argc, argv, make_corpus);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string path = xgrad::fuzz::temp_dir() + "/input.safetensors";
    xgrad::fuzz::write_file(path, data, size);
    Trainer t;
    const std::vector<float> before = t.snapshot();
    std::map<std::string, std::string> meta;
    try {
        meta = load_checkpoint(path, t.model, t.opt, {"epoch"});
    } catch (const WeightFileError& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fail(std::string("error without the path: ") + e.what());
        const std::vector<float> after = t.snapshot();
        if (std::memcmp(after.data(), before.data(), after.size() * sizeof(float)) != 0)
            fail("load_checkpoint changed the model or optimizer and then threw");
        return 0;
    }
    // what a resuming training loop does next
    const int epoch = std::stoi(meta.at("epoch"));
    if (epoch < 0 || t.opt.steps() > (std::size_t(1) << 24)) fail("accepted an out-of-range epoch or step count");
    t.opt.zero_grad();
    t.opt.step();
    if (t.opt.steps() == 0) fail("step count did not advance");
    return 0;
}

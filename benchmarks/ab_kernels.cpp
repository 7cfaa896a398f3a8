// Two builds of libxgrad_autodiff in one process, their float convolutions called alternately, call by
// call: an A/B measurement the host's minute-to-minute noise cannot tilt towards either side (both sides
// see the same noise), with the outputs compared bit for bit. Each library is loaded into a link-map
// namespace of its own (dlmopen), with its own oneDNN, OpenMP runtime and scratch. docs/performance.md
// gives the figures measured this way.
//   ab_kernels LIB_A LIB_B [lenet|lenet-dx|resnet|resnet-acc] [CALLS]
// LIB_A, LIB_B: paths of libxgrad_autodiff.so builds (e.g. a copy of an older commit's and build/autodiff's;
// builds that export the kept-input entry points, float_conv2d_forward/backward with x_kept);
// lenet (default): LeNet's two convolutions, forward and every gradient; lenet-dx: its second layer's
// input gradient alone; resnet: ResNet's three 3 × 3 shapes; resnet-acc: the same and the two strided
// 1 × 1 shortcuts, channels-last, every gradient added into its buffer (as an identity block's conv1 and
// the shortcuts run in the step). CALLS per side and shape, default 1000
// (the first 50 not timed). Threads: OMP_NUM_THREADS. Passing the same library twice measures the
// harness itself (the two sides should agree within about 1 %).
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/conv_dnnl.hpp"

using xgrad::kernels::DnnlConvShape;

namespace {

using Forward = void (*)(const float*, const float*, const float*, const DnnlConvShape&, float*, float*);
using Backward = void (*)(const float*, const float*, const float*, const DnnlConvShape&, float*, bool, float*, bool,
                          float*, bool, const float*);
using KeptSize = std::size_t (*)(const DnnlConvShape&, bool);

struct Side {
    Forward forward;
    Backward backward;
    KeptSize kept_size;
};

[[noreturn]] void fail(const std::string& what)
{
    std::fprintf(stderr, "ab_kernels: %s\n", what.c_str());
    std::exit(2);
}

Side load(const char* path)
{
    void* h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL);
    if (!h) fail(std::string("cannot load ") + path + ": " + dlerror());
    Side s{};
    // xgrad::kernels::float_conv2d_forward / float_conv2d_backward with x kept between them, as the op calls
    // them (the op's dispatch: direct or oneDNN), and float_conv2d_kept_input_size
    s.forward = reinterpret_cast<Forward>(dlsym(h, "_ZN5xgrad7kernels20float_conv2d_forwardEPKfS2_S2_RKNS0_13DnnlConvShapeEPfS6_"));
    s.backward = reinterpret_cast<Backward>(
        dlsym(h, "_ZN5xgrad7kernels21float_conv2d_backwardEPKfS2_S2_RKNS0_13DnnlConvShapeEPfbS6_bS6_bS2_"));
    s.kept_size = reinterpret_cast<KeptSize>(dlsym(h, "_ZN5xgrad7kernels28float_conv2d_kept_input_sizeERKNS0_13DnnlConvShapeEb"));
    if (!s.forward || !s.backward || !s.kept_size)
        fail(std::string(path) + " has no xgrad::kernels::float_conv2d_forward/backward/kept_input_size");
    return s;
}

double quantile(std::vector<double> v, double q)
{
    std::sort(v.begin(), v.end());
    return v[std::size_t(q * double(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc < 3 || argc > 5) fail("usage: ab_kernels LIB_A LIB_B [lenet|lenet-dx|resnet|resnet-acc] [CALLS]");
    const std::string set = argc > 3 ? argv[3] : "lenet";
    if (set != "lenet" && set != "lenet-dx" && set != "resnet" && set != "resnet-acc")
        fail("the shape set must be lenet, lenet-dx, resnet or resnet-acc, got " + set);
    const bool acc = set == "resnet-acc";
    long calls = 1000;
    if (argc > 4) {
        char* end = nullptr;
        calls = std::strtol(argv[4], &end, 10);
        if (*end != '\0' || calls < 60 || calls > 1000000) fail(std::string("CALLS must be 60 … 1000000, got ") + argv[4]);
    }
    const Side side[2] = {load(argv[1]), load(argv[2])};

    std::vector<DnnlConvShape> shapes;
    if (set == "lenet") shapes = {{64, 1, 28, 28, 6, 5, 5, 1, 2}, {64, 6, 14, 14, 16, 5, 5, 1, 0}};
    if (set == "lenet-dx") shapes = {{64, 6, 14, 14, 16, 5, 5, 1, 0}};
    if (set == "resnet" || acc)
        shapes = {{64, 16, 28, 28, 16, 3, 3, 1, 1}, {64, 32, 14, 14, 32, 3, 3, 1, 1}, {64, 64, 7, 7, 64, 3, 3, 1, 1}};
    if (acc) {
        shapes.push_back({64, 16, 28, 28, 32, 1, 1, 2, 0});
        shapes.push_back({64, 32, 14, 14, 64, 1, 1, 2, 0});
        for (DnnlConvShape& s : shapes) s.channels_last = true;
    }
    std::printf("%-28s %-6s %22s %22s %8s %s\n", "shape (n c h w o k s p)", "pass", "A median (p10) us",
                "B median (p10) us", "B / A", "same bits");
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (const DnnlConvShape& s : shapes) {
        const std::size_t nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.kh * s.kw, ny = s.n * s.o * s.oh() * s.ow();
        std::vector<float> x(nx), w(nw), b(s.o), gy(ny);
        for (auto* v : {&x, &w, &b, &gy})
            for (float& e : *v) e = u(rng);
        // the first layer of a network gets no input gradient (its input is the data)
        const bool want_dx = set == "lenet-dx" || s.c > 1;
        const bool want_dw = set != "lenet-dx";
        std::vector<float> y[2], dx[2], dw[2], db[2], kept[2];
        std::vector<double> tf[2], tb[2];
        for (int k = 0; k < 2; ++k)
            y[k].resize(ny), dx[k].resize(nx), dw[k].resize(nw), db[k].resize(s.o), kept[k].resize(side[k].kept_size(s, true));
        for (long call = 0; call < calls; ++call)
            for (int k = 0; k < 2; ++k) {
                const auto t0 = std::chrono::steady_clock::now();
                float* const kp = kept[k].empty() ? nullptr : kept[k].data();
                side[k].forward(x.data(), w.data(), b.data(), s, y[k].data(), kp);
                const auto t1 = std::chrono::steady_clock::now();
                side[k].backward(x.data(), w.data(), gy.data(), s, want_dx ? dx[k].data() : nullptr, acc,
                                 want_dw ? dw[k].data() : nullptr, acc, want_dw ? db[k].data() : nullptr, acc, kp);
                const auto t2 = std::chrono::steady_clock::now();
                if (call >= 50) {
                    tf[k].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
                    tb[k].push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
                }
            }
        // (added into: both sides ran the same calls on buffers that started equal)
        const bool same = y[0] == y[1] && dx[0] == dx[1] && dw[0] == dw[1] && db[0] == db[1];
        char name[64];
        std::snprintf(name, sizeof name, "%zu %zu %zu %zu %zu %zu %zu %zu", s.n, s.c, s.h, s.w, s.o, s.kh, s.stride,
                      s.padding);
        const char* bpass = want_dx && want_dw ? "dX+dW" : want_dx ? "dX" : "dW";
        for (int p = 0; p < 2; ++p) {
            const std::vector<double>* t = p == 0 ? tf : tb;
            const double a = quantile(t[0], 0.5), bm = quantile(t[1], 0.5);
            std::printf("%-28s %-6s %14.1f (%5.1f) %14.1f (%5.1f) %8.3f %s\n", name, p == 0 ? "fwd" : bpass, a,
                        quantile(t[0], 0.1), bm, quantile(t[1], 0.1), bm / a, same ? "yes" : "NO");
        }
    }
}

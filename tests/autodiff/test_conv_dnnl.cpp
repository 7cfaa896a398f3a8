// float32 conv2d on oneDNN's convolution primitives (kernels/conv_dnnl) and on the direct kernels
// (kernels/conv_direct) against naive float64 loops
// (kernel level: forward, backward-data, backward-weights, bias, added or written; stride, padding,
// dilation, groups, batch 1, 1×1 kernels), and conv2d<float> (oneDNN) against conv2d<double>
// (im2col + GEMM) through the tape. Also the other instruction-set dispatched kernels: σ and tanh
// in AVX2 and AVX-512 against libm.
#define BOOST_TEST_MODULE autodiff_conv_dnnl
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/activation.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/conv_dnnl.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;
using kernels::DnnlConvShape;

namespace {

std::vector<double> random_vec(std::size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> v(n);
    for (double& x : v) x = float(u(rng));  // representable in float: both sides see the same data
    return v;
}
std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

struct Ref {
    std::vector<double> y, dx, dw, db;
};

/// The definition: y[n,o,i,j] = b[o] + Σ w[o,c,a,q]·x[n, g·C/G + c, i·s − p + a·d, j·s − p + q·d], and its
/// gradients for a given gy, by the same loop.
Ref naive(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
          const std::vector<double>& gy, const DnnlConvShape& s)
{
    const std::size_t OH = s.oh(), OW = s.ow(), CG = s.c / s.groups, OG = s.o / s.groups;
    Ref r{std::vector<double>(s.n * s.o * OH * OW), std::vector<double>(x.size()), std::vector<double>(w.size()),
          std::vector<double>(s.o)};
    for (std::size_t n = 0; n < s.n; ++n)
        for (std::size_t o = 0; o < s.o; ++o)
            for (std::size_t i = 0; i < OH; ++i)
                for (std::size_t j = 0; j < OW; ++j) {
                    const std::size_t yi = ((n * s.o + o) * OH + i) * OW + j;
                    double acc = b[o];
                    const double g = gy[yi];
                    r.db[o] += g;
                    for (std::size_t c = 0; c < CG; ++c)
                        for (std::size_t a = 0; a < s.kh; ++a)
                            for (std::size_t q = 0; q < s.kw; ++q) {
                                const long ih = long(i * s.stride + a * s.dilation) - long(s.padding);
                                const long iw = long(j * s.stride + q * s.dilation) - long(s.padding);
                                if (ih < 0 || ih >= long(s.h) || iw < 0 || iw >= long(s.w)) continue;
                                const std::size_t xi = ((n * s.c + o / OG * CG + c) * s.h + std::size_t(ih)) * s.w + std::size_t(iw);
                                const std::size_t wi = ((o * CG + c) * s.kh + a) * s.kw + q;
                                acc += w[wi] * x[xi];
                                r.dx[xi] += w[wi] * g;
                                r.dw[wi] += x[xi] * g;
                            }
                    r.y[yi] = acc;
                }
    return r;
}

/// max |a − b| / (1 + max |b|): float32 sums of up to a few hundred terms of size ≤ 1.
template <class A>
double rel_err(const std::vector<A>& a, const std::vector<double>& b)
{
    double e = 0, m = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        e = std::max(e, std::abs(double(a[i]) - b[i]));
        m = std::max(m, std::abs(b[i]));
    }
    return e / (1 + m);
}

// n, c, h, w, o, kh, kw, stride, padding, dilation, groups
const DnnlConvShape shapes[] = {
    {2, 3, 9, 8, 4, 3, 3, 1, 1, 1, 1},      // 3×3 same padding
    {2, 4, 11, 10, 6, 3, 3, 2, 1, 1, 1},    // stride 2
    {3, 5, 7, 9, 4, 3, 2, 1, 0, 1, 1},      // no padding, non-square kernel
    {1, 16, 8, 8, 32, 1, 1, 1, 0, 1, 1},    // batch 1, 1×1
    {2, 16, 8, 8, 8, 1, 1, 2, 0, 1, 1},     // 1×1 stride 2 (ResNet's shortcut)
    {2, 3, 12, 12, 4, 3, 3, 1, 2, 2, 1},    // dilation 2
    {2, 6, 10, 10, 6, 3, 3, 1, 1, 1, 6},    // depthwise
    {2, 8, 9, 9, 12, 3, 3, 2, 1, 1, 4},     // groups 4, stride 2
    {1, 4, 9, 9, 4, 3, 3, 1, 2, 2, 2},      // groups and dilation
    {4, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1},    // LeNet's first layer
    {4, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1},  // ResNet's blocks
    {1, 1, 3, 3, 1, 7, 7, 1, 2, 1, 1},      // kernel larger than the input, padded
    {2, 17, 5, 6, 33, 3, 3, 1, 1, 1, 1},    // channels not multiples of 16
};

}  // namespace

using Forward = void (*)(const float*, const float*, const float*, const DnnlConvShape&, float*);
using Backward = void (*)(const float*, const float*, const float*, const DnnlConvShape&, float*, bool, float*, bool,
                          float*, bool);

/// One pair of float kernels against the naive loops: forward with and without bias, every gradient
/// together, added into what is there, and one at a time; twice (the second call on cached state).
void check_kernels(Forward forward, Backward backward, const DnnlConvShape& s, unsigned seed)
{
    const std::size_t nx = s.n * s.c * s.h * s.w, nw = s.o * (s.c / s.groups) * s.kh * s.kw, ny = s.n * s.o * s.oh() * s.ow();
    const auto x = random_vec(nx, seed), w = random_vec(nw, seed + 1), b = random_vec(s.o, seed + 2),
               gy = random_vec(ny, seed + 3);
    const Ref r = naive(x, w, b, gy, s);
    const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), gyf = to_float(gy);
    for (int rep = 0; rep < 2; ++rep) {
        std::vector<float> y(ny, NAN), dx(nx, NAN), dw(nw, NAN), db(s.o, NAN);
        forward(xf.data(), wf.data(), bf.data(), s, y.data());
        BOOST_TEST(rel_err(y, r.y) < 1e-5);
        backward(xf.data(), wf.data(), gyf.data(), s, dx.data(), false, dw.data(), false, db.data(), false);
        BOOST_TEST(rel_err(dx, r.dx) < 1e-5);
        BOOST_TEST(rel_err(dw, r.dw) < 1e-5);
        BOOST_TEST(rel_err(db, r.db) < 1e-5);
        // added into what is there: twice the gradients
        backward(xf.data(), wf.data(), gyf.data(), s, dx.data(), true, dw.data(), true, db.data(), true);
        auto twice = [](std::vector<double> v) {
            for (double& e : v) e *= 2;
            return v;
        };
        BOOST_TEST(rel_err(dx, twice(r.dx)) < 1e-5);
        BOOST_TEST(rel_err(dw, twice(r.dw)) < 1e-5);
        BOOST_TEST(rel_err(db, twice(r.db)) < 1e-5);
        // without bias; one gradient at a time
        std::vector<float> y2(ny, NAN), dw2(nw, NAN), db2(s.o, NAN), dx2(nx, NAN);
        forward(xf.data(), wf.data(), nullptr, s, y2.data());
        std::vector<double> yb = r.y;
        for (std::size_t i = 0; i < ny; ++i) yb[i] -= b[i / (s.oh() * s.ow()) % s.o];
        BOOST_TEST(rel_err(y2, yb) < 1e-5);
        backward(xf.data(), wf.data(), gyf.data(), s, nullptr, false, dw2.data(), false, nullptr, false);
        BOOST_TEST(rel_err(dw2, r.dw) < 1e-5);
        backward(xf.data(), wf.data(), gyf.data(), s, nullptr, false, nullptr, false, db2.data(), false);
        BOOST_TEST(rel_err(db2, r.db) < 1e-5);
        backward(xf.data(), wf.data(), gyf.data(), s, dx2.data(), false, nullptr, false, nullptr, false);
        BOOST_TEST(rel_err(dx2, r.dx) < 1e-5);
    }
}

#define SHAPE_CONTEXT(s)                                                                                              \
    BOOST_TEST_CONTEXT("shape n" << s.n << " c" << s.c << " " << s.h << "x" << s.w << " o" << s.o << " k" << s.kh    \
                                 << "x" << s.kw << " s" << s.stride << " p" << s.padding << " d" << s.dilation       \
                                 << " g" << s.groups)

BOOST_AUTO_TEST_CASE(kernel_matches_naive_loops)
{
    if (!kernels::dnnl_conv_available()) {
        BOOST_TEST_MESSAGE("oneDNN convolution not in this build (or XGRAD_DNNL_CONV=0): nothing to test");
        return;
    }
    unsigned seed = 1;
    for (const DnnlConvShape& s : shapes) {
        SHAPE_CONTEXT(s) { check_kernels(kernels::dnnl_conv2d_forward, kernels::dnnl_conv2d_backward, s, seed); }
        seed += 4;
    }
}

// x kept from the forward in the primitives' blocked layout: the weight gradient reads it there
// (x itself not even passed) and gives the naive loops' dW and db; the forward's output is the same
// with and without keeping. 16 channels: oneDNN reorders them into blocks of 16.
BOOST_AUTO_TEST_CASE(kernel_weight_gradient_reads_the_kept_input)
{
    if (!kernels::dnnl_conv_available()) {
        BOOST_TEST_MESSAGE("oneDNN convolution not in this build (or XGRAD_DNNL_CONV=0): nothing to test");
        return;
    }
    for (const DnnlConvShape& s : {DnnlConvShape{3, 16, 9, 8, 16, 3, 3, 1, 1}, DnnlConvShape{2, 32, 7, 7, 20, 1, 1, 2, 0}}) {
        SHAPE_CONTEXT(s)
        {
            const std::size_t nk = kernels::dnnl_conv2d_kept_input_size(s, true);
            BOOST_TEST(nk >= s.n * s.c * s.h * s.w);
            const std::size_t nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.kh * s.kw, ny = s.n * s.o * s.oh() * s.ow();
            const auto x = random_vec(nx, 41), w = random_vec(nw, 42), b = random_vec(s.o, 43), gy = random_vec(ny, 44);
            const Ref r = naive(x, w, b, gy, s);
            const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), gyf = to_float(gy);
            std::vector<float> y(ny), y_kept(ny), kept(nk, NAN), dw(nw, NAN), db(s.o, NAN), dx(nx, NAN);
            kernels::dnnl_conv2d_forward(xf.data(), wf.data(), bf.data(), s, y.data());
            kernels::dnnl_conv2d_forward(xf.data(), wf.data(), bf.data(), s, y_kept.data(), kept.data());
            BOOST_TEST(y == y_kept);
            kernels::dnnl_conv2d_backward(nullptr, wf.data(), gyf.data(), s, nullptr, false, dw.data(), false, db.data(),
                                          false, kept.data());
            BOOST_TEST(rel_err(dw, r.dw) < 1e-5);
            BOOST_TEST(rel_err(db, r.db) < 1e-5);
            // with the input gradient too (the output gradient shared between the two primitives)
            kernels::dnnl_conv2d_backward(nullptr, wf.data(), gyf.data(), s, dx.data(), false, dw.data(), false,
                                          db.data(), false, kept.data());
            BOOST_TEST(rel_err(dx, r.dx) < 1e-5);
            BOOST_TEST(rel_err(dw, r.dw) < 1e-5);
        }
    }
}

// The direct kernels (kernels/conv_direct, stride 1) on LeNet's and document 002's first layers,
// ResNet's stem, padding wider than the kernel's reach, a kernel larger than the input, widths that
// leave partial vectors, channel counts that leave partial blocks, several input channels, batch 1;
// and which passes they serve.
BOOST_AUTO_TEST_CASE(direct_kernels_match_naive_loops)
{
    const DnnlConvShape direct_shapes[] = {
        {4, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1},   // LeNet's first layer
        {3, 1, 28, 28, 8, 5, 5, 1, 0, 1, 1},   // document 002's
        {2, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1},  // ResNet's stem
        {1, 1, 3, 3, 1, 7, 7, 1, 2, 1, 1},     // kernel larger than the input, padded
        {2, 1, 7, 5, 2, 3, 3, 1, 0, 1, 1},     // odd sizes, 2 channels out (a partial block)
        {5, 1, 13, 11, 5, 5, 3, 1, 4, 1, 1},   // padding wider than the kernel's reach
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1},     // 1×1 of 1×1
        {2, 1, 40, 33, 7, 1, 7, 1, 1, 1, 1},   // 1×7 kernel: tap blocks of 3, 3 and 1
        {2, 3, 12, 10, 4, 5, 5, 1, 2, 1, 1},   // 3 input channels
        {2, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1},  // LeNet's second layer: dX by channel lanes (AVX2) or rows (AVX-512), dW by lanes
        {2, 8, 7, 9, 3, 3, 7, 1, 2, 1, 1},     // dX by lanes: 8 channels, 1×7 tap blocks of 5 and 2; by rows: odd height
        {3, 5, 9, 7, 11, 5, 5, 1, 1, 1, 1},    // lanes: 11 channels, a vector and a partial one
        {1, 8, 6, 6, 24, 4, 4, 1, 2, 1, 1},    // lanes: three vectors of channels, 16 taps (5, 5, 5, 1)
        {2, 4, 20, 19, 5, 3, 3, 1, 1, 1, 1},   // dX by rows: 3 taps, rows of two AVX-512 vectors
        {2, 16, 9, 8, 40, 3, 3, 1, 1, 1, 1},   // 16 channels: AVX-512's input-gradient lanes full, dW by 2½ of its vectors
    };
    using kernels::DirectIsa;
    constexpr Forward fwd_avx2 = [](const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y) {
        kernels::direct_conv2d_forward(x, w, b, s, y, DirectIsa::avx2);
    };
    constexpr Backward bwd_avx2 = [](const float* x, const float* w, const float* gy, const DnnlConvShape& s,
                                     float* dx, bool dxa, float* dw, bool dwa, float* db, bool dba) {
        kernels::direct_conv2d_backward(x, w, gy, s, dx, dxa, dw, dwa, db, dba, DirectIsa::avx2);
    };
    constexpr Forward fwd_avx512 = [](const float* x, const float* w, const float* b, const DnnlConvShape& s,
                                      float* y) { kernels::direct_conv2d_forward(x, w, b, s, y, DirectIsa::avx512); };
    constexpr Backward bwd_avx512 = [](const float* x, const float* w, const float* gy, const DnnlConvShape& s,
                                       float* dx, bool dxa, float* dw, bool dwa, float* db, bool dba) {
        kernels::direct_conv2d_backward(x, w, gy, s, dx, dxa, dw, dwa, db, dba, DirectIsa::avx512);
    };
    const bool avx512 = kernels::direct_isa_supported(DirectIsa::avx512);
    if (!avx512) BOOST_TEST_MESSAGE("no AVX-512 on this CPU: its direct kernels are not tested here");
    unsigned seed = 500;
    for (const DnnlConvShape& s : direct_shapes) {
        // the dispatch (per pass, the widest instruction set but AVX2's input gradient for 4–8 channels)
        // and each instruction set alone on every pass
        SHAPE_CONTEXT(s) { check_kernels(kernels::direct_conv2d_forward, kernels::direct_conv2d_backward, s, seed); }
        BOOST_TEST_CONTEXT("AVX2") SHAPE_CONTEXT(s) { check_kernels(fwd_avx2, bwd_avx2, s, seed); }
        if (avx512)
            BOOST_TEST_CONTEXT("AVX-512") SHAPE_CONTEXT(s) { check_kernels(fwd_avx512, bwd_avx512, s, seed); }
        seed += 4;
    }
    auto passes = [](const DnnlConvShape& s) {
        const kernels::DirectConvPasses p = kernels::direct_conv_passes(s);
        return std::vector<bool>{p.forward, p.input_grad, p.weight_grad};
    };
    const std::vector<bool> all{true, true, true}, none{false, false, false}, input{false, true, false},
        backward{false, true, true}, no_weights{true, true, false};
    BOOST_TEST(passes({64, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1}) == all);         // LeNet conv1
    BOOST_TEST(passes({64, 3, 28, 28, 6, 5, 5, 1, 2, 1, 1}) == all);         // 3 channels, 5×5
    BOOST_TEST(passes({64, 1, 28, 28, 8, 5, 5, 1, 0, 1, 1}) == all);         // document 002's
    BOOST_TEST(passes({64, 1, 28, 28, 9, 5, 5, 1, 0, 1, 1}) == no_weights);  // 9 outputs: oneDNN's dW
    BOOST_TEST(passes({64, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1}) == input);      // 3×3: oneDNN's forward and dW
    BOOST_TEST(passes({64, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1}) == backward);   // LeNet conv2: dX, dW by lanes
    BOOST_TEST(passes({64, 9, 14, 14, 16, 5, 5, 1, 0, 1, 1}) == none);       // more channels than lanes
    BOOST_TEST(passes({64, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1}) == none);      // ResNet's blocks
    BOOST_TEST(passes({64, 1, 28, 28, 6, 5, 5, 2, 2, 1, 1}) == none);    // stride 2
    BOOST_TEST(passes({64, 1, 28, 28, 6, 5, 5, 1, 2, 2, 1}) == none);    // dilation 2
    BOOST_TEST(passes({64, 2, 28, 28, 6, 5, 5, 1, 2, 1, 2}) == none);    // groups
}

// The batch sums of the direct kernels run in image order: 2 threads give 1 thread's bits.
BOOST_AUTO_TEST_CASE(direct_kernels_same_bits_on_two_threads)
{
    if (max_num_threads() < 2) {
        BOOST_TEST_MESSAGE("one CPU: nothing to compare");
        return;
    }
    // LeNet's layers: the flat kernels; dX by rows in pairs of images (the 63rd alone) and dW by lanes
    const DnnlConvShape lenet[] = {{64, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1}, {63, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1}};
    for (const DnnlConvShape& s : lenet) {
        const std::size_t nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.kh * s.kw, ny = s.n * s.o * s.oh() * s.ow();
        const auto x = to_float(random_vec(nx, 7)), w = to_float(random_vec(nw, 8)), gy = to_float(random_vec(ny, 9));
        auto run = [&](int threads) {
            set_num_threads(threads);
            std::vector<float> y(ny), dx(nx), dw(nw), db(s.o);
            kernels::direct_conv2d_forward(x.data(), w.data(), nullptr, s, y.data());
            kernels::direct_conv2d_backward(x.data(), w.data(), gy.data(), s, dx.data(), false, dw.data(), false,
                                            db.data(), false);
            y.insert(y.end(), dx.begin(), dx.end());
            y.insert(y.end(), dw.begin(), dw.end());
            y.insert(y.end(), db.begin(), db.end());
            return y;
        };
        const auto one = run(1), two = run(2);
        set_num_threads(max_num_threads());  // the default
        SHAPE_CONTEXT(s) { BOOST_TEST(one == two); }
    }
}

// The op: conv2d<float> (oneDNN for dense convolutions) against conv2d<double> (im2col + GEMM), values
// and every gradient, through tape.backward(); dilated and grouped ones too (composed of dense ones).
BOOST_AUTO_TEST_CASE(op_float_matches_double)
{
    unsigned seed = 100;
    for (const DnnlConvShape& s : shapes) {
        BOOST_TEST_CONTEXT("shape n" << s.n << " c" << s.c << " " << s.h << "x" << s.w << " o" << s.o << " k" << s.kh
                                     << " s" << s.stride << " p" << s.padding << " d" << s.dilation << " g" << s.groups)
        {
            const Shape xs{s.n, s.c, s.h, s.w}, ws{s.o, s.c / s.groups, s.kh, s.kw}, bs{s.o};
            const auto x = random_vec(s.n * s.c * s.h * s.w, seed++), w = random_vec(s.o * ws[1] * s.kh * s.kw, seed++),
                       b = random_vec(s.o, seed++);
            const Conv2dOptions opt = Conv2dOptions().stride(s.stride).padding(s.padding).dilation(s.dilation).groups(s.groups);
            auto run = [&](auto zero) {
                using T = decltype(zero);
                auto t_of = [](const std::vector<double>& v, const Shape& sh) {
                    Tensor<T> r(sh);
                    std::copy(v.begin(), v.end(), r.begin());
                    return r;
                };
                Tape<T> t;
                auto xv = t.variable(t_of(x, xs)), wv = t.variable(t_of(w, ws)), bv = t.variable(t_of(b, bs));
                auto y = conv2d(xv, wv, bv, opt);
                // a loss whose gradient differs per element: Σ y² / 2 (gy = y)
                t.backward(sum(y * y) * T(0.5));
                std::vector<std::vector<double>> out;
                for (const Tensor<T>* v : {&y.value(), &xv.grad(), &wv.grad(), &bv.grad()})
                    out.emplace_back(v->begin(), v->end());
                return out;
            };
            const auto f = run(0.0f), d = run(0.0);
            for (std::size_t k = 0; k < 4; ++k) BOOST_TEST(rel_err(f[k], d[k]) < 2e-5, "output " << k);
        }
    }
}

namespace {

// Batch sizes around oneDNN's blocking (16 channels, 32/64 images per thread chunk), and LeNet's
// and ResNet's geometries: c, h, w, o, k, stride, padding.
const std::size_t batch_sizes[] = {1, 2, 3, 31, 32, 33, 64};
struct Geo {
    std::size_t c, h, w, o, k, stride, padding;
};
const Geo geos[] = {
    {1, 28, 28, 6, 5, 1, 2},    // LeNet conv 1
    {6, 14, 14, 16, 5, 1, 0},   // LeNet conv 2
    {16, 14, 14, 16, 3, 1, 1},  // 3×3 same
    {16, 14, 14, 32, 3, 2, 1},  // 3×3 stride 2
    {16, 14, 14, 32, 1, 2, 0},  // 1×1 stride 2 (shortcut)
    {8, 7, 7, 8, 1, 1, 0},      // 1×1
};

/// max |a − b| / max |b| (as test_distributed compares parameters).
double rel_max(const std::vector<double>& a, const std::vector<double>& b)
{
    double e = 0, m = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        e = std::max(e, std::abs(a[i] - b[i]));
        m = std::max(m, std::abs(b[i]));
    }
    return m > 0 ? e / m : e;
}

template <class T>
Tensor<T> tensor_of(const std::vector<double>& v, const Shape& sh)
{
    Tensor<T> r(sh);
    std::copy(v.begin(), v.end(), r.begin());
    return r;
}

template <class T>
std::vector<double> values(const Tensor<T>& t)
{
    return {t.begin(), t.end()};
}

/// One conv2d with bias and loss Σ y·r (gy = r, random): y, dx, dw, db.
template <class T>
std::vector<std::vector<double>> one_conv(const Geo& g, std::size_t n, unsigned seed)
{
    const Shape xs{n, g.c, g.h, g.w}, ws{g.o, g.c, g.k, g.k}, bs{g.o};
    const std::size_t oh = (g.h + 2 * g.padding - g.k) / g.stride + 1, ow = (g.w + 2 * g.padding - g.k) / g.stride + 1;
    const Shape ys{n, g.o, oh, ow};
    Tape<T> t;
    auto x = t.variable(tensor_of<T>(random_vec(n * g.c * g.h * g.w, seed), xs));
    auto w = t.variable(tensor_of<T>(random_vec(g.o * g.c * g.k * g.k, seed + 1), ws));
    auto b = t.variable(tensor_of<T>(random_vec(g.o, seed + 2), bs));
    auto r = t.constant(tensor_of<T>(random_vec(n * g.o * oh * ow, seed + 3), ys));
    auto y = conv2d(x, w, b, Conv2dOptions().stride(g.stride).padding(g.padding));
    t.backward(sum(y * r));
    return {values(y.value()), values(x.grad()), values(w.grad()), values(b.grad())};
}

const char* const part_names[] = {"y", "dx", "dw", "db"};

}  // namespace

// conv2d<float> (oneDNN) against conv2d<double> (im2col, gradchecked) for every batch size and
// geometry, calls alternating between shapes: each cached primitive must serve only its own shape.
BOOST_AUTO_TEST_CASE(op_batch_sizes_and_alternating_shapes_match_double)
{
    for (int pass = 0; pass < 2; ++pass)  // the second pass runs on cached primitives, batches reversed
        for (std::size_t bi = 0; bi < std::size(batch_sizes); ++bi)
            for (std::size_t gi = 0; gi < std::size(geos); ++gi) {
                const std::size_t n = batch_sizes[pass ? std::size(batch_sizes) - 1 - bi : bi];
                const Geo& g = geos[gi];
                const unsigned seed = unsigned(1000 + 10 * gi + 100 * n);
                const auto f = one_conv<float>(g, n, seed), d = one_conv<double>(g, n, seed);
                for (std::size_t k = 0; k < 4; ++k)
                    BOOST_TEST(rel_max(f[k], d[k]) <= 1e-5, "pass " << pass << " batch " << n << " geometry " << gi
                                                                    << " " << part_names[k] << ": "
                                                                    << rel_max(f[k], d[k]));
            }
}

// Two convolutions on one tape (forward A, forward B, backward B, backward A), LeNet's pair: B's
// forward and backward run between A's forward and A's backward.
BOOST_AUTO_TEST_CASE(two_layers_on_one_tape_match_double)
{
    for (std::size_t n : batch_sizes) {
        auto run = [&](auto zero) {
            using T = decltype(zero);
            Tape<T> t;
            const unsigned s = unsigned(7000 + n);
            auto x = t.variable(tensor_of<T>(random_vec(n * 28 * 28, s), Shape{n, 1, 28, 28}));
            auto wa = t.variable(tensor_of<T>(random_vec(6 * 25, s + 1), Shape{6, 1, 5, 5}));
            auto ba = t.variable(tensor_of<T>(random_vec(6, s + 2), Shape{6}));
            auto wb = t.variable(tensor_of<T>(random_vec(16 * 6 * 25, s + 3), Shape{16, 6, 5, 5}));
            auto bb = t.variable(tensor_of<T>(random_vec(16, s + 4), Shape{16}));
            auto r = t.constant(tensor_of<T>(random_vec(n * 16 * 24 * 24, s + 5), Shape{n, 16, 24, 24}));
            auto a = conv2d(x, wa, ba, Conv2dOptions().padding(2));
            auto y = conv2d(a * a * T(0.1), wb, bb, Conv2dOptions());
            t.backward(sum(y * r));
            return std::vector<std::vector<double>>{values(y.value()), values(x.grad()),  values(wa.grad()),
                                                    values(ba.grad()), values(wb.grad()), values(bb.grad())};
        };
        const auto f = run(0.0f), d = run(0.0);
        const char* names[] = {"y", "dx", "dwA", "dbA", "dwB", "dbB"};
        for (std::size_t k = 0; k < f.size(); ++k)
            BOOST_TEST(rel_max(f[k], d[k]) <= 1e-5, "batch " << n << " " << names[k] << ": " << rel_max(f[k], d[k]));
    }
}

namespace {

/// Distance in units in the last place between two finite values of T of the same sign class.
template <class T>
double ulps(T a, T b)
{
    if (a == b) return 0;
    const T scale = std::max(std::abs(a), std::abs(b));
    return double(std::abs(a - b)) / double(std::nextafter(scale, std::numeric_limits<T>::infinity()) - scale);
}

template <class T>
void check_activation_isa(bool avx512)
{
    // a sweep of [−30, 30] with an odd length (a padded tail), and the ends of the range
    std::vector<T> x;
    for (int i = 0; i <= 6001; ++i) x.push_back(T(-30) + T(i) * T(0.01));
    const T inf = std::numeric_limits<T>::infinity();
    for (T v : {T(0), T(-0.0), T(1e-30), T(-1e-30), T(88), T(-88), T(700), T(-700), inf, -inf}) x.push_back(v);
    x.push_back(std::numeric_limits<T>::quiet_NaN());
    const std::size_t n = x.size(), b = 3, e = n;  // a range that starts off the vector boundary
    for (int f = 0; f < 2; ++f) {
        const bool sig = f == 0;
        std::vector<T> y2(n, T(-7)), y5(n, T(-7));
        if (sig) kernels::map_batches(x.data(), y2.data(), b, e, kernels::Sigmoid{});
        else kernels::map_batches(x.data(), y2.data(), b, e, kernels::Tanh{});
        if (avx512) {
            if (sig) kernels::activation_avx512::map(x.data(), y5.data(), b, e, kernels::Sigmoid{});
            else kernels::activation_avx512::map(x.data(), y5.data(), b, e, kernels::Tanh{});
        }
        // the dispatcher the ops use: the widest set's bits (the two sets differ in the last bit here and there)
        std::vector<T> yd(n, T(-7));
        if (sig) kernels::activation_batches(x.data(), yd.data(), b, e, kernels::Sigmoid{});
        else kernels::activation_batches(x.data(), yd.data(), b, e, kernels::Tanh{});
        const std::vector<T>& widest = kernels::widest_isa() == kernels::DirectIsa::avx512 ? y5 : y2;
        std::size_t differ = 0;
        for (std::size_t i = b; i < n; ++i) {
            if (!std::isnan(x[i]) && yd[i] != widest[i] && differ < 3) BOOST_TEST_MESSAGE(i << " " << x[i] << " " << yd[i] << " " << widest[i] << " " << y2[i]);
            differ += !std::isnan(x[i]) && yd[i] != widest[i];
        }
        BOOST_TEST(differ == 0u, (sig ? "sigmoid" : "tanh") << ": activation_batches is not the widest set's");
        double worst2 = 0, worst5 = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (i < b) {  // outside [b, e): untouched
                BOOST_TEST(y2[i] == T(-7));
                if (avx512) BOOST_TEST(y5[i] == T(-7));
                continue;
            }
            const long double xl = x[i];
            if (std::isnan(x[i])) {
                BOOST_TEST(std::isnan(y2[i]));
                if (avx512) BOOST_TEST(std::isnan(y5[i]));
                continue;
            }
            const T ref = T(sig ? 1.0L / (1.0L + std::exp(-xl)) : std::tanh(xl));
            worst2 = std::max(worst2, ulps(y2[i], ref));
            if (avx512) worst5 = std::max(worst5, ulps(y5[i], ref));
            if (std::isinf(x[i])) {  // exact at the ends
                BOOST_TEST(y2[i] == ref);
                if (avx512) BOOST_TEST(y5[i] == ref);
            }
        }
        BOOST_TEST_MESSAGE((sig ? "sigmoid" : "tanh") << " " << sizeof(T) * 8 << "-bit: AVX2 " << worst2
                                                      << " ulp, AVX-512 " << worst5 << " ulp");
        BOOST_TEST(worst2 <= 2.0, (sig ? "sigmoid" : "tanh") << " AVX2 " << worst2 << " ulp");
        if (avx512) BOOST_TEST(worst5 <= 2.0, (sig ? "sigmoid" : "tanh") << " AVX-512 " << worst5 << " ulp");
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(sigmoid_and_tanh_on_both_instruction_sets_match_libm)
{
    const bool avx512 = kernels::direct_isa_supported(kernels::DirectIsa::avx512);
    if (!avx512) BOOST_TEST_MESSAGE("no AVX-512 on this CPU: AVX2 checked alone");
    check_activation_isa<float>(avx512);
    check_activation_isa<double>(avx512);
}

// Normalization: the ops batch_norm and layer_norm against hand-written loops (forward, and the
// backward formula dx = γ/(Mσ)·(M·dy − Σdy − x̂·Σ(dy·x̂)), dγ = Σ dy·x̂, dβ = Σ dy) in float64 to
// 1e-12 of each tensor's largest entry; first and second derivatives against finite differences;
// the layers' running statistics against a hand loop with the unbiased variance; eval mode bit for
// bit against the affine map of the running statistics; buffers in weight files; the errors.
#define BOOST_TEST_MODULE nn_norm
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <typeinfo>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/norm.hpp"
#include "xgrad/nn/optim.hpp"
#include "xgrad/nn/serialize.hpp"
#include "xgrad/threads.hpp"
#if __has_include("alloc_count.hpp")  // linked where the malloc interposer is built (not under sanitizers)
#include "alloc_count.hpp"
#define XGRAD_COUNT_ALLOCATIONS 1
#endif

using namespace xgrad;
using namespace xgrad::nn;
using xgrad::test::expect_gradcheck;
using xgrad::test::expect_gradgradcheck;
using xgrad::test::rnd;
using V = Var<double>;
using Opts = BatchNormFuncOptions<double>;
using Tens = Tensor<double>;

namespace {

/// max |a − b| / max |b|: the error relative to the tensor's scale (elementwise relative error is
/// meaningless at the entries of dx that cancel to ~0).
double rel_err(const Tens& a, const Tens& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        err = std::max(err, std::abs(a.data()[i] - b.data()[i]));
        scale = std::max(scale, std::abs(b.data()[i]));
    }
    return scale > 0 ? err / scale : err;
}

/// Bit for bit, shape and values.
template <class U>
bool same_bits(const Tensor<U>& a, const Tensor<U>& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(U)) == 0;
}

/// Batch norm by hand on x viewed as (N, C, inner): y, dx, dγ, dβ for cotangent g, and the
/// channels' mean and biased variance.
struct Hand {
    Tens y, dx, dw, db, mean, var;
};

Hand hand_batch_norm(const Tens& x, const Tens& w, const Tens& b, const Tens& g, double eps)
{
    const std::size_t n = x.shape()[0], c = x.shape()[1], inner = x.size() / (n * c), m = n * inner;
    Hand h{Tens(x.shape()), Tens(x.shape()), Tens(Shape{c}), Tens(Shape{c}), Tens(Shape{c}), Tens(Shape{c})};
    auto at = [&](std::size_t i, std::size_t ch, std::size_t k) { return (i * c + ch) * inner + k; };
    for (std::size_t ch = 0; ch < c; ++ch) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t k = 0; k < inner; ++k) s += x.data()[at(i, ch, k)];
        const double mu = s / double(m);
        double q = 0;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t k = 0; k < inner; ++k) q += std::pow(x.data()[at(i, ch, k)] - mu, 2);
        const double var = q / double(m), sigma = std::sqrt(var + eps);
        double sdy = 0, sdyx = 0;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t k = 0; k < inner; ++k) {
                const std::size_t j = at(i, ch, k);
                const double xh = (x.data()[j] - mu) / sigma;
                h.y.data()[j] = w(ch) * xh + b(ch);
                sdy += g.data()[j];
                sdyx += g.data()[j] * xh;
            }
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t k = 0; k < inner; ++k) {
                const std::size_t j = at(i, ch, k);
                const double xh = (x.data()[j] - mu) / sigma;
                h.dx.data()[j] = w(ch) / (double(m) * sigma) * (double(m) * g.data()[j] - sdy - xh * sdyx);
            }
        h.dw(ch) = sdyx;
        h.db(ch) = sdy;
        h.mean(ch) = mu;
        h.var(ch) = var;
    }
    return h;
}

/// Layer norm by hand over the last m values of each row: with ĝ = g⊙γ,
/// dx = 1/(Mσ)·(M·ĝ − Σĝ − x̂·Σ(ĝ·x̂)), dγ = Σ_rows g·x̂, dβ = Σ_rows g.
Hand hand_layer_norm(const Tens& x, const Tens& w, const Tens& b, const Tens& g, double eps)
{
    const std::size_t m = w.size(), rows = x.size() / m;
    Hand h{Tens(x.shape()), Tens(x.shape()), Tens(w.shape()), Tens(w.shape()), Tens(Shape{rows}), Tens(Shape{rows})};
    h.dw.fill(0);
    h.db.fill(0);
    for (std::size_t r = 0; r < rows; ++r) {
        const double* xr = x.data() + r * m;
        const double* gr = g.data() + r * m;
        double s = 0, q = 0;
        for (std::size_t k = 0; k < m; ++k) s += xr[k];
        const double mu = s / double(m);
        for (std::size_t k = 0; k < m; ++k) q += std::pow(xr[k] - mu, 2);
        const double sigma = std::sqrt(q / double(m) + eps);
        double s1 = 0, s2 = 0;
        for (std::size_t k = 0; k < m; ++k) {
            const double xh = (xr[k] - mu) / sigma, gh = gr[k] * w.data()[k];
            h.y.data()[r * m + k] = w.data()[k] * xh + b.data()[k];
            s1 += gh;
            s2 += gh * xh;
            h.dw.data()[k] += gr[k] * xh;
            h.db.data()[k] += gr[k];
        }
        for (std::size_t k = 0; k < m; ++k) {
            const double xh = (xr[k] - mu) / sigma, gh = gr[k] * w.data()[k];
            h.dx.data()[r * m + k] = (double(m) * gh - s1 - xh * s2) / (double(m) * sigma);
        }
        h.mean(r) = mu;
        h.var(r) = q / double(m);
    }
    return h;
}

/// A safetensors file written by hand, as another writer (PyTorch's save_file) makes it:
/// (name, dtype, shape as JSON, raw little-endian bytes) per entry.
struct Entry {
    std::string name, dtype, shape, bytes;
};
template <class V>
std::string raw(const std::vector<V>& v)
{
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(V));
}
void write_file(const std::string& path, const std::vector<Entry>& entries)
{
    std::string header = "{", data;
    for (const Entry& e : entries) {
        header += (header.size() > 1 ? "," : "") + ("\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":" +
                                                    e.shape + ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
                                                    std::to_string(data.size() + e.bytes.size()) + "]}");
        data += e.bytes;
    }
    header += "}";
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(char((std::uint64_t(header.size()) >> (8 * i)) & 0xff));
    std::ofstream(path, std::ios::binary) << out << header << data;
}

/// The exact message and type of what f throws.
void expect_error(const std::function<void()>& f, const std::type_info& type, const std::string& message)
{
    try {
        f();
        BOOST_ERROR("no exception; expected: " << message);
    } catch (const std::exception& e) {
        BOOST_TEST((typeid(e) == type), "type " << typeid(e).name() << " for: " << e.what());
        BOOST_TEST(std::string(e.what()) == message);
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ops)

BOOST_AUTO_TEST_CASE(batch_norm_matches_the_hand_backward)
{
    for (const Shape& s : {Shape{5, 3}, Shape{3, 2, 2, 3}, Shape{4, 2, 5}}) {
        BOOST_TEST_CONTEXT("x " << shape_str(s))
        {
            const std::size_t c = s[1];
            const Tens x = rnd(s, 1, -2, 3), w = rnd({c}, 2, 0.5, 1.5), b = rnd({c}, 3), g = rnd(s, 4);
            const double eps = 1e-5;
            const Hand h = hand_batch_norm(x, w, b, g, eps);
            Tape<double> t;
            const V xv = t.variable(x), wv = t.variable(w), bv = t.variable(b);
            Tens mean, var;
            const V y = batch_norm(xv, Opts().weight(wv).bias(bv).eps(eps).batch_mean(&mean).batch_var(&var));
            t.backward(y, g);
            BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
            BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
            BOOST_TEST(rel_err(wv.grad(), h.dw) < 1e-12);
            BOOST_TEST(rel_err(bv.grad(), h.db) < 1e-12);
            BOOST_TEST(rel_err(mean, h.mean) < 1e-12);
            BOOST_TEST(rel_err(var, h.var) < 1e-12);
            // without the affine map: γ = 1, β = 0
            Tape<double> t2;
            const V x2 = t2.variable(x);
            const Tens ones = xt::ones<double>(Shape{c}), zeros = xt::zeros<double>(Shape{c});
            const Hand h2 = hand_batch_norm(x, ones, zeros, g, eps);
            const V y2 = batch_norm(x2, Opts().eps(eps));
            t2.backward(y2, g);
            BOOST_TEST(rel_err(y2.value(), h2.y) < 1e-12);
            BOOST_TEST(rel_err(x2.grad(), h2.dx) < 1e-12);
        }
    }
}

BOOST_AUTO_TEST_CASE(layer_norm_matches_the_hand_backward)
{
    const std::vector<std::pair<Shape, Shape>> cases = {
        {Shape{4, 6}, Shape{6}}, {Shape{2, 3, 4, 5}, Shape{4, 5}}, {Shape{3, 4}, Shape{3, 4}}};
    for (const auto& [s, ns] : cases) {
        BOOST_TEST_CONTEXT("x " << shape_str(s) << ", normalized_shape " << shape_str(ns))
        {
            const Tens x = rnd(s, 5, -2, 3), w = rnd(ns, 6, 0.5, 1.5), b = rnd(ns, 7), g = rnd(s, 8);
            const double eps = 1e-5;
            const Hand h = hand_layer_norm(x, w, b, g, eps);
            Tape<double> t;
            const V xv = t.variable(x), wv = t.variable(w), bv = t.variable(b);
            const V y = layer_norm(xv, ns, wv, bv, eps);
            t.backward(y, g);
            BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
            BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
            BOOST_TEST(rel_err(wv.grad(), h.dw) < 1e-12);
            BOOST_TEST(rel_err(bv.grad(), h.db) < 1e-12);
            Tape<double> t2;
            const V x2 = t2.variable(x);
            const Tens ones = xt::ones<double>(ns), zeros = xt::zeros<double>(ns);
            const Hand h2 = hand_layer_norm(x, ones, zeros, g, eps);
            const V y2 = layer_norm(x2, ns, eps);
            t2.backward(y2, g);
            BOOST_TEST(rel_err(y2.value(), h2.y) < 1e-12);
            BOOST_TEST(rel_err(x2.grad(), h2.dx) < 1e-12);
        }
    }
}

BOOST_AUTO_TEST_CASE(gradients_accumulate_into_shared_inputs)
{
    // The same Var as weight and bias, and x used twice: each input's gradient adds up.
    const Tens x = rnd({4, 3}, 9), w = rnd({3}, 10, 0.5, 1.5), g = rnd({4, 3}, 11);
    const Hand h = hand_batch_norm(x, w, w, g, 1e-5);
    Tape<double> t;
    const V xv = t.variable(x), wv = t.variable(w);
    t.backward(batch_norm(xv, Opts().weight(wv).bias(wv)) + xv, g);
    BOOST_TEST(rel_err(wv.grad(), Tens(h.dw + h.db)) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), Tens(h.dx + g)) < 1e-12);
    // layer_norm of a row given as x, weight and bias at once
    const Tens r = rnd({5}, 12, 0.5, 1.5), gr = rnd({5}, 13);
    const Hand hl = hand_layer_norm(r, r, r, gr, 1e-5);
    Tape<double> t2;
    const V rv = t2.variable(r);
    t2.backward(layer_norm(rv, Shape{5}, rv, rv), gr);
    BOOST_TEST(rel_err(rv.grad(), Tens(hl.dx + hl.dw + hl.db)) < 1e-12);
}

BOOST_AUTO_TEST_CASE(gradcheck_and_gradgradcheck)
{
    // size-1 axes everywhere they may be: C = 1, N = 1, H = W = 1 (M ≥ 2 values per channel)
    const std::vector<Shape> bn_shapes = {Shape{4, 3}, Shape{2, 1}, Shape{1, 3, 2, 2}, Shape{3, 2, 1, 1},
                                          Shape{2, 3, 2, 2}, Shape{2, 2, 3}};
    unsigned seed = 20;
    int fused_checked = 0;
    for (const Shape& s : bn_shapes) {
        BOOST_TEST_CONTEXT("batch_norm x " << shape_str(s))
        {
            const std::vector<Tens> in = {rnd(s, seed, -1, 1), rnd({s[1]}, seed + 1, 0.5, 1.5), rnd({s[1]}, seed + 2)};
            seed += 3;
            auto f = [](const std::vector<V>& v) { return batch_norm(v[0], Opts().weight(v[1]).bias(v[2]).eps(1e-3)); };
            expect_gradcheck(f, in);
            expect_gradgradcheck(f, in);
            auto plain = [](const std::vector<V>& v) { return batch_norm(v[0], Opts().eps(1e-3)); };
            expect_gradcheck(plain, {in[0]});
            expect_gradgradcheck(plain, {in[0]});
            if (test::clear_of_relu_kink(f, in)) {
                auto fused = [](const std::vector<V>& v) {
                    return batch_norm(v[0], Opts().weight(v[1]).bias(v[2]).eps(1e-3).relu(true));
                };
                expect_gradcheck(fused, in);
                expect_gradgradcheck(fused, in);
                ++fused_checked;
            }
        }
    }
    BOOST_TEST(fused_checked >= 4);
    const std::vector<std::pair<Shape, Shape>> ln_shapes = {
        {Shape{4, 3}, Shape{3}},       {Shape{2, 3, 4}, Shape{3, 4}}, {Shape{1, 5}, Shape{5}},
        {Shape{2, 1, 3}, Shape{1, 3}}, {Shape{5}, Shape{5}},          {Shape{3, 1}, Shape{1}}};
    for (const auto& [s, ns] : ln_shapes) {
        BOOST_TEST_CONTEXT("layer_norm x " << shape_str(s) << ", normalized_shape " << shape_str(ns))
        {
            const std::vector<Tens> in = {rnd(s, seed, -1, 1), rnd(ns, seed + 1, 0.5, 1.5), rnd(ns, seed + 2)};
            seed += 3;
            const Shape nsc = ns;
            auto f = [nsc](const std::vector<V>& v) { return layer_norm(v[0], nsc, v[1], v[2], 1e-3); };
            expect_gradcheck(f, in);
            expect_gradgradcheck(f, in);
            // + x²: with M = 1 layer_norm is constant, and a check of only zeros would be refused
            auto plain = [nsc](const std::vector<V>& v) { return layer_norm(v[0], nsc, 1e-3) + square(v[0]); };
            expect_gradcheck(plain, {in[0]});
            expect_gradgradcheck(plain, {in[0]});
        }
    }
}

// batch_norm_relu is relu(batch_norm(·)) as one op: the value and every gradient bit for bit against
// the two ops, in float and double, on one thread and on all (16×8×24×24: the loops' OpenMP paths),
// with and without the affine map, x used again after the op (its gradient adds) and, once, weight
// and bias one Var. About half the outputs are clipped, so the mask matters.
BOOST_AUTO_TEST_CASE(batch_norm_relu_is_relu_of_batch_norm_bit_for_bit)
{
    const Tens x0 = rnd({16, 8, 24, 24}, 60, -2, 2), w0 = rnd({8}, 61, 0.5, 1.5), b0 = rnd({8}, 62, -0.5, 0.5),
               g0 = rnd({16, 8, 24, 24}, 63);
    auto check = [&](auto tag, int threads, int variant) {
        using U = decltype(tag);
        set_num_threads(threads);
        auto in = [](const Tens& v) { return Tensor<U>(xt::cast<U>(v)); };
        struct Out {
            Tensor<U> y, dx, dw, db;
        };
        auto run = [&](bool fused) {
            Tape<U> t;
            const Var<U> x = t.variable(in(x0)), w = t.variable(in(w0)), b = variant == 2 ? w : t.variable(in(b0));
            const Var<U> y = variant == 1
                                 ? (fused ? batch_norm(x, BatchNormFuncOptions<U>().relu(true)) : relu(batch_norm(x)))
                                 : (fused ? batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b).relu(true))
                                          : relu(batch_norm(x, BatchNormFuncOptions<U>().weight(w).bias(b))));
            t.backward(y + x, in(g0));
            Out o{y.value(), x.grad(), {}, {}};
            if (variant != 1) o.dw = w.grad(), o.db = b.grad();
            return o;
        };
        const Out f = run(true), u = run(false);
        BOOST_TEST_CONTEXT(typeid(U).name() << ", " << threads << " threads, variant " << variant)
        {
            BOOST_TEST(same_bits(f.y, u.y));
            BOOST_TEST(same_bits(f.dx, u.dx));
            BOOST_TEST(same_bits(f.dw, u.dw));
            BOOST_TEST(same_bits(f.db, u.db));
            const double clipped = double(xt::sum(xt::cast<double>(xt::equal(f.y, U(0))))()) / double(f.y.size());
            BOOST_TEST(clipped > 0.15);  // (variant 2: bias = weight > 0 shifts most values up)
            BOOST_TEST(clipped < 0.7);
        }
    };
    for (int threads : {1, max_num_threads()})
        for (int variant : {0, 1, 2}) {
            check(float{}, threads, variant);
            check(double{}, threads, variant);
        }
    set_num_threads(1);
}

// The fused op against the hand formula with relu's mask, G' = G ⊙ [Y > 0] in place of G, in float64.
BOOST_AUTO_TEST_CASE(batch_norm_relu_matches_the_hand_backward)
{
    const Tens x = rnd({5, 3, 4, 4}, 64, -2, 2), w = rnd({3}, 65, 0.5, 1.5), b = rnd({3}, 66, -0.3, 0.3),
               g = rnd({5, 3, 4, 4}, 67);
    const Hand plain = hand_batch_norm(x, w, b, g, 1e-5);
    const Tens y_want = xt::maximum(plain.y, 0.0);
    const Tens g_masked = g * xt::cast<double>(plain.y > 0.0);
    const Hand h = hand_batch_norm(x, w, b, g_masked, 1e-5);
    Tape<double> t;
    const V xv = t.variable(x), wv = t.variable(w), bv = t.variable(b);
    const V y = batch_norm(xv, Opts().weight(wv).bias(bv).relu(true));
    t.backward(y, g);
    BOOST_TEST(rel_err(y.value(), y_want) < 1e-12);
    BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
    BOOST_TEST(rel_err(wv.grad(), h.dw) < 1e-12);
    BOOST_TEST(rel_err(bv.grad(), h.db) < 1e-12);
    BOOST_TEST(rel_err(h.dx, plain.dx) > 0.1);  // the mask changes the gradient: the check can fail
}

BOOST_AUTO_TEST_CASE(float_agrees_with_double)
{
    const Tens x = rnd({3, 2, 2, 2}, 40, -2, 2), w = rnd({2}, 41, 0.5, 1.5), b = rnd({2}, 42), g = rnd({3, 2, 2, 2}, 43);
    const Hand h = hand_batch_norm(x, w, b, g, 1e-5);
    Tape<float> t;
    const Var<float> xv = t.variable(Tensor<float>(xt::cast<float>(x)));
    const Var<float> wv = t.variable(Tensor<float>(xt::cast<float>(w)));
    const Var<float> bv = t.variable(Tensor<float>(xt::cast<float>(b)));
    t.backward(batch_norm(xv, BatchNormFuncOptions<float>().weight(wv).bias(bv)), Tensor<float>(xt::cast<float>(g)));
    BOOST_TEST(rel_err(Tens(xt::cast<double>(xv.grad())), h.dx) < 1e-5);
    BOOST_TEST(rel_err(Tens(xt::cast<double>(wv.grad())), h.dw) < 1e-5);
    const Tens r = rnd({2, 4}, 44), wr = rnd({4}, 45), br = rnd({4}, 46), gr = rnd({2, 4}, 47);
    const Hand hl = hand_layer_norm(r, wr, br, gr, 1e-5);
    Tape<float> t2;
    const Var<float> rv = t2.variable(Tensor<float>(xt::cast<float>(r)));
    const Var<float> y = layer_norm(rv, Shape{4}, t2.constant(Tensor<float>(xt::cast<float>(wr))),
                                    t2.constant(Tensor<float>(xt::cast<float>(br))));
    t2.backward(y, Tensor<float>(xt::cast<float>(gr)));
    BOOST_TEST(rel_err(Tens(xt::cast<double>(y.value())), hl.y) < 1e-5);
    BOOST_TEST(rel_err(Tens(xt::cast<double>(rv.grad())), hl.dx) < 1e-5);
}

// The batch statistics in float from each image's moments: values 1000 + O(0.01) (per image a
// different offset), where a variance taken as E[x²] − E[x]², or images combined about rounded means
// without the correction, is off by percent; here within 1e-5 of the double two-pass statistics of
// the same float values, in both layouts, odd image sizes (the column and lane remainders).
BOOST_AUTO_TEST_CASE(float_statistics_of_offset_data)
{
    for (bool cl : {false, true}) {
        const std::size_t n = 5, c = 19, h = 3, w = 7;
        const Shape xs = cl ? Shape{n, h, w, c} : Shape{n, c, h, w};
        Tensor<float> x = xt::cast<float>(rnd(xs, 150, -0.01, 0.01));
        for (std::size_t i = 0; i < x.size(); ++i) {
            const std::size_t img = i / (c * h * w);
            x.data()[i] += 1000.0f + 0.003f * float(img);
        }
        Tape<float> t;
        Tensor<float> mean_f, var_f;
        batch_norm(t.variable(x), BatchNormFuncOptions<float>().channels_last(cl).batch_mean(&mean_f).batch_var(&var_f));
        for (std::size_t ch = 0; ch < c; ++ch) {
            double s = 0, q = 0;
            const std::size_t m = n * h * w;
            auto at = [&](std::size_t k) {  // k-th value of channel ch
                const std::size_t img = k / (h * w), pos = k % (h * w);
                return double(cl ? x.data()[(img * h * w + pos) * c + ch] : x.data()[(img * c + ch) * h * w + pos]);
            };
            for (std::size_t k = 0; k < m; ++k) s += at(k);
            const double mu = s / double(m);
            for (std::size_t k = 0; k < m; ++k) q += (at(k) - mu) * (at(k) - mu);
            BOOST_TEST_CONTEXT("channels_last " << cl << ", channel " << ch)
            {
                BOOST_TEST(std::abs(double(mean_f(ch)) - mu) <= 1e-7 * mu);
                BOOST_TEST(std::abs(double(var_f(ch)) - q / double(m)) <= 1e-5 * (q / double(m)));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(op_errors_name_the_op_and_the_shapes)
{
    const std::type_info& shape = typeid(ShapeError);
    const std::type_info& invalid = typeid(std::invalid_argument);
    Tape<double> t;
    const V x = t.variable(rnd({4, 3}, 50)), w2 = t.variable(rnd({2}, 51)), w3 = t.variable(rnd({3}, 52));
    expect_error([&] { batch_norm(x, Opts().weight(w2).bias(w2)); }, shape,
                 "batch_norm: input (4,3) has 3 channels, but weight (2) and bias (2) must be (3)");
    expect_error([&] { batch_norm(x, Opts().weight(w3).bias(w2)); }, shape,
                 "batch_norm: input (4,3) has 3 channels, but weight (3) and bias (2) must be (3)");
    expect_error([&] { batch_norm(w3); }, shape, "batch_norm: input (3) must have rank 2 or more, (N,C,*)");
    expect_error([&] { batch_norm(t.variable(rnd({1, 3}, 53))); }, invalid,
                 "batch_norm: expected more than 1 value per channel in training mode, got input (1,3)");
    expect_error([&] { batch_norm(x, Opts().eps(-1.0)); }, invalid,
                 "batch_norm: eps must be finite and non-negative, got -1");
    expect_error([&] { batch_norm(x, Opts().weight(w2).bias(w2).relu(true)); }, shape,
                 "batch_norm_relu: input (4,3) has 3 channels, but weight (2) and bias (2) must be (3)");
    expect_error([&] { batch_norm(w3, Opts().relu(true)); }, shape,
                 "batch_norm_relu: input (3) must have rank 2 or more, (N,C,*)");
    expect_error([&] { batch_norm(x, Opts().eps(-1.0).relu(true)); }, invalid,
                 "batch_norm_relu: eps must be finite and non-negative, got -1");
    expect_error([&] { layer_norm(x, Shape{4}); }, shape, "layer_norm: input (4,3) does not end with normalized_shape (4)");
    expect_error([&] { layer_norm(x, Shape{2, 4, 3}); }, shape,
                 "layer_norm: input (4,3) does not end with normalized_shape (2,4,3)");
    expect_error([&] { layer_norm(x, Shape{3}, w2, w3); }, shape,
                 "layer_norm: weight (2) and bias (3) must have normalized_shape (3) (input (4,3))");
    expect_error([&] { layer_norm(x, Shape{}); }, invalid, "layer_norm: normalized_shape is empty (input (4,3))");
    expect_error([&] { layer_norm(x, Shape{3}, std::nan("")); }, invalid,
                 "layer_norm: eps must be finite and non-negative, got nan");
    BOOST_TEST(t.size() == 4u);  // four variables: the failed ops left no node
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(layers)

// forward_relu is relu(forward(·)): the same values, gradients and running statistics, bit for bit,
// over three training steps (batch_norm_relu) and then in eval mode (the affine map, then relu).
BOOST_AUTO_TEST_CASE(forward_relu_is_relu_of_forward)
{
    BatchNorm2d<double> fused(BatchNormOptions(3).momentum(0.3)), two(BatchNormOptions(3).momentum(0.3));
    for (BatchNorm2d<double>* bn : {&fused, &two}) {
        bn->weight()->value() = rnd({3}, 80, 0.5, 1.5);
        bn->bias()->value() = rnd({3}, 81, -0.3, 0.3);
    }
    for (unsigned step = 0; step < 4; ++step) {
        if (step == 3) fused.eval(), two.eval();
        const Tens x = rnd({4, 3, 5, 5}, 82 + step, -1 - step, 1 + step), g = rnd({4, 3, 5, 5}, 90 + step);
        Tape<double> t;
        const V yf = fused.forward_relu(t.variable(x)), yt = relu(two.forward(t.variable(x)));
        t.backward(yf, g);
        t.backward(yt, g);
        BOOST_TEST_CONTEXT("step " << step)
        {
            BOOST_TEST(same_bits(yf.value(), yt.value()));
            BOOST_TEST(same_bits(fused.weight()->grad(), two.weight()->grad()));
            BOOST_TEST(same_bits(fused.bias()->grad(), two.bias()->grad()));
            BOOST_TEST(same_bits(*fused.running_mean(), *two.running_mean()));
            BOOST_TEST(same_bits(*fused.running_var(), *two.running_var()));
            BOOST_TEST(xt::amin(yf.value())() == 0.0);  // some outputs clipped
        }
    }
    BOOST_TEST((*fused.num_batches_tracked())() == 3.0);
}

// Sequential::fuse_batch_norm_relu: in train mode each [BatchNorm, ReLU] pair one op (two ReLU nodes
// fewer on the tape), the rest as it was; values, gradients and running statistics bit for bit the unfused
// network's, in train and eval mode, in double (NCHW) and float (channels-last, the fused kernels).
template <class T>
void check_fused_sequential(bool channels_last)
{
    auto build = [&] {
        auto net = std::make_unique<Sequential<T>>();
        net->template emplace<Conv2d<T>>(Conv2dOptions(2, 3, 3).padding(1).channels_last(channels_last), 7);
        net->template emplace<BatchNorm2d<T>>(BatchNormOptions(3).channels_last(channels_last));  // fused
        net->template emplace<ReLU<T>>();
        net->template emplace<BatchNorm2d<T>>(BatchNormOptions(3).channels_last(channels_last));  // no ReLU after it
        net->template emplace<Sigmoid<T>>();
        net->template emplace<ReLU<T>>();  // no batch norm before it
        net->template emplace<Conv2d<T>>(Conv2dOptions(3, 4, 3).padding(1).channels_last(channels_last), 8);
        net->template emplace<BatchNorm2d<T>>(BatchNormOptions(4).channels_last(channels_last));  // fused
        net->template emplace<ReLU<T>>();
        net->template emplace<BatchNorm2d<T>>(BatchNormOptions(4).channels_last(channels_last));  // last layer
        for (std::size_t i : {1, 3, 7, 9}) {
            auto& bn = net->template at<BatchNorm2d<T>>(i);
            const std::size_t c = bn.options().num_features();
            bn.weight()->value() = xt::cast<T>(rnd({c}, 100 + i, 0.5, 1.5));
            bn.bias()->value() = xt::cast<T>(rnd({c}, 110 + i, -0.3, 0.3));
        }
        return net;
    };
    auto fused = build(), two = build();
    BOOST_TEST(fused->fuse_batch_norm_relu() == 2u);
    BOOST_TEST(fused->fuse_batch_norm_relu() == 2u);  // again: the same pairs
    std::vector<std::string> names_f, names_t;
    for (auto& [k, v] : fused->named_parameters()) names_f.push_back(k);
    for (auto& [k, v] : two->named_parameters()) names_t.push_back(k);
    BOOST_TEST(names_f == names_t, boost::test_tools::per_element());
    const Shape xs = channels_last ? Shape{4, 5, 5, 2} : Shape{4, 2, 5, 5}, ys = channels_last ? Shape{4, 5, 5, 4} : Shape{4, 4, 5, 5};
    for (unsigned step = 0; step < 3; ++step) {
        if (step == 2) fused->eval(), two->eval();
        const Tensor<T> x = xt::cast<T>(rnd(xs, 120 + step, -1.0 - step, 1.0 + step)), g = xt::cast<T>(rnd(ys, 130 + step));
        for (Sequential<T>* net : {fused.get(), two.get()})
            for (Parameter<T>* p : net->parameters()) p->zero_grad();
        Tape<T> tf, tt;
        const Var<T> yf = (*fused)(tf.variable(x)), yt = (*two)(tt.variable(x));
        BOOST_TEST(tt.size() == tf.size() + (step < 2 ? 2 : 0));  // eval: the affine map, then relu, in both
        tf.backward(yf, g);
        tt.backward(yt, g);
        BOOST_TEST_CONTEXT("step " << step)
        {
            BOOST_TEST(same_bits(yf.value(), yt.value()));
            const auto pf = fused->parameters(), pt = two->parameters();
            for (std::size_t k = 0; k < pf.size(); ++k) BOOST_TEST(same_bits(pf[k]->grad(), pt[k]->grad()));
            const auto bf = fused->named_buffers(), bt = two->named_buffers();
            for (std::size_t k = 0; k < bf.size(); ++k) BOOST_TEST(same_bits(*bf[k].second, *bt[k].second));
        }
    }
}

BOOST_AUTO_TEST_CASE(sequential_fuses_batch_norm_and_relu_pairs)
{
    check_fused_sequential<double>(false);
    check_fused_sequential<float>(true);
}

// Sequential::fuse_activation_pool: ReLU, Sigmoid and Tanh before an AvgPool2d (2×2, and 3 of stride
// 2) run as activation_avg_pool2d; the network's values and gradients are the unfused network's bit
// for bit, the tape has one node fewer per pair. A layer is in one pair at most, whichever call
// fused it first.
BOOST_AUTO_TEST_CASE(sequential_fuses_activation_and_pooling_pairs)
{
    using T = float;
    auto build = [] {
        auto net = std::make_unique<Sequential<T>>();
        net->emplace<Conv2d<T>>(Conv2dOptions(2, 4, 3).padding(1), 7);
        net->emplace<ReLU<T>>();  // fused
        net->emplace<AvgPool2d<T>>(2);
        net->emplace<Conv2d<T>>(Conv2dOptions(4, 5, 3).padding(1), 8);
        net->emplace<Sigmoid<T>>();  // fused, overlapping windows
        net->emplace<AvgPool2d<T>>(3, 2);
        net->emplace<Tanh<T>>();  // fused
        net->emplace<AvgPool2d<T>>(2, 1);
        net->emplace<ReLU<T>>();  // no pooling after it
        net->emplace<Flatten<T>>();
        net->emplace<Linear<T>>(5, 3, true, 9);
        return net;
    };
    auto fused = build(), two = build();
    BOOST_TEST(fused->fuse_activation_pool() == 3u);
    BOOST_TEST(fused->fuse_activation_pool() == 3u);  // again: the same pairs
    BOOST_TEST(fused->fuse_batch_norm_relu() == 0u);
    std::vector<std::string> names_f, names_t;
    for (auto& [k, v] : fused->named_parameters()) names_f.push_back(k);
    for (auto& [k, v] : two->named_parameters()) names_t.push_back(k);
    BOOST_TEST(names_f == names_t, boost::test_tools::per_element());
    for (unsigned step = 0; step < 2; ++step) {
        const Tensor<T> x = xt::cast<T>(rnd({6, 2, 12, 12}, 140 + step, -2, 2)), g = xt::cast<T>(rnd({6, 3}, 150 + step));
        for (Sequential<T>* net : {fused.get(), two.get()})
            for (Parameter<T>* p : net->parameters()) p->zero_grad();
        Tape<T> tf, tt;
        const Var<T> yf = (*fused)(tf.variable(x)), yt = (*two)(tt.variable(x));
        BOOST_TEST(tt.size() == tf.size() + 3);
        tf.backward(yf, g);
        tt.backward(yt, g);
        BOOST_TEST(same_bits(yf.value(), yt.value()));
        const auto pf = fused->parameters(), pt = two->parameters();
        for (std::size_t k = 0; k < pf.size(); ++k) BOOST_TEST(same_bits(pf[k]->grad(), pt[k]->grad()));
    }

    // [BatchNorm2d, ReLU, AvgPool2d]: the ReLU goes with whichever pair was fused first
    auto bn_relu_pool = [] {
        auto net = std::make_unique<Sequential<T>>();
        net->emplace<BatchNorm2d<T>>(BatchNormOptions(2));
        net->emplace<ReLU<T>>();
        net->emplace<AvgPool2d<T>>(2);
        return net;
    };
    auto a = bn_relu_pool(), b = bn_relu_pool(), plain = bn_relu_pool();
    BOOST_TEST(a->fuse_batch_norm_relu() == 1u);
    BOOST_TEST(a->fuse_activation_pool() == 0u);
    BOOST_TEST(b->fuse_activation_pool() == 1u);
    BOOST_TEST(b->fuse_batch_norm_relu() == 0u);
    const Tensor<T> x = xt::cast<T>(rnd({3, 2, 4, 4}, 160));
    Tape<T> ta, tb, tp;
    const Var<T> ya = (*a)(ta.variable(x)), yb = (*b)(tb.variable(x)), yp = (*plain)(tp.variable(x));
    BOOST_TEST(ta.size() + 1 == tp.size());
    BOOST_TEST(tb.size() + 1 == tp.size());
    BOOST_TEST(same_bits(ya.value(), yp.value()));
    BOOST_TEST(same_bits(yb.value(), yp.value()));
}

BOOST_AUTO_TEST_CASE(running_statistics_follow_a_hand_loop)
{
    const double momentum = 0.2, eps = 1e-5;
    BatchNorm2d<double> bn(BatchNormOptions(3).momentum(momentum).eps(eps));
    BOOST_TEST(bn.parameters().size() == 2u);  // buffers are not parameters
    BOOST_TEST(bn.named_buffers().size() == 3u);
    Tens rm = xt::zeros<double>(Shape{3}), rv = xt::ones<double>(Shape{3});
    for (unsigned step = 0; step < 4; ++step) {
        const Tens x = rnd({4, 3, 2, 2}, 60 + step, -1 + step, 2 + 2 * step);
        Tape<double> t;
        const V y = bn(t.variable(x));
        for (std::size_t c = 0; c < 3; ++c) {
            double s = 0, q = 0;
            for (std::size_t n = 0; n < 4; ++n)
                for (std::size_t i = 0; i < 4; ++i) s += x.data()[(n * 3 + c) * 4 + i];
            const double mu = s / 16;
            for (std::size_t n = 0; n < 4; ++n)
                for (std::size_t i = 0; i < 4; ++i) q += std::pow(x.data()[(n * 3 + c) * 4 + i] - mu, 2);
            rm(c) = (1 - momentum) * rm(c) + momentum * mu;
            rv(c) = (1 - momentum) * rv(c) + momentum * q / 15;  // unbiased: M − 1 = 15
        }
        // train mode normalizes with the batch's own statistics
        const Hand h = hand_batch_norm(x, xt::ones<double>(Shape{3}), xt::zeros<double>(Shape{3}), x, eps);
        BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
    }
    BOOST_TEST(rel_err(*bn.running_mean(), rm) < 1e-12);
    BOOST_TEST(rel_err(*bn.running_var(), rv) < 1e-12);
    BOOST_TEST((*bn.num_batches_tracked())() == 4.0);
    BOOST_TEST(&bn.buffer("running_var") == bn.running_var());

    // momentum = None: the cumulative average of the batch statistics
    BatchNorm1d<double> avg(BatchNormOptions(2).momentum(std::nullopt));
    Tens sum_mean = xt::zeros<double>(Shape{2}), sum_var = xt::zeros<double>(Shape{2});
    for (unsigned step = 0; step < 3; ++step) {
        const Tens x = rnd({5, 2}, 70 + step, -1, 1 + step);
        Tape<double> t;
        avg(t.variable(x));
        const Hand h = hand_batch_norm(x, xt::ones<double>(Shape{2}), xt::zeros<double>(Shape{2}), x, 1e-5);
        sum_mean += h.mean;
        sum_var += h.var * 5.0 / 4.0;
    }
    BOOST_TEST(rel_err(*avg.running_mean(), Tens(sum_mean / 3.0)) < 1e-12);
    BOOST_TEST(rel_err(*avg.running_var(), Tens(sum_var / 3.0)) < 1e-12);
    avg.reset_running_stats();
    BOOST_TEST((*avg.running_mean() == xt::zeros<double>(Shape{2})));
    BOOST_TEST((*avg.running_var() == xt::ones<double>(Shape{2})));
    BOOST_TEST((*avg.num_batches_tracked())() == 0.0);
    // (N,C,L) input: the statistics run over N and L
    BatchNorm1d<double> seq(BatchNorm1dOptions(2));
    const Tens xs = rnd({3, 2, 4}, 75, 0, 2);
    {
        Tape<double> t;
        seq(t.variable(xs));
    }
    const Hand hs = hand_batch_norm(xs, xt::ones<double>(Shape{2}), xt::zeros<double>(Shape{2}), xs, 1e-5);
    BOOST_TEST(rel_err(*seq.running_mean(), Tens(0.1 * hs.mean)) < 1e-12);
    BOOST_TEST(rel_err(*seq.running_var(), Tens(0.9 + 0.1 * hs.var * 12.0 / 11.0)) < 1e-12);
}

BOOST_AUTO_TEST_CASE(eval_is_the_affine_map_of_the_running_statistics)
{
    const double eps = 1e-3;
    BatchNorm2d<double> bn(BatchNormOptions(2).eps(eps));
    for (unsigned step = 0; step < 3; ++step) {
        Tape<double> t;
        bn(t.variable(rnd({3, 2, 2, 2}, 80 + step, -1, 3)));
    }
    bn.weight()->value() = rnd({2}, 90, 0.5, 2);
    bn.bias()->value() = rnd({2}, 91);
    bn.eval();
    const Tens rm = *bn.running_mean(), rv = *bn.running_var();
    const Tens x = rnd({2, 2, 3, 1}, 92, -2, 2), g = rnd({2, 2, 3, 1}, 93);
    Tape<double> t;
    const V xv = t.variable(x);
    const V y = bn(xv);
    t.backward(y, g);
    const Tens& w = bn.weight()->value();
    const Tens& b = bn.bias()->value();
    std::size_t exact = 0, exact_grad = 0;
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 2; ++c)
            for (std::size_t i = 0; i < 3; ++i) {
                const std::size_t j = (n * 2 + c) * 3 + i;
                const double k = w(c) * (1.0 / std::sqrt(rv(c) + eps));
                // the product rounded on its own, as the layer's two ops round it (a compiler may
                // otherwise fuse it with the add: x86-64-v3 has FMA)
                const volatile double p = (x.data()[j] - rm(c)) * k;
                exact += y.value().data()[j] == p + b(c);
                exact_grad += xv.grad().data()[j] == g.data()[j] * k;
            }
    BOOST_TEST(exact == x.size());
    BOOST_TEST(exact_grad == x.size());
    BOOST_TEST((*bn.running_mean() == rm));  // eval does not touch the statistics
    BOOST_TEST((*bn.running_var() == rv));
    BOOST_TEST((*bn.num_batches_tracked())() == 3.0);

    // without affine: (x − μ)·s
    BatchNorm1d<double> plain(BatchNormOptions(2).affine(false));
    BOOST_TEST(plain.parameters().empty());
    {
        Tape<double> t2;
        plain(t2.variable(rnd({4, 2}, 94, 1, 5)));
    }
    plain.eval();
    const Tens x2 = rnd({3, 2}, 95);
    Tape<double> t2;
    const V y2 = plain(t2.constant(x2));
    std::size_t exact2 = 0;
    for (std::size_t j = 0; j < x2.size(); ++j) {
        const std::size_t c = j % 2;
        exact2 += y2.value().data()[j] ==
                  (x2.data()[j] - (*plain.running_mean())(c)) * (1.0 / std::sqrt((*plain.running_var())(c) + 1e-5));
    }
    BOOST_TEST(exact2 == x2.size());

    // track_running_stats(false): no buffers, batch statistics in eval mode too
    BatchNorm1d<double> batch_only(BatchNormOptions(2).track_running_stats(false));
    BOOST_TEST(batch_only.named_buffers().empty());
    BOOST_TEST(batch_only.running_mean() == nullptr);
    batch_only.eval();
    Tape<double> t3;
    const V y3 = batch_only(t3.constant(x2));
    const Hand h3 = hand_batch_norm(x2, xt::ones<double>(Shape{2}), xt::zeros<double>(Shape{2}), x2, 1e-5);
    BOOST_TEST(rel_err(y3.value(), h3.y) < 1e-12);
}

BOOST_AUTO_TEST_CASE(layer_norm_layer)
{
    LayerNorm<double> ln(LayerNormOptions({2, 3}).eps(1e-4));
    BOOST_TEST(ln.named_parameters().size() == 2u);
    BOOST_TEST(ln.named_parameters()[0].first == "weight");
    BOOST_TEST(ln.named_parameters()[1].first == "bias");
    BOOST_TEST(ln.named_buffers().empty());
    ln.weight()->value() = rnd({2, 3}, 100, 0.5, 1.5);
    ln.bias()->value() = rnd({2, 3}, 101);
    const Tens x = rnd({4, 2, 3}, 102, -3, 3), g = rnd({4, 2, 3}, 103);
    const Hand h = hand_layer_norm(x, ln.weight()->value(), ln.bias()->value(), g, 1e-4);
    for (bool training : {true, false}) {
        ln.train(training);
        ln.zero_grad();
        Tape<double> t;
        const V xv = t.variable(x);
        const V y = ln(xv);
        t.backward(y, g);
        BOOST_TEST(rel_err(y.value(), h.y) < 1e-12);
        BOOST_TEST(rel_err(xv.grad(), h.dx) < 1e-12);
        BOOST_TEST(rel_err(ln.weight()->grad(), h.dw) < 1e-12);
        BOOST_TEST(rel_err(ln.bias()->grad(), h.db) < 1e-12);
    }
    LayerNorm<double> plain(LayerNormOptions({3}).elementwise_affine(false));
    BOOST_TEST(plain.parameters().empty());
    BOOST_TEST(plain.describe() == "LayerNorm((3))");
}

BOOST_AUTO_TEST_CASE(weight_files_hold_parameters_then_buffers)
{
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("xgrad_test_norm_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    auto make = [](std::uint64_t seed) {
        auto net = std::make_unique<Sequential<double>>();
        net->emplace<Linear<double>>(3, 4, true, seed);
        net->emplace<BatchNorm1d<double>>(BatchNormOptions(4));
        net->emplace<ReLU<double>>();
        net->emplace<LayerNorm<double>>(LayerNormOptions({4}));
        return net;
    };
    auto a = make(1);
    for (unsigned step = 0; step < 3; ++step) {
        Tape<double> t;
        (*a)(t.variable(rnd({6, 3}, 110 + step)));
    }
    a->parameter("1.weight").value() = rnd({4}, 120);
    a->parameter("3.bias").value() = rnd({4}, 121);
    std::vector<std::string> names;
    for (const auto& [n, b] : a->named_buffers()) names.push_back(n);
    BOOST_TEST(names == (std::vector<std::string>{"1.running_mean", "1.running_var", "1.num_batches_tracked"}),
               boost::test_tools::per_element());
    BOOST_TEST(a->parameters().size() == 6u);

    const std::string file = (dir / "bn.safetensors").string();
    save_weights(*a, file);
    // The header lists PyTorch's state_dict order: each module's parameters, then its buffers.
    std::ifstream in(file, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(len[i]) << (8 * i);
    std::string header(n, '\0');
    in.read(header.data(), std::streamsize(n));
    std::size_t last = 0;
    for (const char* key : {"\"0.weight\"", "\"0.bias\"", "\"1.weight\"", "\"1.bias\"", "\"1.running_mean\"",
                            "\"1.running_var\"", "\"1.num_batches_tracked\"", "\"3.weight\"", "\"3.bias\""}) {
        const std::size_t at = header.find(key);
        BOOST_TEST_CONTEXT(key)
        {
            BOOST_TEST(at != std::string::npos);
            BOOST_TEST(at > last);
        }
        last = at;
    }
    BOOST_TEST(header.find("\"1.num_batches_tracked\":{\"dtype\":\"F64\",\"shape\":[]") != std::string::npos);

    auto b = make(2);
    BOOST_TEST((b->buffer("1.running_mean") != a->buffer("1.running_mean")));
    load_weights(*b, file);
    for (const auto& [name, t] : a->named_buffers())
        BOOST_TEST((b->buffer(name) == *t), name);
    for (const auto& [name, p] : a->named_parameters())
        BOOST_TEST((b->parameter(name).value() == p->value()), name);
    a->eval();
    b->eval();
    const Tens x = rnd({2, 3}, 130);
    Tape<double> t;
    BOOST_TEST(((*a)(t.constant(x)).value() == (*b)(t.constant(x)).value()));

    // a file without the buffers does not load into a model with them, and the model is unchanged
    Sequential<double> no_bn;
    no_bn.emplace<Linear<double>>(3, 4, true, 3);
    const std::string old = (dir / "linear.safetensors").string();
    save_weights(no_bn, old);
    const Tens before = b->buffer("1.running_var");
    BOOST_CHECK_THROW(load_weights(*b, old), WeightFileError);
    BOOST_TEST((b->buffer("1.running_var") == before));
    Sequential<double> no_bn2;
    no_bn2.emplace<Linear<double>>(3, 4, true, 4);
    load_weights(no_bn2, old);  // a model without buffers reads its files as before
    BOOST_TEST((no_bn2.parameter("0.weight").value() == no_bn.parameter("0.weight").value()));
    fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(layer_errors_name_the_layer_and_the_shapes)
{
    const std::type_info& shape = typeid(ShapeError);
    const std::type_info& invalid = typeid(std::invalid_argument);
    BatchNorm2d<double> bn2(BatchNormOptions(3));
    BatchNorm1d<double> bn1(BatchNormOptions(3));
    LayerNorm<double> ln(LayerNormOptions({4, 5}));
    Tape<double> t;
    expect_error([&] { bn2(t.variable(rnd({2, 4, 5, 5}, 1))); }, shape,
                 "BatchNorm2d(3): input (2,4,5,5) has 4 channels (axis 1), the layer has 3");
    expect_error([&] { bn2(t.variable(rnd({2, 3, 5}, 1))); }, shape, "BatchNorm2d(3): expected input (N,3,H,W), got (2,3,5)");
    expect_error([&] { bn1(t.variable(rnd({2, 4}, 1))); }, shape,
                 "BatchNorm1d(3): input (2,4) has 4 channels (axis 1), the layer has 3");
    expect_error([&] { bn1(t.variable(rnd({2, 3, 1, 1}, 1))); }, shape,
                 "BatchNorm1d(3): expected input (N,3) or (N,3,L), got (2,3,1,1)");
    expect_error([&] { bn1(t.variable(rnd({1, 3}, 1))); }, invalid,
                 "batch_norm: expected more than 1 value per channel in training mode, got input (1,3)");
    BOOST_TEST((*bn1.num_batches_tracked())() == 0.0);  // a failed step counts nothing
    expect_error([&] { ln(t.variable(rnd({2, 5, 4}, 1))); }, shape,
                 "layer_norm: input (2,5,4) does not end with normalized_shape (4,5)");
    expect_error([] { BatchNorm2d<double>{BatchNormOptions(0)}; }, invalid,
                 "BatchNorm2d: num_features must be at least 1, got 0");
    expect_error([] { BatchNorm1d<double>{BatchNormOptions(2).momentum(1.5)}; }, invalid,
                 "BatchNorm1d(2): momentum must be in [0, 1], got 1.5");
    expect_error([] { BatchNorm1d<double>{BatchNormOptions(2).eps(-1)}; }, invalid,
                 "BatchNorm1d(2): eps must be finite and non-negative, got -1");
    expect_error([] { LayerNorm<double>{LayerNormOptions(std::vector<std::size_t>{})}; }, invalid, "LayerNorm: normalized_shape is empty");
    expect_error([&] { bn2.buffer("running_std"); }, typeid(std::out_of_range),
                 "Module::buffer: 'running_std' not found; the buffers are: running_mean, running_var, "
                 "num_batches_tracked");
}

BOOST_AUTO_TEST_CASE(pytorch_files_with_an_i64_counter_load)
{
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("xgrad_test_norm_i64_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // BatchNorm1d(2)'s state_dict as safetensors.torch.save_file writes it: num_batches_tracked is I64
    const std::string file = (dir / "torch_bn.safetensors").string();
    write_file(file, {{"weight", "F64", "[2]", raw(std::vector<double>{1.5, 2.5})},
                      {"bias", "F64", "[2]", raw(std::vector<double>{0.5, -0.5})},
                      {"running_mean", "F64", "[2]", raw(std::vector<double>{0.25, 0.75})},
                      {"running_var", "F64", "[2]", raw(std::vector<double>{1.25, 2.0})},
                      {"num_batches_tracked", "I64", "[]", raw(std::vector<std::int64_t>{7})}});
    BatchNorm1d<double> bn(BatchNormOptions(2));
    load_weights(bn, file);
    BOOST_TEST((bn.weight()->value() == Tens{1.5, 2.5}));
    BOOST_TEST((*bn.running_var() == Tens{1.25, 2.0}));
    BOOST_TEST((*bn.num_batches_tracked())() == 7.0);
    // into float: exact up to 2^24; one more is refused, naming the entry and the value
    const std::string counter = (dir / "counter.safetensors").string();
    Tensor<float> n(0.0f);
    write_file(counter, {{"n", "I64", "[]", raw(std::vector<std::int64_t>{16777216})}});
    load_tensors<float>(counter, {{"n", &n}});
    BOOST_TEST(n() == 16777216.0f);
    write_file(counter, {{"n", "I64", "[]", raw(std::vector<std::int64_t>{16777217})}});
    expect_error([&] { load_tensors<float>(counter, {{"n", &n}}); }, typeid(WeightFileError),
                 "load_tensors: '" + counter + "': does not match the module:\n  'n' holds the I64 value 16777217 at "
                 "element 0, not exact in F32");
    BOOST_TEST(n() == 16777216.0f);  // unchanged
    fs::remove_all(dir);
}

namespace {
/// A module that registers a buffer under a taken name.
struct Clash : Module<double> {
    explicit Clash(bool buffer_first)
    {
        if (buffer_first) {
            register_buffer("state", Tensor<double>(0.0));
            register_parameter("state", Tensor<double>(0.0));
        } else {
            register_buffer("b", Tensor<double>(0.0));
            register_buffer("b", Tensor<double>(0.0));
        }
    }
    V forward(const V& x) override { return x; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(buffer_names_are_unique)
{
    expect_error([] { Clash c(true); }, typeid(std::logic_error), "register_parameter: 'state' is already a buffer");
    expect_error([] { Clash c(false); }, typeid(std::logic_error), "register_buffer: duplicate buffer name 'b'");
}

BOOST_AUTO_TEST_CASE(checkpoints_hold_the_buffers)
{
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("xgrad_test_norm_ckpt_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string file = (dir / "ckpt.safetensors").string();
    BatchNorm1d<double> a(BatchNormOptions(3));
    SGD<double> opt_a(a.parameters(), SGDOptions(0.1));
    for (unsigned step = 0; step < 2; ++step) {
        Tape<double> t;
        t.backward(sum(square(a(t.variable(rnd({4, 3}, 140 + step))))));
        opt_a.step();
    }
    save_checkpoint(file, a, opt_a, {{"epoch", "2"}});
    BatchNorm1d<double> b(BatchNormOptions(3));
    SGD<double> opt_b(b.parameters(), SGDOptions(0.1));
    load_checkpoint(file, b, opt_b);
    BOOST_TEST((*b.running_mean() == *a.running_mean()));
    BOOST_TEST((*b.running_var() == *a.running_var()));
    BOOST_TEST((*b.num_batches_tracked())() == 2.0);
    BOOST_TEST((b.weight()->value() == a.weight()->value()));
    fs::remove_all(dir);
}

#ifdef XGRAD_COUNT_ALLOCATIONS
BOOST_AUTO_TEST_CASE(steady_state_steps_allocate_nothing)
{
    set_num_threads(1);
    BatchNorm2d<double> bn(BatchNormOptions(3));
    LayerNorm<double> ln(LayerNormOptions({3, 4, 4}));
    const Tens x = rnd({5, 3, 4, 4}, 150);
    Tape<double> t;
    std::vector<Parameter<double>*> params = bn.parameters();  // (Module::zero_grad builds this list each call)
    for (auto* p : ln.parameters()) params.push_back(p);
    auto step = [&] {
        for (auto* p : params) p->zero_grad();
        t.backward(sum(square(ln(bn(t.borrow(x))))));
        t.clear();
    };
    for (bool training : {true, false}) {
        bn.train(training);
        for (int i = 0; i < 3; ++i) step();
        const std::size_t before = alloc::allocations();
        alloc::count_allocations(true);
        for (int i = 0; i < 5; ++i) step();
        alloc::count_allocations(false);
        BOOST_TEST(alloc::allocations() - before == 0u, (training ? "train" : "eval") << " mode: "
                                                         << alloc::allocations() - before << " allocations in 5 steps");
    }
}
#endif

BOOST_AUTO_TEST_SUITE_END()

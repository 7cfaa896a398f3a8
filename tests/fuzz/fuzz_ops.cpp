// libFuzzer harness for the shape-heavy ops on Tape<double>: conv2d, max_pool2d, avg_pool2d,
// matmul, reshape, slice, concatenate, gather with shapes and parameters taken from the input
// (dimensions up to 6, parameters usually small but sometimes extreme). Each call must either throw
// a typed error (std::logic_error: ShapeError, invalid_argument, out_of_range) or return what a
// naive reference computes, with gradients that pass gradcheck (and, for small inputs, second
// derivatives that pass gradgradcheck). Anything else (a sanitizer report,
// another exception, a wrong value) stops the fuzzer.
// XGRAD_FUZZ_VERBOSE=1 prints each op call before it runs (to describe a crashing input).
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <optional>
#include <random>
#include <sstream>

#include "fuzz_util.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;
using xgrad::fuzz::fail;
using T = double;
using V = Var<T>;
using i128 = __int128;

namespace {

const bool verbose = std::getenv("XGRAD_FUZZ_VERBOSE") != nullptr;

class Gen {
public:
    Gen(const std::uint8_t* data, std::size_t size) : p_(data, size), rng_(p_.ConsumeIntegral<std::uint32_t>()) {}
    FuzzedDataProvider& p() { return p_; }
    std::size_t dim(std::size_t max = 5) { return p_.ConsumeIntegralInRange<std::size_t>(0, max); }
    bool coin(int percent_true = 50) { return p_.ConsumeIntegralInRange<int>(0, 99) < percent_true; }
    Shape shape(std::size_t rank, std::size_t max = 5)
    {
        Shape s(rank);
        for (auto& d : s) d = dim(max);
        return s;
    }
    /// Usually in [lo, hi]; one time in 16 anything, with the extremes likely.
    std::size_t uparam(std::size_t lo, std::size_t hi)
    {
        if (!coin(6)) return p_.ConsumeIntegralInRange<std::size_t>(lo, hi);
        static const std::size_t special[] = {0, 1, std::size_t(1) << 20, std::size_t(1) << 24, (std::size_t(1) << 24) + 1,
                                              std::size_t(1) << 31, std::size_t(1) << 32, std::size_t(1) << 62,
                                              std::size_t(-1) / 2, std::size_t(-1)};
        return coin() ? special[p_.ConsumeIntegralInRange<std::size_t>(0, std::size(special) - 1)]
                      : p_.ConsumeIntegral<std::size_t>();
    }
    std::ptrdiff_t sparam(std::ptrdiff_t lo, std::ptrdiff_t hi)
    {
        if (!coin(6)) return p_.ConsumeIntegralInRange<std::ptrdiff_t>(lo, hi);
        constexpr std::ptrdiff_t mx = std::numeric_limits<std::ptrdiff_t>::max(), mn = std::numeric_limits<std::ptrdiff_t>::min();
        static const std::ptrdiff_t special[] = {mn, mn + 1, -(std::ptrdiff_t(1) << 31), -1, 0, 1,
                                                 std::ptrdiff_t(1) << 31, std::ptrdiff_t(1) << 62, mx - 1, mx};
        return coin() ? special[p_.ConsumeIntegralInRange<std::size_t>(0, std::size(special) - 1)]
                      : p_.ConsumeIntegral<std::ptrdiff_t>();
    }
    int axis(int rank) { return coin(6) ? p_.ConsumeIntegral<int>() : p_.ConsumeIntegralInRange<int>(-rank - 1, rank); }
    /// Distinct values in (-1, 1): no ties, so max pooling is differentiable at every input.
    Tensor<T> values(const Shape& s)
    {
        Tensor<T> t = Tensor<T>::from_shape(s);
        std::vector<std::size_t> order(t.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), rng_);
        for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = (double(order[i]) + 0.5) / double(t.size()) * 1.8 - 0.9;
        return t;
    }

private:
    FuzzedDataProvider p_;
    std::mt19937_64 rng_;
};

std::size_t numel(const Shape& s)
{
    std::size_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

std::string str(const Shape& s) { return shape_str(s); }

/// Row-major flat offset of a multi-index.
std::size_t offset(const Shape& s, const std::vector<std::size_t>& idx)
{
    std::size_t o = 0;
    for (std::size_t i = 0; i < s.size(); ++i) o = o * s[i] + idx[i];
    return o;
}

/// Calls f for every multi-index of shape s.
template <class F>
void for_each_index(const Shape& s, F&& f)
{
    const std::size_t n = numel(s);
    std::vector<std::size_t> idx(s.size(), 0);
    for (std::size_t e = 0; e < n; ++e) {
        f(idx);
        for (std::size_t d = s.size(); d-- > 0;) {
            if (++idx[d] < s[d]) break;
            idx[d] = 0;
        }
    }
}

using Fn = std::function<V(const std::vector<V>&)>;

/// What the reference says a call gives: its shape and, unless too large to compute here, values.
struct Expected {
    Shape shape;
    std::optional<Tensor<T>> values;
    bool huge = false;  ///< needs more memory than the harness allows: std::bad_alloc is accepted
};

/// Prints the call with XGRAD_FUZZ_VERBOSE set, before anything runs (to describe a crashing input).
void note(const std::string& call)
{
    if (verbose) std::fprintf(stderr, "%s\n", call.c_str());
}

/// Runs the op. `expected`: the reference result, or nullopt when the reference says the call is
/// invalid (then the op must throw a typed error).
void run(const std::string& call, const Fn& f, const std::vector<Tensor<T>>& inputs, const std::optional<Expected>& expected)
{
    Tensor<T> out;
    {
        Tape<T> tape;
        std::vector<V> vars;
        for (const auto& x : inputs) vars.push_back(tape.variable(x));
        try {
            out = f(vars).value();
        } catch (const std::logic_error&) {
            return;  // ShapeError, std::invalid_argument, std::out_of_range: a typed refusal
        } catch (const std::bad_alloc&) {
            if (!expected || !expected->huge) throw;  // a small or invalid call must not allocate that much
            return;
        }
    }
    if (!expected) fail(call + ": accepted, but the reference says the call is invalid; output " + str(out.shape()));
    if (out.shape() != expected->shape)
        fail(call + ": output shape " + str(out.shape()) + ", reference " + str(expected->shape));
    if (!expected->values) return;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const double a = out.data()[i], b = expected->values->data()[i];
        if (!(std::abs(a - b) <= 1e-9 * (1 + std::abs(b))))
            fail(call + ": output element " + std::to_string(i) + " is " + std::to_string(a) + ", reference " +
                 std::to_string(b));
    }
    std::size_t n = 0;
    for (const auto& x : inputs) n += x.size();
    if (n == 0 || n > 64 || out.size() == 0) return;  // gradcheck costs 2n forward passes
    GradcheckOptions o;
    o.atol(1e-7).rtol(1e-5);
    const GradcheckReport r = gradcheck(f, inputs, o);
    if (!r.ok && !r.vacuous) fail(call + ": gradcheck failed\n" + r.summary());
    if (n > 24 || out.size() > 24) return;  // gradgradcheck: 2(n + outputs) first-order backward passes
    const GradcheckReport r2 = gradgradcheck(f, inputs, o);
    if (!r2.ok && !r2.vacuous) fail(call + ": gradgradcheck failed\n" + r2.summary());
}

/// True if a tensor of this shape is small enough for the reference to build (and its strides fit).
bool computable(const Shape& s)
{
    double n = 1;
    for (auto d : s) {
        if (d > 100000) return false;
        n *= double(d);
    }
    return n <= 100000;
}

void fuzz_conv(Gen& g)
{
    const std::size_t rank = g.coin(90) ? 4 : g.dim(5);
    Shape xs = g.shape(rank, 6);
    Shape ws = g.shape(g.coin(90) ? 4 : g.dim(5), 4);
    if (xs.size() == 4 && ws.size() == 4 && g.coin(85)) ws[1] = xs[1];
    const int bias_kind = g.p().ConsumeIntegralInRange<int>(0, 2);  // none, (O), random
    Shape bs = bias_kind == 1 && !ws.empty() ? Shape{ws[0]} : g.shape(g.dim(2), 4);
    Conv2dOptions opt;
    opt.stride(g.uparam(0, 3));
    opt.padding(g.uparam(0, 3));
    std::vector<Tensor<T>> in = {g.values(xs), g.values(ws)};
    if (bias_kind) in.push_back(g.values(bs));
    std::ostringstream call;
    call << "conv2d(x " << str(xs) << ", w " << str(ws) << (bias_kind ? ", b " + str(bs) : std::string())
         << ", stride " << opt.stride() << ", padding " << opt.padding() << ")";

    note(call.str());
    std::optional<Expected> ref;
    const bool bias_ok = !bias_kind || (bs.size() == 1 && ws.size() == 4 && bs[0] == ws[0]);
    if (xs.size() == 4 && ws.size() == 4 && xs[1] == ws[1] && opt.stride() >= 1 && ws[2] >= 1 && ws[3] >= 1 && bias_ok &&
        i128(xs[2]) + 2 * i128(opt.padding()) >= i128(ws[2]) && i128(xs[3]) + 2 * i128(opt.padding()) >= i128(ws[3])) {
        const i128 oh = (i128(xs[2]) + 2 * i128(opt.padding()) - ws[2]) / opt.stride() + 1;
        const i128 ow = (i128(xs[3]) + 2 * i128(opt.padding()) - ws[3]) / opt.stride() + 1;
        const i128 limit = i128(1) << 62;
        if (oh < limit && ow < limit) {  // else no size_t shape can hold the output: the op must refuse
            const Shape ys{xs[0], ws[0], std::size_t(oh), std::size_t(ow)};
            ref = Expected{ys, std::nullopt};
            // A valid call whose output or im2col buffer needs more than 2^24 doubles asks for that
            // memory: std::bad_alloc is then a fair answer (allocations above 256 MB fail here).
            ref->huge = double(oh) * double(ow) * double(xs[0]) *
                            std::max(double(ws[0]), double(ws[1]) * double(ws[2]) * double(ws[3])) >
                        double(1 << 24);
            if (computable(ys)) {
                Tensor<T> y = Tensor<T>::from_shape(ys);
                const Tensor<T>&x = in[0], &w = in[1];
                const i128 pad = opt.padding(), s = opt.stride();
                for_each_index(ys, [&](const std::vector<std::size_t>& i) {
                    double acc = bias_kind ? in[2].data()[i[1]] : 0.0;
                    for (std::size_t c = 0; c < xs[1]; ++c)
                        for (std::size_t p = 0; p < ws[2]; ++p)
                            for (std::size_t q = 0; q < ws[3]; ++q) {
                                const i128 r = i128(i[2]) * s - pad + p, cc = i128(i[3]) * s - pad + q;
                                if (r < 0 || cc < 0 || r >= i128(xs[2]) || cc >= i128(xs[3])) continue;
                                acc += w.data()[offset(ws, {i[1], c, p, q})] *
                                       x.data()[offset(xs, {i[0], c, std::size_t(r), std::size_t(cc)})];
                            }
                    y.data()[offset(ys, i)] = acc;
                });
                ref->values = std::move(y);
            }
        }
    }
    run(call.str(), [&](const std::vector<V>& v) { return bias_kind ? conv2d(v[0], v[1], v[2], opt) : conv2d(v[0], v[1], opt); },
        in, ref);
}

void fuzz_pool(Gen& g, bool max)
{
    const Shape xs = g.shape(g.coin(90) ? 4 : g.dim(5), 6);
    const std::size_t k = g.uparam(0, 4), stride = g.uparam(0, 3);
    std::vector<Tensor<T>> in = {g.values(xs)};
    std::ostringstream call;
    call << (max ? "max_pool2d" : "avg_pool2d") << "(x " << str(xs) << ", kernel " << k << ", stride " << stride << ")";
    note(call.str());
    std::optional<Expected> ref;
    if (xs.size() == 4 && k >= 1 && xs[2] >= k && xs[3] >= k) {
        const std::size_t s = stride ? stride : k;
        const Shape ys{xs[0], xs[1], (xs[2] - k) / s + 1, (xs[3] - k) / s + 1};
        Tensor<T> y = Tensor<T>::from_shape(ys);
        for_each_index(ys, [&](const std::vector<std::size_t>& i) {
            double acc = max ? -INFINITY : 0.0;
            for (std::size_t a = 0; a < k; ++a)
                for (std::size_t b = 0; b < k; ++b) {
                    const double v = in[0].data()[offset(xs, {i[0], i[1], i[2] * s + a, i[3] * s + b})];
                    acc = max ? std::max(acc, v) : acc + v;
                }
            y.data()[offset(ys, i)] = max ? acc : acc / double(k * k);
        });
        ref = Expected{ys, std::move(y)};
    }
    run(call.str(), [&](const std::vector<V>& v) { return max ? max_pool2d(v[0], k, stride) : avg_pool2d(v[0], k, stride); },
        in, ref);
}

void fuzz_matmul(Gen& g)
{
    const std::size_t ra = g.coin(90) ? g.p().ConsumeIntegralInRange<std::size_t>(2, 3) : g.dim(4);
    const std::size_t rb = g.coin(90) ? g.p().ConsumeIntegralInRange<std::size_t>(2, 3) : g.dim(4);
    Shape as = g.shape(ra), bs = g.shape(rb);
    if (ra >= 2 && rb >= 2 && g.coin(85)) bs[rb - 2] = as[ra - 1];  // inner dimensions agree
    if (ra == 3 && rb == 3 && g.coin(85)) bs[0] = as[0];           // batch agrees
    std::vector<Tensor<T>> in = {g.values(as), g.values(bs)};
    const std::string call = "matmul(a " + str(as) + ", b " + str(bs) + ")";
    note(call);
    std::optional<Expected> ref;
    // torch.matmul for rank >= 2: the leading (batch) axes broadcast, the inner dimensions agree
    bool ok = ra >= 2 && rb >= 2 && as[ra - 1] == bs[rb - 2];
    Shape batch;
    if (ok) {
        const std::size_t nd = std::max(ra, rb) - 2;
        batch.resize(nd);
        for (std::size_t i = 0; i < nd; ++i) {
            const std::size_t da = i + ra - 2 < nd ? 1 : as[i + ra - 2 - nd];
            const std::size_t db = i + rb - 2 < nd ? 1 : bs[i + rb - 2 - nd];
            ok = ok && (da == db || da == 1 || db == 1);
            batch[i] = da == 1 ? db : da;
        }
    }
    if (ok) {
        const std::size_t m = as[ra - 2], k = as[ra - 1], n = bs[rb - 1];
        Shape ys = batch;
        ys.push_back(m);
        ys.push_back(n);
        Tensor<T> y = Tensor<T>::from_shape(ys);
        // row-major offset of a batch index in an operand's own leading axes (size 1 reads index 0)
        const auto offset = [&](const Shape& s, std::size_t r, const std::vector<std::size_t>& bi) {
            std::size_t o = 0;
            for (std::size_t d = 0; d + 2 < r; ++d) o = o * s[d] + (s[d] == 1 ? 0 : bi[d + batch.size() - (r - 2)]);
            return o;
        };
        std::size_t p = 0;
        for_each_index(batch, [&](const std::vector<std::size_t>& bi) {
            const std::size_t oa = offset(as, ra, bi) * m * k, ob = offset(bs, rb, bi) * k * n;
            for (std::size_t i = 0; i < m; ++i)
                for (std::size_t j = 0; j < n; ++j) {
                    double acc = 0;  // an empty inner dimension gives zeros
                    for (std::size_t l = 0; l < k; ++l) acc += in[0].data()[oa + i * k + l] * in[1].data()[ob + l * n + j];
                    y.data()[(p * m + i) * n + j] = acc;
                }
            ++p;
        });
        ref = Expected{ys, std::move(y)};
    }
    run(call, [](const std::vector<V>& v) { return matmul(v[0], v[1]); }, in, ref);
}

void fuzz_reshape(Gen& g)
{
    const Shape xs = g.shape(g.dim(4), 4);
    const std::size_t total = numel(xs);
    std::vector<std::ptrdiff_t> target(g.dim(5));
    for (auto& d : target) {
        const int kind = g.p().ConsumeIntegralInRange<int>(0, 9);
        d = kind == 0 ? -1 : kind == 1 ? g.sparam(-3, 8) : std::ptrdiff_t(g.dim(4));
    }
    if (!target.empty() && g.coin(50)) {  // make the product right: the last entry takes the rest
        std::size_t rest = total, known = 1;
        for (std::size_t i = 0; i + 1 < target.size(); ++i)
            if (target[i] > 0) known *= std::size_t(target[i]);
        if (known && rest % known == 0) target.back() = std::ptrdiff_t(rest / known);
    }
    std::vector<Tensor<T>> in = {g.values(xs)};
    const std::string call = "reshape(x " + str(xs) + ", " + shape_str(target) + ")";
    note(call);
    std::optional<Expected> ref;
    // NumPy's rule: at most one −1, the others ≥ 0, and the element counts agree
    int infer = -1;
    bool ok = true;
    i128 known = 1;
    for (std::size_t i = 0; i < target.size(); ++i) {
        if (target[i] == -1) {
            ok = ok && infer < 0;
            infer = int(i);
        } else if (target[i] < 0) {
            ok = false;
        } else {
            known *= target[i];
            if (known > i128(1) << 64) known = i128(1) << 64;  // saturate: far above any element count here
        }
    }
    Shape ys(target.size());
    if (ok) {
        if (infer >= 0)  // next to a 0 dimension the −1 could be any size: refused, as NumPy does
            ok = known != 0 && (total == 0 || (known <= i128(total) && total % std::size_t(known) == 0));
        else
            ok = known == i128(total);
    }
    if (ok) {
        for (std::size_t i = 0; i < target.size(); ++i)
            ys[i] = int(i) == infer ? (total ? total / std::size_t(known) : 0) : std::size_t(target[i]);
        ref = Expected{ys, std::nullopt};
        if (computable(ys)) {
            Tensor<T> y = Tensor<T>::from_shape(ys);
            std::copy(in[0].data(), in[0].data() + total, y.data());
            ref->values = std::move(y);
        }
    }
    run(call, [&](const std::vector<V>& v) { return reshape(v[0], target); }, in, ref);
}

void fuzz_slice(Gen& g)
{
    const Shape xs = g.shape(g.dim(4), 6);
    const int axis = g.axis(int(xs.size()));
    const std::ptrdiff_t start = g.sparam(-7, 7), stop = g.sparam(-7, 7), step = g.sparam(-1, 4);
    std::vector<Tensor<T>> in = {g.values(xs)};
    const std::string call = "slice(x " + str(xs) + ", axis " + std::to_string(axis) + ", " + std::to_string(start) + ", " +
                             std::to_string(stop) + ", " + std::to_string(step) + ")";
    note(call);
    std::optional<Expected> ref;
    const int nd = int(xs.size());
    if (axis >= -nd && axis < nd) {
        const std::size_t ax = std::size_t(axis < 0 ? axis + nd : axis);
        const i128 n = xs[ax];
        i128 b = start, e = stop;
        if (b < 0) b += n;
        if (e < 0) e += n;
        if (step >= 1 && b >= 0 && e <= n && b <= e) {
            Shape ys = xs;
            ys[ax] = std::size_t((e - b + step - 1) / step);
            Tensor<T> y = Tensor<T>::from_shape(ys);
            for_each_index(ys, [&](const std::vector<std::size_t>& i) {
                std::vector<std::size_t> src = i;
                src[ax] = std::size_t(b + i128(i[ax]) * step);
                y.data()[offset(ys, i)] = in[0].data()[offset(xs, src)];
            });
            ref = Expected{ys, std::move(y)};
        }
    }
    run(call, [&](const std::vector<V>& v) { return slice(v[0], axis, start, stop, step); }, in, ref);
}

void fuzz_concatenate(Gen& g)
{
    const std::size_t rank = g.dim(4), k = g.p().ConsumeIntegralInRange<std::size_t>(0, 3);
    const Shape base = g.shape(rank, 4);
    const int axis = g.axis(int(rank));
    const int nd = int(rank);
    const bool axis_ok = axis >= -nd && axis < nd;
    const std::size_t ax = axis_ok ? std::size_t(axis < 0 ? axis + nd : axis) : 0;
    std::vector<Tensor<T>> in;
    std::vector<Shape> shapes;
    std::string call = "concatenate([";
    for (std::size_t i = 0; i < k; ++i) {
        Shape s = base;
        if (axis_ok) s[ax] = g.dim(3);
        if (g.coin(8)) s = g.shape(g.dim(4), 4);  // a misfit
        shapes.push_back(s);
        in.push_back(g.values(s));
        call += (i ? ", " : "") + str(s);
    }
    call += "], axis " + std::to_string(axis) + ")";
    note(call);
    std::optional<Expected> ref;
    // NumPy's rule: the first input fixes the rank and the axis; the others match it off the axis
    bool ok = k > 0;
    const Shape first = ok ? shapes[0] : Shape{};
    const int fd = int(first.size());
    ok = ok && axis >= -fd && axis < fd;
    const std::size_t fax = ok ? std::size_t(axis < 0 ? axis + fd : axis) : 0;
    for (std::size_t i = 0; ok && i < k; ++i) {
        ok = shapes[i].size() == first.size();
        for (std::size_t d = 0; ok && d < first.size(); ++d) ok = d == fax || shapes[i][d] == first[d];
    }
    if (ok) {
        Shape ys = first;
        ys[fax] = 0;
        for (const auto& s : shapes) ys[fax] += s[fax];
        Tensor<T> y = Tensor<T>::from_shape(ys);
        for_each_index(ys, [&](const std::vector<std::size_t>& i) {
            std::vector<std::size_t> src = i;
            std::size_t which = 0;
            while (src[fax] >= shapes[which][fax]) src[fax] -= shapes[which++][fax];
            y.data()[offset(ys, i)] = in[which].data()[offset(shapes[which], src)];
        });
        ref = Expected{ys, std::move(y)};
    }
    run(call, [&](const std::vector<V>& v) { return concatenate(v, axis); }, in, ref);
}

void fuzz_gather(Gen& g)
{
    const Shape xs = g.shape(g.dim(3), 4);
    const int nd = int(xs.size());
    const int axis = g.axis(nd);
    const bool axis_ok = axis >= -nd && axis < nd;
    const std::size_t ax = axis_ok ? std::size_t(axis < 0 ? axis + nd : axis) : 0;
    Shape is = xs;
    if (axis_ok) is[ax] = g.dim(4);
    if (g.coin(8)) is = g.shape(g.dim(3), 4);  // a misfit
    IndexTensor index = IndexTensor::from_shape(is);
    const std::size_t n = axis_ok ? xs[ax] : 0;
    for (auto& v : index)
        v = g.coin(95) && n ? Index(g.p().ConsumeIntegralInRange<std::size_t>(0, n - 1)) : Index(g.sparam(-2, 6));
    std::vector<Tensor<T>> in = {g.values(xs)};
    const std::string call = "gather(x " + str(xs) + ", axis " + std::to_string(axis) + ", index " + str(is) + ")";
    note(call);
    std::optional<Expected> ref;
    bool ok = axis_ok && is.size() == xs.size();
    for (std::size_t d = 0; ok && d < xs.size(); ++d) ok = d == ax || is[d] == xs[d];
    for (std::size_t e = 0; ok && e < index.size(); ++e) ok = index.data()[e] >= 0 && std::size_t(index.data()[e]) < n;
    if (ok) {
        Tensor<T> y = Tensor<T>::from_shape(is);
        for_each_index(is, [&](const std::vector<std::size_t>& i) {
            std::vector<std::size_t> src = i;
            src[ax] = std::size_t(index.data()[offset(is, i)]);
            y.data()[offset(is, i)] = in[0].data()[offset(xs, src)];
        });
        ref = Expected{is, std::move(y)};
    }
    run(call, [&](const std::vector<V>& v) { return gather(v[0], axis, index); }, in, ref);
}

void make_corpus(const std::string& dir)
{
    // Per op a few random byte strings. FuzzedDataProvider takes integers from the end: the last 4
    // bytes seed the values, the byte before them picks the op.
    std::mt19937 rng(42);
    for (int op = 0; op < 8; ++op)
        for (int k = 0; k < 3; ++k) {
            std::string bytes(4 + 1 + 60, '\0');
            for (auto& c : bytes) c = char(rng());
            bytes[bytes.size() - 5] = char(op);
            xgrad::fuzz::write_file(dir + "/op" + std::to_string(op) + "-" + std::to_string(k), bytes.data(), bytes.size());
        }
}

}  // namespace

/// A huge allocation fails with std::bad_alloc instead of stopping the fuzzer (see Expected::huge).
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1:max_allocation_size_mb=256"; }

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
{
    xgrad::fuzz::maybe_make_corpus(argc, argv, make_corpus);
    set_num_threads(1);  // one thread: reproducible runs and faster small ops
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    Gen g(data, size);
    switch (g.p().ConsumeIntegral<std::uint8_t>() % 8) {
        case 0: fuzz_conv(g); break;
        case 1: fuzz_pool(g, true); break;
        case 2: fuzz_pool(g, false); break;
        case 3: fuzz_matmul(g); break;
        case 4: fuzz_reshape(g); break;
        case 5: fuzz_slice(g); break;
        case 6: fuzz_concatenate(g); break;
        default: fuzz_gather(g); break;
    }
    return 0;
}

// unsqueeze, squeeze, expand, pad, stack, broadcasting matmul and embedding: values against hand
// loops, first and second derivatives against finite differences (gradcheck, gradgradcheck in
// float64) on shape lists with size-1 and broadcast axes, embedding's scatter-add against a
// hand-written loop, and the errors.
#define BOOST_TEST_MODULE ops_shape_extended
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <string>

#include "test_util.hpp"
#include "xgrad/autodiff.hpp"

using namespace xgrad;
using xgrad::test::check_both;
using xgrad::test::expect_check;
using xgrad::test::rnd;
using V = Var<double>;
using Vs = std::vector<V>;
using Tens = Tensor<double>;

namespace {

/// Row-major offset of a multi-index of `shape` in which axes of size 1 read index 0 (broadcast),
/// `idx` aligned to the trailing axes.
std::size_t broadcast_offset(const Shape& shape, const std::vector<std::size_t>& idx)
{
    std::size_t off = 0;
    const std::size_t lead = idx.size() - shape.size();
    for (std::size_t d = 0; d < shape.size(); ++d) off = off * shape[d] + (shape[d] == 1 ? 0 : idx[lead + d]);
    return off;
}

/// Multi-index of flat position `flat` in `shape`.
std::vector<std::size_t> unravel(std::size_t flat, const Shape& shape)
{
    std::vector<std::size_t> idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    return idx;
}

/// torch.matmul for rank >= 2 operands, by loops: batch axes broadcast, then Σ_l A[i,l]·B[l,j].
Tens matmul_loops(const Tens& a, const Tens& b)
{
    const std::size_t ra = a.dimension(), rb = b.dimension(), n = a.shape()[ra - 2], k = a.shape()[ra - 1],
                      m = b.shape()[rb - 1];
    const Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    const std::size_t nd = std::max(ab.size(), bb.size());
    Shape batch(nd);
    for (std::size_t i = 0; i < nd; ++i) {
        const std::size_t da = i < nd - ab.size() ? 1 : ab[i - (nd - ab.size())];
        const std::size_t db = i < nd - bb.size() ? 1 : bb[i - (nd - bb.size())];
        batch[i] = std::max(da, db);
    }
    Shape ys = batch;
    ys.push_back(n);
    ys.push_back(m);
    Tens y = Tens::from_shape(ys);
    for (std::size_t p = 0; p < shape_size(batch); ++p) {
        const std::vector<std::size_t> bi = unravel(p, batch);
        const std::size_t oa = broadcast_offset(ab, bi) * n * k, ob = broadcast_offset(bb, bi) * k * m;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < m; ++j) {
                double s = 0;
                for (std::size_t l = 0; l < k; ++l) s += a.data()[oa + i * k + l] * b.data()[ob + l * m + j];
                y.data()[(p * n + i) * m + j] = s;
            }
    }
    return y;
}

double max_abs_diff(const Tens& a, const Tens& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    double e = 0;
    for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(a.data()[i] - b.data()[i]));
    return e;
}

using xgrad::test::expect_message;

}  // namespace

BOOST_AUTO_TEST_SUITE(values)

BOOST_AUTO_TEST_CASE(unsqueeze_and_squeeze_insert_and_drop_one_axis)
{
    Tape<double> t;
    const Tens x = rnd({2, 3}, 1);
    const V v = t.constant(x);
    const std::vector<std::pair<int, Shape>> cases = {{0, {1, 2, 3}}, {1, {2, 1, 3}}, {2, {2, 3, 1}},
                                                      {-1, {2, 3, 1}}, {-2, {2, 1, 3}}, {-3, {1, 2, 3}}};
    for (const auto& [dim, shape] : cases) {
        BOOST_TEST_CONTEXT("dim " << dim)
        {
            const V u = unsqueeze(v, dim);
            BOOST_TEST((u.shape() == shape));
            BOOST_TEST(std::equal(x.begin(), x.end(), u.value().begin()));
            const V s = squeeze(u, dim);
            BOOST_TEST((s.shape() == x.shape()));
            BOOST_TEST(s.value() == x);
        }
    }
    // a 0-d value becomes (1) and back
    const V scalar = t.constant(Tens(2.5));
    BOOST_TEST((unsqueeze(scalar, 0).shape() == Shape{1}));
    BOOST_TEST((squeeze(unsqueeze(scalar, -1), 0).shape() == Shape{}));
    BOOST_TEST(squeeze(unsqueeze(scalar, 0), 0).value()() == 2.5);
}

BOOST_AUTO_TEST_CASE(expand_repeats_size_one_axes_and_adds_leading_ones)
{
    Tape<double> t;
    const Tens x = rnd({3, 1}, 2);
    const Tens y = expand(t.constant(x), {2, 3, 4}).value();
    BOOST_TEST((y.shape() == (Shape{2, 3, 4})));
    double err = 0;
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 4; ++k) err = std::max(err, std::abs(y(i, j, k) - x(j, 0)));
    BOOST_TEST(err == 0.0);
    // -1 keeps a size; an axis already of the asked size stays
    const Tens z = expand(t.constant(x), {-1, 5}).value();
    BOOST_TEST((z.shape() == (Shape{3, 5})));
    for (std::size_t j = 0; j < 3; ++j)
        for (std::size_t k = 0; k < 5; ++k) BOOST_TEST(z(j, k) == x(j, 0));
    BOOST_TEST(expand(t.constant(x), {3, 1}).value() == x);
    const Tens s = expand(t.constant(Tens(-1.5)), {2, 2}).value();
    BOOST_TEST(s == (Tens{{-1.5, -1.5}, {-1.5, -1.5}}));
    // dX = G summed over the repeated axes
    auto w = t.variable(x);
    const Tens g = rnd({2, 3, 4}, 3);
    t.backward(sum(expand(w, {2, 3, 4}) * t.constant(g)));
    for (std::size_t j = 0; j < 3; ++j) {
        double s_j = 0;
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t k = 0; k < 4; ++k) s_j += g(i, j, k);
        BOOST_TEST(std::abs(w.grad()(j, 0) - s_j) < 1e-14);
    }
}

BOOST_AUTO_TEST_CASE(pad_follows_torch_pad_pairs_from_the_last_axis)
{
    Tape<double> t;
    const Tens x = rnd({2, 3}, 4);
    // {last left, last right, first left, first right}, and a crop (negative pads)
    const std::vector<std::vector<std::ptrdiff_t>> cases = {{1, 2}, {1, 0, 2, 1}, {0, 0, 0, 0}, {-1, 1, 1, -1}, {-3, 0}};
    for (const auto& p : cases) {
        BOOST_TEST_CONTEXT("pads " << shape_str(p))
        {
            const std::ptrdiff_t l1 = p[0], r1 = p[1], l0 = p.size() > 2 ? p[2] : 0, r0 = p.size() > 2 ? p[3] : 0;
            const Tens y = pad(t.constant(x), p, 7.0).value();
            BOOST_TEST((y.shape() == (Shape{std::size_t(2 + l0 + r0), std::size_t(3 + l1 + r1)})));
            for (std::size_t i = 0; i < y.shape()[0]; ++i)
                for (std::size_t j = 0; j < y.shape()[1]; ++j) {
                    const std::ptrdiff_t si = std::ptrdiff_t(i) - l0, sj = std::ptrdiff_t(j) - l1;
                    const bool inside = si >= 0 && si < 2 && sj >= 0 && sj < 3;
                    BOOST_TEST(y(i, j) == (inside ? x(std::size_t(si), std::size_t(sj)) : 7.0));
                }
        }
    }
    BOOST_TEST(pad(t.constant(Tens{1.0, 2.0}), {1, 1}).value() == (Tens{0.0, 1.0, 2.0, 0.0}));  // value 0
    // dX = G at X's positions; a cropped element gets nothing
    auto w = t.variable(x);
    const Tens g = rnd({2, 3}, 5);
    t.backward(sum(pad(w, {-1, 1}) * t.constant(g)));  // Y[i, j] = X[i, j + 1], Y[i, 2] = 0
    for (std::size_t i = 0; i < 2; ++i) {
        BOOST_TEST(w.grad()(i, 0) == 0.0);
        BOOST_TEST(w.grad()(i, 1) == g(i, 0));
        BOOST_TEST(w.grad()(i, 2) == g(i, 1));
    }
}

BOOST_AUTO_TEST_CASE(stack_joins_along_a_new_axis)
{
    Tape<double> t;
    const Tens a = rnd({2, 3}, 6), b = rnd({2, 3}, 7), c = rnd({2, 3}, 8);
    const std::vector<const Tens*> xs = {&a, &b, &c};
    for (int axis : {0, 1, 2, -1, -3}) {
        BOOST_TEST_CONTEXT("axis " << axis)
        {
            const Tens y = stack({t.constant(a), t.constant(b), t.constant(c)}, axis).value();
            const std::size_t ax = std::size_t(axis < 0 ? axis + 3 : axis);
            const Shape s = ax == 0 ? Shape{3, 2, 3} : ax == 1 ? Shape{2, 3, 3} : Shape{2, 3, 3};
            BOOST_TEST((y.shape() == s));
            for (std::size_t k = 0; k < 3; ++k)
                for (std::size_t i = 0; i < 2; ++i)
                    for (std::size_t j = 0; j < 3; ++j) {
                        const double v = ax == 0 ? y(k, i, j) : ax == 1 ? y(i, k, j) : y(i, j, k);
                        BOOST_TEST(v == (*xs[k])(i, j));
                    }
        }
    }
    // dXₖ = G[k] along the new axis; an input given twice gets both slices
    auto w = t.variable(a);
    const Tens g = rnd({2, 3, 2}, 9);
    t.backward(sum(stack({w, w}, -1) * t.constant(g)));
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j) BOOST_TEST(w.grad()(i, j) == g(i, j, 0) + g(i, j, 1));
}

BOOST_AUTO_TEST_CASE(matmul_broadcasts_leading_axes_as_torch_matmul)
{
    const std::vector<std::pair<Shape, Shape>> cases = {
        {{2, 2, 3, 4}, {2, 2, 4, 5}},  // (B,H,n,k)·(B,H,k,m)
        {{1, 3, 4}, {2, 4, 5}},        // (1,n,k)·(B,k,m)
        {{2, 3, 4}, {1, 4, 5}},
        {{2, 1, 3, 4}, {3, 4, 5}},     // (B,1,n,k)·(H,k,m)
        {{3, 4}, {2, 4, 5}},           // a shared left operand
        {{2, 3, 3, 4}, {4, 5}},        // a shared right operand, two batch axes
        {{1, 1, 3, 4}, {2, 1, 4, 2}},
        {{2, 3, 4}, {2, 4, 5}},        // the fast paths, unchanged
        {{2, 3, 4}, {4, 5}},
        {{3, 4}, {4, 5}}};
    Tape<double> t;
    unsigned seed = 20;
    for (const auto& [sa, sb] : cases) {
        BOOST_TEST_CONTEXT(shape_str(sa) << " x " << shape_str(sb))
        {
            const Tens a = rnd(sa, seed++), b = rnd(sb, seed++);
            const Tens y = matmul(t.constant(a), t.constant(b)).value();
            const Tens r = matmul_loops(a, b);
            BOOST_TEST((y.shape() == r.shape()));
            BOOST_TEST(max_abs_diff(y, r) < 1e-14);
        }
    }
    // dA of a broadcast A sums over the batch: (1,n,k)·(B,k,m), dA = Σ_b G_b·B_bᵀ
    const Tens a = rnd({1, 2, 3}, 40), b = rnd({4, 3, 2}, 41), g = rnd({4, 2, 2}, 42);
    auto va = t.variable(a);
    t.backward(sum(matmul(va, t.constant(b)) * t.constant(g)));
    double err = 0;
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t l = 0; l < 3; ++l) {
            double s = 0;
            for (std::size_t p = 0; p < 4; ++p)
                for (std::size_t j = 0; j < 2; ++j) s += g(p, i, j) * b(p, l, j);
            err = std::max(err, std::abs(va.grad()(0, i, l) - s));
        }
    BOOST_TEST(err < 1e-14);
}

BOOST_AUTO_TEST_CASE(embedding_reads_rows_and_scatter_adds_into_the_used_rows)
{
    const Tens w = rnd({5, 3}, 50);
    const IndexTensor idx = {{0, 2, 2, 4}, {2, 0, 4, 4}};  // rows 1 and 3 unused, 2 and 4 repeated
    const Tens g = rnd({2, 4, 3}, 51);
    for (const std::optional<std::int64_t> padding : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{2},
                                                      std::optional<std::int64_t>{-1}}) {
        BOOST_TEST_CONTEXT("padding_idx " << (padding ? std::to_string(*padding) : "none"))
        {
            Tape<double> t;
            auto vw = t.variable(w);
            const V y = embedding(vw, idx, padding);
            BOOST_TEST((y.shape() == (Shape{2, 4, 3})));
            for (std::size_t i = 0; i < 2; ++i)
                for (std::size_t j = 0; j < 4; ++j)
                    for (std::size_t d = 0; d < 3; ++d) BOOST_TEST(y.value()(i, j, d) == w(std::size_t(idx(i, j)), d));
            t.backward(sum(y * t.constant(g)));
            // the hand-written scatter-add
            const std::int64_t skip = !padding ? -1 : *padding < 0 ? *padding + 5 : *padding;
            Tens expect = xt::zeros<double>({5, 3});
            for (std::size_t i = 0; i < 2; ++i)
                for (std::size_t j = 0; j < 4; ++j)
                    if (idx(i, j) != skip)
                        for (std::size_t d = 0; d < 3; ++d) expect(std::size_t(idx(i, j)), d) += g(i, j, d);
            for (std::size_t r = 0; r < 5; ++r)
                for (std::size_t d = 0; d < 3; ++d)
                    BOOST_TEST(std::abs(vw.grad()(r, d) - expect(r, d)) <= 1e-12 * std::max(1.0, std::abs(expect(r, d))));
            for (std::size_t d = 0; d < 3; ++d) {
                BOOST_TEST(vw.grad()(1, d) == 0.0);  // never used
                BOOST_TEST(vw.grad()(3, d) == 0.0);
                if (skip >= 0) BOOST_TEST(vw.grad()(std::size_t(skip), d) == 0.0);
            }
        }
    }
    // a weight also used by another op accumulates both gradients; a 0-d index gives one row
    Tape<double> t;
    auto vw = t.variable(w);
    const V row = embedding(vw, IndexTensor(Index(3)));
    BOOST_TEST((row.shape() == Shape{3}));
    t.backward(sum(row) + sum(vw));
    for (std::size_t r = 0; r < 5; ++r)
        for (std::size_t d = 0; d < 3; ++d) BOOST_TEST(vw.grad()(r, d) == (r == 3 ? 2.0 : 1.0));
}

BOOST_AUTO_TEST_CASE(ops_run_in_float)
{
    Tape<float> t;
    const Tensor<float> x = {{1.f, 2.f}, {3.f, 4.f}};
    auto w = t.variable(x);
    // (1,2,2) expanded to (3,2,2) times (2,2) padded to (2,3): Y[b] = X·[X | 0]
    const auto y = matmul(expand(unsqueeze(w, 0), {3, 2, 2}), pad(w, {0, 1}, 0.f));
    BOOST_TEST((y.shape() == (Shape{3, 2, 3})));
    BOOST_TEST(y.value()(2, 1, 0) == 3.f * 1.f + 4.f * 3.f);
    BOOST_TEST(y.value()(2, 1, 2) == 0.f);
    BOOST_TEST(stack({w, w}, 0).value()(1, 1, 0) == 3.f);
    const auto e = embedding(w, IndexTensor{1, 1, 0}, std::int64_t(0));
    t.backward(sum(squeeze(unsqueeze(e, 1), 1)));
    BOOST_TEST(w.grad() == (Tensor<float>{{0.f, 0.f}, {2.f, 2.f}}));  // two lookups of row 1; row 0 is padding
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(derivatives)

BOOST_AUTO_TEST_CASE(unsqueeze_squeeze_first_and_second_order)
{
    unsigned seed = 60;
    for (const Shape& s : xgrad::test::unary_shapes) {
        const int nd = static_cast<int>(s.size());
        for (int dim : {0, -1, nd}) {
            BOOST_TEST_CONTEXT(shape_str(s) << " dim " << dim)
            {
                check_both([dim](const Vs& v) { return square(unsqueeze(v[0], dim)); }, {rnd(s, seed++)});
                check_both([dim](const Vs& v) { return square(squeeze(unsqueeze(v[0], dim), dim)); }, {rnd(s, seed++)});
            }
        }
    }
    // an existing size-1 axis
    check_both([](const Vs& v) { return square(squeeze(v[0], 1)); }, {rnd({2, 1, 3}, 70)});
    check_both([](const Vs& v) { return square(squeeze(v[0], -1)); }, {rnd({1}, 71)});
}

BOOST_AUTO_TEST_CASE(expand_first_and_second_order)
{
    const std::vector<std::pair<Shape, std::vector<std::ptrdiff_t>>> cases = {
        {{3, 1}, {2, 3, 4}}, {{1}, {5}}, {{}, {2, 3}}, {{2, 1, 3}, {2, 4, 3}}, {{4}, {2, -1}}, {{1, 1}, {3, 1, 2}},
        {{2, 3}, {2, 3}}};
    unsigned seed = 80;
    for (const auto& [s, to] : cases) {
        BOOST_TEST_CONTEXT(shape_str(s) << " to " << shape_str(to))
        {
            Tape<double> shapes;
            const Tens c = rnd(expand(shapes.constant(rnd(s, 1)), to).shape(), seed++);  // Y's shape
            check_both([&, to = to](const Vs& v) { return square(expand(v[0], to)) * v[0].tape().constant(c); },
                       {rnd(s, seed++)});
        }
    }
}

BOOST_AUTO_TEST_CASE(pad_first_and_second_order)
{
    const std::vector<std::pair<Shape, std::vector<std::ptrdiff_t>>> cases = {
        {{5}, {1, 2}}, {{2, 3}, {0, 1, 2, 0}}, {{2, 1, 3}, {1, 1, 0, 2, 1, 0}}, {{2, 3}, {-1, 1, 1, -1}},
        {{}, {}}, {{1}, {0, 0}}, {{2, 3}, {-2, 1}}};
    unsigned seed = 100;
    for (const auto& [s, p] : cases) {
        BOOST_TEST_CONTEXT(shape_str(s) << " pads " << shape_str(p))
        {
            check_both([p = p](const Vs& v) { return square(pad(v[0], p, 0.5)); }, {rnd(s, seed++)});
        }
    }
}

BOOST_AUTO_TEST_CASE(stack_first_and_second_order)
{
    unsigned seed = 120;
    for (const Shape& s : xgrad::test::unary_shapes)
        for (int axis : {0, -1}) {
            BOOST_TEST_CONTEXT(shape_str(s) << " axis " << axis)
            {
                check_both([axis](const Vs& v) { return square(stack({v[0], v[1], v[0]}, axis)); },
                           {rnd(s, seed), rnd(s, seed + 1)});
                seed += 2;
            }
        }
    check_both([](const Vs& v) { return square(stack({v[0], v[1]}, 1)); }, {rnd({2, 1, 3}, 130), rnd({2, 1, 3}, 131)});
}

BOOST_AUTO_TEST_CASE(matmul_broadcast_first_and_second_order)
{
    const std::vector<std::pair<Shape, Shape>> cases = {
        {{2, 2, 3, 2}, {2, 2, 2, 3}}, {{1, 3, 4}, {2, 4, 2}}, {{2, 3, 4}, {1, 4, 2}}, {{2, 1, 3, 2}, {3, 2, 2}},
        {{3, 4}, {2, 4, 2}},          {{2, 2, 3, 2}, {2, 3}}, {{1, 1, 2, 3}, {2, 1, 3, 1}}, {{2, 3, 4}, {2, 4, 2}}};
    unsigned seed = 140;
    for (const auto& [sa, sb] : cases) {
        BOOST_TEST_CONTEXT(shape_str(sa) << " x " << shape_str(sb))
        {
            check_both([](const Vs& v) { return matmul(v[0], v[1]); }, {rnd(sa, seed), rnd(sb, seed + 1)});
            check_both([](const Vs& v) { return square(matmul(v[0], v[1])); }, {rnd(sa, seed + 2), rnd(sb, seed + 3)});
            seed += 4;
        }
    }
    // one operand used on both sides: (2,3,3)·(1,3,3) of the same values' first batch
    check_both([](const Vs& v) { return matmul(v[0], slice(v[0], 0, 0, 1)); }, {rnd({2, 3, 3}, 160)});
}

BOOST_AUTO_TEST_CASE(embedding_first_and_second_order)
{
    const std::vector<std::pair<IndexTensor, std::optional<std::int64_t>>> cases = {
        {IndexTensor{0, 3, 3, 1}, std::nullopt},
        {IndexTensor{{2, 0, 2}, {3, 3, 0}}, std::nullopt},
        {IndexTensor{{2, 0, 2}, {3, 3, 0}}, std::int64_t(3)},
        {[] { IndexTensor i = IndexTensor::from_shape({1, 1, 1}); i.fill(1); return i; }(),
         std::int64_t(-4)},  // (1,1,1); row 0 is padding, row 1 read
        {IndexTensor(Index(2)), std::int64_t(0)}};  // 0-d: one row
    unsigned seed = 170;
    for (const auto& cs : cases) {
        const IndexTensor& idx = cs.first;
        const std::optional<std::int64_t> padding = cs.second;
        BOOST_TEST_CONTEXT("indices " << shape_str(idx.shape()))
        {
            // padding_idx's row gets no gradient (as PyTorch), which finite differences do not see
            // unless the lookups of that row are masked out of f: then both are 0 there
            Shape ys(idx.shape().begin(), idx.shape().end());
            ys.push_back(2);
            Tens keep = xt::ones<double>(ys);
            for (std::size_t e = 0; e < idx.size(); ++e)
                if (padding && (idx.data()[e] == *padding || idx.data()[e] == *padding + 4))
                    keep.data()[2 * e] = keep.data()[2 * e + 1] = 0;
            check_both([&](const Vs& v) { return square(embedding(v[0], idx, padding)) * v[0].tape().constant(keep); },
                       {rnd({4, 2}, seed++)});
            check_both([&](const Vs& v) { return embedding(v[0], idx) * embedding(v[0], idx); },
                       {rnd({4, 1}, seed++)});
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(bad_shapes_and_arguments_name_the_op)
{
    Tape<double> t;
    const auto c = [&](const Shape& s) { return t.constant(Tens::from_shape(s)); };
    const V a23 = c({2, 3}), a234 = c({2, 3, 4});
    expect_message<ShapeError>([&] { unsqueeze(a23, 3); }, "unsqueeze: dim 3 is out of range for shape (2,3) (expects [-3, 2])");
    expect_message<ShapeError>([&] { unsqueeze(a23, -4); }, "unsqueeze: dim -4 is out of range for shape (2,3) (expects [-3, 2])");
    expect_message<ShapeError>([&] { squeeze(a23, 1); }, "squeeze: axis 1 of shape (2,3) has size 3, not 1");
    expect_message<ShapeError>([&] { squeeze(a23, 2); }, "squeeze: axis 2 is out of range for shape (2,3)");
    expect_message<ShapeError>([&] { expand(a23, {2, 4}); },
                               "expand: (2,3) to (2,4): axis 1 has size 3: only a size-1 axis expands (to 4)");
    expect_message<ShapeError>([&] { expand(a23, {3}); },
                               "expand: (2,3) to (3): the new shape has 1 dimensions, fewer than the input's 2");
    expect_message<ShapeError>([&] { expand(a23, {-1, 2, 3}); },
                               "expand: (2,3) to (-1,2,3): size -1 for the new leading axis 0 (-1 only keeps an existing size)");
    expect_message<ShapeError>([&] { expand(c({1, 3}), {-2, 3}); }, "expand: (1,3) to (-2,3): negative size -2 at axis 0");
    expect_message<std::invalid_argument>([&] { pad(a23, {1, 2, 3}); },
                                          "pad: pads (1,2,3) must be (left, right) pairs, got 3 entries");
    expect_message<ShapeError>([&] { pad(a23, {1, 1, 1, 1, 1, 1}); }, "pad: pads (1,1,1,1,1,1) name 3 axes, input (2,3) has 2");
    expect_message<ShapeError>([&] { pad(a23, {-2, -2}); }, "pad: pads (-2,-2) on (2,3) leave axis 1 a negative size -1");
    expect_message<ShapeError>([&] { stack({a23, a234}); },
                               "stack: (2,3) and (2,3,4) (input 1) differ: stacked inputs need one shape");
    expect_message<ShapeError>([&] { stack({a23, a23}, 3); },
                               "stack: axis 3 is out of range for inputs of shape (2,3) (expects [-3, 2])");
    expect_message<ShapeError>([&] { stack(std::vector<V>{}); }, "stack: no inputs");
    expect_message<ShapeError>([&] { matmul(c({2, 2, 3, 4}), c({3, 4, 5})); },
                               "matmul: (2,2,3,4) x (3,4,5): batch dimensions (2,2) and (3) do not broadcast");
    expect_message<ShapeError>([&] { matmul(c({2, 1, 3, 4}), c({3, 5, 5})); },
                               "matmul: (2,1,3,4) x (3,5,5): inner dimensions 4 and 5 differ");
    expect_message<ShapeError>([&] { matmul(c({2, 3, 4}), c({3, 4, 5})); },
                               "matmul: (2,3,4) x (3,4,5): batch dimensions 2 and 3 differ");
    expect_message<ShapeError>([&] { matmul(c({3}), c({3, 2})); }, "matmul: (3) x (3,2): operands need rank 2 or more");
    // a failed op leaves no node behind
    const std::size_t before = t.size();
    BOOST_CHECK_THROW(matmul(c({2, 2, 3, 4}), c({3, 4, 5})), ShapeError);
    BOOST_TEST(t.size() == before + 2);  // the two constants
}

BOOST_AUTO_TEST_CASE(embedding_errors_name_the_index_and_num_embeddings)
{
    Tape<double> t;
    const V w = t.variable(Tens::from_shape({5, 3}));
    expect_message<std::out_of_range>([&] { embedding(w, IndexTensor{0, 5}); },
                                      "embedding: index 5 at flat position 1 is outside [0,5) (num_embeddings 5)");
    expect_message<std::out_of_range>([&] { embedding(w, IndexTensor{{-1, 0}}); },
                                      "embedding: index -1 at flat position 0 is outside [0,5) (num_embeddings 5)");
    expect_message<std::out_of_range>([&] { embedding(w, IndexTensor{0}, std::int64_t(5)); },
                                      "embedding: padding_idx 5 is outside [-5,5) for num_embeddings 5");
    expect_message<ShapeError>([&] { embedding(t.variable(Tens::from_shape({5})), IndexTensor{0}); },
                               "embedding: weight (5) and indices (1): the weight must be (num_embeddings, dim)");
}

BOOST_AUTO_TEST_SUITE_END()

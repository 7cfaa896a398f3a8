// Matrix products through BLAS, with transpose flags instead of materialized transposes.
#include "xgrad/ops/linalg.hpp"

#include <fmt/format.h>

#include <limits>

#include "kernels/gemm.hpp"
#include "../op_util.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad {

namespace {

enum class MatmulKind { plain, batched, shared_b };

struct MatmulDims {
    MatmulKind kind;
    std::size_t batch, m, k, n;
};

MatmulDims matmul_dims(const char* op, const Shape& a, const Shape& b)
{
    auto fail = [&](const std::string& why) {
        return ShapeError(fmt::format("{}: {} x {}: {}", op, shape_str(a), shape_str(b), why));
    };
    auto differ = [&](const char* what, std::size_t da, std::size_t db) {
        return fail(fmt::format("{} dimensions {} and {} differ", what, da, db));
    };
    MatmulDims d;
    if (a.size() == 2 && b.size() == 2) {
        if (a[1] != b[0])
            throw differ("inner", a[1], b[0]);
        d = {MatmulKind::plain, 1, a[0], a[1], b[1]};
    } else if (a.size() == 3 && b.size() == 3) {
        if (a[0] != b[0])
            throw differ("batch", a[0], b[0]);
        if (a[2] != b[1])
            throw differ("inner", a[2], b[1]);
        d = {MatmulKind::batched, a[0], a[1], a[2], b[2]};
    } else if (a.size() == 3 && b.size() == 2) {
        if (a[2] != b[0])
            throw differ("inner", a[2], b[0]);
        d = {MatmulKind::shared_b, a[0], a[1], a[2], b[1]};
    } else {
        throw fail("operands need rank 2 or more");
    }
    // The GEMMs take m, n, k and (unless batched) batch·m as BLAS ints, and the output must fit
    // size_t. With k = 0 the operands are empty, so such shapes cost nothing to make: check them
    // here, before the node exists.
    constexpr std::size_t int_max = std::size_t(std::numeric_limits<int>::max());
    std::size_t rows = d.m, out = 0;
    const bool rows_fit = d.kind == MatmulKind::batched || !__builtin_mul_overflow(d.batch, d.m, &rows);
    if (!rows_fit || rows > int_max || d.n > int_max || d.k > int_max)
        throw fail("a matrix dimension exceeds the BLAS limit of 2^31 - 1");
    if (d.m && d.n && !checked_shape_size(Shape{d.batch, d.m, d.n}, out))
        throw fail("the result has more elements than size_t can count");
    return d;
}

/// The one GEMM op behind matmul, matmul_t and every recorded matmul/linear VJP: C = α·op(A)·op(B),
/// op(M) = Mᵀ when its flag is set, either
///   flat:    one GEMM on each operand's 2-D view (rows = all leading axes, cols = last axis), C of
///            `out_shape` (whose 2-D view is the product): A (m,k)·B (k,n); A (b,m,k)·B (k,n), B shared;
///            and, transposed, A (b,m,k)ᵀ·G (b,m,n) → (k,n), which sums Σᵢ Aᵢᵀ·Gᵢ over the batch;
///   batched: A, B, C rank 3 with one batch axis, one GEMM per batch element.
/// VJPs, both of the same form (so the set is closed to any order):
///   dA = α·G·op(B)ᵀ   (A not transposed)     dA = α·op(B)·Gᵀ   (A transposed)
///   dB = α·op(A)ᵀ·G   (B not transposed)     dB = α·Gᵀ·op(A)   (B transposed)
/// The tensor VJP is two BLAS calls writing into the gradient buffers (beta = 1 to accumulate).
struct Gemm {
    bool batched, ta, tb;
    std::size_t batch, m, k, n;  // per GEMM: op(A) (m,k), op(B) (k,n), C (m,n); flat: batch = 1
    double alpha = 1;
    std::size_t lda() const { return ta ? m : k; }
    std::size_t ldb() const { return tb ? k : n; }
};

template <class T>
Var<T> gemm_op(const char* name, const Var<T>& a, const Var<T>& b, bool ta, bool tb, bool batched,
               const Shape& out_shape, double alpha = 1);

/// Computes C into op's output and records the VJP; d and out_shape are checked by the caller.
template <class T>
Var<T> gemm_finish(OpBuilder<T>& op, const Tensor<T>& av, const Tensor<T>& bv, const Gemm d, const Shape& out_shape)
{
    Tensor<T>& out = op.value();
    out.resize(out_shape);
    const T alpha = T(d.alpha);
    for (std::size_t i = 0; i < d.batch; ++i)
        kernels::gemm(d.ta, d.tb, d.m, d.n, d.k, alpha, av.data() + i * d.m * d.k, d.lda(), bv.data() + i * d.k * d.n,
                      d.ldb(), T(0), out.data() + i * d.m * d.n, d.n);
    return op.finish_both([d](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            const Var<T> G = c.grad(), A = c.input(0), B = c.input(1);
            const double al = d.alpha;
            if (c.needs(0))
                c.accumulate(0, d.ta ? gemm_op("matmul_t", B, G, d.tb, true, d.batched, A.shape(), al)     // op(B)·Gᵀ
                                     : gemm_op("matmul_t", G, B, false, !d.tb, d.batched, A.shape(), al));  // G·op(B)ᵀ
            if (c.needs(1))
                c.accumulate(1, d.tb ? gemm_op("matmul_t", G, A, true, d.ta, d.batched, B.shape(), al)      // Gᵀ·op(A)
                                     : gemm_op("matmul_t", A, G, !d.ta, false, d.batched, B.shape(), al));  // op(A)ᵀ·G
        } else {
            const T alpha = T(d.alpha);
            const T* g = c.grad().data();
            const T* A = c.input(0).data();
            const T* B = c.input(1).data();
            const std::size_t sa = d.m * d.k, sb = d.k * d.n, sc = d.m * d.n;
            // A given twice (matmul(x, x)): one buffer, written by the first call, added to by the second.
            const InputGrad<T> ga = c.input_grad(0), gb = c.input_grad(1);
            if (d.batch == 1 && ga && gb) {  // the two products, at once where it pays
                const kernels::GemmArgs<T> da = !d.ta ? kernels::GemmArgs<T>{false, !d.tb, d.m, d.k, d.n, alpha, g, d.n, B,
                                                                               d.ldb(), ga.beta(), ga.data(), d.k}
                                                      : kernels::GemmArgs<T>{d.tb, true, d.k, d.m, d.n, alpha, B, d.ldb(), g,
                                                                               d.n, ga.beta(), ga.data(), d.m};
                const kernels::GemmArgs<T> db = !d.tb ? kernels::GemmArgs<T>{!d.ta, false, d.k, d.n, d.m, alpha, A, d.lda(),
                                                                               g, d.n, gb.beta(), gb.data(), d.n}
                                                      : kernels::GemmArgs<T>{true, d.ta, d.n, d.k, d.m, alpha, g, d.n, A,
                                                                               d.lda(), gb.beta(), gb.data(), d.k};
                kernels::gemm_pair(da, db);
                return;
            }
            if (ga) {
                for (std::size_t i = 0; i < d.batch; ++i) {
                    if (!d.ta)  // dA (m,k) = G·op(B)ᵀ
                        kernels::gemm(false, !d.tb, d.m, d.k, d.n, alpha, g + i * sc, d.n, B + i * sb, d.ldb(),
                                      ga.beta(), ga.data() + i * sa, d.k);
                    else  // dA (k,m) = op(B)·Gᵀ
                        kernels::gemm(d.tb, true, d.k, d.m, d.n, alpha, B + i * sb, d.ldb(), g + i * sc, d.n,
                                      ga.beta(), ga.data() + i * sa, d.m);
                }
            }
            if (gb) {
                for (std::size_t i = 0; i < d.batch; ++i) {
                    if (!d.tb)  // dB (k,n) = op(A)ᵀ·G (flat with a shared B: Σᵢ Aᵢᵀ·Gᵢ in one GEMM)
                        kernels::gemm(!d.ta, false, d.k, d.n, d.m, alpha, A + i * sa, d.lda(), g + i * sc, d.n,
                                      gb.beta(), gb.data() + i * sb, d.n);
                    else  // dB (n,k) = Gᵀ·op(A)
                        kernels::gemm(true, d.ta, d.n, d.k, d.m, alpha, g + i * sc, d.n, A + i * sa, d.lda(),
                                      gb.beta(), gb.data() + i * sb, d.k);
                }
            }
        }
    });
}

template <class T>
Var<T> gemm_op(const char* name, const Var<T>& a, const Var<T>& b, bool ta, bool tb, bool batched,
               const Shape& out_shape, double alpha)
{
    auto op = begin_op(name, {a, b});
    const Tensor<T>& av = a.value();
    const Tensor<T>& bv = b.value();
    auto fail = [&](const char* why) {
        return ShapeError(fmt::format("{}: {}{} x {}{} -> {}: {}", name, shape_str(av.shape()), ta ? "ᵀ" : "",
                                      shape_str(bv.shape()), tb ? "ᵀ" : "", shape_str(out_shape), why));
    };
    Gemm d{batched, ta, tb, 1, 0, 0, 0, alpha};
    std::size_t ar, ac, br, bc, cr, cc;  // the operands' and the result's (per batch) matrices as stored
    if (batched) {
        if (av.dimension() != 3 || bv.dimension() != 3 || out_shape.size() != 3)
            throw fail("a batched product takes rank-3 operands");
        if (av.shape()[0] != bv.shape()[0] || out_shape[0] != av.shape()[0]) throw fail("batch dimensions differ");
        d.batch = av.shape()[0];
        ar = av.shape()[1], ac = av.shape()[2], br = bv.shape()[1], bc = bv.shape()[2];
        cr = out_shape[1], cc = out_shape[2];
    } else {
        auto as_matrix = [&](const Shape& s, std::size_t& r, std::size_t& c) {  // rows = all leading axes
            if (s.size() < 2 || s.size() > 3) throw fail("operands are viewed as matrices: ranks 2 or 3");
            c = s.back();
            r = s.size() == 2 ? s[0] : s[0] * s[1];
        };
        as_matrix(av.shape(), ar, ac);
        as_matrix(bv.shape(), br, bc);
        as_matrix(out_shape, cr, cc);
    }
    d.m = ta ? ac : ar;
    d.k = ta ? ar : ac;
    d.n = tb ? br : bc;
    if ((tb ? bc : br) != d.k) throw fail("inner dimensions differ");
    if (cr != d.m || cc != d.n) throw fail("the result shape does not match the product");
    return gemm_finish(op, av, bv, d, out_shape);
}

}  // namespace

namespace {

/// True for operand ranks the one GEMM op does not take: leading (batch) axes other than one shared
/// batch axis, or one of size 1 against another size (to broadcast). 3x3 with two different batch
/// sizes, neither 1, stays with the GEMM op, whose check names them.
bool needs_broadcast(const Shape& a, const Shape& b)
{
    if (a.size() < 2 || b.size() < 2) return false;  // matmul_dims refuses them
    if (b.size() == 2 && a.size() <= 3) return false;  // (m,k)·(k,n), (b,m,k)·(k,n)
    if (a.size() == 3 && b.size() == 3) return a[0] != b[0] && (a[0] == 1 || b[0] == 1);
    return true;
}

/// `s` = batch ++ (r, c), in a buffer the caller reuses (no allocation once shapes are stable).
const std::vector<std::ptrdiff_t>& with_matrix(std::vector<std::ptrdiff_t>& s, const Shape& batch, std::size_t r,
                                               std::size_t c)
{
    s.assign(batch.begin(), batch.end());
    s.push_back(std::ptrdiff_t(r));
    s.push_back(std::ptrdiff_t(c));
    return s;
}

/// torch.matmul for rank ≥ 2 operands with leading axes to broadcast: A (…a, n, k)·B (…b, k, m) →
/// (broadcast(…a, …b), n, m), composed of recorded ops: expand the operands whose batch axes differ
/// from the broadcast ones (their VJP sums back), reshape to one batch axis, the batched GEMM op,
/// reshape back. A B without batch axes stays shared: A (…, n, k) is viewed as (Π…, n, k).
template <class T>
Var<T> matmul_broadcast(const Var<T>& a, const Var<T>& b)
{
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    const std::size_t ra = as.size(), rb = bs.size(), n = as[ra - 2], k = as[ra - 1], m = bs[rb - 1];
    if (bs[rb - 2] != k)
        throw ShapeError(fmt::format("matmul: {} x {}: inner dimensions {} and {} differ", shape_str(as), shape_str(bs),
                                     k, bs[rb - 2]));
    const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
    const std::size_t nd = std::max(ab.size(), bb.size());
    Shape batch(nd);
    for (std::size_t i = 0; i < nd; ++i) {
        const std::size_t da = i < nd - ab.size() ? 1 : ab[i - (nd - ab.size())];
        const std::size_t db = i < nd - bb.size() ? 1 : bb[i - (nd - bb.size())];
        if (da != db && da != 1 && db != 1)
            throw ShapeError(fmt::format("matmul: {} x {}: batch dimensions {} and {} do not broadcast", shape_str(as),
                                         shape_str(bs), shape_str(ab), shape_str(bb)));
        batch[i] = da == 1 ? db : da;
    }
    // shape buffers kept per thread: the ops below copy what they need, none calls back here
    thread_local std::vector<std::ptrdiff_t> sa, sb, sy;
    const std::vector<std::ptrdiff_t>& a3 = with_matrix(sa, Shape{shape_size(batch)}, n, k);
    if (rb == 2)  // B shared: the GEMM op's (b,n,k)·(k,m)
        return reshape(matmul(reshape(a, a3), b), with_matrix(sy, batch, n, m));
    const Var<T> ea = ab == batch ? a : expand(a, with_matrix(sy, batch, n, k));
    const Var<T> eb = bb == batch ? b : expand(b, with_matrix(sy, batch, k, m));
    const Var<T> y = matmul(reshape(ea, a3), reshape(eb, with_matrix(sb, Shape{shape_size(batch)}, k, m)));
    return reshape(y, with_matrix(sy, batch, n, m));
}

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b)
{
    {
        auto op = begin_op("matmul", {a, b});  // checks both inputs before their shapes are read
        const Tensor<T>& av = a.value();
        const Tensor<T>& bv = b.value();
        if (!needs_broadcast(av.shape(), bv.shape())) {
            const MatmulDims d = matmul_dims("matmul", av.shape(), bv.shape());
            const bool batched = d.kind == MatmulKind::batched;
            // plain, or a shared B: one GEMM with A viewed as (batch·m, k)
            const Gemm g = batched ? Gemm{true, false, false, d.batch, d.m, d.k, d.n}
                                   : Gemm{false, false, false, 1, d.batch * d.m, d.k, d.n};
            return gemm_finish(op, av, bv, g, d.kind == MatmulKind::plain ? Shape{d.m, d.n} : Shape{d.batch, d.m, d.n});
        }
    }  // the builder takes its node off the tape: the product is composed of other ops
    return matmul_broadcast(a, b);
}

template <class T>
Var<T> matmul_t(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b,
                typename std::common_type<T>::type alpha)
{
    const Shape &as = a.shape(), &bs = b.shape();
    const bool batched = as.size() == 3;
    if (as.size() < 2 || as.size() > 3 || bs.size() != as.size() || (batched && as[0] != bs[0]))
        throw ShapeError(fmt::format("matmul_t: {}{} x {}{}: needs two matrices or two batches of one size",
                                     shape_str(as), transpose_a ? "ᵀ" : "", shape_str(bs), transpose_b ? "ᵀ" : ""));
    const std::size_t r = as.size() - 2;
    Shape out = as;
    out[r] = transpose_a ? as[r + 1] : as[r];
    out[r + 1] = transpose_b ? bs[r] : bs[r + 1];
    return gemm_op("matmul_t", a, b, transpose_a, transpose_b, batched, out, double(alpha));
}

namespace {

/// Y = X·Wᵀ (+ b) with W stored (out, in) as in PyTorch: the GEMM reads W through its transpose
/// flag, nothing is copied. inputs = {x, w} or {x, w, b}.
template <class T>
Var<T> linear_op(const Var<T>* inputs, std::size_t n_inputs)
{
    OpBuilder<T> op("linear", inputs, n_inputs);
    const bool has_bias = n_inputs == 3;
    const Tensor<T>& xv = inputs[0].value();
    const Tensor<T>& wv = inputs[1].value();
    if (xv.dimension() != 2 || wv.dimension() != 2)
        throw ShapeError(fmt::format("linear: input {}, weight {}: needs input (B,in) and weight (out,in)",
                                     shape_str(xv.shape()), shape_str(wv.shape())));
    if (xv.shape()[1] != wv.shape()[1])
        throw ShapeError(fmt::format("linear: input {}, weight {}: the input has {} features, the weight (out,in) takes {}",
                                     shape_str(xv.shape()), shape_str(wv.shape()), xv.shape()[1], wv.shape()[1]));
    // Same limits as matmul's X·(Wᵀ): (B,in) x (in,out).
    const MatmulDims d = matmul_dims("linear", xv.shape(), Shape{wv.shape()[1], wv.shape()[0]});
    if (has_bias) {
        const Tensor<T>& bv = inputs[2].value();
        if (bv.dimension() != 1 || bv.shape()[0] != d.n)
            throw ShapeError(fmt::format("linear: bias {} vs weight {}: bias must be ({})", shape_str(bv.shape()),
                                         shape_str(wv.shape()), d.n));
    }
    Tensor<T>& out = op.value();
    out.resize(Shape{d.m, d.n});
    if (has_bias) {
        const T* b = inputs[2].value().data();
        for (std::size_t r = 0; r < d.m; ++r) std::copy_n(b, d.n, out.data() + r * d.n);
    }
    // b + X·Wᵀ: W (n,k) row-major read transposed
    kernels::gemm(false, true, d.m, d.n, d.k, T(1), xv.data(), d.k, wv.data(), d.k, has_bias ? T(1) : T(0), out.data(),
                  d.n);
    return op.finish_both([d, has_bias](auto& c) {
        if constexpr (is_graph_backward_v<decltype(c)>) {
            // the same products as matmul_t ops: dX = G·W, dW = Gᵀ·X; db = Σ_rows G (accumulate's sum_to)
            const Var<T> G = c.grad(), X = c.input(0), W = c.input(1);
            if (c.needs(0)) c.accumulate(0, gemm_op("matmul_t", G, W, false, false, false, X.shape()));
            if (c.needs(1)) c.accumulate(1, gemm_op("matmul_t", G, X, true, false, false, W.shape()));
            if (has_bias) c.accumulate(2, G);
        } else {
            const T* g = c.grad().data();
            const InputGrad<T> dx = c.input_grad(0), dw = c.input_grad(1);
            // dL/dX = G·W; dL/dW = Gᵀ·X, (out, in)
            const kernels::GemmArgs<T> px{false, false, d.m, d.k, d.n, T(1), g, d.n, c.input(1).data(), d.k,
                                          dx.beta(), dx.data(), d.k};
            const kernels::GemmArgs<T> pw{true, false, d.n, d.k, d.m, T(1), g, d.n, c.input(0).data(), d.k,
                                          dw.beta(), dw.data(), d.k};
            if (dx && dw)
                kernels::gemm_pair(px, pw);
            else {
                if (dx) kernels::gemm(px);
                if (dw) kernels::gemm(pw);
            }
            if (const InputGrad<T> gb = has_bias ? c.input_grad(2) : InputGrad<T>{}) {  // dL/db = Σ_rows G
                T* db = gb.data();
                if (!gb.accumulate) std::fill(db, db + d.n, T(0));
                for (std::size_t r = 0; r < d.m; ++r)
                    for (std::size_t j = 0; j < d.n; ++j) db[j] += g[r * d.n + j];
            }
        }
    });
}

}  // namespace

template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b)
{
    const Var<T> inputs[3] = {x, w, b};
    return linear_op(inputs, 3);
}

template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& w)
{
    const Var<T> inputs[2] = {x, w};
    return linear_op(inputs, 2);
}

template Var<float> linear(const Var<float>&, const Var<float>&, const Var<float>&);
template Var<double> linear(const Var<double>&, const Var<double>&, const Var<double>&);
template Var<float> linear(const Var<float>&, const Var<float>&);
template Var<double> linear(const Var<double>&, const Var<double>&);
template Var<float> matmul(const Var<float>&, const Var<float>&);
template Var<float> matmul_t(const Var<float>&, const Var<float>&, bool, bool, float);
template Var<double> matmul_t(const Var<double>&, const Var<double>&, bool, bool, double);
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad

// Matrix products through BLAS, with transpose flags instead of materialized transposes.
#include "xgrad/ops/linalg.hpp"

#include <fmt/format.h>

#include <limits>

#include "kernels/gemm.hpp"
#include "../op_util.hpp"

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
        throw fail("supported ranks are 2x2, 3x3 (batched) and 3x2 (shared right operand)");
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

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b)
{
    auto op = begin_op("matmul", {a, b});
    const Tensor<T>& av = a.value();
    const Tensor<T>& bv = b.value();
    const MatmulDims d = matmul_dims("matmul", av.shape(), bv.shape());
    Tensor<T>& out = op.value();
    if (d.kind == MatmulKind::plain)
        out.resize(Shape{d.m, d.n});
    else
        out.resize(Shape{d.batch, d.m, d.n});
    if (d.kind == MatmulKind::batched) {
        for (std::size_t i = 0; i < d.batch; ++i)
            kernels::gemm(false, false, d.m, d.n, d.k, T(1), av.data() + i * d.m * d.k, d.k, bv.data() + i * d.k * d.n,
                         d.n, T(0), out.data() + i * d.m * d.n, d.n);
    } else {
        // plain, or shared B: A viewed as (batch·m, k)
        kernels::gemm(false, false, d.batch * d.m, d.n, d.k, T(1), av.data(), d.k, bv.data(), d.n, T(0), out.data(), d.n);
    }
    return op.finish([d](BackwardContext<T>& c) {
        const T* g = c.grad().data();
        const T* A = c.input(0).data();
        const T* B = c.input(1).data();
        if (const InputGrad<T> ga = c.input_grad(0)) {
            T* dA = ga.data();
            const T beta = ga.beta();
            if (d.kind == MatmulKind::batched) {
                for (std::size_t i = 0; i < d.batch; ++i)  // dL/dAᵢ = Gᵢ·Bᵢᵀ
                    kernels::gemm(false, true, d.m, d.k, d.n, T(1), g + i * d.m * d.n, d.n, B + i * d.k * d.n, d.n, beta,
                                 dA + i * d.m * d.k, d.k);
            } else {  // dL/dA = G·Bᵀ
                kernels::gemm(false, true, d.batch * d.m, d.k, d.n, T(1), g, d.n, B, d.n, beta, dA, d.k);
            }
        }
        if (const InputGrad<T> gb = c.input_grad(1)) {
            T* dB = gb.data();
            const T beta = gb.beta();
            if (d.kind == MatmulKind::batched) {
                for (std::size_t i = 0; i < d.batch; ++i)  // dL/dBᵢ = Aᵢᵀ·Gᵢ
                    kernels::gemm(true, false, d.k, d.n, d.m, T(1), A + i * d.m * d.k, d.k, g + i * d.m * d.n, d.n, beta,
                                 dB + i * d.k * d.n, d.n);
            } else {  // dL/dB = Aᵀ·G (for a shared B this sums Σᵢ Aᵢᵀ·Gᵢ in one GEMM)
                kernels::gemm(true, false, d.k, d.n, d.batch * d.m, T(1), A, d.k, g, d.n, beta, dB, d.n);
            }
        }
    });
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
    return op.finish([d, has_bias](BackwardContext<T>& c) {
        const T* g = c.grad().data();
        if (const InputGrad<T> dx = c.input_grad(0))  // dL/dX = G·W
            kernels::gemm(false, false, d.m, d.k, d.n, T(1), g, d.n, c.input(1).data(), d.k, dx.beta(), dx.data(), d.k);
        if (const InputGrad<T> dw = c.input_grad(1))  // dL/dW = Gᵀ·X, (out, in)
            kernels::gemm(true, false, d.n, d.k, d.m, T(1), g, d.n, c.input(0).data(), d.k, dw.beta(), dw.data(), d.k);
        if (const InputGrad<T> gb = has_bias ? c.input_grad(2) : InputGrad<T>{}) {  // dL/db = Σ_rows G
            T* db = gb.data();
            if (!gb.accumulate) std::fill(db, db + d.n, T(0));
            for (std::size_t r = 0; r < d.m; ++r)
                for (std::size_t j = 0; j < d.n; ++j) db[j] += g[r * d.n + j];
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
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad

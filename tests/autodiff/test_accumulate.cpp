// Gradient accumulation and float32 backward, op by op, from one table (one entry per op).
//
// accumulate_fd/<op>: every differentiable input of the op ALSO feeds another op, so an op that
// overwrites its input's gradient instead of adding to it fails. The loss is
//     L = Σ op(x₀, x₁, …) ⊙ r  +  Σ_k Σ x_k ⊙ c_k        (r, c_k random constants)
// checked against central finite differences (xgrad::gradcheck, float64) in both tape orders:
// backward visits nodes in reverse creation order, so
//   - other consumer recorded AFTER the op: its VJP lands first, the op must ADD to it;
//   - other consumer recorded BEFORE the op: the op's VJP lands first into a fresh buffer, the
//     other consumer must add to it.
// Each order runs with the inputs as leaves and as intermediates (x·1, whose gradients are tape
// buffers handed out by the pool), and with the inputs as Parameters (tape.param(p), p.grad()
// pre-filled as if from an earlier step: backward must add into it) consumed by two ops, once
// through the same tape node and once through two param nodes of the same Parameter.
// A second backward() on the same tape must give the same leaf gradients (an op that adds into a
// fresh buffer instead of assigning doubles them) and add the gradient to each Parameter again.
//
// float32_vs_float64/<op>: the same graphs (and the op alone) on a Tape<float> and a Tape<double>
// from the same inputs (float64 inputs rounded to float); every input's float32 gradient must agree
// with the float64 one to 1e-4 relative to the largest float64 gradient entry of that input. Small
// shapes and large ones: GEMM dimensions ≥ 64 so float GEMMs take the BLAS (oneDNN) path, and
// tensors ≥ 64Ki elements so the OpenMP paths of conv and pooling run. At the large shapes the
// float64 gradient itself is checked by a directional central difference per input.
#include "test_util.hpp"
#include "xgrad/nn/losses.hpp"
#include "xgrad/op.hpp"  // trace_scatter_loss: an nn loss written on the op API

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace xgrad::test {

namespace {

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

template <class T>
using Builder = std::function<Var<T>(const std::vector<Var<T>>&)>;
using Shapes = std::vector<Shape>;

/// Where an input's values are drawn from (see rnd()).
struct Domain {
    double lo = -1, hi = 1, min_abs = 0;
};

struct OpCase {
    std::string name;
    Builder<double> f64;
    Builder<float> f32;
    std::vector<Shapes> small;  ///< finite differences (every element) and float32 vs float64
    std::vector<Shapes> large;  ///< float32 vs float64 and a directional finite difference
    std::vector<Domain> domain;  ///< per input; inputs past the end use the last (or the default)
    /// The op's own gradient is exactly zero (x − x, x / x): only meaningful with other consumers.
    bool zero_alone = false;

    template <class T>
    const Builder<T>& fn() const
    {
        if constexpr (std::is_same_v<T, double>)
            return f64;
        else
            return f32;
    }
    Domain dom(std::size_t k) const
    {
        if (domain.empty()) return {};
        return domain[std::min(k, domain.size() - 1)];
    }
};

/// One builder (a generic lambda over the input Vars) for both float and double.
template <class F>
OpCase make_case(std::string name, F f, std::vector<Shapes> small, std::vector<Shapes> large,
                 std::vector<Domain> domain = {}, bool zero_alone = false)
{
    return {std::move(name), Builder<double>(f), Builder<float>(f), std::move(small), std::move(large),
            std::move(domain), zero_alone};
}

template <class V>
struct ScalarOf;
template <class T>
struct ScalarOf<std::vector<Var<T>>> {
    using type = T;
};
/// The scalar type of the Vars a builder receives.
template <class Vs>
using scalar_of = typename ScalarOf<std::decay_t<Vs>>::type;

/// Labels (B) in [0, C) for scores (B, C): every class used when B ≥ C, deterministic.
IndexTensor labels_for(std::size_t B, std::size_t C)
{
    IndexTensor l = IndexTensor::from_shape({B});
    for (std::size_t b = 0; b < B; ++b) l(b) = Index((7 * b + 3) % C);
    return l;
}

/// torch.gather index for input `shape` along `axis`: length n + 1 along the axis (so some
/// positions repeat and their gradients must add), deterministic.
IndexTensor gather_index(const Shape& shape, std::size_t axis)
{
    Shape is = shape;
    is[axis] = shape[axis] + 1;
    IndexTensor idx = IndexTensor::from_shape(is);
    for (std::size_t e = 0; e < idx.size(); ++e) idx.data()[e] = Index((5 * e + e / 3) % shape[axis]);
    return idx;
}

std::vector<std::ptrdiff_t> pd(std::initializer_list<std::size_t> v)
{
    return std::vector<std::ptrdiff_t>(v.begin(), v.end());
}

const std::vector<OpCase>& cases()
{
    using S = Shapes;
    const Domain away_from_0{-2, 2, 0.5}, positive{0.2, 2}, positive_wide{0.1, 5}, kink{-1, 1, 0.05};
    static const std::vector<OpCase> table = [&] {
        std::vector<OpCase> t;
        const std::vector<Shapes> binary_small = {S{{3, 4}, {3, 4}}, S{{2, 3, 4}, {3, 1}}, S{{}, {2, 3}}};
        const std::vector<Shapes> binary_large = {S{{64, 96}, {96}}, S{{70, 1}, {70, 90}}};
        const std::vector<Shapes> unary_small = {S{{2, 3}}, S{{}}};
        const std::vector<Shapes> unary_large = {S{{64, 100}}};

        // ---- elementwise, and the Var operators ----
        t.push_back(make_case("add", [](const auto& x) { return x[0] + x[1]; }, binary_small, binary_large));
        t.push_back(make_case("sub", [](const auto& x) { return x[0] - x[1]; }, binary_small, binary_large));
        t.push_back(make_case("mul", [](const auto& x) { return x[0] * x[1]; }, binary_small, binary_large));
        t.push_back(make_case("div", [](const auto& x) { return x[0] / x[1]; }, binary_small, binary_large,
                              {Domain{}, away_from_0}));
        t.push_back(make_case("neg", [](const auto& x) { return -x[0]; }, unary_small, unary_large));
        t.push_back(make_case("add_scalar", [](const auto& x) { return x[0] + scalar_of<decltype(x)>(2.5); },
                              unary_small, unary_large));
        t.push_back(make_case("scalar_add", [](const auto& x) { return scalar_of<decltype(x)>(2.5) + x[0]; },
                              unary_small, unary_large));
        t.push_back(make_case("sub_scalar", [](const auto& x) { return x[0] - scalar_of<decltype(x)>(2.5); },
                              unary_small, unary_large));
        t.push_back(make_case("rsub_scalar", [](const auto& x) { return scalar_of<decltype(x)>(2.5) - x[0]; },
                              unary_small, unary_large));
        t.push_back(make_case("mul_scalar", [](const auto& x) { return x[0] * scalar_of<decltype(x)>(-3); },
                              unary_small, unary_large));
        t.push_back(make_case("scalar_mul", [](const auto& x) { return scalar_of<decltype(x)>(-3) * x[0]; },
                              unary_small, unary_large));
        t.push_back(make_case("div_scalar", [](const auto& x) { return x[0] / scalar_of<decltype(x)>(4); },
                              unary_small, unary_large));
        t.push_back(make_case("rdiv_scalar", [](const auto& x) { return scalar_of<decltype(x)>(3) / x[0]; },
                              unary_small, unary_large, {away_from_0}));
        t.push_back(make_case("pow_3", [](const auto& x) { return xgrad::pow(x[0], scalar_of<decltype(x)>(3)); },
                              unary_small, unary_large));
        t.push_back(make_case("pow_half", [](const auto& x) { return xgrad::pow(x[0], scalar_of<decltype(x)>(0.5)); },
                              unary_small, unary_large, {positive}));
        t.push_back(make_case("pow_neg", [](const auto& x) { return xgrad::pow(x[0], scalar_of<decltype(x)>(-1.5)); },
                              unary_small, unary_large, {positive}));
        t.push_back(make_case("exp", [](const auto& x) { return xgrad::exp(x[0]); }, unary_small, unary_large,
                              {Domain{-3, 3}}));
        t.push_back(make_case("log", [](const auto& x) { return xgrad::log(x[0]); }, unary_small, unary_large,
                              {positive_wide}));
        t.push_back(make_case("sqrt", [](const auto& x) { return xgrad::sqrt(x[0]); }, unary_small, unary_large,
                              {positive_wide}));
        t.push_back(make_case("abs", [](const auto& x) { return xgrad::abs(x[0]); }, unary_small, unary_large, {kink}));
        t.push_back(make_case("square", [](const auto& x) { return xgrad::square(x[0]); }, unary_small, unary_large));

        // ---- one input used twice by the same op ----
        t.push_back(make_case("add_self", [](const auto& x) { return x[0] + x[0]; }, unary_small, unary_large));
        t.push_back(make_case("sub_self", [](const auto& x) { return x[0] - x[0]; }, unary_small, unary_large, {}, true));
        t.push_back(make_case("mul_self", [](const auto& x) { return x[0] * x[0]; }, unary_small, unary_large));
        t.push_back(make_case("div_self", [](const auto& x) { return x[0] / x[0]; }, unary_small, unary_large,
                              {away_from_0}, true));
        t.push_back(make_case("matmul_self", [](const auto& x) { return matmul(x[0], x[0]); }, {S{{4, 4}}},
                              {S{{80, 80}}}));
        t.push_back(make_case("matmul_batched_self", [](const auto& x) { return matmul(x[0], x[0]); }, {S{{2, 3, 3}}},
                              {S{{3, 72, 72}}}));
        t.push_back(make_case("matmul_x_xT", [](const auto& x) { return matmul(x[0], transpose(x[0])); },
                              {S{{3, 5}}}, {S{{70, 96}}}));
        t.push_back(make_case("linear_self", [](const auto& x) { return linear(x[0], x[0], x[1]); },
                              {S{{4, 4}, {4}}}, {S{{80, 80}, {80}}}));
        // x (N,C,K,K) as both input and weight (O = N): a K×K kernel over a K×K image. This entry found
        // conv2d(x, x) losing the weight-side gradient when the shared buffer was fresh (fixed in 767e4b5).
        t.push_back(make_case("conv2d_self", [](const auto& x) { return conv2d(x[0], x[0], x[1]); },
                              {S{{2, 2, 3, 3}, {2}}}, {S{{64, 8, 3, 3}, {64}}}));
        t.push_back(make_case("concatenate_self",
                              [](const auto& x) { return concatenate<scalar_of<decltype(x)>>({x[0], x[1], x[0]}, 1); },
                              {S{{2, 3}, {2, 1}}}, {S{{64, 50}, {64, 7}}}));

        // ---- activations ----
        t.push_back(make_case("sigmoid", [](const auto& x) { return sigmoid(x[0]); }, unary_small, {S{{256, 300}}},
                              {Domain{-4, 4}}));
        t.push_back(make_case("tanh", [](const auto& x) { return xgrad::tanh(x[0]); }, unary_small, {S{{256, 300}}},
                              {Domain{-3, 3}}));
        t.push_back(make_case("relu", [](const auto& x) { return relu(x[0]); }, unary_small, unary_large, {kink}));
        // A + B at least 0.03 from relu's kink: |A| ≥ 0.05, B in [0.001, 0.02]. One shape: the fused op;
        // broadcasting shapes: relu(A + B), two ops. 256×300 runs the loops on the threads.
        t.push_back(make_case("add_relu", [](const auto& x) { return add_relu(x[0], x[1]); },
                              {S{{3, 4}, {3, 4}}, S{{2, 3, 4}, {3, 1}}}, {S{{256, 300}, {256, 300}}, S{{64, 96}, {96}}},
                              {kink, Domain{0.001, 0.02}}));
        t.push_back(make_case("add_relu_self", [](const auto& x) { return add_relu(x[0], x[0]); }, unary_small,
                              {S{{256, 300}}}, {kink}));
        t.push_back(make_case("softmax_last", [](const auto& x) { return softmax(x[0], -1); },
                              {S{{4, 5}}, S{{2, 3, 4}}}, {S{{64, 100}}}, {Domain{-3, 3}}));
        t.push_back(make_case("softmax_axis0", [](const auto& x) { return softmax(x[0], 0); }, {S{{4, 5}}},
                              {S{{100, 64}}}, {Domain{-3, 3}}));
        t.push_back(make_case("log_softmax_last", [](const auto& x) { return log_softmax(x[0], -1); },
                              {S{{4, 5}}, S{{7}}}, {S{{64, 100}}}, {Domain{-3, 3}}));
        t.push_back(make_case("log_softmax_middle", [](const auto& x) { return log_softmax(x[0], 1); },
                              {S{{2, 3, 4}}}, {S{{8, 50, 16}}}, {Domain{-3, 3}}));

        // ---- matrix products ----
        t.push_back(make_case("matmul", [](const auto& x) { return matmul(x[0], x[1]); },
                              {S{{3, 4}, {4, 5}}, S{{1, 7}, {7, 1}}}, {S{{64, 96}, {96, 72}}, S{{67, 65}, {65, 129}}}));
        t.push_back(make_case("matmul_batched", [](const auto& x) { return matmul(x[0], x[1]); },
                              {S{{2, 3, 4}, {2, 4, 5}}}, {S{{3, 64, 80}, {3, 80, 72}}}));
        t.push_back(make_case("matmul_shared", [](const auto& x) { return matmul(x[0], x[1]); },
                              {S{{2, 3, 4}, {4, 5}}}, {S{{4, 64, 80}, {80, 72}}}));
        t.push_back(make_case("linear", [](const auto& x) { return linear(x[0], x[1], x[2]); },
                              {S{{4, 5}, {3, 5}, {3}}, S{{1, 1}, {1, 1}, {1}}},
                              {S{{96, 80}, {72, 80}, {72}}, S{{70, 130}, {66, 130}, {66}}}));
        t.push_back(make_case("linear_no_bias", [](const auto& x) { return linear(x[0], x[1]); },
                              {S{{4, 5}, {3, 5}}}, {S{{96, 80}, {72, 80}}}));

        // ---- shape ops ----
        t.push_back(make_case("reshape",
                              [](const auto& x) {
                                  const Shape& s = x[0].shape();
                                  return reshape(x[0], {std::ptrdiff_t(s[0] * s[1]), -1});
                              },
                              {S{{2, 3, 4}}}, {S{{8, 40, 16}}}));
        t.push_back(make_case("flatten", [](const auto& x) { return flatten(x[0]); }, {S{{2, 3, 2, 2}}},
                              {S{{8, 16, 8, 8}}}));
        t.push_back(make_case("permute", [](const auto& x) { return permute(x[0], {2, 0, 1}); }, {S{{2, 3, 4}}},
                              {S{{8, 40, 16}}}));
        t.push_back(make_case("transpose", [](const auto& x) { return transpose(x[0]); }, {S{{3, 4}}, S{{2, 3, 4}}},
                              {S{{64, 96}}, S{{4, 40, 50}}}));
        t.push_back(make_case("slice_step",
                              [](const auto& x) { return slice(x[0], 1, 1, std::ptrdiff_t(x[0].shape()[1]) - 1, 2); },
                              {S{{4, 6}}}, {S{{64, 100}}}));
        t.push_back(make_case("slice_negative_start",
                              [](const auto& x) { return slice(x[0], 0, -2, std::ptrdiff_t(x[0].shape()[0])); },
                              {S{{4, 6}}}, {S{{64, 100}}}));
        t.push_back(make_case("slice_last_axis", [](const auto& x) { return slice(x[0], 2, 0, 3); }, {S{{2, 3, 4}}},
                              {S{{8, 40, 16}}}));
        t.push_back(make_case("concatenate",
                              [](const auto& x) { return concatenate<scalar_of<decltype(x)>>({x[0], x[1], x[2]}, 1); },
                              {S{{2, 3}, {2, 1}, {2, 4}}}, {S{{64, 50}, {64, 1}, {64, 30}}}));
        t.push_back(make_case("concatenate_axis0",
                              [](const auto& x) { return concatenate<scalar_of<decltype(x)>>({x[0], x[1]}, 0); },
                              {S{{2, 3, 2}, {1, 3, 2}}}, {S{{40, 16, 8}, {9, 16, 8}}}));
        t.push_back(make_case("gather_axis1", [](const auto& x) { return gather(x[0], 1, gather_index(x[0].shape(), 1)); },
                              {S{{3, 5}}}, {S{{64, 100}}}));
        t.push_back(make_case("gather_axis0", [](const auto& x) { return gather(x[0], 0, gather_index(x[0].shape(), 0)); },
                              {S{{3, 3}}}, {S{{50, 64}}}));
        t.push_back(make_case("pick",
                              [](const auto& x) { return pick(x[0], labels_for(x[0].shape()[0], x[0].shape()[1])); },
                              {S{{3, 5}}}, {S{{128, 100}}}));
        // one_hot makes a constant (no gradient of its own); here it masks a differentiable input.
        t.push_back(make_case("one_hot_mask",
                              [](const auto& x) {
                                  const Shape& s = x[0].shape();
                                  return x[0] * one_hot(x[0].tape(), labels_for(s[0], s[1]), s[1]);
                              },
                              {S{{4, 5}}}, {S{{128, 100}}}));

        // ---- reductions ----
        t.push_back(make_case("sum_all", [](const auto& x) { return sum(x[0]); }, {S{{2, 3, 4}}, S{{}}},
                              {S{{64, 100}}}));
        t.push_back(make_case("mean_all", [](const auto& x) { return mean(x[0]); }, {S{{2, 3, 4}}}, {S{{64, 100}}}));
        t.push_back(make_case("sum_axes", [](const auto& x) { return sum(x[0], {0, 2}); }, {S{{2, 3, 4}}},
                              {S{{8, 40, 16}}}));
        t.push_back(make_case("sum_axis_keepdims", [](const auto& x) { return sum(x[0], {1}, true); },
                              {S{{2, 3, 4}}}, {S{{8, 40, 16}}}));
        t.push_back(make_case("sum_last_axis", [](const auto& x) { return sum(x[0], {-1}); }, {S{{2, 3, 4}}},
                              {S{{8, 40, 16}}}));
        t.push_back(make_case("mean_axes", [](const auto& x) { return mean(x[0], {0, 2}); }, {S{{2, 3, 4}}},
                              {S{{8, 40, 16}}}));
        t.push_back(make_case("mean_axis_keepdims", [](const auto& x) { return mean(x[0], {1}, true); },
                              {S{{2, 3, 4}}}, {S{{8, 40, 16}}}));
        t.push_back(make_case("mean_all_axes_keepdims", [](const auto& x) { return mean(x[0], {0, 1, 2}, true); },
                              {S{{2, 3, 4}}}, {S{{8, 40, 16}}}));
        t.push_back(make_case("max_axis1", [](const auto& x) { return max(x[0], 1); }, {S{{3, 5}}}, {S{{64, 100}}}));
        t.push_back(make_case("max_axis0_keepdims", [](const auto& x) { return max(x[0], 0, true); },
                              {S{{2, 3, 4}}}, {S{{40, 16, 8}}}));
        t.push_back(make_case("max_last_axis", [](const auto& x) { return max(x[0], -1); }, {S{{2, 3, 4}}},
                              {S{{8, 16, 40}}}));

        // ---- convolution and pooling ----
        t.push_back(make_case("conv2d", [](const auto& x) { return conv2d(x[0], x[1], x[2]); },
                              {S{{2, 2, 5, 5}, {3, 2, 3, 3}, {3}}}, {S{{8, 8, 14, 14}, {64, 8, 3, 3}, {64}}}));
        t.push_back(make_case("conv2d_stride2_pad1",
                              [](const auto& x) { return conv2d(x[0], x[1], x[2], Conv2dOptions().stride(2).padding(1)); },
                              {S{{2, 2, 6, 6}, {4, 2, 3, 3}, {4}}}, {S{{4, 8, 15, 15}, {64, 8, 3, 3}, {64}}}));
        t.push_back(make_case("conv2d_no_bias", [](const auto& x) { return conv2d(x[0], x[1], Conv2dOptions().stride(2)); },
                              {S{{1, 3, 7, 6}, {2, 3, 3, 2}}}, {S{{4, 16, 13, 12}, {64, 16, 3, 3}}}));
        t.push_back(make_case("conv2d_1x1", [](const auto& x) { return conv2d(x[0], x[1], x[2]); },
                              {S{{3, 2, 3, 3}, {2, 2, 1, 1}, {2}}}, {S{{8, 64, 9, 9}, {72, 64, 1, 1}, {72}}}));
        t.push_back(make_case("max_pool2d_2x2", [](const auto& x) { return max_pool2d(x[0], 2); },
                              {S{{2, 3, 4, 4}}, S{{1, 2, 5, 5}}}, {S{{8, 16, 24, 24}}}));
        t.push_back(make_case("max_pool2d_3_stride1", [](const auto& x) { return max_pool2d(x[0], 3, 1); },
                              {S{{2, 1, 5, 5}}}, {S{{4, 8, 20, 20}}}));
        t.push_back(make_case("avg_pool2d_2x2", [](const auto& x) { return avg_pool2d(x[0], 2, 2); },
                              {S{{2, 3, 4, 4}}, S{{1, 2, 5, 5}}}, {S{{8, 16, 24, 24}}, S{{4, 8, 17, 17}}}));
        t.push_back(make_case("avg_pool2d_3_stride2", [](const auto& x) { return avg_pool2d(x[0], 3, 2); },
                              {S{{1, 1, 7, 6}}}, {S{{4, 8, 21, 21}}}));
        t.push_back(make_case("avg_pool2d_2_stride1", [](const auto& x) { return avg_pool2d(x[0], 2, 1); },
                              {S{{1, 2, 4, 5}}}, {S{{4, 8, 20, 20}}}));
        t.push_back(make_case("relu_avg_pool2d_2x2",
                              [](const auto& x) { return activation_avg_pool2d(x[0], Activation::relu, 2, 2); },
                              {S{{2, 3, 4, 4}}, S{{1, 2, 5, 5}}}, {S{{8, 16, 24, 24}}}, {kink}));
        t.push_back(make_case("sigmoid_avg_pool2d_3_stride2",
                              [](const auto& x) { return activation_avg_pool2d(x[0], Activation::sigmoid, 3, 2); },
                              {S{{1, 1, 7, 6}}}, {S{{4, 8, 21, 21}}}, {Domain{-4, 4}}));
        t.push_back(make_case("tanh_avg_pool2d_2x2",
                              [](const auto& x) { return activation_avg_pool2d(x[0], Activation::tanh, 2, 2); },
                              {S{{1, 2, 5, 5}}}, {S{{8, 16, 24, 24}}}, {Domain{-3, 3}}));

        // ---- losses ----
        const std::pair<const char*, Reduction> reductions[] = {
            {"mean", Reduction::mean}, {"sum", Reduction::sum}, {"half_sum", Reduction::half_sum}};
        for (const auto& [rn, red] : reductions) {
            const Reduction r = red;
            t.push_back(make_case(std::string("mse_loss_") + rn, [r](const auto& x) { return mse_loss(x[0], x[1], r); },
                                  {S{{3, 4}, {3, 4}}}, {S{{64, 100}, {64, 100}}}));
            if (r == Reduction::half_sum) continue;  // cross_entropy and nll_loss refuse it (test_ops)
            t.push_back(make_case(
                std::string("cross_entropy_") + rn,
                [r](const auto& x) { return cross_entropy(x[0], labels_for(x[0].shape()[0], x[0].shape()[1]), r); },
                {S{{4, 3}}}, {S{{128, 100}}}, {Domain{-2, 2}}));
            t.push_back(make_case(
                std::string("nll_loss_") + rn,
                [r](const auto& x) { return nll_loss(x[0], labels_for(x[0].shape()[0], x[0].shape()[1]), r); },
                {S{{4, 3}}}, {S{{128, 100}}}));
        }
        t.push_back(make_case("trace_scatter_loss",
                              [](const auto& x) {
                                  using T = scalar_of<decltype(x)>;
                                  const std::size_t B = x[0].shape()[0];
                                  IndexTensor l = IndexTensor::from_shape({B});
                                  for (std::size_t b = 0; b < B; ++b) l(b) = Index((5 * b + 2) % 4);
                                  return nn::trace_scatter_loss(x[0], l, 0.3);
                              },
                              {S{{7, 4}}}, {S{{128, 64}}}, {Domain{-2, 2}}));
        return t;
    }();
    return table;
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

enum class Order {
    alone,   ///< L = Σ op(x) ⊙ r, nothing else
    before,  ///< the other consumers are recorded before the op (the op's backward runs first)
    after,   ///< ... after the op (the op's backward runs last and must add)
};

const char* order_name(Order o)
{
    return o == Order::alone ? "op alone" : o == Order::before ? "other consumer before op" : "other consumer after op";
}

std::string shapes_str(const Shapes& s)
{
    std::string r;
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? " " : "") + shape_str(s[i]);
    return r;
}

/// Rounds to float and back, so the float and double tapes see exactly the same numbers.
Tensor<double> to_float_grid(const Tensor<double>& t)
{
    Tensor<double> r = t;
    for (auto& v : r) v = double(float(v));
    return r;
}

template <class T>
Tensor<T> cast_to(const Tensor<double>& t)
{
    Tensor<T> r = Tensor<T>::from_shape(t.shape());
    std::transform(t.begin(), t.end(), r.begin(), [](double v) { return T(v); });
    return r;
}

Tensor<double> to_double(const Tensor<float>& t)
{
    Tensor<double> r = Tensor<double>::from_shape(t.shape());
    std::transform(t.begin(), t.end(), r.begin(), [](float v) { return double(v); });
    return r;
}

double max_abs(const Tensor<double>& t)
{
    double m = 0;
    for (double v : t) m = std::max(m, std::abs(v));
    return m;
}

/// max |a − b| / max |b| (0 if both are all zero, inf if only b is).
double rel_err(const Tensor<double>& a, const Tensor<double>& b)
{
    double e = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(a.data()[i] - b.data()[i]);
        e = std::isnan(d) ? INFINITY : std::max(e, d);
    }
    const double s = max_abs(b);
    return s > 0 ? e / s : (e > 0 ? INFINITY : 0.0);
}

/// The inputs and the random constants of one check.
struct Problem {
    std::vector<Tensor<double>> x;  ///< op inputs
    Tensor<double> r;               ///< weights of the op's output in the loss
    std::vector<Tensor<double>> c;  ///< weights of the other consumers, one per input
};

Shape output_shape(const OpCase& oc, const std::vector<Tensor<double>>& xs)
{
    Tape<double> t;
    std::vector<Var<double>> v;
    for (const auto& x : xs) v.push_back(t.constant(x));
    return oc.f64(v).shape();
}

Problem make_problem(const OpCase& oc, const Shapes& shapes, unsigned seed, bool float_grid)
{
    Problem p;
    for (std::size_t k = 0; k < shapes.size(); ++k) {
        const Domain d = oc.dom(k);
        p.x.push_back(rnd(shapes[k], seed + 11 * unsigned(k), d.lo, d.hi, d.min_abs));
        p.c.push_back(rnd(shapes[k], seed + 11 * unsigned(k) + 5, -1, 1, 0.1));
    }
    p.r = rnd(output_shape(oc, p.x), seed + 997, -1, 1, 0.1);
    if (float_grid) {
        for (auto& x : p.x) x = to_float_grid(x);
        for (auto& c : p.c) c = to_float_grid(c);
        p.r = to_float_grid(p.r);
    }
    return p;
}

template <class T>
struct Consts {
    Tensor<T> r;
    std::vector<Tensor<T>> c;
    explicit Consts(const Problem& p) : r(cast_to<T>(p.r))
    {
        for (const auto& c0 : p.c) c.push_back(cast_to<T>(c0));
    }
};

/// L = Σ op(xs) ⊙ r  (+ Σ_k Σ others_k ⊙ c_k, recorded before or after the op).
/// `others` are the Vars the other consumers read (the same nodes as xs unless given);
/// with `intermediate`, both read x·1 instead of the leaves.
template <class T>
Var<T> build_loss(const OpCase& oc, std::vector<Var<T>> xs, std::vector<Var<T>> others, Order order, bool intermediate,
                  const Consts<T>& k)
{
    Tape<T>& t = xs[0].tape();
    if (others.empty()) others = xs;
    if (intermediate) {
        for (std::size_t i = 0; i < xs.size(); ++i) {
            const bool same = others[i].index() == xs[i].index();
            xs[i] = xs[i] * T(1);
            others[i] = same ? xs[i] : others[i] * T(1);
        }
    }
    auto consumers = [&] {
        Var<T> e = sum(others[0] * t.constant(k.c[0]));
        for (std::size_t i = 1; i < others.size(); ++i) e = e + sum(others[i] * t.constant(k.c[i]));
        return e;
    };
    Var<T> e;
    if (order == Order::before) e = consumers();
    Var<T> loss = sum(oc.fn<T>()(xs) * t.constant(k.r));
    if (order == Order::after) e = consumers();
    if (order == Order::before) return e + loss;
    if (order == Order::after) return loss + e;
    return loss;
}

GradcheckOptions fd_options(std::size_t n_inputs)
{
    std::vector<std::string> names;
    for (std::size_t k = 0; k < n_inputs; ++k) names.push_back("x" + std::to_string(k));
    return GradcheckOptions().input_names(std::move(names));
}

/// Finite differences of the loss with the op's inputs as leaves (or as x·1 intermediates).
GradcheckReport fd_check(const OpCase& oc, const Problem& p, Order order, bool intermediate)
{
    const Consts<double> k(p);
    return gradcheck([&](const std::vector<Var<double>>& v) { return build_loss(oc, v, {}, order, intermediate, k); },
                     p.x, fd_options(p.x.size()));
}

/// Leaf gradients after a first and a second backward() on the same tape (they must agree).
struct RepeatResult {
    std::vector<Tensor<double>> first;
    double second_vs_first = 0;  ///< max over inputs of rel_err(second, first)
};

template <class T>
RepeatResult run_twice(const OpCase& oc, const Problem& p, Order order, bool intermediate)
{
    const Consts<T> k(p);
    Tape<T> t;
    std::vector<Var<T>> v;
    for (const auto& x : p.x) v.push_back(t.variable(cast_to<T>(x)));
    Var<T> loss = build_loss(oc, v, {}, order, intermediate, k);
    RepeatResult r;
    t.backward(loss);
    for (const auto& x : v) {
        if constexpr (std::is_same_v<T, double>)
            r.first.push_back(x.grad());
        else
            r.first.push_back(to_double(x.grad()));
    }
    t.backward(loss);
    for (std::size_t i = 0; i < v.size(); ++i) {
        Tensor<double> g2;
        if constexpr (std::is_same_v<T, double>)
            g2 = v[i].grad();
        else
            g2 = to_double(v[i].grad());
        r.second_vs_first = std::max(r.second_vs_first, rel_err(g2, r.first[i]));
    }
    return r;
}

/// The op's inputs as Parameters whose grad() already holds g0 (an earlier step's gradient).
struct ParamResult {
    GradcheckReport fd;           ///< (p.grad() − g0) after one backward, against finite differences
    double second_sweep_err = 0;  ///< a second backward must leave g0 + 2·(first gradient)
};

ParamResult param_check(const OpCase& oc, const Problem& p, Order order, bool two_nodes, unsigned seed)
{
    const Consts<double> k(p);
    const std::size_t n = p.x.size();
    std::vector<Parameter<double>> ps;
    std::vector<Tensor<double>> g0;
    ps.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        ps.emplace_back(p.x[i], "x" + std::to_string(i));
        g0.push_back(rnd(p.x[i].shape(), seed + 31 * unsigned(i), -1, 1));
        ps[i].grad() = g0[i];
    }
    Tape<double> t;
    std::vector<Var<double>> v, others;
    for (auto& q : ps) v.push_back(t.param(q));
    if (two_nodes)
        for (auto& q : ps) others.push_back(t.param(q));
    Var<double> loss = build_loss(oc, v, others, order, false, k);
    t.backward(loss);
    std::vector<Tensor<double>> analytic;
    for (std::size_t i = 0; i < n; ++i) analytic.push_back(ps[i].grad() - g0[i]);
    t.backward(loss);
    ParamResult r;
    for (std::size_t i = 0; i < n; ++i)
        r.second_sweep_err =
            std::max(r.second_sweep_err, rel_err(Tensor<double>(ps[i].grad() - g0[i]), Tensor<double>(2.0 * analytic[i])));

    std::vector<Tensor<double>> xs = p.x;
    std::vector<Tensor<double>*> ptrs;
    for (auto& x : xs) ptrs.push_back(&x);
    Tape<double> ft;
    auto phi = [&] {
        ft.clear();
        std::vector<Var<double>> c;
        for (const auto& x : xs) c.push_back(ft.constant(x));
        return build_loss(oc, c, {}, order, false, k).item();
    };
    const GradcheckOptions opt = fd_options(n);
    r.fd = detail::finite_difference_report(ptrs, analytic, opt.input_names(), phi, opt);
    return r;
}

/// float32 against float64 on one graph, plus a second sweep on each tape.
struct FloatResult {
    std::vector<double> err;  ///< per input: max |g32 − g64| / max |g64|
    std::vector<double> scale;  ///< per input: max |g64|
    double repeat64 = 0, repeat32 = 0;
    std::vector<Tensor<double>> g64;
};

FloatResult float_check(const OpCase& oc, const Problem& p, Order order, bool intermediate)
{
    FloatResult f;
    RepeatResult d = run_twice<double>(oc, p, order, intermediate);
    RepeatResult s = run_twice<float>(oc, p, order, intermediate);
    f.repeat64 = d.second_vs_first;
    f.repeat32 = s.second_vs_first;
    for (std::size_t i = 0; i < p.x.size(); ++i) {
        f.err.push_back(rel_err(s.first[i], d.first[i]));
        f.scale.push_back(max_abs(d.first[i]));
    }
    f.g64 = std::move(d.first);
    return f;
}

/// Directional central difference of the float64 loss along a random direction per input,
/// against Σ g ⊙ d: returns, per input, |analytic − numeric| / Σ |g ⊙ d|.
std::vector<double> directional_check(const OpCase& oc, const Problem& p, Order order, bool intermediate,
                                      const std::vector<Tensor<double>>& g, unsigned seed)
{
    const Consts<double> k(p);
    Tape<double> t;
    std::vector<Tensor<double>> xs = p.x;
    auto loss = [&] {
        t.clear();
        std::vector<Var<double>> v;
        for (const auto& x : xs) v.push_back(t.constant(x));
        return build_loss(oc, v, {}, order, intermediate, k).item();
    };
    std::vector<double> out;
    const double eps = 1e-6;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const Tensor<double> d = rnd(xs[i].shape(), seed + unsigned(i), -1, 1);
        double ana = 0, mag = 0;
        for (std::size_t e = 0; e < d.size(); ++e) {
            ana += g[i].data()[e] * d.data()[e];
            mag += std::abs(g[i].data()[e] * d.data()[e]);
        }
        xs[i] = p.x[i] + eps * d;
        const double lp = loss();
        xs[i] = p.x[i] - eps * d;
        const double lm = loss();
        xs[i] = p.x[i];
        const double num = (lp - lm) / (2 * eps);
        out.push_back(mag > 0 ? std::abs(ana - num) / mag : INFINITY);
    }
    return out;
}

// Worst numbers seen, for the log (--log_level=message).
struct Worst {
    double fd_abs = 0, f32 = 0, dir = 0;
    std::string fd_where, f32_where, dir_where;
};
Worst& worst()
{
    static Worst w;
    return w;
}

constexpr double float_tol = 1e-4;     // float32 vs float64, relative to the largest entry
constexpr double repeat64_tol = 1e-12;  // a second backward on the same tape, float64
constexpr double repeat32_tol = 1e-5;   // ... float32
constexpr double param_tol = 1e-12;     // a second backward adds the same gradient to a Parameter
constexpr double directional_tol = 1e-6;

/// "op (variant)" for failure messages.
std::string label(const OpCase& oc, const std::string& what)
{
    return oc.name + " (" + what + ")";
}

unsigned case_seed(const OpCase& oc)
{
    unsigned h = 2166136261u;
    for (char ch : oc.name) h = (h ^ unsigned(static_cast<unsigned char>(ch))) * 16777619u;
    return h % 100000u + 1;
}

void note_fd(const OpCase& oc, const GradcheckReport& r, const std::string& what)
{
    for (const auto& in : r.inputs)
        if (in.max_abs_error > worst().fd_abs) {
            worst().fd_abs = in.max_abs_error;
            worst().fd_where = oc.name + " " + what + " " + in.name;
        }
}

// ---------------------------------------------------------------------------------------------
// The test bodies, one of each per table entry
// ---------------------------------------------------------------------------------------------

void run_fd(const OpCase& oc)
{
    unsigned seed = case_seed(oc);
    double case_worst = 0;
    for (const Shapes& shapes : oc.small) {
        const Problem p = make_problem(oc, shapes, seed, false);
        for (Order order : {Order::after, Order::before}) {
            for (bool intermediate : {false, true}) {
                const std::string what = std::string(order_name(order)) + (intermediate ? ", inputs x·1" : ", leaf inputs") +
                                         ", shapes " + shapes_str(shapes);
                BOOST_TEST_CONTEXT(oc.name << ": " << what)
                {
                    const GradcheckReport r = fd_check(oc, p, order, intermediate);
                    BOOST_TEST(r.ok, label(oc, what) << ": gradient is not the sum over its consumers\n"
                                             << r.summary());
                    note_fd(oc, r, what);
                    for (const auto& in : r.inputs) case_worst = std::max(case_worst, in.max_abs_error);
                    // A second backward on the same tape: same leaf gradients (an op that adds into a
                    // fresh buffer, or a consumer that assigns into an old one, breaks this).
                    const RepeatResult rr = run_twice<double>(oc, p, order, intermediate);
                    BOOST_TEST(rr.second_vs_first <= repeat64_tol,
                               label(oc, what) << ": second backward changed the leaf gradients by "
                                       << rr.second_vs_first << " (relative)");
                }
            }
            for (bool two_nodes : {false, true}) {
                const std::string what = std::string(order_name(order)) +
                                         (two_nodes ? ", Parameters on the tape twice" : ", Parameters") +
                                         ", shapes " + shapes_str(shapes);
                BOOST_TEST_CONTEXT(oc.name << ": " << what)
                {
                    const ParamResult r = param_check(oc, p, order, two_nodes, seed + 500);
                    BOOST_TEST(r.fd.ok, label(oc, what) << ": p.grad() − (its value before backward) "
                                                << "is not the gradient\n"
                                                << r.fd.summary());
                    BOOST_TEST(r.second_sweep_err <= param_tol,
                               label(oc, what) << ": a second backward did not add the same gradient "
                                       << "into p.grad() again (relative error " << r.second_sweep_err << ")");
                    note_fd(oc, r.fd, what);
                    for (const auto& in : r.fd.inputs) case_worst = std::max(case_worst, in.max_abs_error);
                }
            }
        }
        seed += 1000;
    }
    BOOST_TEST_MESSAGE(oc.name << ": max |analytic − finite difference| " << case_worst);
}

void run_float(const OpCase& oc)
{
    unsigned seed = case_seed(oc) + 50000;
    double case_worst = 0, case_dir = 0;
    auto one = [&](const Shapes& shapes, bool large) {
        const Problem p = make_problem(oc, shapes, seed, true);
        seed += 1000;
        for (Order order : {Order::alone, Order::after, Order::before}) {
            for (bool intermediate : {false, true}) {
                const std::string what = std::string(order_name(order)) + (intermediate ? ", inputs x·1" : ", leaf inputs") +
                                         ", shapes " + shapes_str(shapes);
                BOOST_TEST_CONTEXT(oc.name << ": " << what)
                {
                    const FloatResult f = float_check(oc, p, order, intermediate);
                    for (std::size_t i = 0; i < f.err.size(); ++i) {
                        if (!(order == Order::alone && oc.zero_alone))
                            BOOST_TEST(f.scale[i] > 0, label(oc, what) << ": float64 gradient of x" << i
                                                               << " is all zero: the comparison tests nothing");
                        BOOST_TEST(f.err[i] <= float_tol, label(oc, what) << ": float32 gradient of x" << i
                                                                  << " differs from float64 by " << f.err[i]
                                                                  << " of its largest entry " << f.scale[i]);
                        case_worst = std::max(case_worst, f.err[i]);
                        if (f.err[i] > worst().f32) {
                            worst().f32 = f.err[i];
                            worst().f32_where = oc.name + " " + what + " x" + std::to_string(i);
                        }
                    }
                    BOOST_TEST(f.repeat64 <= repeat64_tol,
                               label(oc, what) << ": a second float64 backward changed the gradients by "
                                       << f.repeat64);
                    BOOST_TEST(f.repeat32 <= repeat32_tol,
                               label(oc, what) << ": a second float32 backward changed the gradients by "
                                       << f.repeat32);
                    if (large && !(order == Order::alone && oc.zero_alone)) {
                        const auto dir = directional_check(oc, p, order, intermediate, f.g64, seed + 7);
                        for (std::size_t i = 0; i < dir.size(); ++i) {
                            BOOST_TEST(dir[i] <= directional_tol,
                                       label(oc, what) << ": float64 gradient of x" << i
                                               << " disagrees with a directional finite difference by " << dir[i]
                                               << " (relative to Σ|g·d|)");
                            case_dir = std::max(case_dir, dir[i]);
                            if (dir[i] > worst().dir) {
                                worst().dir = dir[i];
                                worst().dir_where = oc.name + " " + what + " x" + std::to_string(i);
                            }
                        }
                    }
                }
            }
        }
    };
    for (const Shapes& s : oc.small) one(s, false);
    for (const Shapes& s : oc.large) one(s, true);
    BOOST_TEST_MESSAGE(oc.name << ": max float32 vs float64 relative error " << case_worst
                               << ", max directional FD error (float64, large shapes) " << case_dir);
}

// ---------------------------------------------------------------------------------------------
// The harness catches what it is meant to catch: two deliberately broken ops built here.
// ---------------------------------------------------------------------------------------------

/// Y = 2X with a backward that ASSIGNS the input gradient (loses other consumers' gradients).
template <class T>
Var<T> twice_overwrite(const Var<T>& x)
{
    auto op = begin_op("twice_overwrite", {x});
    op.value().resize(x.shape());
    xt::noalias(op.value()) = T(2) * x.value();
    return op.finish([](BackwardContext<T>& c) {
        const InputGrad<T> g = c.input_grad(0);
        xt::noalias(*g.buffer) = T(2) * c.grad();  // bug: ignores g.accumulate
    });
}

/// Y = 2X with a backward that always ADDS (into a fresh buffer holding stale values).
template <class T>
Var<T> twice_stale(const Var<T>& x)
{
    auto op = begin_op("twice_stale", {x});
    op.value().resize(x.shape());
    xt::noalias(op.value()) = T(2) * x.value();
    return op.finish([](BackwardContext<T>& c) {
        const InputGrad<T> g = c.input_grad(0);
        *g.buffer += T(2) * c.grad();  // bug: ignores g.accumulate (adds into garbage)
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(harness)

BOOST_AUTO_TEST_CASE(an_op_that_overwrites_its_input_gradient_is_caught)
{
    const OpCase oc = make_case("twice_overwrite", [](const auto& x) { return twice_overwrite(x[0]); }, {Shapes{{3, 4}}}, {});
    const Problem p = make_problem(oc, Shapes{{3, 4}}, 3, false);
    // Consumer after the op: its gradient is there first and the op wipes it.
    BOOST_TEST(!fd_check(oc, p, Order::after, false).ok);
    BOOST_TEST(!fd_check(oc, p, Order::after, true).ok);
    BOOST_TEST(!param_check(oc, p, Order::before, false, 9).fd.ok);  // p.grad() held an earlier gradient
    BOOST_TEST(!param_check(oc, p, Order::after, true, 9).fd.ok);
    // Consumer before the op: the op writes first, the consumer adds, and the result is right —
    // which is why every op is checked in both orders.
    BOOST_TEST(fd_check(oc, p, Order::before, false).ok);
}

BOOST_AUTO_TEST_CASE(an_op_that_adds_into_a_fresh_buffer_is_caught)
{
    const OpCase oc = make_case("twice_stale", [](const auto& x) { return twice_stale(x[0]); }, {Shapes{{3, 4}}}, {});
    const Problem p = make_problem(oc, Shapes{{3, 4}}, 4, false);
    // The first sweep may happen to find zeros in a new buffer; the second finds the first's values.
    BOOST_TEST(run_twice<double>(oc, p, Order::before, false).second_vs_first > 0.1);
    BOOST_TEST(run_twice<double>(oc, p, Order::alone, false).second_vs_first > 0.1);
    // (No float32 variant here: whether its first sweep sees garbage depends on the allocator's
    // state, so it passed in a long-lived build and failed in a fresh process.)
}

BOOST_AUTO_TEST_CASE(the_table_covers_every_op_family)
{
    // Guard against the table shrinking silently: one name per public op (or variant) family.
    const char* required[] = {"add", "sub", "mul", "div", "neg", "add_scalar", "rsub_scalar", "mul_scalar",
                              "div_scalar", "rdiv_scalar", "pow_3", "exp", "log", "sqrt", "abs", "square",
                              "sigmoid", "tanh", "relu", "add_relu", "add_relu_self", "softmax_last", "log_softmax_last", "matmul",
                              "matmul_batched", "matmul_shared", "linear", "linear_self", "matmul_self", "mul_self",
                              "reshape", "flatten", "permute", "transpose", "slice_step", "concatenate",
                              "gather_axis1", "pick", "one_hot_mask", "sum_all", "sum_axes", "sum_axis_keepdims",
                              "mean_all", "mean_axes", "mean_axis_keepdims", "max_axis1", "conv2d", "conv2d_no_bias",
                              "max_pool2d_2x2", "avg_pool2d_2x2", "avg_pool2d_3_stride2", "relu_avg_pool2d_2x2",
                              "sigmoid_avg_pool2d_3_stride2", "tanh_avg_pool2d_2x2", "cross_entropy_mean",
                              "cross_entropy_sum", "nll_loss_mean", "nll_loss_sum", "mse_loss_mean", "mse_loss_sum",
                              "mse_loss_half_sum", "trace_scatter_loss"};
    for (const char* n : required) {
        const bool found = std::any_of(cases().begin(), cases().end(), [&](const OpCase& c) { return c.name == n; });
        BOOST_TEST(found, "no table entry for " << n);
    }
    for (const auto& c : cases()) {
        BOOST_TEST(!c.small.empty(), c.name << " has no small shapes (no finite-difference check)");
        BOOST_TEST(!c.large.empty(), c.name << " has no large shapes");
    }
}

BOOST_AUTO_TEST_SUITE_END()

/// Logs the worst errors of the whole run (--log_level=message).
struct LogWorst {
    void setup() {}
    void teardown()
    {
        const Worst& w = worst();
        BOOST_TEST_MESSAGE("worst |analytic - finite difference|: " << w.fd_abs << " (" << w.fd_where << ")");
        BOOST_TEST_MESSAGE("worst float32 vs float64: " << w.f32 << " (" << w.f32_where << ")");
        BOOST_TEST_MESSAGE("worst directional FD (float64, large shapes): " << w.dir << " (" << w.dir_where << ")");
    }
};
BOOST_TEST_GLOBAL_FIXTURE(LogWorst);

}  // namespace xgrad::test

// One test case per table entry in each of two suites, named after the op, so a failure reads
// "accumulate_fd/linear" and `--run_test=float32_vs_float64/conv2d` runs one.
bool init_unit_test()
{
    namespace ut = boost::unit_test;
    using xgrad::test::cases;
    ut::framework::master_test_suite().p_name.value = "autodiff_accumulate";
    ut::test_suite* fd = BOOST_TEST_SUITE("accumulate_fd");
    ut::test_suite* f32 = BOOST_TEST_SUITE("float32_vs_float64");
    for (std::size_t i = 0; i < cases().size(); ++i) {
        fd->add(ut::make_test_case([i] { xgrad::test::run_fd(cases()[i]); }, cases()[i].name, __FILE__, __LINE__));
        f32->add(ut::make_test_case([i] { xgrad::test::run_float(cases()[i]); }, cases()[i].name, __FILE__, __LINE__));
    }
    ut::framework::master_test_suite().add(fd);
    ut::framework::master_test_suite().add(f32);
    return true;
}

int main(int argc, char* argv[])
{
    return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}

// The threading policy (docs/performance.md, "Threads"), asserted without timing: one OpenMP pool
// for OpenBLAS when the build linked Debian's OpenMP build, set_num_threads reaching every back
// end, small loops and small GEMMs on the calling thread only, and the same numbers at 1 and 2
// threads where the split cannot change the order of the sums.
#define BOOST_TEST_MODULE autodiff_threads
#include <boost/test/unit_test.hpp>

#include <omp.h>
#include <strings.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/conv.hpp"
#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"
#include "kernels/pool.hpp"
#include "xgrad/nn.hpp"
#include "xgrad/reference/models.hpp"
#include "xgrad/threads.hpp"

using namespace xgrad;

namespace {

/// Restores one thread after each case, as the other suites expect.
struct RestoreOneThread {
    ~RestoreOneThread() { set_num_threads(1); }
};

std::vector<float> uniform(std::size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// The OpenMP thread numbers that ran parallel_for(n, work, ·).
std::set<int> threads_used(std::size_t n, std::size_t work)
{
    std::vector<int> who(n, -1);
    kernels::parallel_for(n, work, [&](std::size_t i) { who[i] = omp_get_thread_num(); });
    return {who.begin(), who.end()};
}

/// One LeNet (average pooling) forward and backward at the current thread count: loss, then every
/// parameter's gradient, in one vector.
std::vector<float> lenet_gradients()
{
    auto net = reference::lenet<float>(5, false);
    Tape<float> tape;
    auto x = Tensor<float>::from_shape({16, 1, 28, 28});
    const auto xs = uniform(x.size(), 7);
    std::copy(xs.begin(), xs.end(), x.begin());
    IndexTensor y = IndexTensor::from_shape({16});
    for (std::size_t i = 0; i < 16; ++i) y(i) = Index(i % 10);
    auto loss = nn::cross_entropy((*net)(tape.borrow(x)), y);
    tape.backward(loss);
    std::vector<float> out{loss.item()};
    for (auto* p : net->parameters()) out.insert(out.end(), p->grad().begin(), p->grad().end());
    return out;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(threads, RestoreOneThread)

BOOST_AUTO_TEST_CASE(blas_runs_on_the_pool_the_build_chose)
{
    // XGRAD_EXPECT_BLAS_THREADING comes from CMake: "OpenMP" when libopenblas0-openmp was found.
    BOOST_TEST(std::string(blas_threading()) == XGRAD_EXPECT_BLAS_THREADING);
}

// CTest runs this suite a second time with OMP_PROC_BIND=true (test_autodiff_threads_bound), where
// libgomp pins the main thread to one CPU before main: the limit must still be the process's CPUs.
BOOST_AUTO_TEST_CASE(max_num_threads_counts_the_cpus_of_the_process)
{
    BOOST_TEST(max_num_threads() == omp_get_num_procs());
}

BOOST_AUTO_TEST_CASE(set_num_threads_reaches_openblas_and_openmp)
{
    const int hi = max_num_threads();
    for (int n : {hi, 1}) {
        set_num_threads(n);
        BOOST_TEST(omp_get_max_threads() == n);
        BOOST_TEST(openblas_get_num_threads() == n);
    }
}

BOOST_AUTO_TEST_CASE(small_loops_stay_on_the_calling_thread)
{
    const std::size_t t = kernels::parallel_threshold();
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    const bool passive = policy && strcasecmp(policy, "passive") == 0;
    BOOST_TEST(kernels::omp_workers_sleep() == passive);
    BOOST_TEST(t == (passive ? std::size_t(1) << 18 : std::size_t(1) << 16));
    BOOST_TEST(kernels::gemm_parallel_threshold() == (passive ? std::size_t(1) << 23 : std::size_t(1) << 21));
    BOOST_TEST(kernels::gemm_split_threshold() == (passive ? std::size_t(1) << 23 : std::size_t(1) << 21));
    set_num_threads(max_num_threads());
    BOOST_TEST(threads_used(64, t - 1) == std::set<int>{0});
    if (max_num_threads() >= 2) {  // both threads take a share once the work reaches the threshold
        BOOST_TEST(threads_used(64, t) == (std::set<int>{0, 1}));
    }
    set_num_threads(1);
    BOOST_TEST(threads_used(64, t) == std::set<int>{0});
}

BOOST_AUTO_TEST_CASE(small_gemm_runs_on_one_thread_and_restores_the_count)
{
    if (max_num_threads() < 2) return;
    set_num_threads(2);
    // 64×10×84 (LeNet's last layer) is below kernels::gemm_parallel_threshold.
    const std::size_t m = 64, n = 10, k = 84;
    BOOST_TEST(m * n * k < kernels::gemm_parallel_threshold());
    const auto a = uniform(m * k, 1), b = uniform(k * n, 2);
    std::vector<float> c2(m * n), c1(m * n);
    kernels::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c2.data(), n);
    BOOST_TEST(omp_get_max_threads() == 2);  // the guard put the count back
    set_num_threads(1);
    kernels::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c1.data(), n);
    BOOST_TEST(bit_equal(c1, c2));
    // The product itself, element (3, 4), summed in double.
    double ref = 0;
    for (std::size_t p = 0; p < k; ++p) ref += double(a[3 * k + p]) * double(b[p * n + 4]);
    BOOST_TEST(c1[3 * n + 4] == ref, boost::test_tools::tolerance(1e-5));
}

namespace {
/// (m,n) = op(A)·op(B) in double, row-major, from float inputs.
std::vector<double> product(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a, const float* b)
{
    std::vector<double> c(m * n, 0.0);
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::size_t p = 0; p < k; ++p)
                s += double(ta ? a[p * m + i] : a[i * k + p]) * double(tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = s;
        }
    return c;
}
double max_rel_err(const Tensor<float>& got, const std::vector<double>& want)
{
    double e = 0, scale = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        e = std::max(e, std::abs(double(got.data()[i]) - want[i]));
        scale = std::max(scale, std::abs(want[i]));
    }
    return got.size() == want.size() ? e / scale : 1.0;
}
Tensor<float> tensor(const Shape& s, unsigned seed)
{
    Tensor<float> t = Tensor<float>::from_shape(s);
    const auto v = uniform(t.size(), seed);
    std::copy(v.begin(), v.end(), t.begin());
    return t;
}
}  // namespace

// Large float GEMMs on two threads are split by hand over C's rows or columns (kernels::gemm_split),
// each half its own sgemm with offset pointers: every element must still be its product, for each
// transpose, with beta, and with row strides wider than the matrices.
BOOST_AUTO_TEST_CASE(gemm_split_by_hand_follows_the_formula_on_two_threads)
{
    if (max_num_threads() < 2) return;
    set_num_threads(2);
    struct Case {
        std::size_t m, n, k;
        kernels::GemmSplit split;  // with oneDNN's sgemm
    };
    const Case cases[] = {{131, 120, 300, kernels::GemmSplit::rows},  // 65 + 66 rows
                          {40, 300, 400, kernels::GemmSplit::cols},   // 144 + 156 columns
                          {20, 100, 2200, kernels::GemmSplit::none}}; // oneDNN splits it itself
    for (const Case& cs : cases) {
        BOOST_TEST(cs.m * cs.n * cs.k >= kernels::gemm_split_threshold());
        if (kernels::sgemm_on_dnnl()) BOOST_TEST((kernels::gemm_split(cs.m, cs.n) == cs.split));
        for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            const std::size_t pad = 3, lda = (ta ? cs.m : cs.k) + pad, ldb = (tb ? cs.k : cs.n) + pad, ldc = cs.n + pad;
            const auto a = uniform((ta ? cs.k : cs.m) * lda, 41), b = uniform((tb ? cs.n : cs.k) * ldb, 42);
            auto c = uniform(cs.m * ldc, 43);
            const auto c0 = c;
            kernels::gemm(ta, tb, cs.m, cs.n, cs.k, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), ldc);
            double err = 0, scale = 0;
            std::size_t pad_changed = 0;
            for (std::size_t i = 0; i < cs.m; ++i) {
                for (std::size_t j = 0; j < cs.n; ++j) {
                    double s = 0;
                    for (std::size_t p = 0; p < cs.k; ++p)
                        s += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
                    const double want = 0.5 * s + 2.0 * c0[i * ldc + j];
                    err = std::max(err, std::abs(c[i * ldc + j] - want));
                    scale = std::max(scale, std::abs(want));
                }
                for (std::size_t j = cs.n; j < ldc; ++j) pad_changed += c[i * ldc + j] != c0[i * ldc + j];
            }
            BOOST_TEST_CONTEXT(cs.m << "x" << cs.n << "x" << cs.k << (ta ? " T" : " N") << (tb ? "T" : "N"))
            {
                BOOST_TEST(err / scale < 1e-5);
                BOOST_TEST(pad_changed == 0u);
            }
        }
    }
    // The decision: exactly two threads, outside a parallel region, the halves big enough.
    if (kernels::sgemm_on_dnnl()) {
        BOOST_TEST((kernels::gemm_split(64, 127) == kernels::GemmSplit::rows));
        BOOST_TEST((kernels::gemm_split(64, 128) == kernels::GemmSplit::cols));
        BOOST_TEST((kernels::gemm_split(63, 127) == kernels::GemmSplit::none));
        set_num_threads(1);
        BOOST_TEST((kernels::gemm_split(512, 512) == kernels::GemmSplit::none));
    }
}

// On two threads the backward of matmul and linear runs its two products at once (kernels::gemm_pair):
// each gradient must be its own product, overwritten or added to as the slot says, and an input
// given twice must get both products in its one buffer.
BOOST_AUTO_TEST_CASE(backward_products_at_once_follow_the_formulas_on_two_threads)
{
    if (max_num_threads() < 2) return;
    set_num_threads(2);
    const std::size_t m = 64, k = 320, n = 128;  // linear (64,320)·(128,320)ᵀ: both products above the pair's threshold
    BOOST_TEST(m * n * k > kernels::gemm_parallel_threshold());
    const Tensor<float> x0 = tensor({m, k}, 31), r = tensor({m, n}, 33);
    Parameter<float> w(tensor({n, k}, 32)), b(tensor({n}, 34));
    Tape<float> t;
    for (int sweep = 1; sweep <= 2; ++sweep) {  // the parameters' second sweep adds into the first
        const Var<float> x = t.variable(x0);
        t.backward(sum(linear(x, t.param(w), t.param(b)) * t.constant(r)));
        const auto dx = product(false, false, m, k, n, r.data(), w.value().data());  // G·W
        auto dw = product(true, false, n, k, m, r.data(), x0.data());               // Gᵀ·X
        for (double& v : dw) v *= sweep;
        BOOST_TEST(max_rel_err(x.grad(), dx) < 1e-5);
        BOOST_TEST(max_rel_err(w.grad(), dw) < 1e-5);
        t.clear();
    }
    // matmul: dA = G·Bᵀ, dB = Aᵀ·G
    const std::size_t p = 96, q = 160, s = 144;
    const Tensor<float> a0 = tensor({p, q}, 35), b0 = tensor({q, s}, 36), g0 = tensor({p, s}, 37);
    const Var<float> a = t.variable(a0), bb = t.variable(b0);
    t.backward(sum(matmul(a, bb) * t.constant(g0)));
    BOOST_TEST(max_rel_err(a.grad(), product(false, true, p, q, s, g0.data(), b0.data())) < 1e-5);
    BOOST_TEST(max_rel_err(bb.grad(), product(true, false, q, s, p, a0.data(), g0.data())) < 1e-5);
    t.clear();
    // one input twice: matmul(x, x) gets G·Xᵀ + Xᵀ·G in x's one buffer; linear(x, x) gets G·X + Gᵀ·X
    const Tensor<float> sq = tensor({q, q}, 38), gq = tensor({q, q}, 39);
    const Var<float> xs = t.variable(sq);
    t.backward(sum(matmul(xs, xs) * t.constant(gq)));
    auto want = product(false, true, q, q, q, gq.data(), sq.data());
    const auto second = product(true, false, q, q, q, sq.data(), gq.data());
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += second[i];
    BOOST_TEST(max_rel_err(xs.grad(), want) < 1e-5);
    t.clear();
    const Var<float> xl = t.variable(sq);
    t.backward(sum(linear(xl, xl) * t.constant(gq)));
    want = product(false, false, q, q, q, gq.data(), sq.data());
    const auto second_l = product(true, false, q, q, q, gq.data(), sq.data());
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += second_l[i];
    BOOST_TEST(max_rel_err(xl.grad(), want) < 1e-5);
}

BOOST_AUTO_TEST_CASE(element_loops_give_the_same_bits_on_two_threads)
{
    // Above the threshold, so two threads split them: each element is still computed by one
    // thread in the same order.
    const kernels::ConvGeom g{32, 6, 28, 28, 16, 5, 5, 1, 0, 24, 24};
    BOOST_TEST(g.k() * g.l() >= kernels::parallel_threshold());
    const auto x = uniform(g.n * g.c * g.h * g.w, 3);
    const kernels::PoolGeom pg{g.n * g.c, 28, 28, 2, 2, 14, 14};
    auto run = [&](int threads, std::vector<float>& cols, std::vector<float>& pooled) {
        set_num_threads(threads);
        cols.assign(g.k() * g.l(), 0.0f);
        pooled.assign(pg.planes * 14 * 14, 0.0f);
        kernels::im2col(x.data(), g, cols.data());
        kernels::avg_pool2d_forward(x.data(), pg, pooled.data());
    };
    std::vector<float> cols1, pooled1, cols2, pooled2;
    run(1, cols1, pooled1);
    run(max_num_threads(), cols2, pooled2);
    BOOST_TEST(bit_equal(cols1, cols2));
    BOOST_TEST(bit_equal(pooled1, pooled2));
    BOOST_TEST(pooled1[0] == 0.25f * (x[0] + x[1] + x[28] + x[29]), boost::test_tools::tolerance(1e-6f));
}

// batch_norm splits its images over the threads, forward and backward: the same bits as on one
// thread (per-image partial sums, added in image order), and values checked against the definition
// on one channel.
BOOST_AUTO_TEST_CASE(batch_norm_gives_the_same_bits_on_two_threads)
{
    const std::size_t N = 16, C = 8, H = 24, W = 24;  // 73,728 values: above the threshold
    BOOST_TEST(N * C * H * W >= kernels::parallel_threshold());
    const auto xv = uniform(N * C * H * W, 11), gv = uniform(N * C * H * W, 12);
    Tensor<float> x0 = Tensor<float>::from_shape({N, C, H, W}), g0 = x0;
    std::copy(xv.begin(), xv.end(), x0.data());
    std::copy(gv.begin(), gv.end(), g0.data());
    Tensor<float> w0 = xt::linspace<float>(0.5f, 1.5f, C), b0 = xt::linspace<float>(-0.2f, 0.2f, C);
    auto run = [&](int threads, std::vector<float>& y, std::vector<float>& dx, std::vector<float>& dw) {
        set_num_threads(threads);
        Tape<float> t;
        const Var<float> x = t.variable(x0), w = t.variable(w0), b = t.variable(b0);
        const Var<float> out = batch_norm(x, BatchNormFuncOptions<float>().weight(w).bias(b).eps(1e-5));
        t.backward(sum(out * t.constant(g0)));
        y.assign(out.value().begin(), out.value().end());
        dx.assign(x.grad().begin(), x.grad().end());
        dw.assign(w.grad().begin(), w.grad().end());
    };
    std::vector<float> y1, dx1, dw1, y2, dx2, dw2;
    run(1, y1, dx1, dw1);
    run(max_num_threads(), y2, dx2, dw2);
    BOOST_TEST(bit_equal(y1, y2));
    BOOST_TEST(bit_equal(dx1, dx2));
    BOOST_TEST(bit_equal(dw1, dw2));
    // channel 3, element (5, 3, 7, 9): (x − μ) / √(σ² + ε) · γ + β, statistics in double
    double mu = 0, var = 0;
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t i = 0; i < H * W; ++i) mu += x0.data()[(n * C + 3) * H * W + i];
    mu /= double(N * H * W);
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t i = 0; i < H * W; ++i) var += std::pow(x0.data()[(n * C + 3) * H * W + i] - mu, 2);
    var /= double(N * H * W);
    const std::size_t at = ((5 * C + 3) * H + 7) * W + 9;
    const double want = (x0.data()[at] - mu) / std::sqrt(var + 1e-5) * w0(3) + b0(3);
    BOOST_TEST(y2[at] == want, boost::test_tools::tolerance(1e-5));
}

// relu splits its element loops over the threads: every element once, NaN kept, backward masked.
BOOST_AUTO_TEST_CASE(relu_on_two_threads_follows_the_formula)
{
    const std::size_t n = (std::size_t(1) << 17) + 3;
    auto xv = uniform(n, 21);
    xv[n - 1] = std::nanf("");
    Tensor<float> x0 = Tensor<float>::from_shape({n}), g0 = x0;
    std::copy(xv.begin(), xv.end(), x0.data());
    const auto gv = uniform(n, 22);
    std::copy(gv.begin(), gv.end(), g0.data());
    set_num_threads(max_num_threads());
    Tape<float> t;
    const Var<float> x = t.variable(x0);
    const Var<float> y = relu(x);
    t.backward(sum(y * t.constant(g0)) + sum(x * t.constant(g0)));  // dx = g·[x > 0] added to g
    set_num_threads(1);
    std::size_t wrong_y = 0, wrong_dx = 0;
    for (std::size_t k = 0; k + 1 < n; ++k) {
        wrong_y += y.value()(k) != (xv[k] < 0 ? 0.0f : xv[k]);
        wrong_dx += x.grad()(k) != (xv[k] > 0 ? gv[k] : 0.0f) + gv[k];
    }
    BOOST_TEST(wrong_y == 0u);
    BOOST_TEST(wrong_dx == 0u);
    BOOST_TEST(std::isnan(y.value()(n - 1)));
}

// The optimizers' update loops split large tensors over the threads (parallel_ranges): the result
// must be the scalar formula's, element for element, on 1 and on 2 threads, across range edges.
BOOST_AUTO_TEST_CASE(optimizer_steps_on_large_tensors_follow_the_formula_on_two_threads)
{
    const std::size_t n = 3 * (std::size_t(1) << 16) + 5;  // above the threshold, not a multiple of 16
    Tensor<float> w0 = Tensor<float>::from_shape({n}), g1 = w0, g2 = w0;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    for (std::size_t k = 0; k < n; ++k) w0(k) = u(rng), g1(k) = u(rng), g2(k) = u(rng);
    const float lr = 0.1f, mu = 0.9f, wd = 0.01f;
    // SGD with momentum, Nesterov and weight decay, two steps; Adam with weight decay, two steps
    std::vector<float> sgd(n), adam(n);
    for (std::size_t k = 0; k < n; ++k) {
        float w = w0(k), v = 0;
        for (int s = 0; s < 2; ++s) {
            const float d = (s ? g2(k) : g1(k)) + wd * w;
            v = s ? mu * v + d : d;
            w -= lr * (d + mu * v);
        }
        sgd[k] = w;
        float wa = w0(k), m = 0, q = 0;
        for (int s = 0; s < 2; ++s) {
            const float d = (s ? g2(k) : g1(k)) + wd * wa;
            m = 0.9f * m + 0.1f * d;
            q = 0.999f * q + 0.001f * (d * d);
            const float c1 = float(1 - std::pow(0.9, s + 1)), c2 = float(1 - std::pow(0.999, s + 1));
            wa -= lr * (m / c1) / (std::sqrt(q / c2) + 1e-8f);
        }
        adam[k] = wa;
    }
    for (int threads : {1, max_num_threads()}) {
        set_num_threads(threads);
        Parameter<float> p(w0), q(w0);
        nn::SGD<float> opt({&p}, nn::SGDOptions(lr).momentum(mu).nesterov(true).weight_decay(wd));
        nn::Adam<float> opt2({&q}, nn::AdamOptions(lr).weight_decay(wd));
        for (const Tensor<float>* g : {&g1, &g2}) {
            p.grad() = *g, q.grad() = *g;
            opt.step();
            opt2.step();
        }
        double worst_sgd = 0, worst_adam = 0;
        for (std::size_t k = 0; k < n; ++k) {
            worst_sgd = std::max(worst_sgd, double(std::abs(p.value()(k) - sgd[k])));
            worst_adam = std::max(worst_adam, double(std::abs(q.value()(k) - adam[k])));
        }
        BOOST_TEST_MESSAGE(threads << " threads: largest difference from the formula, SGD " << worst_sgd << ", Adam "
                                   << worst_adam);
        // a few float ulps (the compiler may fuse multiply-adds differently); a skipped or doubled
        // element would be off by about lr = 0.1
        BOOST_TEST(worst_sgd < 1e-5);
        BOOST_TEST(worst_adam < 1e-5);
    }
    set_num_threads(1);
}

BOOST_AUTO_TEST_CASE(lenet_step_is_the_same_after_two_threads)
{
    set_num_threads(1);
    const auto before = lenet_gradients();
    set_num_threads(max_num_threads());
    const auto two = lenet_gradients();
    set_num_threads(1);
    const auto after = lenet_gradients();
    BOOST_TEST(std::isfinite(before[0]));
    BOOST_TEST(bit_equal(before, after));  // nothing of the 2-thread run stays behind
    // Two threads may split a GEMM's sums differently (oneDNN chooses): close, not bitwise.
    BOOST_REQUIRE(two.size() == before.size());
    double worst = 0;
    for (std::size_t i = 0; i < two.size(); ++i) worst = std::max(worst, double(std::abs(two[i] - before[i])));
    BOOST_TEST_MESSAGE("lenet: loss " << before[0] << ", largest 1- vs 2-thread difference " << worst);
    BOOST_TEST(worst < 1e-5);
}

BOOST_AUTO_TEST_SUITE_END()

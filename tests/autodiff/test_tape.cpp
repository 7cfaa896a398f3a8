// Tape mechanics: accumulation, long chains, memory reuse, parameters, no-grad, detach, threads,
// the op profiler.
#define BOOST_TEST_MODULE autodiff_tape
#include <chrono>
#include <cmath>
#include <optional>
#include <thread>

#include "test_util.hpp"
#include "xgrad/op.hpp"

using namespace xgrad;
namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(value_used_twice_accumulates)
{
    // y = x·x + 3x → dy/dx = 2x + 3 = 7 at x = 2
    Tape<double> t;
    auto x = t.variable(Tensor<double>{2.0});
    auto y = x * x + x * 3.0;
    t.backward(sum(y));
    BOOST_TEST(x.grad()(0) == 7.0);
}

BOOST_AUTO_TEST_CASE(long_chain_has_no_recursion)
{
    // x_{i+1} = x_i · c + d for 100,000 ops (50,000 of each): dy/dx0 = c^50000.
    const double c = 1.00002;
    Tape<double> t;
    auto x0 = t.variable(Tensor<double>{0.5});
    auto x = x0;
    for (int i = 0; i < 50000; ++i) x = x * c + 1e-6;
    BOOST_TEST(t.size() == 100001u);
    t.backward(sum(x));
    BOOST_TEST(x0.grad()(0) == std::pow(c, 50000), tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(clear_reuses_node_memory)
{
    Tape<float> t;
    Parameter<float> w(Tensor<float>{{1, 2}, {3, 4}});
    Tensor<float> x = {{1, 1}};
    const float* first_value = nullptr;
    std::size_t cap = 0;
    for (int step = 0; step < 3; ++step) {
        auto h = tanh(matmul(t.borrow(x), t.param(w)));
        auto loss = sum(h);
        t.backward(loss);
        if (step == 0) {
            first_value = h.value().data();
            cap = t.capacity();
        } else {
            // same node slot, same buffer: no allocation for the value in later steps
            BOOST_TEST(h.value().data() == first_value);
            BOOST_TEST(t.capacity() == cap);
        }
        t.clear();
        BOOST_TEST(t.size() == 0u);
    }
}

BOOST_AUTO_TEST_CASE(parameters_accumulate_until_zeroed)
{
    Parameter<double> w(Tensor<double>{1.0, 2.0}, "w");
    Tape<double> t;
    for (int step = 1; step <= 3; ++step) {
        auto y = sum(t.param(w) * 3.0) + sum(t.param(w));  // used twice on one tape: d/dw = 3 + 1 = 4
        t.backward(y);
        BOOST_TEST(w.grad() == (Tensor<double>{4.0 * step, 4.0 * step}));
        t.clear();
    }
    w.zero_grad();
    BOOST_TEST(w.grad() == (Tensor<double>{0.0, 0.0}));
    BOOST_TEST(w.name() == "w");
}

// zero_grad() only marks the gradient: the next write overwrites the stale buffer, a read first
// writes the zeros out. Each path must give what a buffer of real zeros would.
BOOST_AUTO_TEST_CASE(zero_grad_then_backward_overwrites_the_stale_gradient)
{
    const Tensor<double> a0 = test::rnd(Shape{3, 4}, 11), w0 = test::rnd(Shape{4, 2}, 12);
    Parameter<double> w(w0, "w"), fresh(w0);
    Tape<double> t;
    auto loss = [&](Parameter<double>& p) {
        auto y = matmul(t.constant(a0), t.param(p));  // dW through a GEMM, then an elementwise use
        return sum(y * y) + sum(t.param(p) * 3.0);
    };
    t.backward(loss(fresh));
    const Tensor<double> expected = fresh.grad();  // a single sweep into real zeros
    t.clear();
    for (int step = 0; step < 2; ++step) {  // stale contents: two sweeps' sum
        t.backward(loss(w));
        t.clear();
    }
    BOOST_TEST(xt::allclose(w.grad(), 2.0 * expected, 1e-14, 0.0));

    w.zero_grad();  // written by the next sweep, never read
    t.backward(loss(w));
    t.clear();
    BOOST_TEST(xt::allclose(w.grad(), expected, 1e-14, 0.0));

    w.zero_grad();  // read before the sweep: real zeros, then added into
    BOOST_TEST(w.grad() == xt::zeros<double>(w0.shape()));
    t.backward(loss(w));
    t.clear();
    BOOST_TEST(xt::allclose(w.grad(), expected, 1e-14, 0.0));

    w.zero_grad();  // a sweep that does not reach w leaves it zero
    t.backward(sum(t.constant(a0) * t.variable(a0)));
    t.clear();
    BOOST_TEST(w.grad() == xt::zeros<double>(w0.shape()));
    t.backward(loss(w));  // a gradient in the buffer again
    t.clear();
    const Parameter<double>& cw = w;
    w.zero_grad();
    BOOST_TEST(cw.grad() == xt::zeros<double>(w0.shape()));  // the const read writes the zeros too
}

BOOST_AUTO_TEST_CASE(only_what_requires_grad_gets_a_gradient)
{
    Tape<double> t;
    auto c = t.constant(Tensor<double>{1.0, 2.0});
    auto v = t.variable(Tensor<double>{3.0, 4.0});
    auto y = c * v;
    BOOST_TEST(y.requires_grad());
    BOOST_TEST(!(c * c).requires_grad());
    t.backward(sum(y));
    BOOST_TEST(v.grad() == (Tensor<double>{1.0, 2.0}));
    BOOST_CHECK_THROW(c.grad(), std::logic_error);
}

BOOST_AUTO_TEST_CASE(no_grad_and_detach)
{
    Tape<double> t;
    Parameter<double> w(Tensor<double>{2.0});
    {
        NoGradGuard<double> ng(t);
        auto y = t.param(w) * 3.0;
        BOOST_TEST(!y.requires_grad());
        BOOST_TEST(y.value()(0) == 6.0);
        BOOST_CHECK_THROW(t.backward(y), std::logic_error);
    }
    BOOST_TEST(t.grad_enabled());
    // detach cuts the path: y = x·detach(x) → dy/dx = detach(x) = 5, not 2x = 10
    auto x = t.variable(Tensor<double>{5.0});
    auto y = x * t.detach(x);
    t.backward(sum(y));
    BOOST_TEST(x.grad()(0) == 5.0);
}

BOOST_AUTO_TEST_CASE(unreached_var_has_zero_gradient)
{
    Tape<double> t;
    auto a = t.variable(Tensor<double>{1.0, 2.0});
    auto b = t.variable(Tensor<double>{3.0});
    t.backward(sum(a * 2.0));
    BOOST_TEST(b.grad() == (Tensor<double>{0.0}));
    BOOST_TEST(a.grad() == (Tensor<double>{2.0, 2.0}));
}

BOOST_AUTO_TEST_CASE(repeated_backward_gives_same_tape_gradients)
{
    Tape<double> t;
    auto x = t.variable(Tensor<double>{1.0, -2.0});
    auto loss = sum(exp(x));
    t.backward(loss);
    const Tensor<double> g1 = x.grad();
    t.backward(loss);
    BOOST_TEST(x.grad() == g1);  // tape gradients hold the latest sweep, they do not double
}

namespace {
Tensor<float> gradient_on_own_tape(const Tensor<float>& w0, const Tensor<float>& x)
{
    Tape<float> t;
    Parameter<float> w(w0);
    for (int step = 0; step < 20; ++step) {
        w.zero_grad();
        auto h = sigmoid(matmul(t.borrow(x), t.param(w)));
        t.backward(mean(log_softmax(h, 1)));
        t.clear();
    }
    return w.grad();
}
}  // namespace

BOOST_AUTO_TEST_CASE(two_threads_two_tapes_same_gradients)
{
    Tensor<float> w0 = xt::cast<float>(test::rnd(Shape{16, 8}, 1));
    Tensor<float> x = xt::cast<float>(test::rnd(Shape{32, 16}, 2));
    const Tensor<float> ref = gradient_on_own_tape(w0, x);
    Tensor<float> g1, g2;
    std::thread a([&] { g1 = gradient_on_own_tape(w0, x); });
    std::thread b([&] { g2 = gradient_on_own_tape(w0, x); });
    a.join();
    b.join();
    BOOST_TEST(g1 == ref);
    BOOST_TEST(g2 == ref);
    BOOST_TEST(xt::amax(xt::abs(ref))() > 0.0f);
}

BOOST_AUTO_TEST_CASE(intermediate_gradients_are_released_unless_retained)
{
    // A 1,000-op chain on (64,64) tensors: released gradients go back to a pool, so the sweep
    // needs a handful of gradient buffers, not one per node; reading one says why it is gone.
    Tape<double> t;
    auto x0 = t.variable(xt::ones<double>({64, 64}));
    auto x = x0;
    for (int i = 0; i < 1000; ++i) x = tanh(x) * 1.001;
    auto mid = x;
    for (int i = 0; i < 10; ++i) x = x * 1.001;
    t.backward(sum(x));
    BOOST_TEST(xt::amax(xt::abs(x0.grad()))() > 0.0);  // leaves keep theirs
    try {
        mid.grad();
        BOOST_ERROR("no throw");
    } catch (const std::logic_error& e) {
        BOOST_TEST(std::string(e.what()).find("set_retain_grad(true)") != std::string::npos, e.what());
    }
    const Tensor<double> g_released = x0.grad();
    t.set_retain_grad(true);
    t.backward(sum(x));
    BOOST_TEST(x0.grad() == g_released);  // same numbers either way
    BOOST_TEST(mid.grad().shape() == (Shape{64, 64}));
}

BOOST_AUTO_TEST_CASE(backward_hooks_see_each_parameter_final)
{
    // y = Σ (x·w1)·w2 + w1·3 (w1 used twice): at w1's leaf both shares are in.
    Parameter<double> w1(Tensor<double>{2.0}, "w1"), w2(Tensor<double>{5.0}, "w2"), unused(Tensor<double>{1.0}, "u");
    Tape<double> t;
    auto x = t.variable(Tensor<double>{4.0});
    auto p1 = t.param(w1);
    auto p2 = t.param(w2);
    auto y = sum(x * p1 * p2 + p1 * 3.0);
    std::vector<std::pair<std::string, double>> seen;  // (name, its gradient when reported)
    std::vector<std::uint32_t> ran;                     // node_done's positions
    bool done = false;
    t.set_backward_hooks({[&](Parameter<double>& p, std::uint32_t i) {
                              BOOST_TEST(t.at(i).parameter() == &p);
                              seen.emplace_back(p.name(), p.grad()(0));
                          },
                          [&] { done = true; },
                          [&](std::uint32_t i) { ran.push_back(i); }});
    t.backward(y);
    BOOST_TEST(done);
    // Once per op node below the output, in reverse order (x * p1, * p2, p1 * 3, +, sum: 5 ops
    // after the 3 leaves), never for a leaf.
    BOOST_TEST((ran == std::vector<std::uint32_t>{7, 6, 5, 4, 3}));
    BOOST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[0].first == "w2");  // reverse creation order
    BOOST_TEST(seen[0].second == 8.0);  // x·w1
    BOOST_TEST(seen[1].first == "w1");
    BOOST_TEST(seen[1].second == 23.0);  // x·w2 + 3
    BOOST_TEST(unused.grad()(0) == 0.0);
    t.clear();  // hooks belong to the record
    BOOST_TEST(!t.backward_hooks().param_ready);
    BOOST_TEST(!t.backward_hooks().sweep_done);
    auto z = sum(t.param(w1) * 2.0);
    t.backward(z);
    BOOST_TEST(seen.size() == 2u);
}

namespace {
/// Busy-waits `ms` milliseconds: an op of known cost for the profiler.
void spin(double ms)
{
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(ms);
    while (std::chrono::steady_clock::now() < end) {
    }
}

/// y = x (identity) whose forward takes 3 ms and backward 2 ms.
Var<double> slow_identity(const Var<double>& x)
{
    auto op = begin_op("slow_identity", {x});
    op.value().resize(x.shape());
    xt::noalias(op.value()) = x.value();
    spin(3);
    return op.finish([](BackwardContext<double>& c) {
        spin(2);
        c.accumulate(0, c.grad());
    });
}
}  // namespace

BOOST_AUTO_TEST_CASE(profiler_times_each_op_forward_and_backward)
{
    Tape<double> t;
    Parameter<double> w(Tensor<double>{{1, 2}, {3, 4}});
    std::optional<Profiler<double>> prof(std::in_place, t);
    auto step = [&] {
        Var<double> y;
        {
            ScopeGuard<double> s(t, "block");
            y = relu(matmul(t.param(w), slow_identity(t.variable(Tensor<double>{{1, -1}, {2, 0}}))));
        }
        auto c = t.constant(Tensor<double>{1.0}) * 2.0;  // no gradient: forward only
        t.backward(sum(y * c));
        t.clear();
    };
    step();
    prof->reset();  // the warm-up step is forgotten
    for (int i = 0; i < 3; ++i) step();
    const ProfileReport r = prof->report();
    BOOST_TEST(r.sweeps == 3u);
    BOOST_TEST_REQUIRE(!r.rows.empty());
    BOOST_TEST(r.rows[0].op == "slow_identity");  // the largest first
    auto row = [&](const std::string& op) {
        for (const OpProfile& p : r.rows)
            if (p.op == op) return p;
        BOOST_FAIL("no row for " + op);
        return OpProfile{};
    };
    const OpProfile s = row("slow_identity");
    BOOST_TEST(s.forward_calls == 3u);
    BOOST_TEST(s.backward_calls == 3u);
    BOOST_TEST(s.forward_seconds >= 3 * 3e-3);
    BOOST_TEST(s.backward_seconds >= 3 * 2e-3);
    BOOST_TEST(s.backward_seconds < s.forward_seconds);  // 6 against 9 ms: the two columns not swapped
    for (const char* op : {"matmul", "relu", "sum", "mul"}) BOOST_TEST(row(op).backward_calls == 3u, op);
    BOOST_TEST(row("mul_scalar").forward_calls == 3u);
    BOOST_TEST(row("mul_scalar").backward_calls == 0u);  // of a constant: no backward ran
    BOOST_TEST(r.op_seconds() <= r.wall_seconds);
    BOOST_TEST(r.op_seconds() >= 15e-3);
    // Per scope: the ops in the guard carry its name; those after it do not.
    const ProfileReport by_scope = prof->report(ProfileGroup::scope_and_op);
    BOOST_TEST(by_scope.rows.size() == r.rows.size());
    for (const OpProfile& p : by_scope.rows) {
        const bool inside = p.op == "slow_identity" || p.op == "matmul" || p.op == "relu";
        BOOST_TEST((p.scope == "block") == inside, p.op);
    }
    const std::string table = r.table();
    BOOST_TEST(table.find("3 backward sweeps") == 0u);
    const std::string json = r.json();
    BOOST_TEST(json.find("\"sweeps\": 3") != std::string::npos);
    BOOST_TEST(json.find("\"op\": \"slow_identity\"") != std::string::npos);
    BOOST_TEST(table.find("slow_identity") != std::string::npos);
    // One profiler per tape; a new one once the first is gone; a profiler may outlive its tape.
    BOOST_CHECK_THROW(Profiler<double>{t}, std::logic_error);
    prof.reset();
    {
        Tape<double> t2;
        prof.emplace(t2);
        BOOST_CHECK_THROW(Profiler<double>{t2}, std::logic_error);
        auto x = t2.variable(Tensor<double>{1.0, 2.0});
        t2.backward(sum(exp(x)));
    }
    const ProfileReport after = prof->report();
    BOOST_TEST(after.sweeps == 1u);
    BOOST_TEST(after.rows.size() == 2u);  // exp, sum
    Profiler<double> again(t);             // t had its profiler detached
    t.backward(sum(t.variable(Tensor<double>{1.0}) * 2.0));
    BOOST_TEST(again.report().sweeps == 1u);
    // attach(): the profile moves to another tape with what it has so far; the first is free again
    Tape<double> t3;
    again.attach(t3);
    t3.backward(sum(t3.variable(Tensor<double>{1.0}) * 3.0));
    t.backward(sum(t.variable(Tensor<double>{1.0}) * 4.0));  // no longer profiled
    BOOST_TEST(again.report().sweeps == 2u);
    Profiler<double> on_t(t);
    BOOST_CHECK_THROW(again.attach(t), std::logic_error);
    t3.backward(sum(t3.variable(Tensor<double>{1.0})));  // still on t3 after the refused attach
    BOOST_TEST(again.report().sweeps == 3u);
    BOOST_TEST(on_t.report().sweeps == 0u);
}

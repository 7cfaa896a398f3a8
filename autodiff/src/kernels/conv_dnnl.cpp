// Kernels: float convolution on oneDNN's primitives (see conv_dnnl.hpp).
#include "kernels/conv_dnnl.hpp"
#include "kernels/parallel.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#ifdef XGRAD_USE_DNNL
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <xsimd/memory/xsimd_aligned_allocator.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>
#endif

namespace xgrad::kernels {

#ifndef XGRAD_USE_DNNL

bool dnnl_conv_available() { return false; }
std::size_t dnnl_conv2d_kept_input_size(const DnnlConvShape&, bool) { return 0; }
void dnnl_conv2d_forward(const float*, const float*, const float*, const DnnlConvShape&, float*, float*)
{
    throw std::logic_error("dnnl_conv2d_forward: built without oneDNN");
}
void dnnl_conv2d_backward(const float*, const float*, const float*, const DnnlConvShape&, float*, bool, float*, bool,
                          float*, bool, const float*)
{
    throw std::logic_error("dnnl_conv2d_backward: built without oneDNN");
}

#else

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using dims = memory::dims;
/// Cache-line aligned: the primitives load whole 64-byte vectors, which straddle two lines at
/// malloc's 16-byte alignment.
template <class T>
using AlignedVector = std::vector<T, xsimd::aligned_allocator<T, 64>>;

/// Layout the primitives work in. Blocked (format_tag::any, oneDNN's choice, nChw16c here) with
/// reorders from and to xgrad's NCHW; XGRAD_DNNL_CONV_LAYOUT=plain keeps every tensor NCHW/OIHW.
bool blocked_layout()
{
    static const bool b = [] {
        const char* e = std::getenv("XGRAD_DNNL_CONV_LAYOUT");
        return !(e && std::strcmp(e, "plain") == 0);
    }();
    return b;
}

dnnl::engine& cpu_engine()
{
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
}

dnnl::stream& cpu_stream()
{
    thread_local dnnl::stream s(cpu_engine());
    return s;
}

/// Scratch shared by every primitive of this thread (user-managed scratchpad: oneDNN allocates none),
/// and a float buffer for outputs that are added, not written.
AlignedVector<unsigned char>& scratchpad()
{
    thread_local AlignedVector<unsigned char> s;
    return s;
}
float* acc_buffer(std::size_t n)
{
    thread_local AlignedVector<float> b;
    if (b.size() < n) b.resize(n);
    return b.data();
}

dnnl::primitive_attr user_scratchpad_attr()
{
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
}

/// A primitive with its scratchpad memory (pointed at the thread's scratch before each run).
struct Prim {
    dnnl::primitive p;
    memory scratch;
    template <class Pd>
    void init(const Pd& pd)
    {
        p = dnnl::primitive(pd.get());
        const memory::desc sd = pd.scratchpad_desc();
        if (scratchpad().size() < sd.get_size()) scratchpad().resize(sd.get_size());
        if (sd.get_size() > 0) scratch = memory(sd, cpu_engine(), nullptr);
    }
    // C API: the C++ execute() takes an std::unordered_map, an allocation per call.
    void run(std::initializer_list<dnnl_exec_arg_t> args) const
    {
        dnnl_exec_arg_t a[10];
        int n = 0;
        for (const dnnl_exec_arg_t& x : args) a[n++] = x;
        if (scratch) {
            scratch.set_data_handle(scratchpad().data());
            a[n++] = {DNNL_ARG_SCRATCHPAD, scratch.get()};
        }
        if (dnnl_primitive_execute(p.get(), cpu_stream().get(), n, a) != dnnl_success)
            throw std::runtime_error("oneDNN convolution: primitive execution failed");
    }
};

/// Buffers for tensors in a primitive's own layout, shared by every primitive of this thread: one
/// call has at most three (two inputs, one output), each in its own slot, live only during the call.
/// Slot 3 holds the output gradient through both backward primitives, which both read it.
AlignedVector<float>& layout_slot(int i)
{
    thread_local AlignedVector<float> slots[4];
    return slots[i];
}

/// One tensor argument: the caller's buffer in plain layout (`user`) and, when the primitive chose
/// another layout, the same tensor in that layout (`prim`, in slot `slot`) with the reorder between them.
struct Arg {
    memory user, prim;
    Prim reorder;  // user → prim for inputs, prim → user for outputs
    int slot = 0;
    bool reordered = false;

    void init(const memory::desc& user_md, const memory::desc& prim_md, int slot_index, bool input)
    {
        user = memory(user_md, cpu_engine(), nullptr);
        if (prim_md == user_md) {
            prim = user;
            return;
        }
        reordered = true;
        slot = slot_index;
        AlignedVector<float>& buf = layout_slot(slot);
        if (buf.size() < prim_md.get_size() / sizeof(float) + 1) buf.resize(prim_md.get_size() / sizeof(float) + 1);
        prim = memory(prim_md, cpu_engine(), nullptr);
        reorder.init(input ? dnnl::reorder::primitive_desc(user, prim, user_scratchpad_attr())
                           : dnnl::reorder::primitive_desc(prim, user, user_scratchpad_attr()));
    }
    /// Input: point at the caller's data, bring it into the primitive's layout.
    dnnl_memory_t in(const float* data) const
    {
        user.set_data_handle(const_cast<float*>(data));
        if (reordered) {
            prim.set_data_handle(layout_slot(slot).data());
            reorder.run({{DNNL_ARG_FROM, user.get()}, {DNNL_ARG_TO, prim.get()}});
        }
        return prim.get();
    }
    /// Input: the caller's data brought into the primitive's layout at `dst` instead of the slot.
    dnnl_memory_t in_to(const float* data, float* dst) const
    {
        user.set_data_handle(const_cast<float*>(data));
        prim.set_data_handle(dst);
        reorder.run({{DNNL_ARG_FROM, user.get()}, {DNNL_ARG_TO, prim.get()}});
        return prim.get();
    }
    /// Input already in the primitive's layout at `data`.
    dnnl_memory_t at(const float* data) const
    {
        prim.set_data_handle(const_cast<float*>(data));
        return prim.get();
    }
    /// Input already in the primitive's layout in this argument's slot (brought there by another
    /// argument of the same slot and layout).
    dnnl_memory_t again() const
    {
        prim.set_data_handle(layout_slot(slot).data());
        return prim.get();
    }
    /// Output, after the primitive ran: into the caller's layout at `data`.
    void out(float* data) const
    {
        if (!reordered) return;
        user.set_data_handle(data);
        reorder.run({{DNNL_ARG_FROM, prim.get()}, {DNNL_ARG_TO, user.get()}});
    }
    /// Output, before the primitive runs: where it writes (`data` itself when not reordered).
    dnnl_memory_t target(float* data) const
    {
        if (reordered)
            prim.set_data_handle(layout_slot(slot).data());
        else
            user.set_data_handle(data);
        return prim.get();
    }
};

struct Entry {
    DnnlConvShape s;
    bool bias;
    memory::desc x_md, w_md, b_md, y_md;
    dims strides, dilates, pad;
    dnnl::convolution_forward::primitive_desc fwd_pd;
    Prim fwd;
    Arg f_x, f_w, f_y;
    memory f_b;
    bool have_bwd_data = false;
    Prim bwd_data;
    Arg d_gy, d_w, d_dx;
    bool have_bwd_w[2] = {false, false};  // [with diff bias]
    Prim bwd_w[2];
    Arg w_x[2], w_gy[2], w_dw[2];
    memory w_db;
};

memory::desc md_any(const dims& d) { return memory::desc(d, dt::f32, blocked_layout() ? tag::any : tag::undef); }

/// The primitive's layout of an activation (x or y, `user` its caller's layout): oneDNN's choice
/// for NCHW callers, the caller's own for NHWC (its kernels run on NHWC directly; a blocked layout
/// would bring back the two reorders per tensor that NHWC avoids).
memory::desc act_md(const memory::desc& user, bool channels_last)
{
    return channels_last || !blocked_layout() ? user : md_any(user.dims());
}

/// oneDNN's first choice for an NHWC forward is its brgemm convolution (and for 1 × 1, then its
/// 1 × 1 kernel). With at most 16 input channels its direct JIT kernel, further down its list, is
/// faster on every ResNet shape, at 1 and 2 threads (docs/performance.md: 16 → 16, 3 × 3, 28 × 28: 1554 → 1179 µs; 1 → 16: 258 → 165;
/// 1 × 1, stride 2: 117 → 83); from 32 channels brgemm is as fast or faster. Takes the direct kernel
/// when oneDNN offers it for this problem, else keeps its choice.
void prefer_direct_jit(dnnl::convolution_forward::primitive_desc& pd)
{
    auto alt = pd;  // its own current implementation (next_impl moves only alt's)
    auto before = [](const char* impl) {
        return std::strncmp(impl, "brg", 3) == 0 || std::strncmp(impl, "jit_1x1", 7) == 0;
    };
    while (before(alt.impl_info_str()) && alt.next_impl()) {
    }
    if (std::strcmp(alt.impl_info_str(), "jit:avx512_core") == 0) pd = alt;
}

Entry& entry(const DnnlConvShape& s, bool bias)
{
    // omp_get_max_threads(): oneDNN fixes its work split when a primitive is created
    const std::array<std::size_t, 14> key{s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.padding, s.dilation,
                                          s.groups, bias, s.channels_last, std::size_t(omp_get_max_threads())};
    thread_local std::map<std::array<std::size_t, 14>, std::unique_ptr<Entry>> cache;
    auto it = cache.find(key);
    if (it != cache.end()) return *it->second;
    auto e = std::make_unique<Entry>();
    e->s = s;
    e->bias = bias;
    const auto D = [](std::size_t v) { return memory::dim(v); };
    const dims xd{D(s.n), D(s.c), D(s.h), D(s.w)}, yd{D(s.n), D(s.o), D(s.oh()), D(s.ow())};
    const dims wd = s.groups == 1 ? dims{D(s.o), D(s.c), D(s.kh), D(s.kw)}
                                  : dims{D(s.groups), D(s.o / s.groups), D(s.c / s.groups), D(s.kh), D(s.kw)};
    const tag act = s.channels_last ? tag::nhwc : tag::nchw;
    e->x_md = memory::desc(xd, dt::f32, act);
    e->y_md = memory::desc(yd, dt::f32, act);
    e->w_md = memory::desc(wd, dt::f32, s.groups == 1 ? tag::oihw : tag::goihw);
    e->b_md = memory::desc({D(s.o)}, dt::f32, tag::x);
    e->strides = {D(s.stride), D(s.stride)};
    e->dilates = {D(s.dilation - 1), D(s.dilation - 1)};  // oneDNN counts the gaps
    e->pad = {D(s.padding), D(s.padding)};
    const bool blk = blocked_layout();
    const memory::desc xa = act_md(e->x_md, s.channels_last), ya = act_md(e->y_md, s.channels_last),
                       wa = blk ? md_any(wd) : e->w_md;
    const auto alg = dnnl::algorithm::convolution_direct;
    const auto pk = dnnl::prop_kind::forward_training;
    const auto fd = bias ? dnnl::convolution_forward::desc(pk, alg, xa, wa, e->b_md, ya, e->strides, e->dilates, e->pad, e->pad)
                         : dnnl::convolution_forward::desc(pk, alg, xa, wa, ya, e->strides, e->dilates, e->pad, e->pad);
    e->fwd_pd = dnnl::convolution_forward::primitive_desc(fd, user_scratchpad_attr(), cpu_engine());
    if (s.channels_last && s.c <= 16) prefer_direct_jit(e->fwd_pd);
    e->fwd.init(e->fwd_pd);
    e->f_x.init(e->x_md, e->fwd_pd.src_desc(), 0, true);
    e->f_w.init(e->w_md, e->fwd_pd.weights_desc(), 1, true);
    e->f_y.init(e->y_md, e->fwd_pd.dst_desc(), 2, false);
    e->f_b = memory(e->b_md, cpu_engine(), nullptr);
    return *cache.emplace(key, std::move(e)).first->second;
}

void ensure_bwd_data(Entry& e)
{
    if (e.have_bwd_data) return;
    const bool blk = blocked_layout();
    const memory::desc xa = act_md(e.x_md, e.s.channels_last), ya = act_md(e.y_md, e.s.channels_last),
                       wa = blk ? md_any(e.w_md.dims()) : e.w_md;
    const dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, xa, wa, ya, e.strides,
                                                  e.dilates, e.pad, e.pad);
    const dnnl::convolution_backward_data::primitive_desc pd(d, user_scratchpad_attr(), cpu_engine(), e.fwd_pd);
    e.bwd_data.init(pd);
    e.d_gy.init(e.y_md, pd.diff_dst_desc(), 3, true);
    e.d_w.init(e.w_md, pd.weights_desc(), 1, true);
    e.d_dx.init(e.x_md, pd.diff_src_desc(), 2, false);
    e.have_bwd_data = true;
}

void ensure_bwd_weights(Entry& e, bool bias)
{
    if (e.have_bwd_w[bias]) return;
    const bool blk = blocked_layout();
    const memory::desc xa = act_md(e.x_md, e.s.channels_last), ya = act_md(e.y_md, e.s.channels_last),
                       wa = blk ? md_any(e.w_md.dims()) : e.w_md;
    const auto alg = dnnl::algorithm::convolution_direct;
    const auto d = bias ? dnnl::convolution_backward_weights::desc(alg, xa, wa, e.b_md, ya, e.strides, e.dilates, e.pad, e.pad)
                        : dnnl::convolution_backward_weights::desc(alg, xa, wa, ya, e.strides, e.dilates, e.pad, e.pad);
    const dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad_attr(), cpu_engine(), e.fwd_pd);
    e.bwd_w[bias].init(pd);
    e.w_x[bias].init(e.x_md, pd.src_desc(), 0, true);
    e.w_gy[bias].init(e.y_md, pd.diff_dst_desc(), 3, true);
    e.w_dw[bias].init(e.w_md, pd.diff_weights_desc(), 2, false);
    e.w_db = memory(e.b_md, cpu_engine(), nullptr);
    e.have_bwd_w[bias] = true;
}

void add_into(float* dst, const float* src, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
}

/// A channels-last 1 × 1 convolution with stride > 1 and no padding reads only every stride-th row
/// and column: it is the stride-1 convolution of that subsampled input, and its input gradient is
/// zero elsewhere. oneDNN's strided kernels write the whole input gradient (mostly zeros) and run
/// the weight gradient at a third of their stride-1 speed; subsampled, the input gradient is added
/// into a quarter of x's gradient at stride 2 (docs/performance.md, "ResNet, third round").
bool strided_one_by_one(const DnnlConvShape& s)
{
    return s.channels_last && s.kh == 1 && s.kw == 1 && s.padding == 0 && s.stride > 1 && s.dilation == 1 &&
           s.groups == 1;
}

DnnlConvShape subsampled(const DnnlConvShape& s)
{
    DnnlConvShape u = s;
    u.h = s.oh(), u.w = s.ow(), u.stride = 1;
    return u;
}

/// Calls f(i, j) for every sample: j = the offset of x[n, r·stride, q·stride, 0], i = that of the
/// subsampled tensor's [n, r, q, 0] (C floats each); images split over the threads.
template <class F>
void for_sampled(const DnnlConvShape& s, F f)
{
    const std::size_t oh = s.oh(), ow = s.ow(), c = s.c;
    parallel_for(s.n, s.n * oh * ow * c, [&](std::size_t n) {
        for (std::size_t r = 0; r < oh; ++r)
            for (std::size_t q = 0; q < ow; ++q)
                f(((n * oh + r) * ow + q) * c, ((n * s.h + r * s.stride) * s.w + q * s.stride) * c);
    });
}

/// x's samples, at `dst` (the forward's, kept for the weight gradient) or in a buffer of this thread.
/// A loop per sample, not std::copy: a call to memmove per 64 bytes cost 3× the copy (`perf`).
const float* gather_samples(const float* x, const DnnlConvShape& s, float* dst = nullptr)
{
    thread_local AlignedVector<float> buf;
    const std::size_t c = s.c;
    if (!dst) {
        buf.resize(s.n * s.oh() * s.ow() * c);
        dst = buf.data();
    }
    float* __restrict d = dst;
    const float* __restrict src = x;
    for_sampled(s, [&](std::size_t i, std::size_t j) {
        for (std::size_t k = 0; k < c; ++k) d[i + k] = src[j + k];
    });
    return dst;
}

}  // namespace

bool dnnl_conv_available()
{
    static const bool on = [] {
        const char* e = std::getenv("XGRAD_DNNL_CONV");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    return on;
}

std::size_t dnnl_conv2d_kept_input_size(const DnnlConvShape& s, bool bias)
{
    // a strided 1 × 1: the forward's samples of x, the weight gradient's input (gathered once)
    if (strided_one_by_one(s)) return s.n * s.oh() * s.ow() * s.c;
    try {
        const Entry& e = entry(s, bias);
        return e.f_x.reordered ? e.f_x.prim.get_desc().get_size() / sizeof(float) : 0;
    } catch (const dnnl::error& err) {
        throw std::runtime_error(std::string("oneDNN convolution: ") + err.what());
    }
}

void dnnl_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y)
{
    dnnl_conv2d_forward(x, w, b, s, y, nullptr);
}

void dnnl_conv2d_forward(const float* x, const float* w, const float* b, const DnnlConvShape& s, float* y,
                         float* x_kept)
{
    if (strided_one_by_one(s)) {
        dnnl_conv2d_forward(gather_samples(x, s, x_kept), w, b, subsampled(s), y, nullptr);
        return;
    }
    try {
        Entry& e = entry(s, b != nullptr);
        const dnnl_memory_t xm = x_kept && e.f_x.reordered ? e.f_x.in_to(x, x_kept) : e.f_x.in(x);
        const dnnl_memory_t wm = e.f_w.in(w), ym = e.f_y.target(y);
        if (b) {
            e.f_b.set_data_handle(const_cast<float*>(b));
            e.fwd.run({{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, e.f_b.get()}, {DNNL_ARG_DST, ym}});
        } else {
            e.fwd.run({{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}});
        }
        e.f_y.out(y);
    } catch (const dnnl::error& err) {
        throw std::runtime_error(std::string("oneDNN convolution forward: ") + err.what());
    }
}

void dnnl_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                          bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc)
{
    dnnl_conv2d_backward(x, w, gy, s, dx, dx_acc, dw, dw_acc, db, db_acc, nullptr);
}

void dnnl_conv2d_backward(const float* x, const float* w, const float* gy, const DnnlConvShape& s, float* dx,
                          bool dx_acc, float* dw, bool dw_acc, float* db, bool db_acc, const float* x_kept)
{
    if (strided_one_by_one(s)) {
        // the samples' gradient into a buffer, then into x's gradient at the samples (the rest zero)
        const DnnlConvShape u = subsampled(s);
        const std::size_t c = s.c, nu = u.n * u.h * u.w * c;
        thread_local AlignedVector<float> gs;
        if (dx) gs.resize(nu);
        const float* samples = !(dw || db) ? nullptr : x_kept ? x_kept : gather_samples(x, s);
        dnnl_conv2d_backward(samples, w, gy, u, dx ? gs.data() : nullptr, false, dw, dw_acc, db, db_acc, nullptr);
        if (!dx) return;
        if (!dx_acc) {
            const std::size_t per = s.h * s.w * c;
            parallel_for(s.n, s.n * per, [&](std::size_t n) { std::fill(dx + n * per, dx + (n + 1) * per, 0.0f); });
        }
        const float* __restrict g = gs.data();
        for_sampled(s, [&](std::size_t i, std::size_t j) {
            for (std::size_t k = 0; k < c; ++k) dx[j + k] += g[i + k];
        });
        return;
    }
    try {
        // the entry of the forward (with or without bias: the same convolution) is the hint
        Entry& e = entry(s, db != nullptr);
        bool gy_in_slot = false;  // gy already reordered into slot 3 by the input gradient
        if (dx) {
            ensure_bwd_data(e);
            const std::size_t nx = s.n * s.c * s.h * s.w;
            float* t = dx_acc ? acc_buffer(nx) : dx;
            const dnnl_memory_t gm = e.d_gy.in(gy), wm = e.d_w.in(w), dm = e.d_dx.target(t);
            e.bwd_data.run({{DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dm}});
            e.d_dx.out(t);
            if (dx_acc) add_into(dx, t, nx);
            gy_in_slot = e.d_gy.reordered;
        }
        if (dw || db) {
            const bool wb = db != nullptr;
            ensure_bwd_weights(e, wb);
            const std::size_t nw = s.o * (s.c / s.groups) * s.kh * s.kw;
            // dw and db both into the one scratch when added: dw first, db after it
            float* const buf = (dw_acc || !dw || db_acc) ? acc_buffer(nw + s.o) : nullptr;
            float* tw = (dw && !dw_acc) ? dw : buf;
            float* tb = db ? (db_acc ? buf + nw : db) : nullptr;
            // the gradient in the weight primitive's layout: one reorder for both passes when they agree
            const Arg& ag = e.w_gy[wb];
            const bool reuse = gy_in_slot && ag.reordered && ag.prim.get_desc() == e.d_gy.prim.get_desc();
            // x in the weight primitive's layout: as the forward kept it, when the layouts agree
            const Arg& ax = e.w_x[wb];
            const bool kept = x_kept && ax.reordered && e.f_x.reordered && ax.prim.get_desc() == e.f_x.prim.get_desc();
            const dnnl_memory_t xm = kept ? ax.at(x_kept) : ax.in(x);
            const dnnl_memory_t gm = reuse ? ag.again() : ag.in(gy), dwm = e.w_dw[wb].target(tw);
            if (wb) {
                e.w_db.set_data_handle(tb);
                e.bwd_w[wb].run({{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_DIFF_WEIGHTS, dwm},
                                 {DNNL_ARG_DIFF_BIAS, e.w_db.get()}});
            } else {
                e.bwd_w[wb].run({{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_DIFF_WEIGHTS, dwm}});
            }
            e.w_dw[wb].out(tw);
            if (dw && dw_acc) add_into(dw, tw, nw);
            if (db && db_acc) add_into(db, tb, s.o);
        }
    } catch (const dnnl::error& err) {
        throw std::runtime_error(std::string("oneDNN convolution backward: ") + err.what());
    }
}

#endif

}  // namespace xgrad::kernels

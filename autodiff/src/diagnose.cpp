// diagnose(): a hand derivation against the tape; see xgrad/diagnose.hpp.
#include "xgrad/diagnose.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xtensor/xview.hpp>

#include "tape_access.hpp"

namespace xgrad {

using Tens = Tensor<double>;
using Access = detail::TapeAccess<double>;

namespace {

HandDerivation::Given plain_given(bool is_grad, const std::string& name, Tensor<double> hand)
{
    HandDerivation::Given g;
    g.is_grad = is_grad;
    g.name = name;
    g.hand = std::move(hand);
    return g;
}

HandDerivation::Given printed_given(bool is_grad, const std::string& name, Tensor<double> printed,
                                    Tensor<double> formula, double rtol)
{
    if (printed.shape() != formula.shape())
        throw ShapeError(fmt::format("diagnose: '{}' printed as {} but its formula gives {}", name,
                                     shape_str(printed.shape()), shape_str(formula.shape())));
    HandDerivation::Given g = plain_given(is_grad, name, printed);
    for (std::size_t i = 0; i < printed.size(); ++i)
        if (std::isnan(printed.data()[i])) g.hand.data()[i] = formula.data()[i];
    g.has_formula = true;
    g.printed = std::move(printed);
    g.formula = std::move(formula);
    g.rtol = rtol;
    return g;
}

}  // namespace

const Tensor<double>& HandDerivation::value(const std::string& name, Tensor<double> hand)
{
    return give(plain_given(false, name, std::move(hand)));
}

const Tensor<double>& HandDerivation::grad(const std::string& name, Tensor<double> hand)
{
    return give(plain_given(true, name, std::move(hand)));
}

const Tensor<double>& HandDerivation::value(const std::string& name, Tensor<double> printed, Tensor<double> formula,
                                            double rtol)
{
    return give(printed_given(false, name, std::move(printed), std::move(formula), rtol));
}

const Tensor<double>& HandDerivation::grad(const std::string& name, Tensor<double> printed, Tensor<double> formula,
                                           double rtol)
{
    return give(printed_given(true, name, std::move(printed), std::move(formula), rtol));
}

const Tensor<double>& HandDerivation::give(Given g)
{
    for (const Given& other : given_)
        if (other.is_grad == g.is_grad && other.name == g.name)
            throw std::logic_error(fmt::format("diagnose: the hand derivation gives {} '{}' twice",
                                               g.is_grad ? "the gradient of" : "the value", g.name));
    given_.push_back(std::move(g));
    const Given& b = given_.back();
    if (const Tens* t = substitute_ ? substitute_(b.is_grad, b.name) : nullptr) return *t;
    return b.has_formula && carry_formulas_ ? b.formula : b.hand;
}

namespace {

std::string label_of(bool is_grad, const std::string& name) { return is_grad ? "dL/d" + name : name; }

double norm(const Tens& t)
{
    double s = 0;
    for (double v : t) s += v * v;
    return std::sqrt(s);
}

/// ‖h − c‖ / max(‖h‖, ‖c‖): 0 for a perfect fit, inf for different shapes.
double residual(const Tens& h, const Tens& c)
{
    if (h.shape() != c.shape()) return INFINITY;
    double d = 0;
    for (std::size_t i = 0; i < h.size(); ++i) d += (h.data()[i] - c.data()[i]) * (h.data()[i] - c.data()[i]);
    const double scale = std::max({norm(h), norm(c), 1e-300});
    return std::sqrt(d) / scale;
}

double max_abs(const Tens& t) { return t.size() ? double(xt::amax(xt::abs(t))()) : 0.0; }

/// The recorded model: every node's value and gradient, who consumes whom, the names, the terms.
struct Model {
    explicit Model(Tape<double>& t) : tape(t) {}
    Tape<double>& tape;
    std::uint32_t loss = 0;
    std::vector<Tens> grads;                           // dL/d(node); empty where nothing flows
    std::vector<std::vector<std::uint32_t>> consumers;
    std::map<std::string, std::uint32_t> names;        // observed and parameter names → node
    std::vector<std::string> observed;                 // observed names in order
    std::vector<std::pair<std::string, std::vector<Tens>>> terms;  // loss terms: per-node gradients
    std::vector<std::pair<double, std::string>> factors;           // the model's own factors
    std::vector<std::pair<std::size_t, std::string>> axes;         // axis sizes the model names ("classes")
    /// Partitions of a batch into classes that the tape records: the classes a trace_scatter_loss
    /// keeps, and every one-hot constant (one 1 per row, or per column for its transpose).
    struct Classes {
        std::vector<std::size_t> id;  // class of each row
        std::size_t count = 0;        // number of classes (some may be absent)
        std::string source;
    };
    std::vector<Classes> classes;
    /// Where the model has classes: the gradient of every scalar node but the loss (each a
    /// candidate for a regularizer written from primitive ops), by node, last node first; swept
    /// when first asked for (a mistake to explain), not for a derivation that agrees.
    mutable std::vector<std::pair<std::uint32_t, std::vector<Tens>>> scalars;
    mutable bool scalars_swept = false;

    const Tens& value(std::uint32_t i) const { return tape.at(i).value(); }
    std::string op(std::uint32_t i) const { return tape.at(i).op(); }
    std::string where(std::uint32_t i) const
    {
        const std::string& scope = tape.scope_at(i);
        return scope.empty() ? op(i) : op(i) + " in " + scope;
    }
};

/// One backward sweep from `output`: the gradient of every node (parameters' p.grad() untouched).
std::vector<Tens> sweep(Tape<double>& tape, const Var<double>& output)
{
    std::vector<std::pair<Parameter<double>*, Tens>> saved;
    for (std::uint32_t i = 0; i < tape.size(); ++i)
        if (Parameter<double>* p = tape.at(i).parameter()) {
            saved.emplace_back(p, p->grad());
            p->zero_grad();
        }
    std::vector<Tens> g(tape.size());
    if (output.requires_grad()) {
        tape.backward(output);
        for (std::uint32_t i = 0; i < tape.size(); ++i) {
            const Var<double> v = tape.at(i);
            if (!v.requires_grad()) continue;
            g[i] = v.parameter() ? v.parameter()->grad() : v.grad();
        }
    }
    for (auto& [p, t] : saved) p->grad() = t;
    return g;
}

void add_factor(Model& m, double f, const std::string& what)
{
    if (!(f > 1)) return;
    for (const auto& [v, w] : m.factors)
        if (v == f && w == what) return;
    m.factors.emplace_back(f, what);
}

/// The numbers a factor mistake can be made of in this model, each with what it is.
void collect_factors(Model& m)
{
    bool squares = false;
    for (std::uint32_t i = 0; i < m.tape.size(); ++i) {
        const std::string op = m.op(i);
        const std::uint32_t n_in = Access::input_count(m.tape, i);
        const Shape& out = m.value(i).shape();
        const Shape in0 = n_in ? m.value(Access::input(m.tape, i, 0)).shape() : Shape{};
        if (op == "square" || op == "pow" || op == "mse_loss") squares = true;
        if ((op == "cross_entropy" || op == "nll_loss" || op == "mse_loss") && !in0.empty()) {
            add_factor(m, double(in0[0]), fmt::format("the batch size B = {} (a mean over the batch taken as a sum, "
                                                      "or the reverse)", in0[0]));
            if (in0.size() == 2 && op != "mse_loss") {
                add_factor(m, double(in0[1]), fmt::format("the number of classes C = {}", in0[1]));
                m.axes.emplace_back(in0[1], "classes");
            }
            if (op == "mse_loss") {
                std::size_t n = 1;
                for (auto d : in0) n *= d;
                add_factor(m, double(n), fmt::format("the {} elements the squared error averages over", n));
            }
        }
        if (op == "mean" && n_in) {
            std::size_t a = 1, b = 1;
            for (auto d : in0) a *= d;
            for (auto d : out) b *= d;
            if (b && a % b == 0)
                add_factor(m, double(a / b), fmt::format("the count {} of the mean at {}", a / b, m.where(i)));
        }
        if ((op == "avg_pool2d" || op == "max_pool2d") && in0.size() == 4 && out.size() == 4 && out[2] && out[3] &&
            in0[2] % out[2] == 0 && in0[3] % out[3] == 0) {
            const std::size_t kh = in0[2] / out[2], kw = in0[3] / out[3];
            add_factor(m, double(kh * kw), fmt::format("the {}×{} pooling area {} of {}", kh, kw, kh * kw, m.where(i)));
        }
    }
    if (squares) m.factors.emplace_back(2.0, "the 2 of a square's derivative (or the ½ of ½(y − t)²)");
}

/// The batch's classes as the tape records them (Model::classes), each partition once.
void collect_classes(Model& m)
{
    auto add = [&](std::vector<std::size_t> id, std::size_t count, std::string source) {
        for (const auto& c : m.classes)
            if (c.id == id) return;
        m.classes.push_back({std::move(id), count, std::move(source)});
    };
    for (std::uint32_t i = 0; i < m.tape.size(); ++i) {
        if (m.op(i) == "trace_scatter_loss") {
            const std::vector<std::size_t>& id = Access::node(m.tape, i).saved_index_;
            if (!id.empty())
                add(id, *std::max_element(id.begin(), id.end()) + 1, "the classes " + m.where(i) + " keeps");
            continue;
        }
        const Tens& v = m.value(i);
        if (Access::input_count(m.tape, i) != 0 || m.tape.at(i).parameter() || v.dimension() != 2 || v.size() < 4)
            continue;
        // (B,K) with one nonzero per row (a one-hot, or 1/n_c to take class means), or its (K,B) transpose
        for (const bool by_rows : {true, false}) {
            const std::size_t B = by_rows ? v.shape()[0] : v.shape()[1], K = by_rows ? v.shape()[1] : v.shape()[0];
            if (K < 2 || B < 2) continue;
            std::vector<std::size_t> id(B);
            bool ok = true, ones = true;
            for (std::size_t b = 0; b < B && ok; ++b) {
                std::size_t nonzero = 0;
                for (std::size_t k = 0; k < K; ++k) {
                    const double e = by_rows ? v(b, k) : v(k, b);
                    if (e != 0) ++nonzero, id[b] = k, ones = ones && e == 1;
                }
                ok = nonzero == 1;
            }
            if (ok)
                add(std::move(id), K,
                    fmt::format("the {} {} constant{} #{}", ones ? "one-hot" : "class-membership", shape_str(v.shape()),
                                by_rows ? "" : " (samples as columns)", i));
        }
    }
}

/// Model::scalars, swept on first use.
const std::vector<std::pair<std::uint32_t, std::vector<Tens>>>& scalar_grads(const Model& m)
{
    if (m.scalars_swept) return m.scalars;
    m.scalars_swept = true;
    const bool retain = m.tape.retain_grad();
    m.tape.set_retain_grad(true);
    // each is a backward sweep: at most 64, the last ones (nearest the loss, where a regularizer ends)
    std::size_t budget = 64;
    for (std::uint32_t i = std::uint32_t(m.tape.size()); i-- > 0 && budget;)
        if (i != m.loss && m.value(i).size() == 1 && m.tape.at(i).requires_grad() && m.grads[i].size() == 1 &&
            m.grads[i].data()[0] != 0) {
            m.scalars.emplace_back(i, sweep(m.tape, m.tape.at(i)));
            --budget;
        }
    m.tape.set_retain_grad(retain);
    return m.scalars;
}

Model record(Tape<double>& tape, const std::function<Var<double>(Tape<double>&)>& model)
{
    Model m(tape);
    const Var<double> loss = model(tape);
    if (loss.size() != 1)
        throw ShapeError(fmt::format("diagnose: the model must return a scalar loss, got {}", shape_str(loss.shape())));
    m.loss = loss.index();
    const bool retain = tape.retain_grad();
    tape.set_retain_grad(true);
    m.grads = sweep(tape, loss);
    m.consumers.resize(tape.size());
    for (std::uint32_t i = 0; i < tape.size(); ++i)
        for (std::uint32_t k = 0; k < Access::input_count(tape, i); ++k) m.consumers[Access::input(tape, i, k)].push_back(i);
    for (const auto& [name, i] : tape.observed()) {
        m.names[name] = i;
        m.observed.push_back(name);
        if (i != m.loss && m.value(i).size() == 1 && tape.at(i).requires_grad())
            m.terms.emplace_back(name, sweep(tape, tape.at(i)));
    }
    for (std::uint32_t i = 0; i < tape.size(); ++i)
        if (Parameter<double>* p = tape.at(i).parameter())
            if (!p->name().empty() && !m.names.count(p->name())) m.names[p->name()] = i;
    collect_classes(m);
    tape.set_retain_grad(retain);
    collect_factors(m);
    return m;
}

/// The tape's tensor for a quantity, or null when the name is unknown.
const Tens* tape_tensor(const Model& m, bool is_grad, const std::string& name, Tens& zeros)
{
    auto it = m.names.find(name);
    if (it == m.names.end()) return nullptr;
    if (!is_grad) return &m.value(it->second);
    const Tens& g = m.grads[it->second];
    if (g.size() || m.value(it->second).size() == 0) return &g;
    zeros = xt::zeros<double>(m.value(it->second).shape());  // no gradient reaches it
    return &zeros;
}

bool agrees(const Tens& hand, const Tens& tape, double rtol)
{
    if (hand.shape() != tape.shape()) return false;
    double worst = 0;
    for (std::size_t i = 0; i < hand.size(); ++i) {
        const double d = std::abs(hand.data()[i] - tape.data()[i]);
        if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
    }
    return worst <= rtol * max_abs(tape) + 1e-300;
}

double max_rel_error(const Tens& hand, const Tens& tape)
{
    if (hand.shape() != tape.shape()) return INFINITY;
    double worst = 0;
    for (std::size_t i = 0; i < hand.size(); ++i) {
        const double d = std::abs(hand.data()[i] - tape.data()[i]);
        worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
    const double scale = max_abs(tape);
    return scale > 0 ? worst / scale : worst;
}

double printed_tol(const HandDerivation::Given& g, const DiagnoseOptions& o)
{
    return std::isnan(g.rtol) ? o.printed_rtol() : g.rtol;
}

bool close_entry(double p, double x, double tol) { return std::abs(p - x) <= tol * std::max(std::abs(p), std::abs(x)); }

/// A given quantity against the tape: printed entries one by one within their printing precision,
/// everything else (and every hand value without a formula) as agrees() does.
bool agrees_given(const HandDerivation::Given& g, const Tens& tape, const DiagnoseOptions& o)
{
    if (!g.has_formula) return agrees(g.hand, tape, o.rtol());
    if (g.hand.shape() != tape.shape()) return false;
    const double tol = printed_tol(g, o), scale = o.rtol() * max_abs(tape) + 1e-300;
    for (std::size_t i = 0; i < tape.size(); ++i) {
        const double p = g.printed.data()[i], h = g.hand.data()[i], a = tape.data()[i];
        if (!std::isnan(p) ? !close_entry(p, a, tol) : !(std::abs(h - a) <= scale)) return false;
    }
    return true;
}

/// The printed entries (flat indices) that are not what the quantity's own formula gives.
std::vector<std::size_t> slipped_entries(const HandDerivation::Given& g, const DiagnoseOptions& o)
{
    std::vector<std::size_t> out;
    if (!g.has_formula) return out;
    const double tol = printed_tol(g, o);
    for (std::size_t i = 0; i < g.printed.size(); ++i)
        if (!std::isnan(g.printed.data()[i]) && !close_entry(g.printed.data()[i], g.formula.data()[i], tol))
            out.push_back(i);
    return out;
}

std::string entry_name(const Shape& s, std::size_t i)
{
    if (s.size() == 2) return fmt::format("({},{})", i / s[1], i % s[1]);
    return fmt::format("[{}]", i);
}

std::string power_of_ten(double r)  // "10⁻³" for 0.001, empty when r is no power of ten
{
    if (!(r > 0)) return {};
    const double k = std::round(std::log10(r));
    if (std::abs(r / std::pow(10.0, k) - 1) > 1e-3 || k == 0) return {};
    return fmt::format("10^{}", int(k));
}

/// A slip's explanations, fitted between the printed numbers and the formula's on the slipped
/// entries: one factor for all (a power of ten is a decimal slip), a power of ten per entry, or
/// where they differ.
std::vector<Hypothesis> fit_slip(const HandDerivation::Given& g, const std::vector<std::size_t>& bad,
                                 const std::string& label, const DiagnoseOptions& o)
{
    const double tol = std::max(o.fit_tol(), 2 * printed_tol(g, o));
    const Shape& shape = g.printed.shape();
    std::size_t printed = 0;
    for (double p : g.printed) printed += !std::isnan(p);
    std::string where;
    for (std::size_t i : bad) where += (where.empty() ? "" : ", ") + entry_name(shape, i);
    const std::string of = fmt::format("in {} ({} of {} printed entries)", where, bad.size(), printed);
    double pf = 0, ff = 0, pp = 0;
    for (std::size_t i : bad) {
        const double p = g.printed.data()[i], f = g.formula.data()[i];
        pf += p * f, ff += f * f, pp += p * p;
    }
    std::vector<Hypothesis> out;
    if (ff > 0) {
        const double alpha = pf / ff;
        double d = 0;
        for (std::size_t i : bad) d += std::pow(g.printed.data()[i] - alpha * g.formula.data()[i], 2);
        const double r = std::sqrt(d) / std::max(std::sqrt(pp), std::abs(alpha) * std::sqrt(ff));
        if (r <= tol) {
            const std::string ten = power_of_ten(std::abs(alpha));
            const std::string sign = alpha < 0 ? "−" : "";
            if (std::abs(alpha + 1) <= tol)
                out.push_back({"printing slip", fmt::format("{} printed with the wrong sign {}", label, of), r});
            else if (!ten.empty())
                out.push_back({"printing slip",
                               fmt::format("{} printed as {}{} × what its own formula gives from the numbers before "
                                           "it {}: a decimal slip",
                                           label, sign, ten, of),
                               r});
            else
                out.push_back({"printing slip",
                               fmt::format("{} printed as {:.6g} × what its own formula gives from the numbers before "
                                           "it {}",
                                           label, alpha, of),
                               r});
        }
    }
    if (out.empty() && bad.size() > 1) {  // a different power of ten per entry
        std::string each;
        double worst = 0;
        for (std::size_t i : bad) {
            const double ratio = g.printed.data()[i] / g.formula.data()[i];
            const std::string ten = power_of_ten(ratio);
            if (ten.empty()) {
                each.clear();
                break;
            }
            worst = std::max(worst, std::abs(ratio / std::pow(10.0, std::round(std::log10(ratio))) - 1));
            each += (each.empty() ? "" : ", ") + fmt::format("{} at {}", ten, entry_name(shape, i));
        }
        if (!each.empty())
            out.push_back({"printing slip",
                           fmt::format("{} printed with misplaced decimal points: {} × what its own formula gives "
                                       "from the numbers before it ({} of {} printed entries)",
                                       label, each, bad.size(), printed),
                           worst});
    }
    if (out.empty())
        out.push_back({"printing slip",
                       fmt::format("{} as printed is not what its own formula gives from the numbers before it, {}; "
                                   "no factor relates them",
                                   label, of),
                       1.0});
    return out;
}

/// G of a pooled output (N,C,OH,OW) copied to every cell of its k×k window: (N,C,OH·kh,OW·kw).
Tens upsample(const Tens& g, std::size_t kh, std::size_t kw, std::size_t h, std::size_t w)
{
    Tens u = xt::zeros<double>({g.shape()[0], g.shape()[1], h, w});
    for (std::size_t n = 0; n < g.shape()[0]; ++n)
        for (std::size_t c = 0; c < g.shape()[1]; ++c)
            for (std::size_t i = 0; i < h; ++i)
                for (std::size_t j = 0; j < w; ++j)
                    if (i / kh < g.shape()[2] && j / kw < g.shape()[3]) u(n, c, i, j) = g(n, c, i / kh, j / kw);
    return u;
}

/// A window's cells found by an index formula that steps kh rows or kw columns through a window
/// instead of one: per window (p·OW + q) its flat cells (H·W where a cell does not exist), indexed
/// in the flattened image (past a row's end into the next row) or in 2-D (outside lost).
struct WindowRoute {
    std::vector<std::vector<std::size_t>> cells;
    std::string where;  ///< "cells 2 rows and 2 columns apart in the flattened 8×8 image instead of its own (…)"
    std::string note;   ///< what happens at the image's edges
};

std::vector<WindowRoute> window_routes(std::size_t H, std::size_t W, std::size_t OH, std::size_t OW, std::size_t kh,
                                       std::size_t kw)
{
    std::vector<WindowRoute> out;
    auto list = [&](const std::vector<std::size_t>& v) {
        std::string t;
        for (std::size_t f : v) t += (t.empty() ? "" : ", ") + (f < H * W ? std::to_string(f) : std::string("none"));
        return "{" + t + "}";
    };
    std::vector<std::size_t> own;
    for (std::size_t u = 0; u < kh; ++u)
        for (std::size_t v = 0; v < kw; ++v) own.push_back(u * W + v);
    for (const bool flat : {true, false})
        for (const std::size_t sr : {std::size_t(1), kh})
            for (const std::size_t sc : {std::size_t(1), kw}) {
                if (sr == 1 && sc == 1) continue;  // the window's own cells
                // flattened indexing differs from 2-D only where a column runs past a row's end
                const bool wraps = kw * (OW - 1) + (kw - 1) * sc >= W;
                if (flat && !wraps) continue;
                WindowRoute r;
                for (std::size_t p = 0; p < OH; ++p)
                    for (std::size_t q = 0; q < OW; ++q) {
                        std::vector<std::size_t> c;
                        for (std::size_t u = 0; u < kh; ++u)
                            for (std::size_t v = 0; v < kw; ++v) {
                                const std::size_t i = kh * p + u * sr, j = kw * q + v * sc;
                                const std::size_t f = flat ? i * W + j : (i < H && j < W ? i * W + j : H * W);
                                c.push_back(std::min(f, H * W));
                            }
                        r.cells.push_back(std::move(c));
                    }
                r.where = fmt::format("cells {} row{} and {} column{} apart in the {}{}×{} image instead of its own "
                                      "(window 0: cells {} for {})",
                                      sr, sr == 1 ? "" : "s", sc, sc == 1 ? "" : "s", flat ? "flattened " : "", H, W,
                                      list(r.cells[0]), list(own));
                r.note = flat ? "; an index past a row's end runs into the next row, past the image's end it is lost" : "";
                out.push_back(std::move(r));
            }
    return out;
}

/// f(plane, window, cell) for every window (p·OW + q) of every one of `planes` planes and every cell
/// of it that route r reaches inside the H×W image (flat index i·W + j): the one loop behind routing
/// a gradient to the cells (scatter) and pooling the cells' values (gather).
template <class F>
void for_each_routed_cell(const WindowRoute& r, std::size_t planes, std::size_t H, std::size_t W, F&& f)
{
    for (std::size_t pl = 0; pl < planes; ++pl)
        for (std::size_t win = 0; win < r.cells.size(); ++win)
            for (std::size_t cell : r.cells[win])
                if (cell < H * W) f(pl, win, cell);
}

struct Fitter {
    const Model& m;
    const DiagnoseOptions& o;
    const Tens& h;
    const std::string& label;
    std::vector<Hypothesis> out;

    void offer(const Tens& candidate, const char* kind, const std::string& explanation)
    {
        const double r = residual(h, candidate);
        if (r <= o.fit_tol()) out.push_back({kind, explanation, r});
    }

    std::string factor_name(double alpha) const
    {
        auto near = [](double x, double y) { return std::abs(x - y) <= 1e-6 * std::abs(y); };
        const double a = std::abs(alpha);
        const std::string sign = alpha < 0 ? "−" : "";
        for (const auto& [f, what] : m.factors) {
            if (near(a, f)) return fmt::format("{} = {}{:g} × the tape's: {}", label, sign, f, what);
            if (near(a, 1 / f)) return fmt::format("{} = {}1/{:g} × the tape's: {}", label, sign, f, what);
        }
        return {};
    }

    void scalar(const Tens& a)
    {
        const double aa = norm(a);
        if (aa == 0 || h.shape() != a.shape()) return;
        double dot = 0;
        for (std::size_t i = 0; i < a.size(); ++i) dot += a.data()[i] * h.data()[i];
        const double alpha = dot / (aa * aa);
        if (std::abs(alpha - 1) < 1e-6) return;  // rounding or a tiny slip, not a factor
        const Tens c = alpha * a;
        if (std::abs(alpha + 1) <= 1e-6) {
            offer(c, "sign", fmt::format("{} has the wrong sign ((t − y) written for (y − t), or a step uphill)", label));
            return;
        }
        const std::string named = factor_name(alpha);
        if (!named.empty())
            offer(c, "factor", named);
        else
            offer(c, "factor", fmt::format("{} = {:.6g} × the tape's (no factor of this model equals {:.6g})", label,
                                           alpha, std::abs(alpha)));
    }

    void shapes(const Tens& a)
    {
        const Shape& hs = h.shape();
        const Shape& as = a.shape();
        if (hs.size() == 2 && as.size() == 2 && hs != as && hs[0] == as[1] && hs[1] == as[0])
            offer(xt::eval(xt::transpose(a)), "transpose",
                  fmt::format("{} is transposed: {} for {} (e.g. a·δᵀ written for δ·aᵀ)", label, shape_str(hs), shape_str(as)));
        // One axis too many or too few: a sum over it forgotten, or taken where none belongs. Axis 0
        // is the batch (per-sample gradients not summed); the last one the classes or features
        // (a per-sample quantity left per class).
        auto without = [](const Shape& sh, std::size_t k) {
            Shape r = sh;
            r.erase(r.begin() + std::ptrdiff_t(k));
            return r;
        };
        // The same numbers in another layout: a matrix read row by row, or column by column as vec(·)
        // stacks it (the layout of a derivative with respect to vec W). Only across ranks: a matrix's
        // columns read as the rows of the transposed shape are a transpose, said below.
        if (hs.size() != as.size() && h.size() == a.size() && a.size() > 1) {
            offer(Tens(xt::reshape_view(a, hs)), "reshape",
                  fmt::format("{} {} holds the tape's {} entries row by row: the right numbers in another shape",
                              label, shape_str(hs), shape_str(as)));
            if (as.size() == 2) {
                const Tens columns = xt::transpose(a);  // vec(A): A's columns one after another
                offer(Tens(xt::reshape_view(columns, hs)), "reshape",
                      fmt::format("{} {} is vec(·) of the tape's {}, its columns stacked: the right numbers in the "
                                  "vectorized layout",
                                  label, shape_str(hs), shape_str(as)));
            }
        }
        if (hs.size() == as.size() + 1)
            for (std::size_t k = 0; k < hs.size(); ++k) {
                if (without(hs, k) != as) continue;
                const Tens s = xt::sum(h, {k});
                if (residual(s, a) > o.fit_tol()) continue;
                out.push_back({"sum over axis",
                               k == 0 ? fmt::format("{} has one entry per sample {}: the sum over the batch (axis 0) is missing",
                                                    label, shape_str(hs))
                                      : fmt::format("{} {} keeps {}: the sum over it is missing", label,
                                                    shape_str(hs), axis_label(k, hs.size(), hs[k])),
                               residual(s, a)});
                break;
            }
        if (hs.size() + 1 == as.size())
            for (std::size_t k = 0; k < as.size(); ++k) {
                if (without(as, k) != hs) continue;
                const Tens s = xt::sum(a, {k});
                if (residual(h, s) > o.fit_tol()) continue;
                out.push_back({"sum over axis",
                               k == 0 ? fmt::format("{} sums over the batch, but {} is per sample {}", label, label,
                                                    shape_str(as))
                                      : fmt::format("{} sums over {}, but {} keeps it {}", label,
                                                    axis_label(k, as.size(), as[k]), label, shape_str(as)),
                               residual(h, s)});
                break;
            }
    }

    void square_transpose(const Tens& a)
    {
        if (a.dimension() == 2 && a.shape()[0] == a.shape()[1] && h.shape() == a.shape())
            offer(xt::eval(xt::transpose(a)), "transpose", fmt::format("{} is transposed (a square matrix)", label));
    }

    /// Mistakes in the derivative of the activation or pooling op that consumes node n.
    void derivative(std::uint32_t n)
    {
        const Tens& z = m.value(n);
        for (std::uint32_t c : m.consumers[n]) {
            const std::string op = m.op(c);
            const Tens& y = m.value(c);
            const Tens& g = m.grads[c];
            if (!g.size() || g.shape() != z.shape()) {
                if ((op == "max_pool2d" || op == "avg_pool2d") && g.size() && z.dimension() == 4) pooling(n, c);
                continue;
            }
            const std::string at = m.where(c);
            if (op == "sigmoid") {
                offer(Tens(g * y), "activation derivative",
                      fmt::format("{}: σ′ written as σ at {} (g ⊙ σ(z) instead of g ⊙ σ(z)(1 − σ(z)))", label, at));
                offer(Tens(g * z * (1 - z)), "activation derivative",
                      fmt::format("{}: σ′ = s(1 − s) evaluated with the pre-activation z in place of s = σ(z) at {}", label, at));
                const Tens sy = 1 / (1 + xt::exp(-y));
                offer(Tens(g * sy * (1 - sy)), "activation derivative",
                      fmt::format("{}: σ′ evaluated at the activation a = σ(z) instead of at z, at {}", label, at));
            } else if (op == "tanh") {
                offer(Tens(g * (1 - z)), "activation derivative",
                      fmt::format("{}: tanh′ written as 1 − x instead of 1 − tanh²(x) at {}", label, at));
                offer(Tens(g * (1 - y)), "activation derivative",
                      fmt::format("{}: tanh′ written as 1 − a instead of 1 − a² at {}", label, at));
                offer(Tens(g * (1 - z * z)), "activation derivative",
                      fmt::format("{}: tanh′ = 1 − a² evaluated with the pre-activation z in place of a = tanh(z) at {}",
                                  label, at));
                const Tens ty = xt::tanh(y);
                offer(Tens(g * (1 - ty * ty)), "activation derivative",
                      fmt::format("{}: tanh′ evaluated at the activation a = tanh(z) instead of at z, at {}", label, at));
            } else if (op == "relu") {
                offer(Tens(g * y), "activation derivative",
                      fmt::format("{}: ReLU′ written as ReLU (g ⊙ relu(z) instead of g ⊙ [z > 0]) at {}", label, at));
            } else if (op == "softmax" && z.dimension() >= 1) {
                offer(Tens(g * y * (1 - y)), "elementwise derivative",
                      fmt::format("{}: the softmax's elementwise derivative s(1 − s) used where its Jacobian belongs at {}: "
                                  "dL/dz = s ⊙ (g − Σⱼ gⱼsⱼ), not g ⊙ s(1 − s)", label, at));
                if (z.dimension() == 2) {  // ∂s/∂zⱼ replaced by s itself: ⟨g, s⟩ in every entry of a row
                    Tens c = z;
                    for (std::size_t i = 0; i < z.shape()[0]; ++i) {
                        double gs = 0;
                        for (std::size_t k = 0; k < z.shape()[1]; ++k) gs += g(i, k) * y(i, k);
                        for (std::size_t k = 0; k < z.shape()[1]; ++k) c(i, k) = gs;
                    }
                    offer(c, "missing derivative",
                          fmt::format("{}: the softmax's derivative ∂s/∂zⱼ replaced by s itself at {}: ⟨g, s⟩ in every "
                                      "entry instead of sⱼ(gⱼ − ⟨g, s⟩)", label, at));
                }
            }
            if (op == "sigmoid" || op == "tanh" || op == "relu" || op == "softmax" || op == "exp" || op == "log")
                offer(g, "missing derivative",
                      fmt::format("{}: the derivative of {} left out (the gradient passed through as if it were the "
                                  "identity)", label, at));
        }
    }

    void pooling(std::uint32_t n, std::uint32_t c)
    {
        const Tens& x = m.value(n);
        const Tens& g = m.grads[c];
        const std::size_t kh = x.shape()[2] / g.shape()[2], kw = x.shape()[3] / g.shape()[3];
        if (!kh || !kw) return;
        const Tens up = upsample(g, kh, kw, x.shape()[2], x.shape()[3]);
        const std::string at = m.where(c);
        if (m.op(c) == "max_pool2d") {
            offer(Tens(up / double(kh * kw)), "pooling routing",
                  fmt::format("{}: the max-pooling gradient spread evenly over each {}×{} window (as average pooling "
                              "does) instead of routed to the window's maximum, at {}", label, kh, kw, at));
            offer(up, "pooling routing",
                  fmt::format("{}: the max-pooling gradient copied to every cell of each {}×{} window instead of the "
                              "maximum only, at {}", label, kh, kw, at));
            Tens first = xt::zeros<double>(x.shape());
            for (std::size_t i = 0; i < x.shape()[0]; ++i)
                for (std::size_t ch = 0; ch < x.shape()[1]; ++ch)
                    for (std::size_t p = 0; p < g.shape()[2]; ++p)
                        for (std::size_t q = 0; q < g.shape()[3]; ++q) first(i, ch, p * kh, q * kw) = g(i, ch, p, q);
            offer(first, "pooling routing",
                  fmt::format("{}: the max-pooling gradient routed to each window's first cell instead of its maximum, "
                              "at {}", label, at));
        } else {
            offer(up, "pooling routing",
                  fmt::format("{}: the average-pooling gradient copied to the window without the 1/{} at {}", label,
                              kh * kw, at));
            strided_windows(x, g, kh, kw, at);
            all_windows(x, g, kh, kw, at);
        }
    }

    /// An index formula that steps through a window by the pooling stride instead of by one cell
    /// (a window's cells taken kh rows or kw columns apart): each window's gradient lands on cells of
    /// other windows. Indexed in the flattened image (past a row's end into the next row, past the
    /// image's end dropped) or in two dimensions (outside dropped); the scale is fitted.
    void strided_windows(const Tens& x, const Tens& g, std::size_t kh, std::size_t kw, const std::string& at)
    {
        const std::size_t H = x.shape()[2], W = x.shape()[3], OH = g.shape()[2], OW = g.shape()[3];
        for (const WindowRoute& r : window_routes(H, W, OH, OW, kh, kw)) {
            Tens route = xt::zeros<double>(x.shape());
            for_each_routed_cell(r, x.shape()[0] * x.shape()[1], H, W, [&](std::size_t pl, std::size_t win, std::size_t cell) {
                route.data()[pl * H * W + cell] += g.data()[pl * OH * OW + win];
            });
            const double rr = double(xt::sum(route * route)());
            if (rr == 0) continue;
            const double alpha = double(xt::sum(route * h)()) / rr;
            offer(Tens(alpha * route), "pooling routing",
                  fmt::format("{}: the average-pooling gradient of each {}×{} window routed to {}, {}, at {}{}", label,
                              kh, kw, r.where, quarter(alpha, kh * kw), at, r.note));
        }
    }

    /// "with the 1/4", "without the 1/4" or "× α" for a fitted scale of a k-cell window.
    static std::string quarter(double alpha, std::size_t k)
    {
        if (std::abs(alpha * double(k) - 1) < 1e-9) return fmt::format("with the 1/{}", k);
        if (std::abs(alpha - 1) < 1e-9) return fmt::format("without the 1/{}", k);
        return fmt::format("× {:.6g}", alpha);
    }

    /// (15)-style: every window's gradient sent to every cell of its feature map (or of the whole
    /// sample), as a sum over all positions l where only the window's own have ∂a_j/∂c_l ≠ 0.
    void all_windows(const Tens& x, const Tens& g, std::size_t kh, std::size_t kw, const std::string& at)
    {
        const std::size_t N = x.shape()[0], C = x.shape()[1], OH = g.shape()[2], OW = g.shape()[3];
        if (OH * OW < 2) return;  // one window: the same as copying it
        for (const bool maps : {true, false}) {
            if (!maps && C < 2) continue;
            Tens spread = xt::zeros<double>(x.shape());
            for (std::size_t n = 0; n < N; ++n) {
                std::vector<double> total(C, 0);
                for (std::size_t ch = 0; ch < C; ++ch)
                    for (std::size_t p = 0; p < OH; ++p)
                        for (std::size_t q = 0; q < OW; ++q) total[ch] += g(n, ch, p, q);
                double all = 0;
                for (double t : total) all += t;
                for (std::size_t ch = 0; ch < C; ++ch)
                    xt::view(spread, n, ch, xt::all(), xt::all()) = maps ? total[ch] : all;
            }
            const double rr = double(xt::sum(spread * spread)());
            if (rr == 0) continue;
            const double alpha = double(xt::sum(spread * h)()) / rr;
            offer(Tens(alpha * spread), "pooling routing",
                  fmt::format("{}: the average-pooling gradient summed over all {} {}×{} windows of each {} and sent to "
                              "every cell of it instead of each window's to its own {} cells (a sum over all positions "
                              "where only a window's own have a nonzero derivative), {}, at {}",
                              label, maps ? OH * OW : C * OH * OW, kh, kw, maps ? "feature map" : "sample",
                              kh * kw, quarter(alpha, kh * kw), at));
        }
    }

    /// A pooled value taken over the wrong cells: each window's cells kh rows or kw columns apart,
    /// in the flattened image or in 2-D (as strided_windows routes a gradient), the scale fitted.
    /// `n` is the pooling op or a reshape/flatten of it.
    void pooled_value(std::uint32_t n)
    {
        std::uint32_t pool = n;
        if ((m.op(n) == "flatten" || m.op(n) == "reshape") && Access::input_count(m.tape, n) == 1)
            pool = Access::input(m.tape, n, 0);
        if (m.op(pool) != "avg_pool2d" || !Access::input_count(m.tape, pool)) return;
        const Tens& x = m.value(Access::input(m.tape, pool, 0));
        const Tens& y = m.value(pool);
        if (x.dimension() != 4 || y.dimension() != 4 || !y.shape()[2] || !y.shape()[3] || h.size() != y.size()) return;
        const std::size_t H = x.shape()[2], W = x.shape()[3], OH = y.shape()[2], OW = y.shape()[3];
        const std::size_t kh = H / OH, kw = W / OW;
        if (!kh || !kw) return;
        for (const WindowRoute& r : window_routes(H, W, OH, OW, kh, kw)) {
            Tens pooled = xt::zeros<double>(y.shape());
            for_each_routed_cell(r, y.shape()[0] * y.shape()[1], H, W, [&](std::size_t pl, std::size_t win, std::size_t cell) {
                pooled.data()[pl * OH * OW + win] += x.data()[pl * H * W + cell];
            });
            const Tens c = xt::reshape_view(pooled, h.shape());
            const double cc = double(xt::sum(c * c)());
            if (cc == 0) continue;
            const double alpha = double(xt::sum(c * h)()) / cc;
            offer(Tens(alpha * c), "pooling routing",
                  fmt::format("{}: each {}×{} average-pooling window taken over {}, {}, at {}{}", label, kh, kw, r.where,
                              quarter(alpha, kh * kw), m.where(pool), r.note));
        }
    }

    /// A value that differs from the tape by one constant per column, made by an add whose other
    /// input is a bias vector: the bias taken with other numbers.
    void bias(std::uint32_t n, const Tens& a)
    {
        if (h.shape() != a.shape() || h.dimension() != 2 || !(m.op(n) == "add" || m.op(n) == "linear")) return;
        const std::size_t rows = h.shape()[0], cols = h.shape()[1];
        for (std::uint32_t k = 0; k < Access::input_count(m.tape, n); ++k) {
            const std::uint32_t in = Access::input(m.tape, n, k);
            const Tens& b = m.value(in);
            if (b.dimension() != 1 || b.size() != cols) continue;
            Tens shifted = b, c = a;
            std::string changed;
            for (std::size_t j = 0; j < cols; ++j) {
                double d = 0;
                for (std::size_t i = 0; i < rows; ++i) d += h(i, j) - a(i, j);
                d /= double(rows);
                if (std::abs(d) <= o.rtol() * max_abs(a)) continue;
                shifted(j) += d;
                for (std::size_t i = 0; i < rows; ++i) c(i, j) += d;
                changed += fmt::format("{}{}[{}] = {:.6g} instead of {:.6g}", changed.empty() ? "" : ", ",
                                       input_name(in), j, shifted(j), b(j));
            }
            if (!changed.empty())
                offer(c, "wrong bias", fmt::format("{} is what {} gives (the bias of {})", label, changed, m.where(n)));
        }
    }

    /// "'reg' (mul)" for an observed scalar, "the scalar mul #31" otherwise.
    std::string scalar_name(std::uint32_t i) const
    {
        for (const auto& [name, k] : m.names)
            if (k == i) return fmt::format("'{}' ({})", name, m.where(i));
        return fmt::format("the scalar {} #{}", m.where(i), i);
    }

    std::string input_name(std::uint32_t in) const
    {
        for (const auto& [name, i] : m.names)
            if (i == in) return name;
        return fmt::format("the {} #{}", m.op(in), in);
    }

    void neighbours(bool is_grad, const std::string& name, const Tens& a)
    {
        for (const std::string& other : m.observed) {
            if (other == name) continue;
            Tens zeros;
            const Tens* t = tape_tensor(m, is_grad, other, zeros);
            if (t && t->shape() == h.shape() && residual(*t, a) > o.fit_tol())
                offer(*t, "off-by-one layer",
                      fmt::format("{} equals the tape's {} (another layer's quantity)", label, label_of(is_grad, other)));
        }
    }

    void terms(std::uint32_t n, const Tens& a)
    {
        for (const auto& [term, grads] : m.terms) {
            const Tens& t = grads[n];
            if (!t.size() || t.shape() != a.shape() || norm(t) == 0) continue;
            offer(Tens(a - t), "missing term", fmt::format("{} leaves out the gradient of the term '{}'", label, term));
            offer(Tens(a + t), "extra term", fmt::format("{} counts the gradient of the term '{}' twice", label, term));
            // One term's gradient summed over an axis and broadcast back (Σⱼ(yⱼ − dⱼ) for the
            // vector y − d): the other terms stay as they are.
            if (t.dimension() < 2) continue;
            for (std::size_t k = 0; k < t.dimension(); ++k) {
                if (t.shape()[k] < 2) continue;
                const Tens summed = xt::sum(t, {k}, xt::keep_dims);
                offer(Tens(a - t + summed), "sum over axis",
                      fmt::format("{}: the gradient of the term '{}' summed over {} and broadcast back: one number "
                                  "per {} where the term's gradient is a vector over the axis",
                                  label, term, axis_label(k, t.dimension(), t.shape()[k]),
                                  k == 0 ? "column" : "row"));
            }
        }
    }

    /// An axis by its place and, where the model says, what it counts.
    std::string axis_label(std::size_t k, std::size_t rank, std::size_t size) const
    {
        if (k == 0) return fmt::format("the batch (axis 0, {} samples)", size);
        for (const auto& [axis_size, what] : m.axes)
            if (axis_size == size) return fmt::format("the {} (axis {}, {} of them)", what, k, size);
        if (k + 1 == rank) return fmt::format("the last axis (axis {}: classes or features)", k);
        return fmt::format("axis {}", k);
    }

    /// The trace-scatter regularizer ½γ(tr S_w − tr S_b) sends the outputs y it is taken of
    /// κ((yᵢ − m_c) − (m_c − m)) (κ = γ × the cotangent reaching it). It is found on the tape, not
    /// assumed: a class partition the tape records (Model::classes) and a scalar node other than the
    /// loss whose gradient at y, times its cotangent, is exactly of that form (the fused
    /// trace_scatter_loss, or the last node of one written from one-hot matmuls, centering, squares
    /// and sums). A hand gradient that writes other coefficients per class is
    /// A + a_c(yᵢ − m_c) + b_c(m_c − m): a_c and b_c fitted by least squares over each class's rows
    /// (the two directions are orthogonal within a class, since Σ_{i∈c}(yᵢ − m_c) = 0), reported as
    /// the hand's coefficients 1 + a_c/κ and −1 + b_c/κ. When every a_c/κ is −1 (nothing of
    /// yᵢ − m_c is left) the hand's term is one vector per class: the per-sample gradient summed over
    /// the class's samples, which the within-class part does not survive.
    void scatter(std::uint32_t n, const Tens& a)
    {
        if (h.shape() != a.shape() || h.dimension() != 2) return;
        const Tens& y = m.value(n);
        const std::size_t B = y.shape()[0], D = y.shape()[1];
        if (B == 0) return;
        for (const Model::Classes& cl : m.classes) {
            const std::vector<std::size_t>& id = cl.id;
            if (id.size() != B) continue;
            const std::size_t K = cl.count;
            std::vector<double> count(K, 0);
            Tens mc = xt::zeros<double>({K, D});
            const Tens mean = xt::mean(y, {0});
            for (std::size_t i = 0; i < B; ++i) {
                count[id[i]] += 1;
                for (std::size_t d = 0; d < D; ++d) mc(id[i], d) += y(i, d);
            }
            for (std::size_t k = 0; k < K; ++k)
                for (std::size_t d = 0; d < D; ++d) mc(k, d) /= std::max(count[k], 1.0);
            Tens P = y, Q = y;  // yᵢ − m_c and m_c − m, row by row
            for (std::size_t i = 0; i < B; ++i)
                for (std::size_t d = 0; d < D; ++d) {
                    P(i, d) = y(i, d) - mc(id[i], d);
                    Q(i, d) = mc(id[i], d) - mean(d);
                }
            const Tens u = P - Q;
            const double uu = double(xt::sum(u * u)());
            if (uu == 0) continue;
            // the regularizer: the last scalar whose gradient reaching y is κu (κ from its own gradient)
            double kappa = 0;
            std::uint32_t reg = 0;
            const auto& scalars = scalar_grads(m);
            for (auto it = scalars.begin(); it != scalars.end() && kappa == 0; ++it) {  // last node first
                const Tens& gs = it->second[n];
                if (gs.shape() != y.shape()) continue;
                const Tens t = m.grads[it->first].data()[0] * gs;
                const double k = double(xt::sum(t * u)()) / uu;
                if (k != 0 && residual(t, Tens(k * u)) <= o.fit_tol()) kappa = k, reg = it->first;
            }
            if (kappa == 0) continue;
            const bool fused = m.op(reg) == "trace_scatter_loss";
            const std::string where = fused ? m.where(reg)
                                            : fmt::format("{}, its classes from {}", scalar_name(reg), cl.source);
            // The coefficients on top of the tape's gradient, or on top of another term's gradient summed
            // over an axis and broadcast back (both of D1's mistakes in one formula).
            std::vector<std::pair<Tens, std::string>> bases{{a, ""}};
            const Tens treg = kappa * u;
            for (const auto& [term, grads] : m.terms) {
                const Tens& t = grads[n];
                if (!t.size() || t.shape() != a.shape() || norm(t) == 0 || m.names.at(term) == reg) continue;
                const Tens& cot = m.grads[m.names.at(term)];
                if (cot.size() == 1 && residual(cot.data()[0] * t, treg) <= o.fit_tol())
                    continue;  // the regularizer itself
                for (std::size_t k = 0; k < 2; ++k) {
                    if (t.shape()[k] < 2) continue;
                    const Tens summed = xt::sum(t, {k}, xt::keep_dims);  // evaluated: a lazy reducer broadcasts wrongly
                    bases.emplace_back(Tens(a - t + summed),
                                       fmt::format(", and the gradient of the term '{}' summed over {} and "
                                                   "broadcast back",
                                                   term, axis_label(k, 2, t.shape()[k])));
                }
            }
            auto num = [](double x) {  // rounding residue (1e-16) printed as the 0 it is
                return std::isnan(x) ? std::string("any") : fmt::format("{:.6g}", std::abs(x) < 1e-9 ? 0.0 : x);
            };
            for (const auto& [base, also] : bases) {
                std::vector<double> pr(K, 0), pp(K, 0), qr(K, 0), qq(K, 0);
                for (std::size_t i = 0; i < B; ++i)
                    for (std::size_t d = 0; d < D; ++d) {
                        const double r = h(i, d) - base(i, d);
                        pr[id[i]] += P(i, d) * r, pp[id[i]] += P(i, d) * P(i, d);
                        qr[id[i]] += Q(i, d) * r, qq[id[i]] += Q(i, d) * Q(i, d);
                    }
                const double tiny = 1e-24 * std::max(uu, 1e-300);
                std::vector<double> alpha(K, NAN), beta(K, NAN);  // NaN: the class leaves it undetermined
                std::vector<double> bfit(K, 0);
                Tens cand = base, per_class = base;
                for (std::size_t k = 0; k < K; ++k) {
                    const double ak = pp[k] > tiny ? pr[k] / pp[k] : 0, bk = qq[k] > tiny ? qr[k] / qq[k] : 0;
                    if (pp[k] > tiny) alpha[k] = 1 + ak / kappa;
                    if (qq[k] > tiny) beta[k] = -1 + bk / kappa;
                    bfit[k] = bk;
                    for (std::size_t i = 0; i < B; ++i)
                        if (id[i] == k)
                            for (std::size_t d = 0; d < D; ++d) {
                                cand(i, d) += ak * P(i, d) + bk * Q(i, d);
                                per_class(i, d) += -kappa * P(i, d) + bk * Q(i, d);  // nothing of yᵢ − m_c left
                            }
                }
                bool all_correct = true, within_gone = false, between_right = true;
                for (std::size_t k = 0; k < K; ++k) within_gone = within_gone || !std::isnan(alpha[k]);  // some class says
                for (std::size_t k = 0; k < K; ++k) {
                    all_correct = all_correct && (std::isnan(alpha[k]) || std::abs(alpha[k] - 1) < 1e-6) &&
                                  (std::isnan(beta[k]) || std::abs(beta[k] + 1) < 1e-6);
                    within_gone = within_gone && (std::isnan(alpha[k]) || std::abs(alpha[k]) < 1e-6);
                    between_right = between_right && (std::isnan(beta[k]) || std::abs(beta[k] + 1) < 1e-6);
                }
                if (all_correct) continue;  // the regularizer's part is right: the mistake is elsewhere
                // A regularizer no observed name makes a term: left out (0 and 0) or counted twice (2 and −2)
                // said here, as terms() says it for an observed one.
                bool observed = false;
                for (const auto& [term, grads] : m.terms) observed = observed || m.names.at(term) == reg;
                for (const double times : {0.0, 2.0}) {
                    bool all = !observed && also.empty();
                    for (std::size_t k = 0; k < K && all; ++k)
                        all = (std::isnan(alpha[k]) || std::abs(alpha[k] - times) < 1e-6) &&
                              (std::isnan(beta[k]) || std::abs(beta[k] + times) < 1e-6);
                    if (all)
                        offer(Tens(a + (times - 1) * treg), times == 0 ? "missing term" : "extra term",
                              fmt::format(times == 0 ? "{} leaves out the gradient of the trace regularizer ({})"
                                                     : "{} counts the gradient of the trace regularizer ({}) twice",
                                          label, where));
                }
                std::string per_class_text;
                for (std::size_t k = 0; k < K; ++k)
                    per_class_text += fmt::format("{}class {} (n_c = {:g}): {} and {}", k ? "; " : "", k, count[k],
                                                  num(alpha[k]), num(beta[k]));
                const std::string named_a = count_expression(alpha, count, double(B)),
                                  named_b = count_expression(beta, count, double(B));
                std::string named;
                if (!named_a.empty() && !named_b.empty()) named = fmt::format(", i.e. {} and {}", named_a, named_b);
                // Summed over each class: Σ_{i∈c}(α(yᵢ − m_c) + β'(m_c − m)) = n_c β'(m_c − m) for any α.
                // Proposed unless per sample the only change is the within-class part left out
                // (0 and −1: one change, where a per-class sum needs two).
                bool between_gone = true;  // nothing of the regularizer left: a missing term, not a sum
                for (std::size_t k = 0; k < K; ++k)
                    between_gone = between_gone && (std::isnan(beta[k]) || std::abs(beta[k]) < 1e-6);
                if (within_gone && !between_right && !between_gone) {
                    std::vector<double> each(K, NAN);
                    std::string text;
                    for (std::size_t k = 0; k < K; ++k) {
                        if (!std::isnan(beta[k]) && count[k] > 0) each[k] = beta[k] / count[k];
                        if (count[k] > 0)
                            text += fmt::format("{}class {} (n_c = {:g}): {}", text.empty() ? "" : "; ", k, count[k],
                                                num(each[k]));
                    }
                    const std::string named_each = count_expression(each, count, double(B));
                    offer(per_class, "sum over class",
                          fmt::format("{}: the gradient of the trace regularizer ({}) summed over the samples of each "
                                      "class and given to every sample of it, one vector per class (the sum drops the "
                                      "within-class term: Σ_{{i∈c}}(yᵢ − m_c) = 0); per sample, a coefficient (in "
                                      "units of its γ) on (m_c − m) of {}{} instead of a per-sample gradient with 1 "
                                      "and −1{}",
                                      label, where, text, named_each.empty() ? "" : ", i.e. " + named_each, also));
                }
                offer(cand, "scatter coefficients",
                      fmt::format("{}: the gradient of the trace regularizer ({}) with coefficients (in units of its γ) on "
                                  "(yᵢ − m_c) and (m_c − m) of {}{} instead of 1 and −1{}",
                                  label, where, per_class_text, named, also));
            }
        }
    }

    /// A name for per-class coefficients that one expression in the class count n_c and the
    /// sample count N gives for every class (NaN entries are undetermined and match anything).
    static std::string count_expression(const std::vector<double>& x, const std::vector<double>& n_c, double N)
    {
        using F = double (*)(double, double);
        static const std::pair<const char*, F> forms[] = {
            {"1", [](double, double) { return 1.0; }},           {"−1", [](double, double) { return -1.0; }},
            {"0", [](double, double) { return 0.0; }},           {"2", [](double, double) { return 2.0; }},
            {"−2", [](double, double) { return -2.0; }},         {"½", [](double, double) { return 0.5; }},
            {"−½", [](double, double) { return -0.5; }},         {"1/n_c", [](double n, double) { return 1 / n; }},
            {"−1/n_c", [](double n, double) { return -1 / n; }}, {"1 − 1/n_c", [](double n, double) { return 1 - 1 / n; }},
            {"−(1 − 1/n_c)", [](double n, double) { return 1 / n - 1; }},
            {"n_c/N", [](double n, double N) { return n / N; }}, {"−n_c/N", [](double n, double N) { return -n / N; }},
            {"1 − n_c/N = n_c(1/n_c − 1/N)", [](double n, double N) { return 1 - n / N; }},
            {"−(1 − n_c/N) = −n_c(1/n_c − 1/N)", [](double n, double N) { return n / N - 1; }},
            {"n_c", [](double n, double) { return n; }},         {"−n_c", [](double n, double) { return -n; }},
            {"1/N", [](double, double N) { return 1 / N; }},     {"−1/N", [](double, double N) { return -1 / N; }},
            {"1 − 1/N", [](double, double N) { return 1 - 1 / N; }},
            {"−(1 − 1/N)", [](double, double N) { return 1 / N - 1; }},
            {"1/n_c − 1/N", [](double n, double N) { return 1 / n - 1 / N; }},
            {"−(1/n_c − 1/N)", [](double n, double N) { return 1 / N - 1 / n; }},
        };
        for (const auto& [name, f] : forms) {
            bool all = true, any = false;
            for (std::size_t k = 0; k < x.size() && all; ++k) {
                if (std::isnan(x[k]) || n_c[k] == 0) continue;
                const double e = f(n_c[k], N);
                all = std::abs(x[k] - e) <= 1e-6 * std::max(1.0, std::abs(e));
                any = true;
            }
            if (all && any) return name;
        }
        return {};
    }
};

/// "k of n elements differ, only in row(s) …; correlation …" for a mistake nothing explains.
std::string pattern(const Tens& h, const Tens& a, double rtol)
{
    if (h.shape() != a.shape())
        return fmt::format("shape {} where the tape has {}", shape_str(h.shape()), shape_str(a.shape()));
    const double tol = rtol * max_abs(a);
    std::size_t bad = 0;
    std::set<std::size_t> rows;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!(std::abs(a.data()[i] - h.data()[i]) <= tol)) {
            ++bad;
            if (a.dimension() == 2) rows.insert(i / a.shape()[1]);
        }
    std::string s = fmt::format("{} of {} elements differ", bad, a.size());
    if (a.dimension() == 2 && rows.size() < a.shape()[0] && rows.size() <= 5) {
        s += rows.size() == 1 ? ", only in row" : ", only in rows";
        for (auto r : rows) s += " " + std::to_string(r);
    }
    double dot = 0;
    for (std::size_t i = 0; i < a.size(); ++i) dot += a.data()[i] * h.data()[i];
    const double na = norm(a), nh = norm(h);
    if (na > 0 && nh > 0) s += fmt::format("; correlation with the tape {:.4f}", dot / (na * nh));
    return s;
}

std::vector<Hypothesis> fit(const Model& m, const DiagnoseOptions& o, bool is_grad, const std::string& name,
                            const Tens& h, const Tens& a)
{
    const std::string label = label_of(is_grad, name);
    Fitter f{m, o, h, label, {}};
    const std::uint32_t n = m.names.at(name);
    f.scalar(a);
    f.shapes(a);
    f.square_transpose(a);
    f.neighbours(is_grad, name, a);
    if (is_grad) {
        f.derivative(n);
        f.terms(n, a);
        f.scatter(n, a);
    } else {
        f.bias(n, a);
        f.pooled_value(n);
    }
    // Best first; fits equal to rounding go to the more specific story (a derivative or a routing
    // names the mistake, "equals another layer's quantity" only says where the number came from).
    auto rank = [](const std::string& kind) {
        static const char* order[] = {"activation derivative", "elementwise derivative", "missing derivative",
                                      "pooling routing", "missing term", "extra term", "sum over class", "scatter coefficients", "sum over axis", "reshape", "transpose",
                                      "sign", "factor", "off-by-one layer", "wrong bias"};
        for (std::size_t i = 0; i < std::size(order); ++i)
            if (kind == order[i]) return i;
        return std::size(order);
    };
    auto key = [&](const Hypothesis& h) { return std::make_pair(h.residual <= 1e-12 ? 0.0 : h.residual, rank(h.kind)); };
    std::stable_sort(f.out.begin(), f.out.end(), [&](const Hypothesis& x, const Hypothesis& y) { return key(x) < key(y); });
    if (f.out.size() > o.max_hypotheses()) f.out.resize(o.max_hypotheses());
    return std::move(f.out);
}

std::string dot_of(const Model& m, const std::map<std::uint32_t, std::pair<std::string, Verdict>>& marks)
{
    std::ostringstream os;
    os << "digraph tape {\n  rankdir=LR;\n  node [shape=box, style=filled, fillcolor=white, fontname=\"Helvetica\"];\n";
    std::map<std::uint32_t, std::string> named;
    for (const auto& [name, i] : m.names) named[i] += (named[i].empty() ? "" : ", ") + name;
    const std::uint32_t limit = std::min<std::uint32_t>(std::uint32_t(m.tape.size()), 400);
    for (std::uint32_t i = 0; i < limit; ++i) {
        std::string color = "white";
        auto it = marks.find(i);
        if (it != marks.end())
            color = it->second.second == Verdict::ok ? "palegreen"
                    : it->second.second == Verdict::follows ? "orange"
                                                            : "tomato";
        os << fmt::format("  n{} [label=\"#{} {}{}\\n{}\", fillcolor={}];\n", i, i, m.op(i),
                          named.count(i) ? " (" + named[i] + ")" : "", shape_str(m.value(i).shape()), color);
        for (std::uint32_t k = 0; k < Access::input_count(m.tape, i); ++k)
            os << fmt::format("  n{} -> n{};\n", Access::input(m.tape, i, k), i);
    }
    os << "}\n";
    return os.str();
}

}  // namespace

DiagnosisReport diagnose(const std::function<Var<double>(Tape<double>&)>& model,
                         const std::function<void(HandDerivation&)>& hand, const DiagnoseOptions& o)
{
    Tape<double> tape;
    const Model m = record(tape, model);
    std::set<std::string> corrected;  // labels whose tape value replaces the hand's
    std::map<std::string, Tens> zeros;
    // as_printed: printed quantities return their printed numbers; otherwise (the reruns) their
    // formula's value, so that a corrected mistake propagates through the document's formulas.
    auto run = [&](bool as_printed) {
        HandDerivation h(
            [&](bool is_grad, const std::string& name) -> const Tens* {
                if (!corrected.count(label_of(is_grad, name))) return nullptr;
                return tape_tensor(m, is_grad, name, zeros[label_of(is_grad, name)]);
            },
            !as_printed);
        hand(h);
        return h.given();
    };
    // In the reruns a quantity is its formula's value (its hand value when it has no formula).
    auto disagrees = [&](const HandDerivation::Given& g) {
        Tens z;
        const Tens* t = tape_tensor(m, g.is_grad, g.name, z);
        return t && !agrees(g.has_formula ? g.formula : g.hand, *t, o.rtol());
    };

    DiagnosisReport r;
    const std::deque<HandDerivation::Given> first = run(true);
    std::map<std::string, std::size_t> entry;  // label → index in r.quantities
    std::set<std::string> slips;
    for (const auto& g : first) {
        QuantityCheck q;
        q.name = g.name;
        q.is_grad = g.is_grad;
        q.label = label_of(g.is_grad, g.name);
        q.hand_shape = g.hand.shape();
        q.printed = g.has_formula;
        Tens z;
        const Tens* t = tape_tensor(m, g.is_grad, g.name, z);
        if (!t) {
            q.verdict = Verdict::unmatched;
            q.max_rel_error = NAN;
        } else {
            q.tape_shape = t->shape();
            const std::uint32_t node = m.names.at(g.name);
            // a parameter is placed by the op that uses it: "param of linear in mlp/2"
            q.where = m.op(node) == "param" && !m.consumers[node].empty() ? "param of " + m.where(m.consumers[node][0])
                                                                          : m.where(node);
            q.max_rel_error = max_rel_error(g.hand, *t);
            q.verdict = agrees_given(g, *t, o) ? Verdict::ok : Verdict::follows;  // decided below
            // A printed number that is not what its own formula gives is a slip of its own (unless
            // it is right all the same).
            const auto bad = slipped_entries(g, o);
            if (q.verdict != Verdict::ok && !bad.empty()) {
                q.verdict = Verdict::mistake;
                q.slip = true;
                q.hypotheses = fit_slip(g, bad, q.label, o);
                slips.insert(q.label);
            }
        }
        entry[q.label] = r.quantities.size();
        r.quantities.push_back(std::move(q));
    }
    // Localization: the first quantity that disagrees (or is a slip) is a mistake; with the tape's
    // value in its place the derivation runs again, and whatever then agrees followed from it.
    std::deque<HandDerivation::Given> current = run(false);
    for (std::size_t round = 0; round <= first.size(); ++round) {
        const HandDerivation::Given* root = nullptr;
        for (const auto& g : current) {
            const std::string l = label_of(g.is_grad, g.name);
            if (!corrected.count(l) && (slips.count(l) || disagrees(g))) {
                root = &g;
                break;
            }
        }
        if (!root) break;
        const std::string label = label_of(root->is_grad, root->name);
        if (!entry.count(label)) break;  // a name only this run gave: nothing to report against
        QuantityCheck& q = r.quantities[entry[label]];
        Tens z;
        const Tens& a = *tape_tensor(m, root->is_grad, root->name, z);
        const Tens& hand_value = root->has_formula ? root->formula : root->hand;
        if (!q.slip) {
            q.verdict = hand_value.shape() == a.shape() ? Verdict::mistake : Verdict::shape_mismatch;
            q.max_rel_error = max_rel_error(hand_value, a);
            q.hypotheses = fit(m, o, root->is_grad, root->name, hand_value, a);
            if (q.hypotheses.empty()) q.pattern = pattern(hand_value, a, o.rtol());
        } else if (disagrees(*root) && q.follows_from.empty()) {  // a slip whose formula is wrong on its own too
            for (auto& h : fit(m, o, root->is_grad, root->name, hand_value, a)) q.hypotheses.push_back(std::move(h));
        }
        std::set<std::string> before;  // what disagreed before this correction
        for (const auto& g : current)
            if (disagrees(g)) before.insert(label_of(g.is_grad, g.name));
        corrected.insert(label);
        current = run(false);
        for (const auto& g : current) {
            const std::string l = label_of(g.is_grad, g.name);
            if (!entry.count(l) || corrected.count(l) || !before.count(l) || disagrees(g)) continue;
            QuantityCheck& later = r.quantities[entry[l]];
            if ((later.verdict == Verdict::follows || later.slip) && later.follows_from.empty()) later.follows_from = label;
        }
    }
    // A printed number worked on from an earlier misprint (consistent with it, so not a slip, but
    // wrong) is fixed data: no correction makes it agree. It follows the first slip without which
    // its own formula no longer gives it (the derivation rerun as printed, that slip replaced).
    std::vector<std::size_t> unassigned;
    for (std::size_t i = 0; i < r.quantities.size(); ++i)
        if (r.quantities[i].verdict == Verdict::follows && r.quantities[i].follows_from.empty() && r.quantities[i].printed)
            unassigned.push_back(i);
    for (const auto& slip : r.quantities) {
        if (unassigned.empty()) break;
        if (!slip.slip) continue;
        corrected = {slip.label};
        const std::deque<HandDerivation::Given> again = run(true);
        for (auto it = unassigned.begin(); it != unassigned.end();) {
            QuantityCheck& q = r.quantities[*it];
            bool moved = false;
            for (const auto& g : again)
                if (label_of(g.is_grad, g.name) == q.label) moved = g.has_formula && !slipped_entries(g, o).empty();
            if (moved) {
                q.follows_from = slip.label;
                it = unassigned.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& q : r.quantities)  // disagreeing, yet neither a mistake nor following one: say so
        if (q.verdict == Verdict::follows && q.follows_from.empty()) {
            q.verdict = Verdict::mistake;
            Tens z;
            if (const Tens* t = tape_tensor(m, q.is_grad, q.name, z))
                for (const auto& g : first)
                    if (label_of(g.is_grad, g.name) == q.label) q.pattern = pattern(g.hand, *t, o.rtol());
        }
    std::set<std::string> given;
    for (const auto& g : first) given.insert(g.name);
    for (const auto& name : m.observed)
        if (!given.count(name)) r.not_given.push_back(name);
    std::map<std::uint32_t, std::pair<std::string, Verdict>> marks;
    for (const auto& q : r.quantities)
        if (q.verdict != Verdict::unmatched) {
            auto& mk = marks[m.names.at(q.name)];
            if (mk.first.empty() || q.verdict != Verdict::ok) mk = {q.label, q.verdict};
        }
    r.dot = dot_of(m, marks);
    return r;
}

const char* to_string(Verdict v)
{
    switch (v) {
        case Verdict::ok: return "ok";
        case Verdict::mistake: return "MISTAKE";
        case Verdict::follows: return "follows";
        case Verdict::shape_mismatch: return "SHAPE MISMATCH";
        case Verdict::unmatched: return "UNMATCHED";
    }
    return "?";
}

std::ostream& operator<<(std::ostream& os, Verdict v) { return os << to_string(v); }

bool DiagnosisReport::ok() const
{
    for (const auto& q : quantities)
        if (q.verdict != Verdict::ok) return false;
    return !quantities.empty();
}

std::vector<std::string> DiagnosisReport::mistakes() const
{
    std::vector<std::string> out;
    for (const auto& q : quantities)
        if (q.verdict == Verdict::mistake || q.verdict == Verdict::shape_mismatch) out.push_back(q.label);
    return out;
}

const QuantityCheck& DiagnosisReport::at(const std::string& label) const
{
    for (const auto& q : quantities)
        if (q.label == label) return q;
    throw std::out_of_range(fmt::format("DiagnosisReport::at: no quantity '{}'", label));
}

std::string DiagnosisReport::table() const
{
    // Columns as wide as their longest entry (labels such as "dL/dz1 (W1 update, line 1)").
    auto width = [](const std::string& t) {  // code points: fmt pads UTF-8 by them
        return std::size_t(std::count_if(t.begin(), t.end(), [](char ch) { return (ch & 0xC0) != 0x80; }));
    };
    auto verdict_of = [](const QuantityCheck& q) {
        std::string v = to_string(q.verdict);
        if (q.verdict == Verdict::follows) v += " " + q.follows_from;
        return v;
    };
    auto shape_of = [](const QuantityCheck& q) {
        return q.verdict == Verdict::shape_mismatch ? shape_str(q.hand_shape) + "≠" + shape_str(q.tape_shape)
                                                    : shape_str(q.hand_shape);
    };
    std::size_t lw = width("quantity"), vw = width("verdict"), sw = 12;
    for (const auto& q : quantities) {
        lw = std::max(lw, width(q.label));
        vw = std::max(vw, width(verdict_of(q)));
        sw = std::max(sw, width(shape_of(q)));  // "(3,4,48)≠(3,48)"
    }
    std::ostringstream os;
    os << fmt::format("{:<{}} {:<26} {:<{}} {:>12}  {:<{}} {}\n", "quantity", lw, "on the tape", "shape", sw,
                      "max rel err", "verdict", vw, "best explanation");
    for (const auto& q : quantities) {
        const std::string verdict = verdict_of(q);
        const std::string best = !q.hypotheses.empty() ? q.hypotheses.front().explanation
                                 : q.verdict == Verdict::unmatched
                                     ? "no observed quantity or parameter is named '" + q.name + "'"
                                     : q.pattern;
        const std::string shape = shape_of(q);
        std::string said = q.verdict == Verdict::ok || q.verdict == Verdict::follows ? "" : best;
        if (q.slip && !q.follows_from.empty())
            said += fmt::format("; its formula's value is wrong only because {} is", q.follows_from);
        std::size_t cut = std::min<std::size_t>(q.where.size(), 26);  // not inside a UTF-8 sequence
        while (cut < q.where.size() && cut > 0 && (q.where[cut] & 0xC0) == 0x80) --cut;
        os << fmt::format("{:<{}} {:<26} {:<{}} {:>12.3e}  {:<{}} {}\n", q.label, lw, q.where.substr(0, cut), shape,
                          sw, q.max_rel_error, verdict, vw, said);
    }
    const auto roots = mistakes();
    if (roots.empty() && ok()) os << "every quantity agrees with the tape\n";
    if (!roots.empty()) os << fmt::format("first mistake: {}\n", roots.front());
    for (const auto& q : quantities)
        for (std::size_t k = 1; k < q.hypotheses.size(); ++k)
            os << fmt::format("  {} (also fits, residual {:.1e}): {}\n", q.label, q.hypotheses[k].residual,
                              q.hypotheses[k].explanation);
    if (!not_given.empty()) {
        os << "observed but not given by the hand derivation:";
        for (const auto& n : not_given) os << " " << n;
        os << "\n";
    }
    return os.str();
}

std::string DiagnosisReport::json() const
{
    nlohmann::ordered_json j;
    j["ok"] = ok();
    j["mistakes"] = mistakes();
    j["not_given"] = not_given;
    auto& qs = j["quantities"] = nlohmann::ordered_json::array();
    for (const auto& q : quantities) {
        nlohmann::ordered_json e;
        e["label"] = q.label;
        e["name"] = q.name;
        e["is_grad"] = q.is_grad;
        e["where"] = q.where;
        e["hand_shape"] = q.hand_shape;
        e["tape_shape"] = q.tape_shape;
        e["max_rel_error"] = std::isfinite(q.max_rel_error) ? nlohmann::ordered_json(q.max_rel_error) : nullptr;
        e["verdict"] = to_string(q.verdict);
        if (!q.follows_from.empty()) e["follows_from"] = q.follows_from;
        if (q.printed) e["printed"] = true;
        if (q.slip) e["slip"] = true;
        auto& hs = e["hypotheses"] = nlohmann::ordered_json::array();
        for (const auto& h : q.hypotheses) hs.push_back({{"kind", h.kind}, {"explanation", h.explanation}, {"residual", h.residual}});
        if (!q.pattern.empty()) e["pattern"] = q.pattern;
        qs.push_back(std::move(e));
    }
    return j.dump(2);
}

}  // namespace xgrad

#include "xgrad/compare.hpp"

#include <cmath>
#include <map>
#include <sstream>

#include <fmt/core.h>

namespace xgrad {

namespace {

double norm(const Tensor<double>& t)
{
    double s = 0;
    for (double v : t) s += v * v;
    return std::sqrt(s);
}

/// ‖a − b‖ ≤ tol · max(‖a‖, ‖b‖): the relation holds up to rounding.
bool close(const Tensor<double>& a, const Tensor<double>& b, double tol = 1e-7)
{
    if (a.shape() != b.shape()) return false;
    double d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d += (a.data()[i] - b.data()[i]) * (a.data()[i] - b.data()[i]);
    return std::sqrt(d) <= tol * std::max({norm(a), norm(b), 1e-300});
}

std::string factor_story(double a, std::size_t batch)
{
    auto near = [](double x, double y) { return std::abs(x - y) <= 1e-6 * std::abs(y); };
    if (near(a, -1)) return "sign flip: hand = −automatic ((t − y) written for (y − t), or an ascent step)";
    if (batch > 1 && near(a, double(batch)))
        return fmt::format("sum vs mean: hand = {} × automatic = B × automatic; the loss averages over the batch of B = {}, "
                           "the hand gradient sums over it", batch, batch);
    if (batch > 1 && near(a, 1.0 / double(batch)))
        return fmt::format("mean vs sum: hand = automatic / B (B = {}); the loss sums over the batch, the hand gradient "
                           "averages", batch);
    if (near(a, 2)) return "constant factor 2: hand = 2 × automatic (the ½ of ½‖y − t‖² forgotten in the derivative?)";
    if (near(a, 0.5)) return "constant factor ½: hand = ½ × automatic (the loss is Σ(y − t)², not ½Σ(y − t)²?)";
    if (near(a, -2) || near(a, -0.5)) return fmt::format("sign flip and factor {}: hand = {} × automatic", std::abs(a), a);
    if (near(a, 4)) return "constant factor 4: hand = 4 × automatic (a 2×2 average-pooling factor ¼ dropped?)";
    if (near(a, 0.25)) return "constant factor ¼: hand = ¼ × automatic (a 2×2 average-pooling factor ¼ applied twice?)";
    return fmt::format("constant factor {:.6g}: hand = {:.6g} × automatic", a, a);
}

}  // namespace

std::string diagnose_gradient(const Tensor<double>& a, const Tensor<double>& h, const CompareOptions& o,
                              const std::vector<std::pair<std::string, Tensor<double>>>& terms)
{
    const Shape& as = a.shape();
    const Shape& hs = h.shape();
    if (as != hs) {
        if (as.size() == 2 && hs.size() == 2 && as[0] == hs[1] && as[1] == hs[0]) {
            if (close(xt::eval(xt::transpose(h)), a))
                return "transposed: hand = (dL/dW)ᵀ, shape " + shape_str(hs) + " for " + shape_str(as) +
                       " (e.g. z·δᵀ written for δ·zᵀ)";
        }
        if (hs.size() == as.size() + 1 && std::equal(as.begin(), as.end(), hs.begin() + 1)) {
            const Tensor<double> summed = xt::sum(h, {0});
            if (close(summed, a))
                return "missing sum over the batch axis: the hand gradient has one entry per sample " + shape_str(hs) +
                       "; their sum is the gradient " + shape_str(as);
            const Tensor<double> avg = xt::mean(h, {0});
            if (close(avg, a)) return "per-sample gradients " + shape_str(hs) + " whose mean is the gradient: average them";
        }
        return "shape mismatch: hand " + shape_str(hs) + " vs automatic " + shape_str(as);
    }
    const double aa = norm(a), hh = norm(h);
    if (aa == 0 && hh == 0) return {};
    if (hh == 0) return "hand gradient is zero where the automatic one is not (a term or a path missing)";
    if (aa == 0) return "automatic gradient is zero: the parameter does not affect the loss, but the hand gradient is not zero";
    // One constant factor?
    double dot = 0;
    for (std::size_t i = 0; i < a.size(); ++i) dot += a.data()[i] * h.data()[i];
    const double alpha = dot / (aa * aa);
    // A factor within 1e-6 of 1 is rounding or a tiny slip, not a factor mistake: reported by element below.
    if (close(Tensor<double>(alpha * a), h) && std::abs(alpha - 1) > 1e-6) return factor_story(alpha, o.batch_size());
    if (as.size() == 2 && as[0] == as[1]) {
        const Tensor<double> at = xt::transpose(a);
        if (close(at, h)) return "transposed (square matrix): hand = (dL/dW)ᵀ";
        if (close(Tensor<double>(0.5 * (a + at)), h))
            return "symmetric part only: hand = ½(G + Gᵀ), but the true gradient G is not symmetric";
        if (close(Tensor<double>(a + at), h)) return "hand = G + Gᵀ: derived as if the matrix argument were symmetric";
    }
    // A subset of the loss terms?
    if (!terms.empty() && terms.size() <= 10) {
        const std::size_t n = terms.size();
        for (std::size_t mask = 1; mask + 1 < (std::size_t(1) << n); ++mask) {
            Tensor<double> s = xt::zeros<double>(as);
            std::string kept, missing;
            for (std::size_t t = 0; t < n; ++t) {
                if (mask >> t & 1) {
                    s += terms[t].second;
                    kept += (kept.empty() ? "'" : ", '") + terms[t].first + "'";
                } else {
                    missing += (missing.empty() ? "'" : ", '") + terms[t].first + "'";
                }
            }
            if (close(s, h)) return "missing term: the hand gradient is the gradient of " + kept + " only; " + missing + " is left out";
            for (double f : {2.0, 0.5, -1.0})
                if (close(Tensor<double>(f * s), h))
                    return "missing term " + missing + ", and the rest scaled by " + fmt::format("{}", f);
        }
    }
    // Where do the errors sit?
    std::size_t bad = 0;
    const double tol = o.atol() + o.rtol() * xt::amax(xt::abs(a))();
    std::vector<std::size_t> bad_rows;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::abs(a.data()[i] - h.data()[i]) > tol) {
            ++bad;
            if (as.size() == 2) {
                const std::size_t r = i / as[1];
                if (bad_rows.empty() || bad_rows.back() != r) bad_rows.push_back(r);
            }
        }
    std::string where = fmt::format("{} of {} elements differ", bad, a.size());
    if (as.size() == 2 && bad_rows.size() < as[0] && bad_rows.size() <= 5) {
        where += "; only in row(s)";
        for (auto r : bad_rows) where += " " + std::to_string(r);
    }
    return "no simple relation (factor, sign, transpose, batch sum, missing term) found; " + where +
           fmt::format("; correlation with the automatic gradient {:.4f}", dot / (aa * hh));
}

bool ComparisonReport::all_pass() const
{
    for (const auto& e : entries)
        if (!e.pass) return false;
    return !entries.empty();
}

std::string ComparisonReport::table() const
{
    std::ostringstream os;
    os << fmt::format("{:<14} {:<12} {:>12} {:>12}  {:<14} {:>22} {:>22}  {}\n", "parameter", "shape", "max abs err",
                      "max rel err", "worst at", "automatic", "hand", "verdict");
    for (const auto& e : entries)
        os << fmt::format("{:<14} {:<12} {:>12.3e} {:>12.3e}  {:<14} {:>22.15g} {:>22.15g}  {}\n", e.name,
                          shape_str(e.shape), e.max_abs_error, e.max_rel_error, shape_str(e.worst_index),
                          e.worst_automatic, e.worst_hand, e.pass ? "ok" : "MISMATCH");
    for (const auto& e : entries)
        if (!e.pass) os << "  " << e.name << ": " << e.diagnosis << "\n";
    return os.str();
}

ComparisonReport compare_gradients(const NamedTensors& automatic, const NamedTensors& hand, const CompareOptions& o,
                                   const std::vector<std::pair<std::string, NamedTensors>>& terms)
{
    ComparisonReport r;
    std::map<std::string, const Tensor<double>*> by_name;
    for (const auto& [n, t] : hand) by_name[n] = &t;
    for (const auto& [name, a] : automatic) {
        GradientComparison c;
        c.name = name;
        c.shape = a.shape();
        auto it = by_name.find(name);
        if (it == by_name.end()) {
            c.diagnosis = "no hand-derived gradient named '" + name + "'";
            r.entries.push_back(c);
            continue;
        }
        const Tensor<double>& h = *it->second;
        c.hand_shape = h.shape();
        std::vector<std::pair<std::string, Tensor<double>>> term_grads;
        for (const auto& [tn, grads] : terms)
            for (const auto& [pn, g] : grads)
                if (pn == name) term_grads.emplace_back(tn, g);
        if (h.shape() == a.shape()) {
            const double amax = a.size() ? double(xt::amax(xt::abs(a))()) : 0.0;
            double worst = -1;
            for (std::size_t i = 0; i < a.size(); ++i) {
                const double e = std::abs(a.data()[i] - h.data()[i]);
                if (e > worst || std::isnan(e)) {
                    worst = std::isnan(e) ? INFINITY : e;
                    c.worst_index.assign(a.shape().size(), 0);
                    auto idx = xt::unravel_index(i, a.shape());
                    c.worst_index.assign(idx.begin(), idx.end());
                    c.worst_automatic = a.data()[i];
                    c.worst_hand = h.data()[i];
                }
            }
            c.max_abs_error = std::max(worst, 0.0);
            c.max_rel_error = amax > 0 ? c.max_abs_error / amax : c.max_abs_error;
            c.pass = c.max_abs_error <= o.atol() + o.rtol() * amax;
        } else {
            c.max_abs_error = c.max_rel_error = INFINITY;
        }
        if (!c.pass) c.diagnosis = diagnose_gradient(a, h, o, term_grads);
        r.entries.push_back(std::move(c));
    }
    return r;
}

ComparisonReport compare_gradients(Tape<double>& tape, const std::vector<std::pair<std::string, Var<double>>>& loss_terms,
                                   const std::vector<std::pair<std::string, Var<double>>>& wrt, const NamedTensors& hand,
                                   const CompareOptions& options)
{
    if (loss_terms.empty()) throw std::invalid_argument("compare_gradients: no loss terms");
    // Parameters accumulate across sweeps: remember them, sweep each term from zero, restore.
    std::vector<std::pair<Parameter<double>*, Tensor<double>>> saved;
    for (const auto& [n, v] : wrt)
        if (Parameter<double>* p = v.parameter()) saved.emplace_back(p, p->grad());
    std::vector<std::pair<std::string, NamedTensors>> terms;
    NamedTensors total;
    for (const auto& [n, v] : wrt) total.emplace_back(n, xt::zeros<double>(v.shape()));
    for (const auto& [tname, term] : loss_terms) {
        for (auto& [p, g] : saved) p->zero_grad();
        NamedTensors grads;
        if (term.requires_grad()) {
            tape.backward(term);
            for (const auto& [n, v] : wrt) grads.emplace_back(n, v.requires_grad() ? v.grad() : xt::zeros<double>(v.shape()));
        } else {
            for (const auto& [n, v] : wrt) grads.emplace_back(n, xt::zeros<double>(v.shape()));
        }
        for (std::size_t k = 0; k < grads.size(); ++k) total[k].second += grads[k].second;
        terms.emplace_back(tname, std::move(grads));
    }
    for (auto& [p, g] : saved) p->grad() = g;
    return compare_gradients(total, hand, options, loss_terms.size() > 1 ? terms : decltype(terms){});
}

}  // namespace xgrad

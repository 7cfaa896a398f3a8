#include "xgrad/profiler.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "tape_access.hpp"
#include "xgrad/detail/profile_log.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {
double seconds(detail::ProfileLog::Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

template <class T>
Profiler<T>::Profiler(Tape<T>& tape) : log_(std::make_unique<detail::ProfileLog>())
{
    attach(tape);
}

template <class T>
Profiler<T>::~Profiler()
{
    if (log_->tape_) detail::TapeAccess<T>::exchange_profile(*static_cast<Tape<T>*>(log_->tape_), nullptr);
}

template <class T>
void Profiler<T>::attach(Tape<T>& tape)
{
    if (log_->tape_ == &tape) return;
    if (detail::ProfileLog* before = detail::TapeAccess<T>::exchange_profile(tape, log_.get())) {
        detail::TapeAccess<T>::exchange_profile(tape, before);
        throw std::logic_error("xgrad: Profiler: this tape already has a profiler attached");
    }
    if (log_->tape_) detail::TapeAccess<T>::exchange_profile(*static_cast<Tape<T>*>(log_->tape_), nullptr);
    log_->tape_ = &tape;
}

template <class T>
void Profiler<T>::reset()
{
    log_->reset();
}

template <class T>
ProfileReport Profiler<T>::report(ProfileGroup by) const
{
    ProfileReport r;
    r.wall_seconds = seconds(detail::ProfileLog::Clock::now() - log_->since_);
    r.sweeps = log_->sweeps_;
    for (const detail::ProfileLog::Entry& e : log_->entries_) {
        const std::string scope = by == ProfileGroup::scope_and_op ? e.scope : std::string();
        auto row = std::find_if(r.rows.begin(), r.rows.end(),
                                [&](const OpProfile& p) { return p.op == e.op && p.scope == scope; });
        if (row == r.rows.end()) row = r.rows.insert(r.rows.end(), OpProfile{e.op, scope});
        row->forward_calls += e.forward_calls;
        row->backward_calls += e.backward_calls;
        row->forward_seconds += seconds(e.forward);
        row->backward_seconds += seconds(e.backward);
    }
    std::stable_sort(r.rows.begin(), r.rows.end(),
                     [](const OpProfile& a, const OpProfile& b) { return a.total_seconds() > b.total_seconds(); });
    return r;
}

double ProfileReport::op_seconds() const
{
    double s = 0;
    for (const OpProfile& p : rows) s += p.total_seconds();
    return s;
}

std::string ProfileReport::table(std::size_t max_rows) const
{
    const bool per_step = sweeps > 0;
    const double div = per_step ? double(sweeps) : 1.0;
    const double wall = wall_seconds > 0 ? wall_seconds : 1.0;
    std::string out = fmt::format("{} backward sweeps, {:.3f} ms wall, {:.3f} ms in ops ({:.1f} %)\n", sweeps,
                                  1e3 * wall_seconds, 1e3 * op_seconds(), 100 * op_seconds() / wall);
    bool scoped = false;
    std::size_t width = 2;
    for (const OpProfile& p : rows) {
        scoped = scoped || !p.scope.empty();
        width = std::max(width, p.op.size() + (p.scope.empty() ? 0 : p.scope.size() + 3));
    }
    const char* unit = per_step ? "µs/step" : "µs";
    out += fmt::format("{:<{}}  {:>9}  {:>12}  {:>12}  {:>12}  {:>6}\n", scoped ? "scope · op" : "op", width,
                       per_step ? "calls/st" : "calls", fmt::format("fwd {}", unit), fmt::format("bwd {}", unit),
                       fmt::format("total {}", unit), "% wall");
    std::size_t shown = 0;
    for (const OpProfile& p : rows) {
        if (max_rows && shown++ == max_rows) {
            out += fmt::format("... {} more rows\n", rows.size() - max_rows);
            break;
        }
        const std::string name = p.scope.empty() ? p.op : p.scope + " · " + p.op;
        out += fmt::format("{:<{}}  {:>9.4g}  {:>12.2f}  {:>12.2f}  {:>12.2f}  {:>6.1f}\n", name, width,
                           double(p.forward_calls) / div, 1e6 * p.forward_seconds / div,
                           1e6 * p.backward_seconds / div, 1e6 * p.total_seconds() / div,
                           100 * p.total_seconds() / wall);
    }
    return out;
}

std::string ProfileReport::json() const
{
    nlohmann::json j;
    j["wall_seconds"] = wall_seconds;
    j["sweeps"] = sweeps;
    j["op_seconds"] = op_seconds();
    j["rows"] = nlohmann::json::array();
    for (const OpProfile& p : rows)
        j["rows"].push_back({{"op", p.op},
                             {"scope", p.scope},
                             {"forward_calls", p.forward_calls},
                             {"backward_calls", p.backward_calls},
                             {"forward_seconds", p.forward_seconds},
                             {"backward_seconds", p.backward_seconds}});
    return j.dump(1);
}

template class Profiler<float>;
template class Profiler<double>;

}  // namespace xgrad

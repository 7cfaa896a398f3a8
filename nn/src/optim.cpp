#include "xgrad/nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <xsimd/xsimd.hpp>

#include "xgrad/threads.hpp"

namespace xgrad::nn {

namespace {

void check_nonnegative(const std::string& who, const char* what, double v)
{
    if (!(std::isfinite(v) && v >= 0))
        throw std::invalid_argument(fmt::format("{}: {} must be a finite number >= 0, got {:g}", who, what, v));
}

void check_unit(const std::string& who, const char* what, double v)
{
    if (!(v >= 0 && v < 1)) throw std::invalid_argument(fmt::format("{}: {} must be in [0, 1), got {:g}", who, what, v));
}

template <class T>
struct AdamCoefficients {
    T b1, b2, step, c2_sqrt, eps, cw, dw;  // step = lr / (1 − β₁ᵗ), c2_sqrt = √(1 − β₂ᵗ)
};

/// One Adam update of n elements: w ← w − dw·w (AdamW), d = ∇ + cw·w (Adam's L2 term),
/// m ← β₁m + (1 − β₁)d, v ← β₂v + (1 − β₂)d², w ← w − step·m / (√v / c2_sqrt + ε). In SIMD vectors:
/// a plain loop with std::sqrt stays scalar (sqrt may set errno), 4× slower on the MLP's 235,146
/// parameters, where it was 39 % of a training epoch.
template <class T>
void adam_range(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n,
                const AdamCoefficients<T>& a)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t V = B::size;
    const B b1(a.b1), b2(a.b2), nb1(T(1) - a.b1), nb2(T(1) - a.b2), step(a.step), c2s(a.c2_sqrt), eps(a.eps),
        cw(a.cw), dw(a.dw);
    std::size_t k = 0;
    for (; k + V <= n; k += V) {
        B wk = B::load_unaligned(w + k);
        if (a.dw != 0) wk = wk - dw * wk;
        const B d = B::load_unaligned(g + k) + cw * wk;
        const B mk = b1 * B::load_unaligned(m + k) + nb1 * d;
        const B vk = b2 * B::load_unaligned(v + k) + nb2 * (d * d);
        mk.store_unaligned(m + k);
        vk.store_unaligned(v + k);
        (wk - step * (mk / (xsimd::sqrt(vk) / c2s + eps))).store_unaligned(w + k);
    }
    for (; k < n; ++k) {
        if (a.dw != 0) w[k] -= a.dw * w[k];
        const T d = g[k] + a.cw * w[k];
        m[k] = a.b1 * m[k] + (T(1) - a.b1) * d;
        v[k] = a.b2 * v[k] + (T(1) - a.b2) * (d * d);
        w[k] -= a.step * (m[k] / (std::sqrt(v[k]) / a.c2_sqrt + a.eps));
    }
}

/// Every parameter non-null and listed once (a repeated one would be stepped twice per step()).
template <class T>
void check_params(const std::string& who, const std::vector<Parameter<T>*>& ps)
{
    std::vector<std::pair<const Parameter<T>*, std::size_t>> sorted;
    sorted.reserve(ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
        if (!ps[i]) throw std::invalid_argument(fmt::format("{}: parameter {} is null", who, i));
        sorted.emplace_back(ps[i], i);
    }
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 1; i < sorted.size(); ++i)
        if (sorted[i].first == sorted[i - 1].first)
            throw std::invalid_argument(fmt::format("{}: parameter {} ('{}') is the same as parameter {}; list each "
                                                    "parameter once", who, sorted[i].second, sorted[i].first->name(),
                                                    sorted[i - 1].second));
}

/// The state made for each parameter must still fit it (its value may have been replaced).
template <class T>
void check_state_shapes(const char* who, const std::vector<Parameter<T>*>& ps, const std::vector<Tensor<T>>& state)
{
    for (std::size_t i = 0; i < state.size(); ++i)
        if (state[i].shape() != ps[i]->shape())
            throw std::logic_error(fmt::format("{}: parameter {} ('{}') has shape {} but the optimizer's state for it has "
                                               "shape {}; make a new optimizer after changing a parameter's shape", who, i,
                                               ps[i]->name(), shape_str(ps[i]->shape()), shape_str(state[i].shape())));
}

}  // namespace

void check_lr(const char* who, double lr)
{
    check_nonnegative(who, "lr", lr);
}

template <class T>
void Optimizer<T>::resolve_groups(const char* who, double lr, double weight_decay)
{
    if (param_groups_.empty()) throw std::invalid_argument(fmt::format("{}: no parameter groups", who));
    params_.clear();
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
        ParamGroupOptions& o = param_groups_[g].options_;
        if (!o.lr()) o.lr(lr);
        if (!o.weight_decay()) o.weight_decay(weight_decay);
        const std::string where = fmt::format("{} (parameter group {})", who, g);
        check_lr(where.c_str(), *o.lr());
        check_nonnegative(where, "weight_decay", *o.weight_decay());
        params_.insert(params_.end(), param_groups_[g].params_.begin(), param_groups_[g].params_.end());
    }
    check_params(who, params_);
}

namespace {
void check_group(std::size_t i, std::size_t n)
{
    if (i >= n) throw std::out_of_range(fmt::format("param_group: parameter group {} is out of range ({} groups)", i, n));
}
}  // namespace

template <class T>
OptimizerParamGroup<T>& Optimizer<T>::param_group(std::size_t i)
{
    check_group(i, param_groups_.size());
    return param_groups_[i];
}

template <class T>
double Optimizer<T>::group_lr(std::size_t i) const
{
    check_group(i, param_groups_.size());
    return param_groups_[i].lr();
}

template <class T>
void Optimizer<T>::set_group_lr(std::size_t i, double lr)
{
    param_group(i).set_lr(lr);
}

template <class T>
std::vector<OptimizerParamGroup<T>> decay_param_groups(const std::vector<std::pair<std::string, Parameter<T>*>>& named)
{
    std::vector<Parameter<T>*> decay, no_decay;
    for (const auto& [name, p] : named) {
        if (!p) throw std::invalid_argument(fmt::format("decay_param_groups: parameter '{}' is null", name));
        const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
        (bias || p->shape().size() <= 1 ? no_decay : decay).push_back(p);
    }
    std::vector<OptimizerParamGroup<T>> groups;
    groups.emplace_back(std::move(decay));
    groups.emplace_back(std::move(no_decay), ParamGroupOptions().weight_decay(0));
    return groups;
}

template <class T>
SGD<T>::SGD(std::vector<Parameter<T>*> params, SGDOptions o) : SGD({OptimizerParamGroup<T>(std::move(params))}, o)
{
}

template <class T>
SGD<T>::SGD(std::vector<OptimizerParamGroup<T>> groups, SGDOptions o) : Optimizer<T>(std::move(groups)), o_(o)
{
    check_lr("SGD", o.lr());
    check_nonnegative("SGD", "momentum", o.momentum());
    check_nonnegative("SGD", "weight_decay", o.weight_decay());
    if (o.nesterov() && o.momentum() == 0) throw std::invalid_argument("SGD: nesterov needs momentum > 0, got 0");
    this->resolve_groups("SGD", o.lr(), o.weight_decay());
    if (o.momentum() != 0)
        for (auto* p : this->params_) velocity_.push_back(xt::zeros<T>(p->shape()));
}

template <class T>
void SGD<T>::step()
{
    const T mu = T(o_.momentum());
    check_state_shapes("SGD", this->params_, velocity_);
    std::size_t i = 0;  // index into params_ (and velocity_) across the groups
    for (const auto& group : this->param_groups_) {
        const T lr = T(group.lr()), wd = T(group.weight_decay());
        for (Parameter<T>* param : group.params()) {
            Parameter<T>& p = *param;
            T* w = p.value().data();
            const T* g = p.grad().data();
            const std::size_t n = p.value().size();
            // plain loops, split over the threads for large tensors: an xtensor expression here
            // took twice as long as the loop on one thread (MLP's 784×256 weight: 38 vs 18 µs)
            if (mu == 0) {
                parallel_ranges(n, [=](std::size_t b, std::size_t e) {
                    if (wd != 0)
                        for (std::size_t k = b; k < e; ++k) w[k] -= lr * (g[k] + wd * w[k]);  // w ← w − lr(∇ + wd·w)
                    else
                        for (std::size_t k = b; k < e; ++k) w[k] -= lr * g[k];
                });
                ++i;
                continue;
            }
            T* v = velocity_[i++].data();
            const bool first = this->steps() == 0, nesterov = o_.nesterov();
            parallel_ranges(n, [=](std::size_t b, std::size_t e) {
                for (std::size_t k = b; k < e; ++k) {
                    const T d = g[k] + wd * w[k];
                    v[k] = first ? d : mu * v[k] + d;  // v₁ = ∇ + wd·w
                    w[k] -= lr * (nesterov ? d + mu * v[k] : v[k]);
                }
            });
        }
    }
    this->count_step();
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> SGD<T>::state()
{
    auto s = Optimizer<T>::state();
    for (std::size_t i = 0; i < velocity_.size(); ++i) s.emplace_back("velocity." + std::to_string(i), &velocity_[i]);
    return s;
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> Adam<T>::state()
{
    auto s = Optimizer<T>::state();
    for (std::size_t i = 0; i < m_.size(); ++i) {
        s.emplace_back("m." + std::to_string(i), &m_[i]);
        s.emplace_back("v." + std::to_string(i), &v_[i]);
    }
    return s;
}

template <class T>
Adam<T>::Adam(std::vector<Parameter<T>*> params, AdamOptions o) : Adam({OptimizerParamGroup<T>(std::move(params))}, o, false)
{
}

template <class T>
Adam<T>::Adam(std::vector<OptimizerParamGroup<T>> groups, AdamOptions o) : Adam(std::move(groups), o, false)
{
}

template <class T>
Adam<T>::Adam(std::vector<OptimizerParamGroup<T>> groups, AdamOptions o, bool decoupled)
    : Optimizer<T>(std::move(groups)), o_(o), decoupled_(decoupled)
{
    const char* who = decoupled ? "AdamW" : "Adam";
    check_lr(who, o.lr());
    check_unit(who, "beta1", o.beta1());
    check_unit(who, "beta2", o.beta2());
    if (!(std::isfinite(o.eps()) && o.eps() > 0))
        throw std::invalid_argument(fmt::format("{}: eps must be a finite number > 0, got {:g}", who, o.eps()));
    check_nonnegative(who, "weight_decay", o.weight_decay());
    this->resolve_groups(who, o.lr(), o.weight_decay());
    for (auto* p : this->params_) {
        m_.push_back(xt::zeros<T>(p->shape()));
        v_.push_back(xt::zeros<T>(p->shape()));
    }
}

template <class T>
void Adam<T>::step()
{
    check_state_shapes(decoupled_ ? "AdamW" : "Adam", this->params_, m_);
    this->count_step();
    const double t = double(this->steps());
    const T b1 = T(o_.beta1()), b2 = T(o_.beta2()), eps = T(o_.eps());
    // as PyTorch's Adam: step = lr / (1 − β₁ᵗ), denominator √v / √(1 − β₂ᵗ) + ε
    const T c1 = T(1 - std::pow(o_.beta1(), t)), c2_sqrt = std::sqrt(T(1 - std::pow(o_.beta2(), t)));
    std::size_t i = 0;  // index into params_ (and the moments) across the groups
    for (const auto& group : this->param_groups_) {
        const T lr = T(group.lr()), wd = T(group.weight_decay());
        for (Parameter<T>* param : group.params()) {
            T* w = param->value().data();
            const T* g = param->grad().data();
            T* m = m_[i].data();
            T* v = v_[i].data();
            const std::size_t n = param->value().size();
            const T dw = decoupled_ ? lr * wd : T(0);  // AdamW: w ← w − lr·wd·w first
            const T cw = decoupled_ ? T(0) : wd;       // Adam: g ← ∇ + wd·w
            const T step = lr / c1;
            parallel_ranges(n, [=](std::size_t b, std::size_t e) {
                adam_range(w + b, g + b, m + b, v + b, e - b, {b1, b2, step, c2_sqrt, eps, cw, dw});
            });
            ++i;
        }
    }
}

// ---- schedules ----

LRScheduler::LRScheduler(OptimizerBase* optimizer, std::vector<double> base_lrs)
    : optimizer_(optimizer), base_lrs_(std::move(base_lrs))
{
}

void LRScheduler::initial_step()
{
    last_epoch_ = 0;
    apply();
}

void LRScheduler::step()
{
    ++last_epoch_;
    try {
        apply();
    } catch (...) {
        --last_epoch_;  // a step past the schedule's end changes nothing
        throw;
    }
}

void LRScheduler::apply()
{
    // all computed before any is set: a step that throws sets nothing (and nothing is allocated
    // after the first step)
    next_lr_.resize(base_lrs_.size());
    for (std::size_t g = 0; g < next_lr_.size(); ++g) next_lr_[g] = lr_at(g, last_epoch_);
    if (optimizer_)
        for (std::size_t g = 0; g < next_lr_.size(); ++g) optimizer_->set_group_lr(g, next_lr_[g]);
    last_lr_.swap(next_lr_);
}

namespace {
std::vector<double> group_lrs(const OptimizerBase& optimizer)
{
    std::vector<double> lrs(optimizer.num_param_groups());
    for (std::size_t g = 0; g < lrs.size(); ++g) lrs[g] = optimizer.group_lr(g);
    return lrs;
}

void check_at_least_one(const char* who, const char* what, int v)
{
    if (v < 1) throw std::invalid_argument(fmt::format("{}: {} must be at least 1, got {}", who, what, v));
}
}  // namespace

StepLR::StepLR(OptimizerBase& optimizer, int step_size, double gamma)
    : LRScheduler(&optimizer, group_lrs(optimizer)), size_(step_size), gamma_(gamma)
{
    check_at_least_one("StepLR", "step_size", step_size);
    check_nonnegative("StepLR", "gamma", gamma);
    initial_step();
}

StepLR::StepLR(double base_lr, int step_size, double gamma)
    : LRScheduler(nullptr, {base_lr}), size_(step_size), gamma_(gamma)
{
    check_nonnegative("StepLR", "base_lr", base_lr);
    check_at_least_one("StepLR", "step_size", step_size);
    check_nonnegative("StepLR", "gamma", gamma);
    initial_step();
}

double StepLR::lr(int epoch) const
{
    if (epoch < 0) throw std::out_of_range(fmt::format("StepLR: epoch {} is negative", epoch));
    return base_lrs().empty() ? 0.0 : lr_at(0, epoch);
}

double StepLR::lr_at(std::size_t group, int epoch) const
{
    return base_lrs()[group] * std::pow(gamma_, double(epoch / size_));
}

CosineLR::CosineLR(double base_lr, int total_epochs, double min_lr) : base_(base_lr), total_(total_epochs), min_(min_lr)
{
    check_nonnegative("CosineLR", "base_lr", base_lr);
    check_at_least_one("CosineLR", "total_epochs", total_epochs);
    check_nonnegative("CosineLR", "min_lr", min_lr);
}

namespace {
constexpr double kPi = 3.14159265358979323846;
}

double CosineLR::lr(int epoch) const
{
    if (epoch < 0) throw std::out_of_range(fmt::format("CosineLR: epoch {} is negative", epoch));
    return min_ + 0.5 * (base_ - min_) * (1 + std::cos(kPi * double(std::min(epoch, total_)) / double(total_)));
}

CosineAnnealingLR::CosineAnnealingLR(OptimizerBase& optimizer, int T_max, double eta_min)
    : LRScheduler(&optimizer, group_lrs(optimizer)), t_max_(T_max), eta_min_(eta_min)
{
    check_at_least_one("CosineAnnealingLR", "T_max", T_max);
    check_nonnegative("CosineAnnealingLR", "eta_min", eta_min);
    initial_step();
}

double CosineAnnealingLR::lr_at(std::size_t group, int epoch) const
{
    return eta_min_ + 0.5 * (base_lrs()[group] - eta_min_) * (1 + std::cos(kPi * double(epoch) / double(t_max_)));
}

OneCycleLR::OneCycleLR(OptimizerBase& optimizer, double max_lr, int total_steps, double pct_start,
                       const std::string& anneal_strategy, double div_factor, double final_div_factor)
    : LRScheduler(&optimizer, std::vector<double>(optimizer.num_param_groups(), max_lr / div_factor)),
      initial_(max_lr / div_factor), max_(max_lr), min_(max_lr / div_factor / final_div_factor),
      end_up_(pct_start * double(total_steps) - 1), end_down_(double(total_steps) - 1), total_(total_steps),
      cos_(anneal_strategy == "cos")
{
    const char* who = "OneCycleLR";
    check_nonnegative(who, "max_lr", max_lr);
    check_at_least_one(who, "total_steps", total_steps);
    if (!(pct_start >= 0 && pct_start <= 1))
        throw std::invalid_argument(fmt::format("{}: pct_start must be in [0, 1], got {:g}", who, pct_start));
    if (anneal_strategy != "cos" && anneal_strategy != "linear")
        throw std::invalid_argument(
            fmt::format("{}: anneal_strategy must be \"cos\" or \"linear\", got \"{}\"", who, anneal_strategy));
    for (auto [what, v] : {std::pair<const char*, double>{"div_factor", div_factor}, {"final_div_factor", final_div_factor}})
        if (!(std::isfinite(v) && v > 0))
            throw std::invalid_argument(fmt::format("{}: {} must be a finite number > 0, got {:g}", who, what, v));
    // PyTorch divides by each phase's length (0/0 there): refuse a phase of length zero.
    // (the product compared, not end_up_: a fused multiply-add would make pct·total − 1 not quite 0)
    if (pct_start * double(total_steps) == 1.0 || pct_start == 1.0)
        throw std::invalid_argument(fmt::format("{}: pct_start {:g} with total_steps {} leaves a phase of zero steps "
                                                "(pct_start·total_steps must not be 1 or total_steps)",
                                                who, pct_start, total_steps));
    initial_step();
}

double OneCycleLR::lr_at(std::size_t, int epoch) const
{
    if (epoch > total_)
        throw std::out_of_range(
            fmt::format("OneCycleLR: tried to step {} times; the specified number of total steps is {}", epoch, total_));
    const double step = epoch;
    double start = initial_, end = max_, pct;
    if (step <= end_up_) {
        pct = step / end_up_;
    } else {
        start = max_;
        end = min_;
        pct = (step - end_up_) / (end_down_ - end_up_);
    }
    if (cos_) return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1);
    // at step total_steps the line overshoots past min_lr (as PyTorch's); an lr stays >= 0
    return std::max(0.0, (end - start) * pct + start);
}

namespace utils {

template <class T>
double clip_grad_norm_(const std::vector<Parameter<T>*>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite)
{
    const char* who = "clip_grad_norm_";
    check_nonnegative(who, "max_norm", max_norm);
    const bool inf = std::isinf(norm_type) && norm_type > 0;
    if (!(inf || (std::isfinite(norm_type) && norm_type > 0)))
        throw std::invalid_argument(fmt::format("{}: norm_type must be > 0 or infinity, got {:g}", who, norm_type));
    for (std::size_t i = 0; i < parameters.size(); ++i)
        if (!parameters[i]) throw std::invalid_argument(fmt::format("{}: parameter {} is null", who, i));
    double total = 0;  // accumulated in double whatever T is
    for (Parameter<T>* p : parameters)
        for (T g : p->grad()) {
            const double a = std::abs(double(g));
            if (inf)
                total = std::isnan(a) || std::isnan(total) ? std::numeric_limits<double>::quiet_NaN() : std::max(total, a);
            else
                total += norm_type == 2 ? a * a : std::pow(a, norm_type);
        }
    if (!inf) total = norm_type == 2 ? std::sqrt(total) : std::pow(total, 1 / norm_type);
    if (error_if_nonfinite && !std::isfinite(total))
        throw std::runtime_error(fmt::format("{}: the total norm of order {:g} of the gradients is {}; set "
                                             "error_if_nonfinite to false to clip anyway", who, norm_type, total));
    // as PyTorch: min(coef, 1) multiplies every gradient, so a NaN total makes them NaN
    const double coef = max_norm / (total + 1e-6);
    if (!(coef >= 1))
        for (Parameter<T>* p : parameters) p->grad() *= T(coef);
    return total;
}

template double clip_grad_norm_(const std::vector<Parameter<float>*>&, double, double, bool);
template double clip_grad_norm_(const std::vector<Parameter<double>*>&, double, double, bool);

}  // namespace utils

template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template std::vector<OptimizerParamGroup<float>> decay_param_groups(
    const std::vector<std::pair<std::string, Parameter<float>*>>&);
template std::vector<OptimizerParamGroup<double>> decay_param_groups(
    const std::vector<std::pair<std::string, Parameter<double>*>>&);

}  // namespace xgrad::nn

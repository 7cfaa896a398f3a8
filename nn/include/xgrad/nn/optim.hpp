#pragma once
// Optimizers update parameters in place from their gradients; they never touch a tape.
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::nn {

/// Throws std::invalid_argument unless lr is finite and >= 0:
/// "<who>: lr must be a finite number >= 0, got <lr>".
void check_lr(const char* who, double lr);

/// A parameter group's overrides of its optimizer's options (torch::optim::OptimizerParamGroup's
/// options, reduced to what xgrad's optimizers take per group): an unset option takes the
/// optimizer's default when the optimizer is made. ParamGroupOptions().weight_decay(0) is the usual
/// group of biases and norms.
class ParamGroupOptions {
public:
    /// The group's learning rate.
    XGRAD_ARG(std::optional<double>, lr);
    /// The group's weight decay (coupled for SGD and Adam, decoupled for AdamW).
    XGRAD_ARG(std::optional<double>, weight_decay);
};

/// Parameters that share options, as torch::optim::OptimizerParamGroup:
/// SGD<float>({OptimizerParamGroup<float>(weights), OptimizerParamGroup<float>(biases, ParamGroupOptions().weight_decay(0))},
///            SGDOptions(0.1).weight_decay(1e-4)).
template <class T>
class OptimizerParamGroup {
public:
    OptimizerParamGroup(std::vector<Parameter<T>*> params, ParamGroupOptions options = {})  // NOLINT: as torch's
        : params_(std::move(params)), options_(options)
    {
    }
    const std::vector<Parameter<T>*>& params() const { return params_; }
    /// The overrides as given; once the group is in an optimizer, every option is set.
    const ParamGroupOptions& options() const { return options_; }
    /// The group's learning rate (NaN before the group is in an optimizer without an lr of its own).
    double lr() const { return options_.lr().value_or(std::numeric_limits<double>::quiet_NaN()); }
    /// std::invalid_argument unless lr is finite and >= 0.
    void set_lr(double lr)
    {
        check_lr("OptimizerParamGroup::set_lr", lr);
        options_.lr(lr);
    }
    /// The group's weight decay (NaN before the group is in an optimizer without one of its own).
    double weight_decay() const { return options_.weight_decay().value_or(std::numeric_limits<double>::quiet_NaN()); }

private:
    template <class>
    friend class Optimizer;
    std::vector<Parameter<T>*> params_;
    ParamGroupOptions options_;
};

/// The learning rates of an optimizer's parameter groups, whatever its precision: what a schedule
/// (StepLR, CosineAnnealingLR, OneCycleLR) reads and sets.
class OptimizerBase {
public:
    virtual ~OptimizerBase() = default;
    virtual std::size_t num_param_groups() const = 0;
    /// Group i's learning rate; std::out_of_range for i >= num_param_groups().
    virtual double group_lr(std::size_t i) const = 0;
    /// Sets group i's learning rate; std::out_of_range for a bad i, std::invalid_argument for a
    /// negative or non-finite lr.
    virtual void set_group_lr(std::size_t i, double lr) = 0;
};

/// Options are checked when an optimizer or schedule is made: bad values (negative or NaN lr,
/// betas outside [0, 1), eps <= 0, negative momentum or weight decay, null or repeated parameters)
/// throw std::invalid_argument naming the optimizer, the option and the value.
///
/// An optimizer takes a list of parameters (one group with the optimizer's options) or a list of
/// OptimizerParamGroup, each overriding lr and weight_decay. params() and state() run over the
/// groups' parameters in order, so one group gives the names and checkpoints of a plain list.
template <class T>
class Optimizer : public OptimizerBase {
public:
    explicit Optimizer(std::vector<Parameter<T>*> params, double lr)
        : param_groups_{OptimizerParamGroup<T>(params, ParamGroupOptions().lr(lr))}, params_(std::move(params))
    {
    }
    virtual void step() = 0;
    void zero_grad()
    {
        for (auto* p : params_) p->zero_grad();
    }
    /// The first group's learning rate (the optimizer's, with one group).
    double lr() const { return param_groups_.empty() ? 0.0 : param_groups_[0].lr(); }
    /// Sets every group's learning rate; std::invalid_argument unless lr is finite and >= 0. Groups
    /// with different rates are set one by one through param_groups() or set_group_lr.
    void set_lr(double lr)
    {
        check_lr("set_lr", lr);
        for (auto& g : param_groups_) g.options_.lr(lr);
    }
    /// Every group's parameters, in order.
    const std::vector<Parameter<T>*>& params() const { return params_; }
    /// The groups, their options filled in with the optimizer's defaults. (Read-only as a list: the
    /// optimizer's state is made for these parameters; param_group(i) changes a group's lr.)
    const std::vector<OptimizerParamGroup<T>>& param_groups() const { return param_groups_; }
    /// Group i, to change its lr (set_lr); std::out_of_range for i >= num_param_groups().
    OptimizerParamGroup<T>& param_group(std::size_t i);
    std::size_t num_param_groups() const override { return param_groups_.size(); }
    double group_lr(std::size_t i) const override;
    void set_group_lr(std::size_t i, double lr) override;
    /// Number of step() calls so far (Adam's t in its bias correction 1 − βᵗ).
    std::size_t steps() const { return steps_; }
    /// Sets the step count, e.g. when a checkpoint is restored (load_checkpoint does).
    void set_steps(std::size_t steps) { steps_ = steps; }
    /// Everything step() depends on besides the parameters and the step count (the moments), by
    /// name, for checkpoints: restoring it and steps() makes a resumed run take the same steps as an
    /// uninterrupted one.
    virtual std::vector<std::pair<std::string, Tensor<T>*>> state() { return {}; }

protected:
    /// The groups as given; the subclass's constructor calls resolve_groups with its defaults.
    explicit Optimizer(std::vector<OptimizerParamGroup<T>> groups) : param_groups_(std::move(groups)) {}
    /// Fills each group's unset options with the defaults, checks every group's lr and weight_decay
    /// (std::invalid_argument naming `who`, the group and the value) and lists the parameters in
    /// params(). An empty list of groups throws std::invalid_argument.
    void resolve_groups(const char* who, double lr, double weight_decay);
    void count_step() { ++steps_; }
    std::vector<OptimizerParamGroup<T>> param_groups_;
    std::vector<Parameter<T>*> params_;
    std::size_t steps_ = 0;
};

/// Splits a module's named_parameters() into the two groups usual for weight decay: {weights} with
/// the optimizer's decay, then {biases and 1-D parameters (norms' scales)} with weight_decay 0:
/// AdamW<float>(decay_param_groups(net.named_parameters()), AdamWOptions(1e-3)). A parameter is in
/// the second group when its value has at most one dimension or its name ends in "bias". Both
/// groups are returned, even when one is empty.
template <class T>
std::vector<OptimizerParamGroup<T>> decay_param_groups(const std::vector<std::pair<std::string, Parameter<T>*>>& named);

/// SGD's options, set by name and chained as torch::optim::SGDOptions: SGDOptions(0.1).momentum(0.9).
class SGDOptions {
public:
    SGDOptions(double lr) : lr_(lr) {}  // NOLINT(google-explicit-constructor): SGD(params, 0.1) as in PyTorch
    /// The learning rate.
    XGRAD_ARG(double, lr);
    /// μ; 0 is plain SGD.
    XGRAD_ARG(double, momentum) = 0;
    /// Nesterov momentum (needs momentum > 0).
    XGRAD_ARG(bool, nesterov) = false;
    /// Coupled (L2) decay: g ← g + wd·w before momentum. Document 003's update
    /// W ← W − η(δ·nᵀ + W) is weight_decay(1).
    XGRAD_ARG(double, weight_decay) = 0;
};

/// g = ∇ + wd·w;  v = μ·v + g (v = g on the first step);  d = nesterov ? g + μ·v : v;  w ← w − lr·d
/// (PyTorch's torch.optim.SGD, dampening 0).
template <class T>
class SGD : public Optimizer<T> {
public:
    SGD(std::vector<Parameter<T>*> params, SGDOptions o);
    /// SGD<float>({&w, &b}, 0.1): a braced list of parameters (else two pointers would also read as
    /// the iterator pair of a list of groups).
    SGD(std::initializer_list<Parameter<T>*> params, SGDOptions o) : SGD(std::vector<Parameter<T>*>(params), o) {}
    /// Groups with their own lr and weight_decay; the rest of `defaults` applies to all.
    SGD(std::vector<OptimizerParamGroup<T>> groups, SGDOptions defaults);
    void step() override;
    std::vector<std::pair<std::string, Tensor<T>*>> state() override;

private:
    SGDOptions o_;
    std::vector<Tensor<T>> velocity_;
};

/// Adam's options, set by name and chained as torch::optim::AdamOptions:
/// AdamOptions(1e-3).betas(0.9, 0.98).weight_decay(1e-4).
class AdamOptions {
public:
    AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT(google-explicit-constructor)
    /// The learning rate.
    XGRAD_ARG(double, lr);
    /// β₁, the first moment's decay.
    XGRAD_ARG(double, beta1) = 0.9;
    /// β₂, the second moment's decay.
    XGRAD_ARG(double, beta2) = 0.999;
    /// ε in the denominator.
    XGRAD_ARG(double, eps) = 1e-8;
    /// The decay: coupled L2 (g += wd·w) for Adam, decoupled (w ← w − lr·wd·w) for AdamW.
    XGRAD_ARG(double, weight_decay) = 0;

public:
    /// Sets β₁ and β₂ together, as PyTorch's betas.
    AdamOptions& betas(double b1, double b2) { return beta1(b1).beta2(b2); }
};

/// m = β₁m + (1−β₁)g;  v = β₂v + (1−β₂)g²;  w ← w − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε)
/// (= w − lr·m̂/(√v̂ + ε) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ), rounded as PyTorch's Adam does it)
template <class T>
class Adam : public Optimizer<T> {
public:
    Adam(std::vector<Parameter<T>*> params, AdamOptions o = AdamOptions());
    /// A braced list of parameters (as SGD's).
    Adam(std::initializer_list<Parameter<T>*> params, AdamOptions o = AdamOptions())
        : Adam(std::vector<Parameter<T>*>(params), o)
    {
    }
    /// Groups with their own lr and weight_decay; the rest of `defaults` applies to all.
    Adam(std::vector<OptimizerParamGroup<T>> groups, AdamOptions defaults = AdamOptions());
    void step() override;
    std::vector<std::pair<std::string, Tensor<T>*>> state() override;

protected:
    /// AdamW's constructor: the same options with the decay decoupled.
    Adam(std::vector<OptimizerParamGroup<T>> groups, AdamOptions o, bool decoupled);

private:
    AdamOptions o_;
    bool decoupled_ = false;
    std::vector<Tensor<T>> m_, v_;
};

/// AdamW's options, as torch::optim::AdamWOptions: AdamOptions with PyTorch's default decay 0.01,
/// AdamWOptions(1e-3).betas(0.9, 0.98).eps(1e-8).weight_decay(0.05). An AdamOptions converts to it
/// with its own decay (AdamW(params, AdamOptions(lr)) has no decay, as before AdamWOptions).
class AdamWOptions {
public:
    AdamWOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT(google-explicit-constructor)
    AdamWOptions(const AdamOptions& o)            // NOLINT(google-explicit-constructor)
        : lr_(o.lr()), beta1_(o.beta1()), beta2_(o.beta2()), eps_(o.eps()), weight_decay_(o.weight_decay())
    {
    }
    /// The learning rate.
    XGRAD_ARG(double, lr);
    /// β₁, the first moment's decay.
    XGRAD_ARG(double, beta1) = 0.9;
    /// β₂, the second moment's decay.
    XGRAD_ARG(double, beta2) = 0.999;
    /// ε in the denominator.
    XGRAD_ARG(double, eps) = 1e-8;
    /// The decoupled decay: w ← w − lr·wd·w before the Adam step.
    XGRAD_ARG(double, weight_decay) = 0.01;

public:
    /// Sets β₁ and β₂ together, as PyTorch's betas.
    AdamWOptions& betas(double b1, double b2) { return beta1(b1).beta2(b2); }
    /// The same values as AdamOptions.
    AdamOptions adam() const { return AdamOptions(lr_).betas(beta1_, beta2_).eps(eps_).weight_decay(weight_decay_); }
};

/// AdamW (Loshchilov & Hutter), as torch.optim.AdamW: w ← w − lr·wd·w, then the Adam step
/// w ← w − lr·m̂/(√v̂ + ε) (the decay decoupled from the gradient and its moments).
template <class T>
class AdamW : public Adam<T> {
public:
    AdamW(std::vector<Parameter<T>*> params, AdamWOptions o = AdamWOptions())
        : Adam<T>({OptimizerParamGroup<T>(std::move(params))}, o.adam(), true)
    {
    }
    /// A braced list of parameters (as SGD's).
    AdamW(std::initializer_list<Parameter<T>*> params, AdamWOptions o = AdamWOptions())
        : AdamW(std::vector<Parameter<T>*>(params), o)
    {
    }
    /// Groups with their own lr and weight_decay (decay_param_groups makes the usual two).
    AdamW(std::vector<OptimizerParamGroup<T>> groups, AdamWOptions defaults = AdamWOptions())
        : Adam<T>(std::move(groups), defaults.adam(), true)
    {
    }
};

/// A learning-rate schedule, as torch.optim.lr_scheduler (torch::optim::LRScheduler): made on an
/// optimizer, it takes each group's lr as that group's base lr, sets the lr of epoch 0, and step()
/// moves to the next epoch (the next batch for OneCycleLR) and sets every group's lr from the
/// schedule's closed form. The optimizer must outlive the schedule. Bad arguments throw
/// std::invalid_argument naming the schedule, the argument and the value.
class LRScheduler {
public:
    virtual ~LRScheduler() = default;
    /// last_epoch += 1, then every group's lr ← the schedule's lr for that epoch.
    void step();
    /// The lr of each group set by the last step() (or by the constructor), as get_last_lr().
    const std::vector<double>& get_last_lr() const { return last_lr_; }
    /// The epoch (or batch) the current lr belongs to: 0 after construction, +1 per step().
    int last_epoch() const { return last_epoch_; }
    /// The lrs the closed forms start from, one per group.
    const std::vector<double>& base_lrs() const { return base_lrs_; }

protected:
    /// Detached (optimizer null): a schedule of base lrs alone, for lr(epoch).
    LRScheduler(OptimizerBase* optimizer, std::vector<double> base_lrs);
    /// The subclass's constructor calls it last: sets the lr of epoch 0.
    void initial_step();
    /// The lr of group `group` at `epoch` (>= 0).
    virtual double lr_at(std::size_t group, int epoch) const = 0;

private:
    void apply();
    OptimizerBase* optimizer_;
    std::vector<double> base_lrs_, last_lr_, next_lr_;
    int last_epoch_ = 0;
};

/// lr = base · γ^⌊epoch/step_size⌋ (torch.optim.lr_scheduler.StepLR). step_size >= 1, gamma finite
/// and >= 0.
class StepLR : public LRScheduler {
public:
    /// Scales every group of the optimizer from its current lr.
    StepLR(OptimizerBase& optimizer, int step_size, double gamma = 0.1);
    /// Detached: lr(epoch) (and step()/get_last_lr()) of one base_lr (finite, >= 0).
    StepLR(double base_lr, int step_size, double gamma = 0.1);
    /// The first group's lr for epoch e (0-based); std::out_of_range for a negative epoch.
    double lr(int epoch) const;

protected:
    double lr_at(std::size_t group, int epoch) const override;

private:
    int size_;
    double gamma_;
};

/// The cosine schedule clamped at its end, without an optimizer: lr(epoch) for epochs 0, 1, ...,
/// min + ½(base − min)(1 + cos(π·min(e, total)/total)); a negative epoch throws std::out_of_range.
/// (CosineAnnealingLR is PyTorch's, which is not clamped.)
class CosineLR {
public:
    /// base_lr, min_lr finite and >= 0; total_epochs >= 1.
    CosineLR(double base_lr, int total_epochs, double min_lr = 0);
    /// min + ½(base − min)(1 + cos(π·e/total))
    double lr(int epoch) const;

private:
    double base_;
    int total_;
    double min_;
};

/// lr = η_min + ½(base − η_min)(1 + cos(π·epoch/T_max)), PyTorch's closed form of
/// torch.optim.lr_scheduler.CosineAnnealingLR: past T_max it rises again (period 2·T_max).
/// T_max >= 1, eta_min finite and >= 0.
class CosineAnnealingLR : public LRScheduler {
public:
    CosineAnnealingLR(OptimizerBase& optimizer, int T_max, double eta_min = 0);  // NOLINT: PyTorch's names

protected:
    double lr_at(std::size_t group, int epoch) const override;

private:
    int t_max_;
    double eta_min_;
};

/// The 1cycle policy, as torch.optim.lr_scheduler.OneCycleLR (two phases, three_phase=False,
/// without cycle_momentum): lr rises from max_lr/div_factor to max_lr over the first
/// pct_start·total_steps − 1 steps, then falls to max_lr/(div_factor·final_div_factor) at step
/// total_steps − 1, annealed by "cos" (end + ½(start − end)(1 + cos(π·pct))) or "linear" (which at
/// step total_steps overshoots below min as PyTorch's does, clamped here at 0). Every
/// group gets the same schedule. step() is called after each batch; more than total_steps calls
/// throw std::out_of_range. max_lr finite >= 0, total_steps >= 1, pct_start in [0, 1] with phases of
/// non-zero length, div factors finite > 0.
class OneCycleLR : public LRScheduler {
public:
    OneCycleLR(OptimizerBase& optimizer, double max_lr, int total_steps, double pct_start = 0.3,
               const std::string& anneal_strategy = "cos", double div_factor = 25, double final_div_factor = 1e4);

protected:
    double lr_at(std::size_t group, int epoch) const override;

private:
    double initial_, max_, min_;
    double end_up_, end_down_;  // the phases' last steps (PyTorch's end_step)
    int total_;
    bool cos_;
};

namespace utils {
/// Scales the parameters' gradients so that their total norm (Σ ‖g‖ₚᵖ)^(1/p) over all of them, as one
/// vector, is at most max_norm, as torch::nn::utils::clip_grad_norm_: when
/// c = max_norm/(total + 1e-6) < 1 every gradient is multiplied by c. Returns the total norm before
/// clipping. norm_type p > 0, or infinity for the largest |g|. A NaN total makes every gradient NaN
/// (as PyTorch); with error_if_nonfinite a NaN or infinite total throws std::runtime_error instead
/// and leaves the gradients untouched. max_norm must be
/// finite and >= 0; bad arguments and null parameters throw std::invalid_argument.
template <class T>
double clip_grad_norm_(const std::vector<Parameter<T>*>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
}  // namespace utils

extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template std::vector<OptimizerParamGroup<float>> decay_param_groups(
    const std::vector<std::pair<std::string, Parameter<float>*>>&);
extern template std::vector<OptimizerParamGroup<double>> decay_param_groups(
    const std::vector<std::pair<std::string, Parameter<double>*>>&);
extern template double utils::clip_grad_norm_(const std::vector<Parameter<float>*>&, double, double, bool);
extern template double utils::clip_grad_norm_(const std::vector<Parameter<double>*>&, double, double, bool);

}  // namespace xgrad::nn

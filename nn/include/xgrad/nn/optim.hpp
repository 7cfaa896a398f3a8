#pragma once
// Optimizers update parameters in place from their gradients; they never touch a tape.
#include <string>
#include <utility>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::nn {

/// Throws std::invalid_argument unless lr is finite and >= 0:
/// "<who>: lr must be a finite number >= 0, got <lr>".
void check_lr(const char* who, double lr);

/// Options are checked when an optimizer or schedule is made: bad values (negative or NaN lr,
/// betas outside [0, 1), eps <= 0, negative momentum or weight decay, null or repeated parameters)
/// throw std::invalid_argument naming the optimizer, the option and the value.
template <class T>
class Optimizer {
public:
    explicit Optimizer(std::vector<Parameter<T>*> params, double lr) : params_(std::move(params)), lr_(lr) {}
    virtual ~Optimizer() = default;
    virtual void step() = 0;
    void zero_grad()
    {
        for (auto* p : params_) p->zero_grad();
    }
    double lr() const { return lr_; }
    /// std::invalid_argument unless lr is finite and >= 0.
    void set_lr(double lr)
    {
        check_lr("set_lr", lr);
        lr_ = lr;
    }
    const std::vector<Parameter<T>*>& params() const { return params_; }
    /// Number of step() calls so far (Adam's t in its bias correction 1 − βᵗ).
    std::size_t steps() const { return steps_; }
    /// Sets the step count, e.g. when a checkpoint is restored (load_checkpoint does).
    void set_steps(std::size_t steps) { steps_ = steps; }
    /// Everything step() depends on besides the parameters and the step count (the moments), by
    /// name, for checkpoints: restoring it and steps() makes a resumed run take the same steps as an
    /// uninterrupted one.
    virtual std::vector<std::pair<std::string, Tensor<T>*>> state() { return {}; }

protected:
    void count_step() { ++steps_; }
    std::vector<Parameter<T>*> params_;
    double lr_;
    std::size_t steps_ = 0;
};

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

/// m = β₁m + (1−β₁)g;  v = β₂v + (1−β₂)g²;  m̂ = m/(1−β₁ᵗ);  v̂ = v/(1−β₂ᵗ);  w ← w − lr·m̂/(√v̂ + ε)
template <class T>
class Adam : public Optimizer<T> {
public:
    Adam(std::vector<Parameter<T>*> params, AdamOptions o = AdamOptions());
    void step() override;
    std::vector<std::pair<std::string, Tensor<T>*>> state() override;

protected:
    /// AdamW's constructor: the same options with the decay decoupled.
    Adam(std::vector<Parameter<T>*> params, AdamOptions o, bool decoupled);

private:
    AdamOptions o_;
    bool decoupled_ = false;
    std::vector<Tensor<T>> m_, v_;
};

/// AdamW (Loshchilov & Hutter): Adam whose decay is decoupled from the gradient,
/// w ← w − lr·(m̂/(√v̂ + ε) + wd·w); PyTorch's default decay 0.01.
template <class T>
class AdamW : public Adam<T> {
public:
    AdamW(std::vector<Parameter<T>*> params, AdamOptions o = AdamOptions().weight_decay(0.01))
        : Adam<T>(std::move(params), o, true)
    {
    }
};

/// Learning-rate schedules: lr(epoch) for epochs 0, 1, ... Bad arguments throw
/// std::invalid_argument when the schedule is made; a negative epoch throws std::out_of_range.
class StepLR {
public:
    /// base_lr, gamma finite and >= 0; step_size >= 1.
    StepLR(double base_lr, int step_size, double gamma = 0.1);
    /// lr for epoch e (0-based): base · γ^⌊e/step_size⌋
    double lr(int epoch) const;

private:
    double base_;
    int size_;
    double gamma_;
};

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

extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;

}  // namespace xgrad::nn

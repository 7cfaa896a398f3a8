#pragma once
// Optimizers update parameters in place from their gradients; they never touch a tape.
#include <string>
#include <utility>
#include <vector>

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

struct SGDOptions {
    double lr = 0.01;
    double momentum = 0;
    bool nesterov = false;
    /// Coupled (L2) decay: g ← g + wd·w before momentum. Document 003's update
    /// W ← W − η(δ·nᵀ + W) is weight_decay = 1.
    double weight_decay = 0;
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

struct AdamOptions {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weight_decay = 0;
    /// false: Adam with coupled L2 (g += wd·w); true: AdamW (w ← w − lr·wd·w, decoupled).
    bool decoupled = false;
};

/// m = β₁m + (1−β₁)g;  v = β₂v + (1−β₂)g²;  m̂ = m/(1−β₁ᵗ);  v̂ = v/(1−β₂ᵗ);  w ← w − lr·m̂/(√v̂ + ε)
template <class T>
class Adam : public Optimizer<T> {
public:
    Adam(std::vector<Parameter<T>*> params, AdamOptions o);
    void step() override;
    std::vector<std::pair<std::string, Tensor<T>*>> state() override;

private:
    AdamOptions o_;
    std::vector<Tensor<T>> m_, v_;
};

/// AdamW: Adam with decoupled weight decay (default 0.01).
template <class T>
class AdamW : public Adam<T> {
public:
    AdamW(std::vector<Parameter<T>*> params, AdamOptions o = {1e-3, 0.9, 0.999, 1e-8, 0.01, true})
        : Adam<T>(std::move(params), (o.decoupled = true, o))
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

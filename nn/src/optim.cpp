#include "xgrad/nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

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
SGD<T>::SGD(std::vector<Parameter<T>*> params, SGDOptions o) : Optimizer<T>(std::move(params), o.lr()), o_(o)
{
    check_params("SGD", this->params_);
    check_lr("SGD", o.lr());
    check_nonnegative("SGD", "momentum", o.momentum());
    check_nonnegative("SGD", "weight_decay", o.weight_decay());
    if (o.nesterov() && o.momentum() == 0) throw std::invalid_argument("SGD: nesterov needs momentum > 0, got 0");
    if (o.momentum() != 0)
        for (auto* p : this->params_) velocity_.push_back(xt::zeros<T>(p->shape()));
}

template <class T>
void SGD<T>::step()
{
    const T lr = T(this->lr_), mu = T(o_.momentum()), wd = T(o_.weight_decay());
    check_state_shapes("SGD", this->params_, velocity_);
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Parameter<T>& p = *this->params_[i];
        Tensor<T>& w = p.value();
        const Tensor<T>& g = p.grad();
        if (mu == 0) {
            if (wd != 0)
                xt::noalias(w) -= lr * (g + wd * w);  // w ← w − lr(∇ + wd·w)
            else
                xt::noalias(w) -= lr * g;
            continue;
        }
        Tensor<T>& v = velocity_[i];
        if (this->steps() == 0)
            xt::noalias(v) = g + wd * w;  // v₁ = g
        else
            xt::noalias(v) = mu * v + g + wd * w;
        if (o_.nesterov())
            xt::noalias(w) -= lr * (g + wd * w + mu * v);
        else
            xt::noalias(w) -= lr * v;
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
Adam<T>::Adam(std::vector<Parameter<T>*> params, AdamOptions o) : Adam(std::move(params), o, false)
{
}

template <class T>
Adam<T>::Adam(std::vector<Parameter<T>*> params, AdamOptions o, bool decoupled)
    : Optimizer<T>(std::move(params), o.lr()), o_(o), decoupled_(decoupled)
{
    const char* who = decoupled ? "AdamW" : "Adam";
    check_params(who, this->params_);
    check_lr(who, o.lr());
    check_unit(who, "beta1", o.beta1());
    check_unit(who, "beta2", o.beta2());
    if (!(std::isfinite(o.eps()) && o.eps() > 0))
        throw std::invalid_argument(fmt::format("{}: eps must be a finite number > 0, got {:g}", who, o.eps()));
    check_nonnegative(who, "weight_decay", o.weight_decay());
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
    const T lr = T(this->lr_), b1 = T(o_.beta1()), b2 = T(o_.beta2()), eps = T(o_.eps()), wd = T(o_.weight_decay());
    const T c1 = T(1 - std::pow(o_.beta1(), t)), c2 = T(1 - std::pow(o_.beta2(), t));
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Parameter<T>& p = *this->params_[i];
        Tensor<T>& w = p.value();
        const Tensor<T>& g = p.grad();
        if (decoupled_ && wd != 0) xt::noalias(w) -= lr * wd * w;  // AdamW: w ← w − lr·wd·w
        const T cw = decoupled_ ? T(0) : wd;                           // Adam: g ← ∇ + wd·w
        xt::noalias(m_[i]) = b1 * m_[i] + (T(1) - b1) * (g + cw * w);
        xt::noalias(v_[i]) = b2 * v_[i] + (T(1) - b2) * xt::square(g + cw * w);
        xt::noalias(w) -= lr * (m_[i] / c1) / (xt::sqrt(v_[i] / c2) + eps);
    }
}

StepLR::StepLR(double base_lr, int step_size, double gamma) : base_(base_lr), size_(step_size), gamma_(gamma)
{
    check_nonnegative("StepLR", "base_lr", base_lr);
    if (step_size < 1)
        throw std::invalid_argument(fmt::format("StepLR: step_size must be at least 1, got {}", step_size));
    check_nonnegative("StepLR", "gamma", gamma);
}

double StepLR::lr(int epoch) const
{
    if (epoch < 0) throw std::out_of_range(fmt::format("StepLR: epoch {} is negative", epoch));
    return base_ * std::pow(gamma_, double(epoch / size_));
}

CosineLR::CosineLR(double base_lr, int total_epochs, double min_lr) : base_(base_lr), total_(total_epochs), min_(min_lr)
{
    check_nonnegative("CosineLR", "base_lr", base_lr);
    if (total_epochs < 1)
        throw std::invalid_argument(fmt::format("CosineLR: total_epochs must be at least 1, got {}", total_epochs));
    check_nonnegative("CosineLR", "min_lr", min_lr);
}

double CosineLR::lr(int epoch) const
{
    if (epoch < 0) throw std::out_of_range(fmt::format("CosineLR: epoch {} is negative", epoch));
    const double pi = 3.14159265358979323846;
    return min_ + 0.5 * (base_ - min_) * (1 + std::cos(pi * double(std::min(epoch, total_)) / double(total_)));
}

template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;

}  // namespace xgrad::nn

#include "xgrad/nn/optim.hpp"

#include <cmath>

namespace xgrad::nn {

template <class T>
SGD<T>::SGD(std::vector<Parameter<T>*> params, SGDOptions o) : Optimizer<T>(std::move(params), o.lr), o_(o)
{
    if (o.momentum != 0)
        for (auto* p : this->params_) velocity_.push_back(xt::zeros<T>(p->shape()));
}

template <class T>
void SGD<T>::step()
{
    const T lr = T(this->lr_), mu = T(o_.momentum), wd = T(o_.weight_decay);
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
        if (o_.nesterov)
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
Adam<T>::Adam(std::vector<Parameter<T>*> params, AdamOptions o) : Optimizer<T>(std::move(params), o.lr), o_(o)
{
    for (auto* p : this->params_) {
        m_.push_back(xt::zeros<T>(p->shape()));
        v_.push_back(xt::zeros<T>(p->shape()));
    }
}

template <class T>
void Adam<T>::step()
{
    this->count_step();
    const double t = double(this->steps());
    const T lr = T(this->lr_), b1 = T(o_.beta1), b2 = T(o_.beta2), eps = T(o_.eps), wd = T(o_.weight_decay);
    const T c1 = T(1 - std::pow(o_.beta1, t)), c2 = T(1 - std::pow(o_.beta2, t));
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Parameter<T>& p = *this->params_[i];
        Tensor<T>& w = p.value();
        const Tensor<T>& g = p.grad();
        if (o_.decoupled && wd != 0) xt::noalias(w) -= lr * wd * w;  // AdamW: w ← w − lr·wd·w
        const T cw = o_.decoupled ? T(0) : wd;                           // Adam: g ← ∇ + wd·w
        xt::noalias(m_[i]) = b1 * m_[i] + (T(1) - b1) * (g + cw * w);
        xt::noalias(v_[i]) = b2 * v_[i] + (T(1) - b2) * xt::square(g + cw * w);
        xt::noalias(w) -= lr * (m_[i] / c1) / (xt::sqrt(v_[i] / c2) + eps);
    }
}

double StepLR::lr(int epoch) const
{
    return base_ * std::pow(gamma_, double(epoch / size_));
}

double CosineLR::lr(int epoch) const
{
    const double pi = 3.14159265358979323846;
    return min_ + 0.5 * (base_ - min_) * (1 + std::cos(pi * double(std::min(epoch, total_)) / double(total_)));
}

template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;

}  // namespace xgrad::nn

#include "xgrad/nn/norm.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

namespace {
void check_eps(const std::string& who, double eps)
{
    if (!(eps >= 0) || !std::isfinite(eps))
        throw std::invalid_argument(fmt::format("{}: eps must be finite and non-negative, got {}", who, eps));
}
}  // namespace

template <class T>
BatchNormBase<T>::BatchNormBase(const char* name, const BatchNormOptions& options) : name_(name), options_(options)
{
    const std::size_t c = options.num_features();
    if (c == 0) throw std::invalid_argument(fmt::format("{}: num_features must be at least 1, got 0", name));
    check_eps(describe(), options.eps());
    if (options.momentum() && !(*options.momentum() >= 0 && *options.momentum() <= 1))
        throw std::invalid_argument(fmt::format("{}: momentum must be in [0, 1], got {}", describe(), *options.momentum()));
    if (options.affine()) {
        weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>(Shape{c})));
        bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>(Shape{c})));
    }
    if (options.track_running_stats()) {
        running_mean_ = &this->register_buffer("running_mean", Tensor<T>(xt::zeros<T>(Shape{c})));
        running_var_ = &this->register_buffer("running_var", Tensor<T>(xt::ones<T>(Shape{c})));
        num_batches_tracked_ = &this->register_buffer("num_batches_tracked", Tensor<T>(T(0)));
    }
}

template <class T>
void BatchNormBase<T>::reset_running_stats()
{
    if (!running_mean_) return;
    running_mean_->fill(T(0));
    running_var_->fill(T(1));
    num_batches_tracked_->fill(T(0));
}

template <class T>
Var<T> BatchNormBase<T>::forward(const Var<T>& x)
{
    return forward_impl(x, false);
}

template <class T>
Var<T> BatchNormBase<T>::forward_relu(const Var<T>& x)
{
    return forward_impl(x, true);
}

template <class T>
Var<T> BatchNormBase<T>::forward_add_relu(const Var<T>& x, const Var<T>& residual)
{
    return forward_impl(x, true, &residual);
}

template <class T>
Var<T> BatchNormBase<T>::forward_impl(const Var<T>& x, bool relu, const Var<T>* residual)
{
    check_rank(x);
    const std::size_t c = options_.num_features();
    const bool cl = options_.channels_last();
    const std::size_t axis = cl ? x.dim() - 1 : 1;
    if (x.shape()[axis] != c)
        throw ShapeError(fmt::format("{}: input {} has {} channels (axis {}{}), the layer has {}", describe(),
                                     shape_str(x.shape()), x.shape()[axis], axis, cl ? ", channels_last" : "", c));
    Tape<T>& t = x.tape();
    const double eps = options_.eps();
    if (this->is_training() || !running_mean_) {
        const bool update = this->is_training() && running_mean_;
        auto o = BatchNormFuncOptions<T>().eps(eps).channels_last(cl).relu(relu);
        if (update) o.batch_mean(&batch_mean_).batch_var(&batch_var_);
        if (weight_) o.weight(t.param(*weight_)).bias(t.param(*bias_));
        Var<T> y;
        if (residual && weight_)
            y = batch_norm(x, o.residual(*residual));
        else if (residual)  // (the op fuses the residual with the affine map only: the two ops)
            y = add_relu(batch_norm(x, o.relu(false)), *residual);
        else
            y = batch_norm(x, o);
        if (update) {
            const T m = T(x.size() / c);  // values per channel; batch_norm checked m ≥ 2
            *num_batches_tracked_ += T(1);
            const T f = options_.momentum() ? T(*options_.momentum()) : T(1) / (*num_batches_tracked_)();
            // as PyTorch: momentum·batch + (1 − momentum)·running, with the unbiased batch variance
            for (std::size_t k = 0; k < c; ++k) {
                (*running_mean_)(k) = f * batch_mean_(k) + (T(1) - f) * (*running_mean_)(k);
                (*running_var_)(k) = f * (batch_var_(k) * m / (m - T(1))) + (T(1) - f) * (*running_var_)(k);
            }
        }
        return y;
    }
    // Eval: the affine map of the running statistics, (x − μ)·(γ·s) + β with s = 1/√(σ² + eps).
    scale_.resize(Shape{c});
    for (std::size_t k = 0; k < c; ++k) scale_(k) = T(1) / std::sqrt((*running_var_)(k) + T(eps));
    std::vector<std::ptrdiff_t>& ks = channel_shape_;
    ks.assign(x.dim(), 1);
    ks[axis] = std::ptrdiff_t(c);
    const Var<T> mu = reshape(t.constant(*running_mean_), ks);
    const Var<T> s = reshape(t.constant(scale_), ks);
    const Var<T> y = weight_ ? (x - mu) * (reshape(t.param(*weight_), ks) * s) + reshape(t.param(*bias_), ks) : (x - mu) * s;
    if (residual) return add_relu(y, *residual);
    return relu ? xgrad::relu(y) : y;
}

template <class T>
void BatchNorm1d<T>::check_rank(const Var<T>& x) const
{
    if (x.dim() != 2 && x.dim() != 3)
        throw ShapeError(fmt::format(this->options().channels_last() ? "{}: expected input (N,{}) or (N,L,{}), got {}"
                                                                     : "{}: expected input (N,{}) or (N,{},L), got {}",
                                     this->describe(), this->options().num_features(), this->options().num_features(),
                                     shape_str(x.shape())));
}

template <class T>
void BatchNorm2d<T>::check_rank(const Var<T>& x) const
{
    if (x.dim() != 4)
        throw ShapeError(fmt::format(this->options().channels_last() ? "{}: expected input (N,H,W,{}), got {}"
                                                                     : "{}: expected input (N,{},H,W), got {}",
                                     this->describe(), this->options().num_features(), shape_str(x.shape())));
}

template <class T>
LayerNorm<T>::LayerNorm(const LayerNormOptions& options) : options_(options)
{
    const auto& ns = options.normalized_shape();
    if (ns.empty()) throw std::invalid_argument("LayerNorm: normalized_shape is empty");
    shape_ = Shape(ns.begin(), ns.end());
    check_eps(describe(), options.eps());
    if (options.elementwise_affine()) {
        weight_ = &this->register_parameter("weight", Tensor<T>(xt::ones<T>(shape_)));
        bias_ = &this->register_parameter("bias", Tensor<T>(xt::zeros<T>(shape_)));
    }
}

template <class T>
std::string LayerNorm<T>::describe() const
{
    return "LayerNorm(" + shape_str(options_.normalized_shape()) + ")";
}

template <class T>
Var<T> LayerNorm<T>::forward(const Var<T>& x)
{
    Tape<T>& t = x.tape();
    const double eps = options_.eps();
    return weight_ ? layer_norm(x, shape_, t.param(*weight_), t.param(*bias_), eps) : layer_norm(x, shape_, eps);
}

template class BatchNormBase<float>;
template class BatchNormBase<double>;
template class BatchNorm1d<float>;
template class BatchNorm1d<double>;
template class BatchNorm2d<float>;
template class BatchNorm2d<double>;
template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace xgrad::nn

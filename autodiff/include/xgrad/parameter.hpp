#pragma once
// Parameter: a value that outlives tapes (a weight) and owns its accumulating gradient.
#include <algorithm>
#include <string>
#include <utility>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// A value that outlives tapes (a weight). `tape.param(p)` puts it on a tape without copying;
/// backward adds its gradient into grad(), where it accumulates until zero_grad().
template <class T>
class Parameter {
public:
    Parameter() = default;
    explicit Parameter(Tensor<T> value, std::string name = {})
        : value_(std::move(value)), grad_(xt::zeros<T>(value_.shape())), name_(std::move(name))
    {
    }

    Tensor<T>& value() { return value_; }
    const Tensor<T>& value() const { return value_; }
    /// The accumulated gradient, with the value's shape (zeros after zero_grad()).
    Tensor<T>& grad()
    {
        sync_grad_shape();
        return grad_;
    }
    const Tensor<T>& grad() const { return grad_; }
    const Shape& shape() const { return value_.shape(); }
    std::size_t size() const { return value_.size(); }
    const std::string& name() const { return name_; }
    void set_name(std::string n) { name_ = std::move(n); }

    /// Sets the gradient to zero in place (keeps the buffer).
    void zero_grad()
    {
        sync_grad_shape();
        std::fill(grad_.begin(), grad_.end(), T(0));
    }

private:
    // The value may have been replaced (loading weights); keep grad's shape in step with it.
    void sync_grad_shape()
    {
        if (grad_.shape() != value_.shape()) {
            grad_.resize(value_.shape());
            std::fill(grad_.begin(), grad_.end(), T(0));
        }
    }

    Tensor<T> value_;
    Tensor<T> grad_;
    std::string name_;
};

}  // namespace xgrad

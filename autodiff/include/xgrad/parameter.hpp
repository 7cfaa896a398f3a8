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
        materialize_zero();
        return grad_;
    }
    const Tensor<T>& grad() const
    {
        materialize_zero();
        return grad_;
    }
    const Shape& shape() const { return value_.shape(); }
    std::size_t size() const { return value_.size(); }
    const std::string& name() const { return name_; }
    void set_name(std::string n) { name_ = std::move(n); }

    /// Sets the gradient to zero (keeps the buffer). The zeros are written only if grad() is read
    /// first: the next backward overwrites the buffer instead of adding into it, which saves a
    /// pass over it and a read per gradient write (PyTorch's `set_to_none` without the None).
    void zero_grad()
    {
        sync_grad_shape();
        zero_ = true;
    }

    /// The buffer a backward writes this parameter's gradient into; `accumulate` tells whether it
    /// holds a gradient (add into it) or is logically zero (overwrite it). For GradSlot only.
    Tensor<T>& grad_for_write(bool& accumulate)
    {
        sync_grad_shape();
        accumulate = !zero_;
        zero_ = false;
        return grad_;
    }

private:
    void materialize_zero() const
    {
        if (!zero_) return;
        std::fill(grad_.begin(), grad_.end(), T(0));
        zero_ = false;
    }

    // The value may have been replaced (loading weights); keep grad's shape in step with it.
    void sync_grad_shape()
    {
        if (grad_.shape() != value_.shape()) {
            grad_.resize(value_.shape());
            std::fill(grad_.begin(), grad_.end(), T(0));
        }
    }

    Tensor<T> value_;
    mutable Tensor<T> grad_;    // mutable: a zero_grad() is written out on the first read
    mutable bool zero_ = false;  // grad_ is logically zero, its contents stale
    std::string name_;
};

}  // namespace xgrad

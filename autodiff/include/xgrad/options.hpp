#pragma once
// XGRAD_ARG: one option of an options class, set by name and chained as in PyTorch's C++ frontend
// (its TORCH_ARG). Inside a class,
//     XGRAD_ARG(double, lr) = 0.01;
// declares the member lr_ with its default, a setter `lr(v)` returning *this and a getter `lr()`,
// so SGDOptions(0.1).momentum(0.9).nesterov(true) reads like torch::optim::SGDOptions.
// The macro leaves the class in `private:`; write `public:` after it before other members.
#include <utility>

#define XGRAD_ARG(T, name)                 \
public:                                    \
    auto& name(T value)                    \
    {                                      \
        name##_ = std::move(value);        \
        return *this;                      \
    }                                      \
    const T& name() const noexcept         \
    {                                      \
        return name##_;                    \
    }                                      \
                                           \
private:                                   \
    T name##_

#pragma once
#include <stdexcept>
#include <string>

namespace xgrad {

/// Operands whose shapes do not fit the op. The message names the op and both shapes,
/// e.g. "matmul: (64,784) x (100,10): inner dimensions 784 and 100 differ".
class ShapeError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

/// Thrown in anomaly mode when an op produces a non-finite value (forward) or gradient (backward).
/// The message names the op and its position on the tape.
class AnomalyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace xgrad

#pragma once
// Everything in xgrad::autodiff: tape, Var, Parameter, ops, gradcheck and random test tensors.
#include "xgrad/compare.hpp"
#include "xgrad/errors.hpp"
#include "xgrad/gradcheck.hpp"
#include "xgrad/higher_order.hpp"
#include "xgrad/node_check.hpp"
#include "xgrad/ops.hpp"
#include "xgrad/profiler.hpp"
#include "xgrad/random.hpp"
#include "xgrad/tape.hpp"
#include "xgrad/tensor.hpp"
#include "xgrad/threads.hpp"

#pragma once
// Losses for nn users: the fused loss ops of the engine (xgrad/ops/loss.hpp), under xgrad::nn.
#include "xgrad/ops/loss.hpp"

namespace xgrad::nn {
using xgrad::cross_entropy;
using xgrad::mse_loss;
using xgrad::nll_loss;
using xgrad::Reduction;
using xgrad::scatter_traces;
using xgrad::ScatterTraces;
using xgrad::trace_scatter_loss;
}  // namespace xgrad::nn

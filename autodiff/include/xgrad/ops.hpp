#pragma once
// All tape ops, one header per family.
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/conv.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/loss.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/pool.hpp"
#include "xgrad/ops/recurrent.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"

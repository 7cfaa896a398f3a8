#pragma once
// xgrad::nn: modules, layers, losses, optimizers, initializers, weight files, training loops.
#include "xgrad/autodiff.hpp"
#include "xgrad/nn/activation.hpp"
#include "xgrad/nn/data.hpp"
#include "xgrad/nn/gradcheck.hpp"
#include "xgrad/nn/init.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/losses.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/nn/norm.hpp"
#include "xgrad/nn/optim.hpp"
#include "xgrad/nn/serialize.hpp"
#include "xgrad/nn/train.hpp"

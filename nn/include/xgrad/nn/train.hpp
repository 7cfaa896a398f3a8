#pragma once
// Training and evaluation loops over a Dataset, and the metrics they report: the model-independent
// part of a training script (what a PyTorch user writes around a DataLoader). The model, its loss
// and the optimizer stay the caller's; see examples/common/train.cpp for a program built on them.
#include <cstddef>
#include <cstdint>
#include <functional>

#include <xtensor/xtensor.hpp>

#include "xgrad/nn/data.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/nn/optim.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::nn {

/// The model's output for a batch of dataset rows (images flattened to (B, H·W); reshape them here
/// for a CNN). The inputs live until the tape is cleared, so `tape.borrow(inputs)` is safe.
using BatchForward = std::function<Var<float>(Tape<float>& tape, const Tensor<float>& inputs)>;
/// The scalar loss of a batch's output against its labels.
using BatchLoss = std::function<Var<float>(const Var<float>& output, const IndexTensor& labels)>;
/// Called after every training step with the step (1-based), the steps of the epoch, the samples
/// seen so far in the epoch and their mean loss: a progress bar's hook.
using StepCallback = std::function<void(std::size_t step, std::size_t steps, std::size_t samples, double mean_loss)>;

/// How train_epoch walks the dataset.
struct EpochOptions {
    std::size_t batch_size = 64;
    bool shuffle = true;     ///< order of nn::epoch_order(size, seed, epoch); false: dataset order
    std::uint64_t seed = 1;  ///< with `epoch`, fixes the order, so a resumed run sees the same batches
    std::size_t epoch = 0;   ///< 0-based; also named in the error for a non-finite loss
};

/// Mean loss per sample and accuracy over the samples a loop has seen.
struct EpochStats {
    double loss = 0;
    double accuracy = 0;
};

/// What evaluate returns: EpochStats plus, if asked for, every output row in dataset order.
struct Evaluation {
    double loss = 0;
    double accuracy = 0;
    Tensor<float> outputs;  ///< (N, C) when `keep_outputs`, else empty
};

/// Rows of `outputs` (N, C) whose largest entry (the first one on ties) is at the row's label.
template <class T>
std::size_t count_correct(const Tensor<T>& outputs, const IndexTensor& labels);

/// count_correct(outputs, labels) / N; 0 for no rows.
template <class T>
double accuracy(const Tensor<T>& outputs, const IndexTensor& labels);

/// (C, C) counts: entry (t, p) is the number of rows with label t whose largest output is p.
/// `num_classes` 0 means the outputs' width; a label outside [0, C) is an error naming its row.
template <class T>
xt::xtensor<std::size_t, 2> confusion_matrix(const Tensor<T>& outputs, const IndexTensor& labels,
                                             std::size_t num_classes = 0);

/// One pass over `data` in mini-batches: for each batch zero_grad, forward, loss, backward, step,
/// then clear the tape. Returns the mean loss per sample (batch losses weighted by batch size) and
/// the training accuracy of the outputs as they were computed. Throws std::runtime_error naming the
/// epoch, step and learning rate when the loss is not finite (the parameters are updated by then).
EpochStats train_epoch(Tape<float>& tape, Optimizer<float>& optimizer, const Dataset& data, const BatchForward& forward,
                       const BatchLoss& loss, const EpochOptions& options = {}, const StepCallback& on_step = {});

/// The model over `data` in batches of `batch_size`, in eval mode and without recording backward
/// closures (NoGradGuard); the model is back in the mode it was in afterwards. Returns the mean loss
/// per sample, the accuracy and, with `keep_outputs`, the outputs.
Evaluation evaluate(Module<float>& model, Tape<float>& tape, const Dataset& data, const BatchForward& forward,
                    const BatchLoss& loss, std::size_t batch_size = 1000, bool keep_outputs = false);

}  // namespace xgrad::nn

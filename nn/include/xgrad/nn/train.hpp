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
#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad::nn {

namespace detail {
template <class T>
struct NonDeduced {
    using type = T;
};
}  // namespace detail

/// The model's output for a batch of dataset rows (images flattened to (B, H·W), converted to T;
/// reshape them here for a CNN). The inputs live until the tape is cleared, so
/// `tape.borrow(inputs)` is safe. (T is taken from the tape and optimizer, so a lambda converts.)
template <class T>
using BatchForward = std::function<Var<typename detail::NonDeduced<T>::type>(
    Tape<typename detail::NonDeduced<T>::type>& tape, const Tensor<typename detail::NonDeduced<T>::type>& inputs)>;
/// The scalar loss of a batch's output against its labels.
template <class T>
using BatchLoss = std::function<Var<typename detail::NonDeduced<T>::type>(
    const Var<typename detail::NonDeduced<T>::type>& output, const IndexTensor& labels)>;
/// Called after every training step with the step (1-based), the steps of the epoch, the samples
/// seen so far in the epoch and their mean loss: a progress bar's hook.
using StepCallback = std::function<void(std::size_t step, std::size_t steps, std::size_t samples, double mean_loss)>;

/// How train_epoch walks the dataset, set by name and chained: EpochOptions().batch_size(32).epoch(e).
class EpochOptions {
    /// Rows per step (the last step takes what is left).
    XGRAD_ARG(std::size_t, batch_size) = 64;
    /// The order of nn::epoch_order(size, seed, epoch); false: the dataset's order.
    XGRAD_ARG(bool, shuffle) = true;
    /// With `epoch`, fixes the order, so a resumed run sees the same batches.
    XGRAD_ARG(std::uint64_t, seed) = 1;
    /// 0-based; also named in the error for a non-finite loss.
    XGRAD_ARG(std::size_t, epoch) = 0;
};

/// Mean loss per sample and accuracy over the samples a loop has seen.
struct EpochStats {
    double loss = 0;
    double accuracy = 0;
};

/// What evaluate returns: EpochStats plus, if asked for, every output row in dataset order.
template <class T>
struct Evaluation {
    double loss = 0;
    double accuracy = 0;
    Tensor<T> outputs;  ///< (N, C) when `keep_outputs`, else empty
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
/// T is float or double (a double model sees the float images converted).
template <class T>
EpochStats train_epoch(Tape<T>& tape, Optimizer<T>& optimizer, const Dataset& data, const BatchForward<T>& forward,
                       const BatchLoss<T>& loss, const EpochOptions& options = {}, const StepCallback& on_step = {});

/// The model over `data` in batches of `batch_size`, in eval mode and without recording backward
/// closures (NoGradGuard); the model is back in the mode it was in afterwards. Returns the mean loss
/// per sample, the accuracy and, with `keep_outputs`, the outputs.
template <class T>
Evaluation<T> evaluate(Module<T>& model, Tape<T>& tape, const Dataset& data, const BatchForward<T>& forward,
                       const BatchLoss<T>& loss, std::size_t batch_size = 1000, bool keep_outputs = false);

extern template EpochStats train_epoch(Tape<float>&, Optimizer<float>&, const Dataset&, const BatchForward<float>&,
                                       const BatchLoss<float>&, const EpochOptions&, const StepCallback&);
extern template EpochStats train_epoch(Tape<double>&, Optimizer<double>&, const Dataset&, const BatchForward<double>&,
                                       const BatchLoss<double>&, const EpochOptions&, const StepCallback&);
extern template Evaluation<float> evaluate(Module<float>&, Tape<float>&, const Dataset&, const BatchForward<float>&,
                                           const BatchLoss<float>&, std::size_t, bool);
extern template Evaluation<double> evaluate(Module<double>&, Tape<double>&, const Dataset&,
                                            const BatchForward<double>&, const BatchLoss<double>&, std::size_t, bool);

}  // namespace xgrad::nn

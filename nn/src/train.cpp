// Training and evaluation loops; see xgrad/nn/train.hpp.
#include "xgrad/nn/train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace xgrad::nn {

namespace {

/// Index of the largest of n values (the first one on ties).
template <class T>
std::size_t argmax_row(const T* row, std::size_t n)
{
    std::size_t best = 0;
    for (std::size_t j = 1; j < n; ++j)
        if (row[j] > row[best]) best = j;
    return best;
}

template <class T>
std::size_t checked_rows(const char* what, const Tensor<T>& outputs, const IndexTensor& labels)
{
    if (outputs.dimension() != 2 || outputs.shape()[0] != labels.size())
        throw std::invalid_argument(fmt::format("{}: outputs {} do not match {} labels (expected (N, C) with N = {})", what,
                                                shape_str(outputs.shape()), labels.size(), labels.size()));
    return outputs.shape()[0];
}

}  // namespace

template <class T>
std::size_t count_correct(const Tensor<T>& outputs, const IndexTensor& labels)
{
    const std::size_t n = checked_rows("count_correct", outputs, labels), c = n ? outputs.shape()[1] : 0;
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) correct += Index(argmax_row(outputs.data() + i * c, c)) == labels(i);
    return correct;
}

template <class T>
double accuracy(const Tensor<T>& outputs, const IndexTensor& labels)
{
    const std::size_t n = labels.size();
    return n ? double(count_correct(outputs, labels)) / double(n) : 0.0;
}

template <class T>
xt::xtensor<std::size_t, 2> confusion_matrix(const Tensor<T>& outputs, const IndexTensor& labels, std::size_t num_classes)
{
    const std::size_t n = checked_rows("confusion_matrix", outputs, labels), c = outputs.shape()[1];
    const std::size_t k = num_classes ? num_classes : c;
    xt::xtensor<std::size_t, 2> m = xt::zeros<std::size_t>({k, k});
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t p = argmax_row(outputs.data() + i * c, c);
        if (labels(i) < 0 || std::size_t(labels(i)) >= k || p >= k)
            throw std::out_of_range(fmt::format("confusion_matrix: row {}: label {}, prediction {} outside [0, {})", i,
                                                labels(i), p, k));
        ++m(std::size_t(labels(i)), p);
    }
    return m;
}

namespace {

/// The batch as the model's type: float rows are used as they are, double rows converted into a
/// buffer reused from step to step.
template <class T>
const Tensor<T>& as_model_type(const Tensor<float>& x, Tensor<T>& buffer)
{
    if constexpr (std::is_same_v<T, float>) {
        (void)buffer;
        return x;
    } else {
        if (buffer.shape() != x.shape()) buffer.resize(x.shape());
        std::copy(x.begin(), x.end(), buffer.begin());
        return buffer;
    }
}

}  // namespace

template <class T>
EpochStats train_epoch(Tape<T>& tape, Optimizer<T>& optimizer, const Dataset& data, const BatchForward<T>& forward,
                       const BatchLoss<T>& loss, const EpochOptions& options, const StepCallback& on_step)
{
    const std::size_t batch = options.batch_size();
    if (batch == 0) throw std::invalid_argument("train_epoch: batch_size is 0");
    const std::size_t n = data.size(), steps = (n + batch - 1) / batch;
    std::vector<std::size_t> order(n);
    if (options.shuffle())
        order = epoch_order(n, options.seed(), options.epoch());
    else
        std::iota(order.begin(), order.end(), std::size_t(0));
    Tensor<float> x;
    Tensor<T> xt;
    IndexTensor y;
    double loss_sum = 0;
    std::size_t correct = 0;
    for (std::size_t s = 0; s < steps; ++s) {
        const std::size_t b = s * batch, end = std::min(n, b + batch);
        gather_batch(data, order, b, end, x, y);
        optimizer.zero_grad();
        auto out = forward(tape, as_model_type(x, xt));
        auto l = loss(out, y);
        tape.backward(l);
        optimizer.step();
        const double v = double(l.item());
        if (!std::isfinite(v))
            throw std::runtime_error(fmt::format("epoch {} step {}: loss is {} (learning rate {} too high?)",
                                                 options.epoch() + 1, s + 1, v, optimizer.lr()));
        loss_sum += v * double(end - b);
        correct += count_correct(out.value(), y);
        tape.clear();
        if (on_step) on_step(s + 1, steps, end, loss_sum / double(end));
    }
    return {n ? loss_sum / double(n) : 0.0, n ? double(correct) / double(n) : 0.0};
}

template <class T>
Evaluation<T> evaluate(Module<T>& model, Tape<T>& tape, const Dataset& data, const BatchForward<T>& forward,
                       const BatchLoss<T>& loss, std::size_t batch_size, bool keep_outputs)
{
    if (batch_size == 0) throw std::invalid_argument("evaluate: batch_size is 0");
    Evaluation<T> e;
    NoGradGuard<T> no_grad(tape);
    struct EvalMode {  // eval mode for the loop; the caller's mode back afterwards, even on an exception
        Module<T>& m;
        bool was_training;
        ~EvalMode() { m.train(was_training); }
    } mode{model, model.is_training()};
    model.eval();
    const std::size_t n = data.size();
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    Tensor<float> x;
    Tensor<T> xt;
    IndexTensor y;
    std::size_t correct = 0;
    double loss_sum = 0;
    for (std::size_t b = 0; b < n; b += batch_size) {
        const std::size_t end = std::min(n, b + batch_size);
        gather_batch(data, order, b, end, x, y);
        auto out = forward(tape, as_model_type(x, xt));
        loss_sum += double(loss(out, y).item()) * double(end - b);
        const Tensor<T>& o = out.value();
        if (keep_outputs) {
            const std::size_t c = o.shape()[1];
            if (b == 0) e.outputs = Tensor<T>::from_shape({n, c});
            std::copy(o.data(), o.data() + o.size(), e.outputs.data() + b * c);
        }
        correct += count_correct(o, y);
        tape.clear();
    }
    e.loss = n ? loss_sum / double(n) : 0.0;
    e.accuracy = n ? double(correct) / double(n) : 0.0;
    return e;
}

#define XGRAD_INSTANTIATE(T)                                                                                    \
    template std::size_t count_correct(const Tensor<T>&, const IndexTensor&);                                    \
    template double accuracy(const Tensor<T>&, const IndexTensor&);                                              \
    template xt::xtensor<std::size_t, 2> confusion_matrix(const Tensor<T>&, const IndexTensor&, std::size_t);  \
    template EpochStats train_epoch(Tape<T>&, Optimizer<T>&, const Dataset&, const BatchForward<T>&,             \
                                    const BatchLoss<T>&, const EpochOptions&, const StepCallback&);              \
    template Evaluation<T> evaluate(Module<T>&, Tape<T>&, const Dataset&, const BatchForward<T>&,                \
                                    const BatchLoss<T>&, std::size_t, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn

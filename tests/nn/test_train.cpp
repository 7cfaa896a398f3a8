// xgrad::nn's training helpers: the metrics on hand-made outputs, and train_epoch / evaluate
// against the loop they replace, written out step by step.
#define BOOST_TEST_MODULE nn_train
#include <cmath>
#include <limits>
#include <numeric>

#include <boost/mpl/list.hpp>

#include "test_util.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
using namespace xgrad::nn;
namespace tt = boost::test_tools;

namespace {

/// 10 samples of 4 features, labels 0, 1, 2, 0, 1, ...
Dataset small_dataset()
{
    Dataset d;
    d.rows = 2, d.cols = 2;
    d.images = xt::cast<float>(xgrad::test::rnd(Shape{10, 4}, 7, 0, 1));
    d.labels = IndexTensor::from_shape({10});
    for (std::size_t i = 0; i < 10; ++i) d.labels(i) = Index(i % 3);
    return d;
}

Var<float> forward_of(Module<float>& m, Tape<float>& t, const Tensor<float>& x) { return m(t.borrow(x)); }
Var<float> ce(const Var<float>& out, const IndexTensor& y) { return cross_entropy(out, y); }

}  // namespace

BOOST_AUTO_TEST_CASE(metrics_of_hand_made_outputs)
{
    // row argmax: 1, 0 (first of a tie), 2, 2
    const Tensor<float> out = {{0.1f, 0.7f, 0.2f}, {0.5f, 0.5f, 0.0f}, {0.0f, 0.1f, 0.9f}, {0.3f, 0.3f, 0.4f}};
    const IndexTensor labels = {1, 1, 2, 0};
    BOOST_TEST(count_correct(out, labels) == 2u);
    BOOST_TEST(accuracy(out, labels) == 0.5);
    const auto m = confusion_matrix(out, labels);
    BOOST_TEST(m.shape()[0] == 3u);
    const std::size_t expected[3][3] = {{0, 0, 1}, {1, 1, 0}, {0, 0, 1}};
    for (std::size_t t = 0; t < 3; ++t)
        for (std::size_t p = 0; p < 3; ++p) BOOST_TEST(m(t, p) == expected[t][p], "(" << t << "," << p << ")");
    BOOST_TEST(accuracy(Tensor<double>::from_shape({0, 3}), IndexTensor::from_shape({0})) == 0.0);
    BOOST_CHECK_THROW(count_correct(out, IndexTensor{1, 2}), std::invalid_argument);
    BOOST_CHECK_THROW(confusion_matrix(out, IndexTensor{1, 1, 2, 5}), std::out_of_range);
}

using model_types = boost::mpl::list<float, double>;

BOOST_AUTO_TEST_CASE_TEMPLATE(train_epoch_is_the_written_out_loop, T, model_types)
{
    const Dataset data = small_dataset();
    Linear<T> a(4, 3, true, 3), b(4, 3, true, 3);
    SGD<T> opt_a(a.parameters(), 0.5), opt_b(b.parameters(), 0.5);
    Tape<T> tape;
    std::vector<std::size_t> seen;
    const EpochStats st = train_epoch(
        tape, opt_a, data, [&](Tape<T>& t, const Tensor<T>& x) { return a(t.borrow(x)); },
        [](const Var<T>& out, const IndexTensor& y) { return cross_entropy(out, y); },
        EpochOptions().batch_size(4).seed(11).epoch(2),
        [&](std::size_t step, std::size_t steps, std::size_t samples, double) {
            BOOST_TEST(steps == 3u);
            seen.push_back(step * 100 + samples);
        });
    BOOST_TEST(seen == (std::vector<std::size_t>{104, 208, 310}), tt::per_element());

    // The same epoch by hand: batches 4, 4, 2 of epoch_order(10, 11, 2), the rows converted to T.
    const auto order = epoch_order(10, 11, 2);
    double loss_sum = 0;
    std::size_t correct = 0;
    Tensor<float> x;
    IndexTensor y;
    for (std::size_t s = 0; s < 10; s += 4) {
        const std::size_t end = std::min<std::size_t>(10, s + 4);
        gather_batch(data, order, s, end, x, y);
        const Tensor<T> xt_ = xt::cast<T>(x);
        opt_b.zero_grad();
        auto out = b(tape.borrow(xt_));
        auto l = cross_entropy(out, y);
        tape.backward(l);
        opt_b.step();
        loss_sum += double(l.item()) * double(end - s);
        correct += count_correct(out.value(), y);
        tape.clear();
    }
    BOOST_TEST(st.loss == loss_sum / 10);
    BOOST_TEST(st.accuracy == double(correct) / 10);
    BOOST_TEST(st.loss > 0.1);  // a real loss of 3 classes, not a zero
    const auto pa = a.parameters(), pb = b.parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) BOOST_TEST(pa[i]->value() == pb[i]->value(), tt::per_element());
    // the double model's evaluation keeps double outputs
    const Evaluation<T> e = evaluate<T>(a, tape, data, [&](Tape<T>& t, const Tensor<T>& x2) { return a(t.borrow(x2)); },
                                        [](const Var<T>& out, const IndexTensor& y2) { return cross_entropy(out, y2); },
                                        4, true);
    BOOST_TEST(e.outputs.shape()[0] == 10u);
    BOOST_TEST(e.accuracy == accuracy(e.outputs, data.labels));
}

BOOST_AUTO_TEST_CASE(evaluate_weights_batches_by_size_and_restores_training_mode)
{
    const Dataset data = small_dataset();
    Linear<float> m(4, 3, true, 5);
    Tape<float> tape;
    auto fwd = [&](Tape<float>& t, const Tensor<float>& x) { return forward_of(m, t, x); };
    const Evaluation<float> e = evaluate(m, tape, data, fwd, ce, 3, true);  // batches 3, 3, 3, 1
    auto out = m(tape.constant(data.images));
    const double whole = cross_entropy(out, data.labels).item();
    BOOST_TEST(e.loss == whole, tt::tolerance(1e-6));
    BOOST_TEST(e.accuracy == accuracy(out.value(), data.labels));
    BOOST_TEST(e.outputs == out.value(), tt::tolerance(1e-5f) << tt::per_element());  // GEMMs of 3 rows vs 10
    BOOST_TEST(m.is_training());
    tape.clear();
    m.eval();  // a model in eval mode stays in eval mode
    evaluate(m, tape, data, fwd, ce, 4, false);
    BOOST_TEST(!m.is_training());
}

BOOST_AUTO_TEST_CASE(dataset_slice_checks_its_range)
{
    const Dataset data = small_dataset();
    const Dataset mid = data.slice(2, 5);
    BOOST_TEST(mid.size() == 3u);
    BOOST_TEST(mid.labels(0) == data.labels(2));
    BOOST_TEST(mid.images(2, 1) == data.images(4, 1));
    BOOST_TEST(data.slice(10, 10).size() == 0u);
    BOOST_CHECK_EXCEPTION(data.slice(0, 11), std::out_of_range, [](const std::out_of_range& e) {
        return std::string(e.what()) == "Dataset::slice(0, 11): the dataset has 10 rows";
    });
    BOOST_CHECK_THROW(data.slice(6, 5), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(a_non_finite_loss_names_epoch_step_and_learning_rate)
{
    const Dataset data = small_dataset();
    Linear<float> m(4, 3, true, 5);
    SGD<float> opt(m.parameters(), 0.25);
    Tape<float> tape;
    auto nan_loss = [](const Var<float>& out, const IndexTensor& y) {
        return cross_entropy(out, y) * std::numeric_limits<float>::quiet_NaN();
    };
    try {
        train_epoch(tape, opt, data, [&](Tape<float>& t, const Tensor<float>& x) { return forward_of(m, t, x); }, nan_loss,
                    EpochOptions().batch_size(4).shuffle(false).epoch(6));
        BOOST_ERROR("no error for a NaN loss");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()) == "epoch 7 step 1: loss is nan (learning rate 0.25 too high?)");
    }
}

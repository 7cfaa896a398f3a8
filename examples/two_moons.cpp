// A two-layer network written directly with tape ops, trained on the two-moons problem.
// Shows the whole training loop: parameters outside the tape, one tape reused every step,
// backward, a plain SGD update, clear().
#include <cmath>
#include <cstdio>
#include <random>

#include <xtensor/xsort.hpp>

#include "xgrad/autodiff.hpp"

using namespace xgrad;

namespace {

// Two interleaved half circles with Gaussian noise; labels 0 and 1.
void make_moons(std::size_t n, unsigned seed, Tensor<float>& x, IndexTensor& y)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> angle(0.0f, 3.14159265f);
    std::normal_distribution<float> noise(0.0f, 0.1f);
    x = Tensor<float>::from_shape({n, 2});
    y = IndexTensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
        const float a = angle(rng);
        const bool upper = i % 2 == 0;
        x(i, 0) = (upper ? std::cos(a) : 1.0f - std::cos(a)) + noise(rng);
        x(i, 1) = (upper ? std::sin(a) : 0.5f - std::sin(a)) + noise(rng);
        y(i) = upper ? 0 : 1;
    }
}

Parameter<float> uniform_param(std::size_t rows, std::size_t cols, std::mt19937& rng, const char* name)
{
    const float bound = 1.0f / std::sqrt(float(rows));  // fan_in = rows
    std::uniform_real_distribution<float> d(-bound, bound);
    Tensor<float> w = Tensor<float>::from_shape({rows, cols});
    for (auto& v : w) v = d(rng);
    return Parameter<float>(std::move(w), name);
}

}  // namespace

int main()
{
    Tensor<float> x;
    IndexTensor labels;
    make_moons(512, 1, x, labels);

    std::mt19937 rng(42);
    Parameter<float> w1 = uniform_param(2, 32, rng, "w1"), w2 = uniform_param(32, 2, rng, "w2");
    Parameter<float> b1(xt::zeros<float>({32}), "b1"), b2(xt::zeros<float>({2}), "b2");
    Parameter<float>* params[] = {&w1, &b1, &w2, &b2};
    const float lr = 0.5f;

    Tape<float> tape;
    for (int step = 0; step <= 1000; ++step) {
        for (auto* p : params) p->zero_grad();
        auto h = tanh(matmul(tape.borrow(x), tape.param(w1)) + tape.param(b1));
        auto logits = matmul(h, tape.param(w2)) + tape.param(b2);
        auto loss = -mean(pick(log_softmax(logits, 1), labels));  // softmax cross-entropy
        tape.backward(loss);
        if (step % 100 == 0) {
            const Tensor<float> pred = xt::cast<float>(xt::argmax(logits.value(), 1));
            std::size_t correct = 0;
            for (std::size_t i = 0; i < labels.size(); ++i) correct += Index(pred(i)) == labels(i);
            std::printf("step %4d  loss %.4f  accuracy %.1f%%\n", step, loss.item(), 100.0 * correct / labels.size());
        }
        for (auto* p : params) p->value() -= lr * p->grad();
        tape.clear();  // same memory next step
    }
    return 0;
}

// The documents' derivations as written, through diagnose(); see xgrad/reference/documents.hpp.
// Hand arithmetic is plain xtensor (never tape ops); each document's own formula is reproduced,
// wrong where the document is wrong, and nothing here says what is wrong: diagnose() finds it.
#include "xgrad/reference/documents.hpp"

#include <cmath>

#include <xtensor/xview.hpp>

#include "xgrad/nn/losses.hpp"
#include "xgrad/ops.hpp"
#include "xgrad/random.hpp"
#include "xgrad/reference/backprop.hpp"

namespace xgrad::reference {
namespace {

using Tens = Tensor<double>;
constexpr double not_printed = NAN;

Tens mm(const Tens& a, const Tens& b)  // (n,k)·(k,m)
{
    Tens c = xt::zeros<double>({a.shape()[0], b.shape()[1]});
    for (std::size_t i = 0; i < a.shape()[0]; ++i)
        for (std::size_t k = 0; k < a.shape()[1]; ++k)
            for (std::size_t j = 0; j < b.shape()[1]; ++j) c(i, j) += a(i, k) * b(k, j);
    return c;
}
Tens tr(const Tens& a) { return xt::transpose(a); }
Tens colsum(const Tens& a) { return xt::sum(a, {0}); }
Tens sig(const Tens& z) { return 1 / (1 + xt::exp(-z)); }
Tens affine(const Tens& x, const Tens& w, const Tens& b) { return mm(x, tr(w)) + b; }  // x·Wᵀ + b
Tens row(std::initializer_list<double> v)
{
    Tens t = xt::zeros<double>({std::size_t(1), v.size()});
    std::size_t j = 0;
    for (double x : v) t(0, j++) = x;
    return t;
}

// ---- 003: the worked 2-3-2-1 example, its printed numbers ------------------------------------

DiagnosisReport worked_example_2_3_2_1()
{
    const auto layers = worked_example_2_3_2_1_parameters();
    Parameter<double> W1(layers[0].W, "W1"), b1(layers[0].b, "b1"), W2(layers[1].W, "W2"), b2(layers[1].b, "b2"),
        W3(layers[2].W, "W3"), b3(layers[2].b, "b3");
    const Tens x = row({1, 2}), y = row({1});
    const double eta = 0.1;
    auto model = [&](Tape<double>& t) {
        auto z1 = t.observe("z1", linear(t.constant(x), t.param(W1), t.param(b1)));
        auto n1 = t.observe("n1", sigmoid(z1));
        auto z2 = t.observe("z2", linear(n1, t.param(W2), t.param(b2)));
        auto n2 = t.observe("n2", sigmoid(z2));
        auto z3 = t.observe("z3", linear(n2, t.param(W3), t.param(b3)));
        auto n3 = t.observe("ŷ", sigmoid(z3));
        // the printed derivatives f′(z) = n(1 − n) and y − ŷ, off the loss's graph
        for (auto [name, n] : {std::pair{"f′(z1)", n1}, {"f′(z2)", n2}, {"f′(z3)", n3}}) {
            auto d = t.detach(n);
            t.observe(name, d * (1.0 - d));
        }
        t.observe("y − ŷ", t.constant(y) - t.detach(n3));
        return mse_loss(n3, t.constant(y), Reduction::half_sum);
    };
    auto hand = [&](HandDerivation& h) {
        // §1: forward, neuron by neuron; the document's z5 takes b = 2 (its arithmetic, kept)
        const Tens& z1 = h.value("z1", row({not_printed, not_printed, not_printed}), affine(x, W1.value(), b1.value()));
        const Tens& n1 = h.value("n1", row({0.993307149075715, 0.999876605424014, 0.999954602131298}), sig(z1));
        const Tens& f1 = h.value("f′(z1)", row({0.006648056670790, 0.000123379349765, 0.000045395807735}), n1 * (1 - n1));
        Tens b2_used = b2.value();
        b2_used(1) = 2;
        const Tens& z2 = h.value("z2", row({5.993092958762325, not_printed}), affine(n1, W2.value(), b2_used));
        const Tens& n2 = h.value("n2", row({0.997510281884102, not_printed}), sig(z2));
        const Tens& f2 = h.value("f′(z2)", row({0.002483519419601, 0.000125939063189}), n2 * (1 - n2));
        const Tens& z3 = h.value("z3", row({not_printed}), affine(n2, W3.value(), b3.value()));
        const Tens& n3 = h.value("ŷ", row({0.997520293823002}), sig(z3));
        const Tens& e = h.value("y − ŷ", row({0.002479706176998}), y - n3);
        const Tens& f3 = h.value("f′(z3)", row({0.002473557234274}), n3 * (1 - n3));
        // §2: δ⁽³⁾ = −(y − ŷ) f₃′, δ⁽ᵏ⁾ = f′(z⁽ᵏ⁾) ⊙ W⁽ᵏ⁺¹⁾ᵀδ⁽ᵏ⁺¹⁾
        const Tens& d3 = h.grad("z3", row({-0.000006133695153}), -e * f3);
        const Tens& g2 = h.grad("n2", row({-0.000006133695153, -0.000018401085459}), mm(d3, W3.value()));
        const Tens d2 = f2 * g2;
        h.grad("z2", row({-0.0000000015233151, -0.000000002317415}), d2);
        // δ⁽¹⁾ is computed from δ⁽²⁾ as the formula gives it, not from the printed line; it is printed
        // with two entries (first and third) to four or five digits.
        const Tens d1 = f1 * mm(d2, W2.value());
        h.grad("z1", row({-1.4749e-13, not_printed, -1.593e-13}), d1, 1e-3);
        // §2.5: the printed W⁽¹⁾ after W ← W − η(δ⁽¹⁾xᵀ + W), read back as the gradient it implies
        // (its few significant digits after the 1.8000000000…: hence the tolerance)
        const Tens W1_after = {{1.800000000014749, 0.900000000029498},
                               {0.90000000000245, 2.70000000000490},
                               {2.700000000000159, 1.80000000000319}};
        h.grad("W1", Tens(((1 - eta) * W1.value() - W1_after) / eta), mm(tr(d1), x), 2e-3);
    };
    return diagnose(model, hand);
}

}  // namespace

std::vector<DocumentDiagnosis> document_diagnoses()
{
    return {
        {"003", "worked_example_2_3_2_1",
         "the worked 2-3-2-1 sigmoid example, x = [1 2], y = 1, E = ½(y − ŷ)²: every printed number against the tape",
         worked_example_2_3_2_1},
    };
}

}  // namespace xgrad::reference

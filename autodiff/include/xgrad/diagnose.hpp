#pragma once
// A hand derivation checked against the tape, quantity by quantity: the first wrong quantity, which
// later disagreements follow from it, and what each independent mistake most likely is, with
// explanations drawn only from the ops, shapes and factors of the recorded model.
//
//   auto report = diagnose(
//       [&](Tape<double>& t) {                       // the model, with its quantities named
//           auto z1 = t.observe("z1", linear(x, W1, b1));
//           auto a1 = t.observe("a1", sigmoid(z1));
//           ...
//           return loss;                             // a scalar
//       },
//       [&](HandDerivation& h) {                     // the derivation, in the order it is computed
//           auto a1 = h.value("a1", sigmoid_by_hand(z1));
//           auto d2 = h.grad("z2", (a2 - y) * a2 * (1 - a2));
//           auto dW2 = h.grad("W2", matmul_by_hand(d2, a1));   // a Parameter's name
//       });
//   std::cout << report.table();
#include <cmath>
#include <deque>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "xgrad/options.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

/// diagnose()'s options, set by name and chained: DiagnoseOptions().rtol(1e-6).
class DiagnoseOptions {
    /// A hand quantity agrees when max|hand − tape| ≤ rtol · max|tape| (+ 1e-300). Both sides are
    /// float64 evaluations of the same mathematics, so they differ by rounding (~1e-15 relative);
    /// the default 1e-8 (≈ 10⁸ ε of float64) leaves room for a different summation order and is
    /// far below any real mistake.
    XGRAD_ARG(double, rtol) = 1e-8;
    /// A hypothesis fits when ‖hand − candidate‖ ≤ fit_tol · max(‖hand‖, ‖candidate‖).
    XGRAD_ARG(double, fit_tol) = 1e-6;
    /// How many hypotheses a quantity lists at most (best first).
    XGRAD_ARG(std::size_t, max_hypotheses) = 3;
    /// A printed number (HandDerivation's printed/formula overloads) agrees with the tape, or with
    /// its own formula, when |printed − x| ≤ printed_rtol · max(|printed|, |x|), entry by entry:
    /// printed numbers carry only the digits on the page. 1e-6 suits 7 or more significant digits;
    /// a quantity printed with fewer passes its own tolerance.
    XGRAD_ARG(double, printed_rtol) = 1e-6;
};

class HandDerivation;

/// One explanation of a disagreement, fitted to the numbers: `residual` is ‖hand − candidate‖
/// relative to ‖hand‖ (0 is a perfect fit).
struct Hypothesis {
    std::string kind;         ///< "factor", "sign", "transpose", "reshape", "sum over axis",
                              ///< "elementwise derivative", "activation derivative", "off-by-one layer",
                              ///< "missing term", "extra term", "scatter coefficients" (the trace
                              ///< regularizer's per-class coefficients), "sum over class" (its
                              ///< gradient summed over each class's samples), "pooling routing",
                              ///< "missing derivative", "wrong bias",
                              ///< "printing slip" (a printed number against its own formula)
    std::string explanation;  ///< one line naming the quantity and the layer
    double residual = 0;
};

enum class Verdict {
    ok,              ///< agrees with the tape
    mistake,         ///< disagrees on its own: an independent mistake
    follows,         ///< disagrees only because of an earlier mistake (`follows_from`)
    shape_mismatch,  ///< hand and tape shapes differ (and the quantity is a mistake)
    unmatched,       ///< the name matches no observed quantity or parameter on the tape
};
/// "ok", "MISTAKE", "follows", "SHAPE MISMATCH", "UNMATCHED".
const char* to_string(Verdict v);
std::ostream& operator<<(std::ostream& os, Verdict v);

/// One quantity of the hand derivation against the tape.
struct QuantityCheck {
    std::string label;         ///< "z2" for a value, "dL/dz2" for a gradient
    std::string name;          ///< the name given to value() / grad()
    bool is_grad = false;
    std::string where;         ///< the op that made it on the tape and its scope, e.g. "sigmoid in mlp/1"
    Shape hand_shape, tape_shape;
    double max_rel_error = 0;  ///< max|hand − tape| / max|tape| (inf for a shape mismatch)
    Verdict verdict = Verdict::ok;
    std::string follows_from;  ///< for Verdict::follows: the label of the mistake it follows from; for a
                               ///< printing slip: the mistake its formula's value follows from, if any
    bool printed = false;      ///< given as printed numbers with their formula
    bool slip = false;         ///< printed numbers that are not what their own formula gives
    std::vector<Hypothesis> hypotheses;  ///< for mistakes: the fitted explanations, best first
    /// For a mistake no hypothesis fits: where the elements differ, e.g.
    /// "2 of 6 elements differ, only in row 1; correlation with the tape 0.9731".
    std::string pattern;
};

struct DiagnosisReport {
    std::vector<QuantityCheck> quantities;  ///< in the order the hand derivation computed them
    std::vector<std::string> not_given;     ///< observed names the hand derivation did not give
    /// Every quantity matched and agrees.
    bool ok() const;
    /// The labels of the independent mistakes (Verdict::mistake or shape_mismatch), in order.
    std::vector<std::string> mistakes() const;
    /// The entry of a label; std::out_of_range if there is none.
    const QuantityCheck& at(const std::string& label) const;
    /// A per-quantity table (quantity, where, shape, max rel error, verdict, best hypothesis) and,
    /// below it, every hypothesis of every mistake.
    std::string table() const;
    /// The same as JSON, for tools and notebooks.
    std::string json() const;
    /// The recorded model as Graphviz: each op a node, the observed ones named and coloured by the
    /// verdict of their quantities (red: mistake, orange: follows from one, green: agrees).
    std::string dot;
};

/// Records `model` on a fresh float64 tape (it returns the scalar loss and names its quantities
/// with tape.observe), computes every observed value and gradient, then runs `hand` — once plainly,
/// then again with each mistake found replaced by the tape's value, so that a later quantity that
/// then agrees is reported as following from it. Parameters on the tape are matched by their
/// names too. Observed scalars other than the loss are its terms: a hand gradient that leaves one
/// out, or counts it twice, is recognised.
DiagnosisReport diagnose(const std::function<Var<double>(Tape<double>&)>& model,
                         const std::function<void(HandDerivation&)>& hand, const DiagnoseOptions& options = {});

/// What diagnose() passes to the hand derivation. Give each quantity as it is computed and go on
/// with the tensor returned: it is the hand value, or the tape's when diagnose() checks whether
/// later quantities follow from an earlier mistake.
class HandDerivation {
public:
    /// A forward quantity: the value of the Var observed under `name`.
    const Tensor<double>& value(const std::string& name, Tensor<double> hand);
    /// The gradient dL/d(name) of the Var observed under `name` or of the Parameter of that name
    /// (a lecture note's δ² is grad("z2", ...) when z2 is the layer's pre-activation).
    const Tensor<double>& grad(const std::string& name, Tensor<double> hand);

    /// A document's printed numbers (NaN where it prints none) with `formula`, what the document's
    /// own formula gives from the values returned before. Printed numbers are fixed data, so the
    /// formula is what lets diagnose() tell a number that is wrong only because an earlier one is
    /// (printed = formula) from a slip of its own (printed ≠ formula, fitted between the two), and
    /// rerun the formulas with a mistake corrected. Returns the printed numbers, gaps filled from
    /// the formula (the formula's value while diagnose() reruns the derivation corrected). `rtol`:
    /// the printed digits' precision, NaN for DiagnoseOptions::printed_rtol.
    const Tensor<double>& value(const std::string& name, Tensor<double> printed, Tensor<double> formula,
                                double rtol = NAN);
    const Tensor<double>& grad(const std::string& name, Tensor<double> printed, Tensor<double> formula,
                               double rtol = NAN);

    /// Internal: one given quantity.
    struct Given {
        bool is_grad = false;
        std::string name;
        Tensor<double> hand;           ///< as compared: the printed numbers with gaps filled from the formula
        bool has_formula = false;
        Tensor<double> printed, formula;
        double rtol = NAN;
    };
    /// Internal: returns the tape's tensor for (is_grad, name) when it is to replace the hand value.
    using Substitute = std::function<const Tensor<double>*(bool is_grad, const std::string& name)>;
    /// `carry_formulas`: printed quantities return their formula's value (diagnose()'s reruns).
    explicit HandDerivation(Substitute substitute, bool carry_formulas = false)
        : substitute_(std::move(substitute)), carry_formulas_(carry_formulas)
    {
    }
    const std::deque<Given>& given() const { return given_; }

private:
    const Tensor<double>& give(Given g);
    Substitute substitute_;
    bool carry_formulas_ = false;
    std::deque<Given> given_;  // deque: the returned references stay valid
};

}  // namespace xgrad

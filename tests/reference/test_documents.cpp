// What diagnose() finds in each source document's derivation as written (docs/sources.md, "What
// check_gradients finds"): which quantities are mistakes, which follow from which, the top
// explanation's kind and its numbers. The derivations are xgrad::reference::document_diagnoses(),
// the same that examples/check_gradients prints; the findings are diagnose()'s, asserted here.
#define BOOST_TEST_MODULE documents
#include <boost/test/unit_test.hpp>

#include <map>

#include "xgrad/reference/documents.hpp"

using namespace xgrad;

namespace {

/// A document's first run by its number ("000"), or any run by its name.
DiagnosisReport run(const std::string& which)
{
    for (const auto& d : reference::document_diagnoses())
        if (d.number == which || d.name == which) return d.run();
    throw std::runtime_error("no document " + which);
}

void expect_top(const DiagnosisReport& r, const std::string& label, const std::string& kind, const std::string& words)
{
    const QuantityCheck& q = r.at(label);
    BOOST_TEST(q.verdict == Verdict::mistake, label);
    BOOST_TEST_REQUIRE(!q.hypotheses.empty(), label);
    BOOST_TEST(q.hypotheses[0].kind == kind, label);
    BOOST_TEST(q.hypotheses[0].explanation.find(words) != std::string::npos, q.hypotheses[0].explanation);
}

void expect_follow(const DiagnosisReport& r, const std::vector<std::string>& labels, const std::string& root)
{
    for (const auto& l : labels) {
        BOOST_TEST(r.at(l).verdict == Verdict::follows, l);
        BOOST_TEST(r.at(l).follows_from == root, l);
    }
}

void expect_ok(const DiagnosisReport& r, const std::vector<std::string>& labels)
{
    for (const auto& l : labels) BOOST_TEST(r.at(l).verdict == Verdict::ok, l);
}

}  // namespace

BOOST_AUTO_TEST_CASE(document_000_regularizer_gradient_is_the_one_mistake)
{
    const auto r = run("000");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dy"});
    // the regularizer's per-class coefficients fitted to hand − tape: D1's (1 − 1/n) and
    // −n_c(1/n − 1/N) with n = n_c (classes of 2, 3, 3 samples, N = 8)
    expect_top(r, "dL/dy", "scatter coefficients",
               "class 0 (n_c = 2): 0.5 and -0.75; class 1 (n_c = 3): 0.666667 and -0.625; class 2 (n_c = 3): "
               "0.666667 and -0.625, i.e. 1 − 1/n_c and −(1 − n_c/N) = −n_c(1/n_c − 1/N) instead of 1 and −1");
    BOOST_TEST(r.at("dL/dy").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}, "dL/dy");
    expect_ok(r, {"z1", "y1", "y"});
}

BOOST_AUTO_TEST_CASE(document_000_data_term_summed_over_the_outputs)
{
    const auto r = run("mlp_trace_regularizer_data_term");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dy"});
    expect_top(r, "dL/dy", "sum over axis",
               "the gradient of the term 'squared error' summed over the last axis (axis 1: classes or features) "
               "and broadcast back");
    BOOST_TEST(r.at("dL/dy").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}, "dL/dy");
    expect_ok(r, {"z1", "y1", "y"});
}

BOOST_AUTO_TEST_CASE(document_000_all_of_d1_both_mistakes_in_one_fit)
{
    const auto r = run("mlp_trace_regularizer_d1");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dy"});
    expect_top(r, "dL/dy", "scatter coefficients",
               "i.e. 1 − 1/n_c and −(1 − n_c/N) = −n_c(1/n_c − 1/N) instead of 1 and −1, and the gradient of the term "
               "'squared error' summed over the last axis (axis 1: classes or features) and broadcast back");
    BOOST_TEST(r.at("dL/dy").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}, "dL/dy");
}

BOOST_AUTO_TEST_CASE(document_000_vec_w1_is_a_shape_mismatch)
{
    const auto r = run("mlp_trace_regularizer_vec_w1");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dW1"});
    const QuantityCheck& q = r.at("dL/dW1");
    BOOST_TEST(q.verdict == Verdict::shape_mismatch);
    BOOST_TEST((q.hand_shape == Shape{20}));
    BOOST_TEST((q.tape_shape == Shape{5, 4}));
    BOOST_TEST(r.table().find("(20)≠(5,4)") != std::string::npos);
    BOOST_TEST_REQUIRE(!q.hypotheses.empty());
    BOOST_TEST(q.hypotheses[0].kind == "reshape");
    BOOST_TEST(q.hypotheses[0].explanation.find("(20) is vec(·) of the tape's (5,4), its columns stacked") !=
                   std::string::npos,
               q.hypotheses[0].explanation);
    expect_ok(r, {"dL/dy", "dL/dW2", "dL/db2", "dL/dz1", "dL/db1"});
}

BOOST_AUTO_TEST_CASE(document_000_regularizer_summed_over_each_class)
{
    // D1's Σ_{yᵢ∈c} read as written: one vector per class, given to each of its samples
    const auto r = run("mlp_trace_regularizer_per_class");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dy"});
    // fitted: nothing of (yᵢ − m_c) survives the sum, and the per-sample coefficient on (m_c − m) is
    // D1's (1/n − 1/N) with n = n_c (N = 8: −0.375 for the class of 2, −0.208333 for the classes of 3)
    expect_top(r, "dL/dy", "sum over class",
               "summed over the samples of each class and given to every sample of it, one vector per class (the sum "
               "drops the within-class term: Σ_{i∈c}(yᵢ − m_c) = 0); per sample, a coefficient (in units of its γ) on "
               "(m_c − m) of class 0 (n_c = 2): -0.375; class 1 (n_c = 3): -0.208333; class 2 (n_c = 3): -0.208333, "
               "i.e. −(1/n_c − 1/N) instead of a per-sample gradient with 1 and −1");
    BOOST_TEST(r.at("dL/dy").hypotheses[0].residual < 1e-12);
    // the same numbers read per sample: 0 on (yᵢ − m_c), −n_c(1/n_c − 1/N) on (m_c − m)
    BOOST_TEST_REQUIRE(r.at("dL/dy").hypotheses.size() >= 2u);
    BOOST_TEST(r.at("dL/dy").hypotheses[1].kind == "scatter coefficients");
    BOOST_TEST(r.at("dL/dy").hypotheses[1].explanation.find(
                   "class 0 (n_c = 2): 0 and -0.75; class 1 (n_c = 3): 0 and -0.625; class 2 (n_c = 3): 0 and -0.625, "
                   "i.e. 0 and −(1 − n_c/N) = −n_c(1/n_c − 1/N)") != std::string::npos,
               r.at("dL/dy").hypotheses[1].explanation);
    expect_follow(r, {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}, "dL/dy");
    expect_ok(r, {"z1", "y1", "y"});
}

BOOST_AUTO_TEST_CASE(document_000_all_of_d1_per_class)
{
    // D1 entirely as written: Σⱼ in the data term and the regularizer per class, both fitted together
    const auto r = run("mlp_trace_regularizer_d1_per_class");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dy"});
    expect_top(r, "dL/dy", "sum over class",
               "class 0 (n_c = 2): -0.375; class 1 (n_c = 3): -0.208333; class 2 (n_c = 3): -0.208333, i.e. "
               "−(1/n_c − 1/N) instead of a per-sample gradient with 1 and −1, and the gradient of the term 'squared "
               "error' summed over the last axis (axis 1: classes or features) and broadcast back");
    BOOST_TEST(r.at("dL/dy").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"}, "dL/dy");
}

BOOST_AUTO_TEST_CASE(document_001_recursion_is_half_the_gradient_of_44)
{
    const auto r = run("001");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/da4"});
    expect_top(r, "dL/da4", "factor", "1/2 × the tape's: the 2 of a square's derivative");
    expect_follow(r, {"dL/dW3", "dL/da3", "dL/dW2", "dL/da2", "dL/dW1"}, "dL/da4");
}

BOOST_AUTO_TEST_CASE(document_002_pooling_quarter_dropped)
{
    const auto r = run("002");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dc"});
    expect_top(r, "dL/dc", "pooling routing", "without the 1/4");
    BOOST_TEST(r.at("dL/dc").hypotheses.size() == 2u);  // and the factor 4; no other routing fits
    expect_follow(r, {"dL/dd", "dL/dV", "dL/dq"}, "dL/dc");
    expect_ok(r, {"dL/dx", "dL/dW", "dL/db", "dL/da"});
}

BOOST_AUTO_TEST_CASE(document_002_single_output_misses_the_sum_over_the_classes)
{
    // (10) for each output i: (B, K, F) = (3, 4, 48) where the tape's dL/da is (3, 48)
    const auto r = run("cnn_sigmoid_avgpool_single_output");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/da"});
    const QuantityCheck& q = r.at("dL/da");
    BOOST_TEST(q.verdict == Verdict::shape_mismatch);
    BOOST_TEST((q.hand_shape == Shape{3, 4, 48}));
    BOOST_TEST((q.tape_shape == Shape{3, 48}));
    BOOST_TEST_REQUIRE(!q.hypotheses.empty());
    BOOST_TEST(q.hypotheses[0].kind == "sum over axis");
    BOOST_TEST(q.hypotheses[0].explanation.find("(3,4,48) keeps the classes (axis 1, 4 of them): the sum over it is "
                                                "missing") != std::string::npos,
               q.hypotheses[0].explanation);
    BOOST_TEST(q.hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dc", "dL/dd", "dL/dV", "dL/dq"}, "dL/da");
    expect_ok(r, {"dL/dx", "dL/dW", "dL/db"});
}

BOOST_AUTO_TEST_CASE(document_002_index_formula_routes_to_other_windows_cells)
{
    const auto r = run("cnn_sigmoid_avgpool_index_formula");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dc"});
    expect_top(r, "dL/dc", "pooling routing",
               "routed to cells 2 rows and 2 columns apart in the flattened 8×8 image instead of its own (window 0: "
               "cells {0, 2, 16, 18} for {0, 1, 8, 9}), with the 1/4");
    BOOST_TEST(r.at("dL/dc").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dd", "dL/dV", "dL/dq"}, "dL/dc");
    expect_ok(r, {"dL/dx", "dL/dW", "dL/db", "dL/da"});
}

BOOST_AUTO_TEST_CASE(document_002_sum_over_all_convolution_outputs)
{
    // (15): Σ_l over all conv outputs l for each pooled a_j, ∂a_j/∂c_l = ¼ everywhere (8×8 maps, 16 windows)
    const auto r = run("cnn_sigmoid_avgpool_all_positions");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/dc"});
    expect_top(r, "dL/dc", "pooling routing",
               "the average-pooling gradient summed over all 16 2×2 windows of each feature map and sent to every cell "
               "of it instead of each window's to its own 4 cells (a sum over all positions where only a window's own "
               "have a nonzero derivative), with the 1/4");
    BOOST_TEST(r.at("dL/dc").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dd", "dL/dV", "dL/dq"}, "dL/dc");
    expect_ok(r, {"d", "c", "a", "x", "dL/dx", "dL/dW", "dL/db", "dL/da"});
}

BOOST_AUTO_TEST_CASE(document_002_as_written_three_mistakes_in_one_run)
{
    // every printed equation of §2.2 at once: (11) in the forward pass, (10) and (15) in the backward
    const auto r = run("cnn_sigmoid_avgpool_as_written");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == (std::vector<std::string>{"a", "dL/da", "dL/dc"}));
    BOOST_TEST(r.table().find("first mistake: a") != std::string::npos);
    // the root: (11)'s positions in the pooling itself
    expect_top(r, "a", "pooling routing",
               "each 2×2 average-pooling window taken over cells 2 rows and 2 columns apart in the flattened 8×8 image "
               "instead of its own (window 0: cells {0, 2, 16, 18} for {0, 1, 8, 9}), with the 1/4");
    BOOST_TEST(r.at("a").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"x", "dL/dx", "dL/dW", "dL/db"}, "a");
    // independent of it: (10) keeps the output index i (with a corrected, still wrong)
    const QuantityCheck& da = r.at("dL/da");
    BOOST_TEST(da.verdict == Verdict::shape_mismatch);
    BOOST_TEST((da.hand_shape == Shape{3, 4, 48}));
    BOOST_TEST_REQUIRE(!da.hypotheses.empty());
    BOOST_TEST(da.hypotheses[0].kind == "sum over axis");
    BOOST_TEST(da.hypotheses[0].explanation.find("keeps the classes (axis 1, 4 of them): the sum over it is missing") !=
                   std::string::npos,
               da.hypotheses[0].explanation);
    BOOST_TEST(da.hypotheses[0].residual < 1e-12);
    // and independent of both: (15)'s sum over all l (dL/da corrected, still wrong)
    expect_top(r, "dL/dc", "pooling routing", "summed over all 16 2×2 windows of each feature map");
    BOOST_TEST(r.at("dL/dc").hypotheses[0].explanation.find("with the 1/4") != std::string::npos);
    BOOST_TEST(r.at("dL/dc").hypotheses[0].residual < 1e-12);
    expect_follow(r, {"dL/dd", "dL/dV", "dL/dq"}, "dL/dc");
    expect_ok(r, {"d", "c"});
}

BOOST_AUTO_TEST_CASE(document_003_every_printed_mistake_and_its_root)
{
    const auto r = run("003");
    BOOST_TEST_MESSAGE(r.table());
    // z5 (not printed) computed with the bias 2: the root; four printed quantities are slips of their own
    BOOST_TEST(r.mistakes() == (std::vector<std::string>{"z2", "f′(z2)", "dL/dz2", "dL/dz1", "dL/dz1 (W1 update, line 1)",
                                                          "dL/dW1", "dL/dz1 (b1 update)"}));
    expect_top(r, "z2", "wrong bias", "b2[1] = 2 instead of 1");
    expect_follow(r, {"n2", "z3", "ŷ", "y − ŷ", "f′(z3)", "dL/dz3", "dL/dn2", "dL/dz1 (W1 update, line 2)"}, "z2");
    expect_ok(r, {"z1", "n1", "f′(z1)"});
    BOOST_TEST(r.table().find("first mistake: z2") != std::string::npos);
    for (const char* slip : {"f′(z2)", "dL/dz2", "dL/dz1", "dL/dz1 (W1 update, line 1)", "dL/dW1", "dL/dz1 (b1 update)"}) {
        BOOST_TEST(r.at(slip).slip, slip);
        BOOST_TEST(r.at(slip).follows_from == "z2", slip);  // and their formulas inherit z5's mistake
    }
    expect_top(r, "dL/dz2", "printing slip", "10^-1 × what its own formula gives");
    BOOST_TEST(r.at("dL/dz2").hypotheses[0].explanation.find("(1 of 2 printed entries)") != std::string::npos);
    expect_top(r, "dL/dz1", "printing slip", "10^-3 at (0,0), 10^-1 at (0,2)");
    expect_top(r, "dL/dW1", "printing slip", "10^1 × what its own formula gives");
    expect_top(r, "dL/dz1 (W1 update, line 1)", "printing slip", "10^-1 × what its own formula gives");
    expect_top(r, "dL/dz1 (b1 update)", "printing slip", "10^1 at (0,0), 10^1 at (0,1), 10^2 at (0,2)");
    BOOST_TEST(r.at("dL/dW1").hypotheses[0].explanation.find("(1,0), (1,1), (2,1) (3 of 6") != std::string::npos);
    // f₅′: a small slip beside z5's mistake (the document's numbers imply z5 ≈ 8.97946, not 8.97958)
    expect_top(r, "f′(z2)", "printing slip", "printed as 1.0001");
}

BOOST_AUTO_TEST_CASE(document_004_softmax_derivative_replaced_by_the_output)
{
    const auto r = run("004");
    BOOST_TEST_MESSAGE(r.table());
    BOOST_TEST(r.mistakes() == std::vector<std::string>{"dL/du"});
    expect_top(r, "dL/du", "missing derivative", "replaced by s itself");
    expect_follow(r, {"dL/dW1"}, "dL/du");
    expect_ok(r, {"dL/ds", "dL/db1", "dL/db0"});
}

#pragma once
// Hand-derived backpropagation for the networks of the five source documents (docs/sources.md),
// written with plain xtensor and BLAS, no tape. They are the "hand" side of the comparisons in
// tests/reference and examples/check_gradients; docs/derivations.md derives each formula.
//
// Conventions (the documents' own): a layer maps z ↦ h(W z + b) with W of shape (out, in); a batch
// is stored one sample per row, so A = Z·Wᵀ + b for Z (B, in). δ = ∂E/∂A (the "error term").
#include <functional>
#include <vector>

#include "xgrad/nn/activation.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::reference {

template <class T>
struct Layer {
    Tensor<T> W;  ///< (out, in)
    Tensor<T> b;  ///< (out)
    nn::Activation act = nn::Activation::sigmoid;
};

template <class T>
struct MlpPass {
    T loss = 0;
    std::vector<Tensor<T>> A;      ///< pre-activations per layer, (B, out)
    std::vector<Tensor<T>> Z;      ///< Z[0] = X, Z[l+1] = h(A[l])
    std::vector<Tensor<T>> delta;  ///< δ per layer, (B, out)
    std::vector<Tensor<T>> dW, db;
};

/// The output loss: given the network output Y (B, out), returns E and writes ∂E/∂Y.
template <class T>
using OutputLoss = std::function<T(const Tensor<T>& Y, Tensor<T>& dY)>;

/// E = ½ Σ_n ‖y_n − t_n‖² (source documents 000, 001 §3, 003; docs/sources.md). ∂E/∂Y = Y − T.
template <class T>
OutputLoss<T> half_squared_error(const Tensor<T>& targets);

/// The L-layer MLP (mlp_l_layer_notes, source document 001), batched: forward A⁽ˡ⁾ = Z⁽ˡ⁻¹⁾W⁽ˡ⁾ᵀ + b⁽ˡ⁾, Z⁽ˡ⁾ = h(A⁽ˡ⁾); backward
///   δ⁽ᴸ⁾ = ∂E/∂Y ⊙ h′(A⁽ᴸ⁾),   δ⁽ˡ⁻¹⁾ = h′(A⁽ˡ⁻¹⁾) ⊙ (δ⁽ˡ⁾ W⁽ˡ⁾),
///   ∂E/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀ Z⁽ˡ⁻¹⁾ (= Σ_n δ_n z_nᵀ),   ∂E/∂b⁽ˡ⁾ = Σ_n δ_n.
template <class T>
MlpPass<T> mlp_backprop(const std::vector<Layer<T>>& layers, const Tensor<T>& X, const OutputLoss<T>& loss);

/// The discriminative regularizer (mlp_trace_regularizer, source document 000) R = ½γ(tr S_w − tr S_b) of the outputs Y (B,D) with class labels, and
/// its gradient ∂R/∂y_i = γ(y_i − 2m_{c(i)} + m) (derived in docs/derivations.md §000).
template <class T>
T trace_regularizer(const Tensor<T>& Y, const IndexTensor& labels, T gamma, Tensor<T>& dY);

/// mlp_trace_regularizer's objective (source document 000): ½Σ‖y − d‖² + ½γ(tr S_w − tr S_b) on a sigmoid-hidden, linear-output MLP.
template <class T>
OutputLoss<T> squared_error_with_trace_regularizer(const Tensor<T>& targets, const IndexTensor& labels, T gamma);

/// cnn_sigmoid_avgpool (source document 002): D = conv(X, V) + q (stride 1, valid), C = sigmoid(D), P = 2×2 average pool,
/// logits = flatten(P)·Wᵀ + b, E = Σ_n cross-entropy(softmax(logits_n), label_n) (summed).
template <class T>
struct CnnParams {
    Tensor<T> V;  ///< (O, Cin, k, k)
    Tensor<T> q;  ///< (O)
    Tensor<T> W;  ///< (classes, O·PH·PW)
    Tensor<T> b;  ///< (classes)
};
template <class T>
struct CnnGrads {
    T loss = 0;
    Tensor<T> dV, dq, dW, db;
};
///   ∂E/∂logits = softmax − onehot;  ∂E/∂W = δᵀ a;  ∂E/∂a = δ W;
///   ∂E/∂C[2i+u, 2j+v] = ¼ ∂E/∂P[i,j] (0 for positions no window covers);  ∂E/∂D = ∂E/∂C ⊙ C(1 − C);
///   ∂E/∂V[o,c,p,r] = Σ_{n,i,j} ∂E/∂D[n,o,i,j] X[n,c,i+p,j+r];  ∂E/∂q[o] = Σ_{n,i,j} ∂E/∂D[n,o,i,j].
template <class T>
CnnGrads<T> cnn_sigmoid_avgpool_backprop(const CnnParams<T>& p, const Tensor<T>& X, const IndexTensor& labels);

/// mnist_softmax_sgd (source document 004): L0 = tanh(X + b0), S = softmax(L0·W1 + b1), E = Σ (S − T)²,
/// W1 (784, 10) as in the document (input-major). ∂E/∂S = 2(S − T); ∂E/∂U = S ⊙ (∂E/∂S − Σ_k ∂E/∂S_k S_k);
/// ∂E/∂W1 = L0ᵀ ∂E/∂U; ∂E/∂b1 = Σ_n ∂E/∂U; ∂E/∂b0 = Σ_n (1 − L0²) ⊙ (∂E/∂U W1ᵀ).
template <class T>
struct MnistSoftmaxSgdGrads {
    T loss = 0;
    Tensor<T> db0, dW1, db1;
};
template <class T>
MnistSoftmaxSgdGrads<T> mnist_softmax_sgd_backprop(const Tensor<T>& b0, const Tensor<T>& W1, const Tensor<T>& b1, const Tensor<T>& X,
                                 const Tensor<T>& targets);

/// The worked 2-3-2-1 example (source document 003): one step of W ← W − η(δ·n_prevᵀ + W), b ← b − ηδ on the 2-3-2-1
/// sigmoid network with E = ½(y − ŷ)². Every intermediate value, for printing and checking.
struct WorkedExample2321Trace {
    std::vector<Layer<double>> before, after;
    Tensor<double> x;
    double y = 0, loss = 0;
    std::vector<Tensor<double>> z, n;      ///< z⁽ᵏ⁾ and n⁽ᵏ⁾ = f(z⁽ᵏ⁾), k = 1..3
    std::vector<Tensor<double>> delta;     ///< δ⁽ᵏ⁾, k = 1..3
    std::vector<Tensor<double>> dW, db;    ///< ∂E/∂W⁽ᵏ⁾ = δ⁽ᵏ⁾ n⁽ᵏ⁻¹⁾ᵀ, ∂E/∂b⁽ᵏ⁾ = δ⁽ᵏ⁾
};
/// The example's parameters: W1 = [2 1; 1 3; 3 2], b1 = [1 2 3], W2 = [1 1 2; 3 2 2], b2 = [2 1],
/// W3 = [1 3], b3 = [2]; x = [1 2], y = 1; η = 0.1.
std::vector<Layer<double>> worked_example_2_3_2_1_parameters();
WorkedExample2321Trace worked_example_2_3_2_1_step(const std::vector<Layer<double>>& layers, const Tensor<double>& x, double y, double eta);

}  // namespace xgrad::reference

#include "xgrad/tape.hpp"

namespace xgrad::reference {

/// R = ½γ(tr S_w − tr S_b) built from primitive tape ops only (one_hot, matmul, mean, square, sum),
/// so the tape derives its gradient on its own: the automatic side of the three-way check, and
/// independent of both the hand formula and the fused xgrad::trace_scatter_loss.
template <class T>
Var<T> trace_regularizer_on_tape(const Var<T>& Y, const IndexTensor& labels, std::size_t num_classes, T gamma);

}  // namespace xgrad::reference

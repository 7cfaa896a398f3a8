#!/usr/bin/env python3
"""Check a hand-derived backprop against the tape: source document 003 (docs/sources.md), the worked
2-3-2-1 sigmoid network, derived by hand in NumPy the way a student copies it from the document,
mistakes included; xgrad differentiates the same network and says what is wrong with each gradient.

The document's slips reproduced here (their numbers in docs/sources.md):
  E003-1  z5 computed with b5 = 2 instead of the stated 1;
  E003-5  delta(1) written with f(z(1)) where the derivative f'(z(1)) is meant;
  E003-7  the update's "+ W" taken as part of dL/dW (it is a weight decay the loss never states);
  loss    first written L = (y - yhat)^2, then differentiated as 1/2 (y - yhat)^2.
The script compares the derivation as written, then fixes one slip at a time, the way one would
track them down, and prints the tape's diagnosis at each stage; it exits 0 when the corrected
derivation agrees with the tape.

  PYTHONPATH=build/python python3 examples/python/check_my_backprop.py
"""
import numpy as np

import xgrad


def sigma(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---- the network and the example, as the document states them -------------------------------
x = np.array([1.0, 2.0])
y = 1.0
W1 = np.array([[2.0, 1.0], [1.0, 3.0], [3.0, 2.0]])
b1 = np.array([1.0, 2.0, 3.0])
W2 = np.array([[1.0, 1.0, 2.0], [3.0, 2.0, 2.0]])
b2 = np.array([2.0, 1.0])  # b4 = 2, b5 = 1
W3 = np.array([[1.0, 3.0]])
b3 = np.array([2.0])
params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": b3}


def student_backprop(b5_slip=True, f_for_fprime=True, decay_in_gradient=True):
    """The student's NumPy derivation, section by section of the document."""
    # §1: forward. z(k) = W(k) n(k-1) + b(k), n(k) = sigma(z(k)).
    z1 = W1 @ x + b1
    n1 = sigma(z1)
    b2_used = np.array([2.0, 2.0]) if b5_slip else b2  # E003-1: the document computes z5 with b5 = 2
    z2 = W2 @ n1 + b2_used
    n2 = sigma(z2)
    z3 = W3 @ n2 + b3
    yhat = sigma(z3)
    # §2.3: delta(3) = (yhat - y) f'(z(3)), then delta(k) = f'(z(k)) ⊙ W(k+1)ᵀ delta(k+1).
    fp = lambda n: n * (1 - n)
    d3 = (yhat - y) * fp(yhat)
    d2 = fp(n2) * (W3.T @ d3)
    d1 = (n1 if f_for_fprime else fp(n1)) * (W2.T @ d2)  # E003-5: f(z(1)) written for f'(z(1))
    # §2.4-2.5: dL/dW(k) = delta(k) n(k-1)ᵀ, dL/db(k) = delta(k); the update W <- W - eta(delta nᵀ + W)
    # read as W <- W - eta dL/dW, i.e. dL/dW = delta nᵀ + W (E003-7).
    decay = 1.0 if decay_in_gradient else 0.0
    hand = {
        "W1": np.outer(d1, x) + decay * W1, "b1": d1,
        "W2": np.outer(d2, n1) + decay * W2, "b2": d2,
        "W3": np.outer(d3, n2) + decay * W3, "b3": d3,
    }
    return yhat, (d1, d2, d3), hand


def tape_loss(tape, half=True, decay=False):
    """The same network on a float64 tape (row layout: z = n Wᵀ + b): its parameters, output and
    loss terms {name: Var} (the loss is their sum)."""
    vs = {k: tape.variable(v) for k, v in params.items()}
    n = tape.constant(x.reshape(1, 2))
    for k in (1, 2, 3):
        n = xgrad.sigmoid(xgrad.linear(n, vs[f"W{k}"], vs[f"b{k}"]))
    terms = {"E": xgrad.mse_loss(n, np.array([[y]]), reduction="half_sum" if half else "sum")}
    if decay:
        terms["weight decay"] = 0.5 * (xgrad.sum(xgrad.square(vs["W1"])) + xgrad.sum(xgrad.square(vs["W2"]))
                                       + xgrad.sum(xgrad.square(vs["W3"])))
    return vs, n, terms


def check(title, loss_text, half=True, decay=False, **slips):
    print(f"\n=== {title} ===")
    print(f"tape loss: {loss_text}")
    yhat, _, hand = student_backprop(**slips)
    tape = xgrad.Tape()
    vs, out, terms = tape_loss(tape, half, decay)
    same = "" if abs(yhat[0] - out.item()) < 1e-15 else "   <- the forward passes differ"
    print(f"hand yhat = {yhat[0]:.15f}   tape yhat = {out.item():.15f}{same}")
    report = xgrad.compare_gradients(terms, vs, hand)
    print(report)
    return report


def main():
    yhat, (d1, d2, d3), _ = student_backprop()
    print("The student's derivation reproduces the document's numbers:")
    print(f"  yhat      = {yhat[0]:.15f}   (document: 0.997520293823002)")
    print(f"  delta(3)  = {d3[0]:.15g}   (document: -0.000006133695153)")
    print(f"  delta(2)  = {d2[0]:.10g}, {d2[1]:.10g}   (document: -0.0000000015233151 [x10 printing slip], -0.000000002317415)")

    check("1. the derivation as written, against the loss as first written", "L = (y - yhat)^2", half=False)
    check("2. against the loss the update descends: the + W of W <- W - eta(delta n^T + W) is the gradient of "
          "an unstated 1/2 sum ||W||^2", "L = 1/2 (y - yhat)^2 + 1/2 sum_k ||W(k)||^2", decay=True)
    check("3. z5 with the stated b5 = 1 (the forward passes now agree; only layer 1 is left)",
          "L = 1/2 (y - yhat)^2 + 1/2 sum_k ||W(k)||^2", decay=True, b5_slip=False)
    check("4. delta(1) with the derivative f'(z(1)) = n(1)(1 - n(1))", "L = 1/2 (y - yhat)^2 + 1/2 sum_k ||W(k)||^2",
          decay=True, b5_slip=False, f_for_fprime=False)
    final = check("5. the backprop of the stated loss: dL/dW = delta n^T, without the + W", "L = 1/2 (y - yhat)^2",
                  b5_slip=False, f_for_fprime=False, decay_in_gradient=False)
    check("6. the same correct derivation against the loss as first written (no 1/2)", "L = (y - yhat)^2", half=False,
          b5_slip=False, f_for_fprime=False, decay_in_gradient=False)
    print("verdict:", "after the four fixes the derivation agrees with the tape" if final.passed else "still wrong")
    return 0 if final.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Check a hand-derived backprop against the tape with xgrad.diagnose: source document 003
(docs/sources.md), the worked 2-3-2-1 sigmoid network, derived by hand in NumPy the way a student
copies it from the document, mistakes included. The tape records the same network with its
quantities named (z1, n1, z2, n2, z3); the derivation hands over each quantity as it computes it
(values, the deltas delta(k) = dL/dz(k), the parameter gradients) and goes on with what it gets
back, so diagnose() can tell the first wrong number from the ones that are wrong only because of it.

The document's slips reproduced here (their numbers in docs/sources.md):
  E003-1  z5 computed with b5 = 2 instead of the stated 1;
  E003-5  delta(1) written with f(z(1)) where the derivative f'(z(1)) is meant;
  E003-7  the update's "+ W" taken as part of dL/dW (it is a weight decay the loss never states);
  loss    first written L = (y - yhat)^2, then differentiated as 1/2 (y - yhat)^2.

Three diagnoses: the derivation as written against the loss as first written; the same derivation
against the loss its update descends (1/2 (y - yhat)^2 + 1/2 sum_k ||W(k)||^2), where only the
b5 slip and f for f' are left; the corrected derivation against the stated loss. Exits 0 when the
corrected derivation agrees with the tape.

  PYTHONPATH=build/python python3 examples/python/check_my_backprop.py [--dot FILE]
"""
import argparse

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


class Plain:
    """A stand-in for diagnose()'s HandDerivation: the derivation's own numbers, nothing checked."""

    def value(self, name, a):
        return a

    def grad(self, name, a):
        return a


def row(v):
    return np.asarray(v, dtype=float).reshape(1, -1)  # the tape holds one sample per row


def student(h, b5_slip=True, f_for_fprime=True, decay_in_gradient=True):
    """The student's derivation, section by section of the document, in column vectors. Each
    quantity goes to h (as the tape's (1, k) row) and the derivation continues with what h returns."""
    # §1: forward. z(k) = W(k) n(k-1) + b(k), n(k) = sigma(z(k)).
    z1 = h.value("z1", row(W1 @ x + b1))[0]
    n1 = h.value("n1", row(sigma(z1)))[0]
    b2_used = np.array([2.0, 2.0]) if b5_slip else b2  # E003-1: the document computes z5 with b5 = 2
    z2 = h.value("z2", row(W2 @ n1 + b2_used))[0]
    n2 = h.value("n2", row(sigma(z2)))[0]
    z3 = h.value("z3", row(W3 @ n2 + b3))[0]
    yhat = sigma(z3)
    # §2.3: delta(3) = (yhat - y) f'(z(3)), then delta(k) = f'(z(k)) ⊙ W(k+1)ᵀ delta(k+1).
    # §2.4-2.5: dL/dW(k) = delta(k) n(k-1)ᵀ, dL/db(k) = delta(k); the update W <- W - eta(delta nᵀ + W)
    # read as W <- W - eta dL/dW, i.e. dL/dW = delta nᵀ + W (E003-7).
    fp = lambda n: n * (1 - n)
    decay = 1.0 if decay_in_gradient else 0.0
    d3 = h.grad("z3", row((yhat - y) * fp(yhat)))[0]
    h.grad("W3", np.outer(d3, n2) + decay * W3)
    h.grad("b3", d3)
    d2 = h.grad("z2", row(fp(n2) * (W3.T @ d3)))[0]
    h.grad("W2", np.outer(d2, n1) + decay * W2)
    h.grad("b2", d2)
    d1 = h.grad("z1", row((n1 if f_for_fprime else fp(n1)) * (W2.T @ d2)))[0]  # E003-5: f(z(1)) for f'(z(1))
    h.grad("W1", np.outer(d1, x) + decay * W1)
    h.grad("b1", d1)
    return yhat, (d1, d2, d3)


def model(half=True, decay=False):
    """The same network on the tape (row layout: z = n Wᵀ + b) with its quantities named; the loss
    (1/2)(y - yhat)^2 (or without the 1/2), plus 1/2 sum_k ||W(k)||^2 when `decay`."""
    def build(tape):
        vs = {k: tape.observe(k, tape.variable(v)) for k, v in params.items()}
        n = tape.constant(x.reshape(1, 2))
        for k in (1, 2, 3):
            z = tape.observe(f"z{k}", xgrad.linear(n, vs[f"W{k}"], vs[f"b{k}"]))
            n = xgrad.sigmoid(z)
            if k < 3:
                tape.observe(f"n{k}", n)
        loss = tape.observe("E", xgrad.mse_loss(n, np.array([[y]]), reduction="half_sum" if half else "sum"))
        if decay:
            loss = loss + tape.observe("decay", 0.5 * (xgrad.sum(xgrad.square(vs["W1"])) + xgrad.sum(
                xgrad.square(vs["W2"])) + xgrad.sum(xgrad.square(vs["W3"]))))
        return loss
    return build


STAGES = {
    "as written": dict(
        title="1. the derivation as written, against the loss as first written: L = (y - yhat)^2",
        model=dict(half=False), slips=dict()),
    "decayed loss": dict(
        title="2. the same derivation against the loss its update descends: "
              "L = 1/2 (y - yhat)^2 + 1/2 sum_k ||W(k)||^2 (the + W of W <- W - eta(delta n^T + W))",
        model=dict(half=True, decay=True), slips=dict()),
    "corrected": dict(
        title="3. the corrected derivation (b5 = 1, f'(z(1)), dL/dW = delta n^T) against L = 1/2 (y - yhat)^2",
        model=dict(half=True), slips=dict(b5_slip=False, f_for_fprime=False, decay_in_gradient=False)),
}


def diagnose_stage(name):
    s = STAGES[name]
    return xgrad.diagnose(model(**s["model"]), lambda h: student(h, **s["slips"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dot", help="write the first diagnosis's tape as Graphviz to this file")
    args = ap.parse_args(argv)

    yhat, (d1, d2, d3) = student(Plain())
    print("The student's derivation reproduces the document's numbers:")
    print(f"  yhat      = {yhat[0]:.15f}   (document: 0.997520293823002)")
    print(f"  delta(3)  = {d3[0]:.15g}   (document: -0.000006133695153)")
    print(f"  delta(2)  = {d2[0]:.10g}, {d2[1]:.10g}   (document: -0.0000000015233151 [x10 printing slip], "
          "-0.000000002317415)")

    reports = {}
    for name, s in STAGES.items():
        print(f"\n=== {s['title']} ===")
        r = reports[name] = diagnose_stage(name)
        print(r)
        if r.mistakes:
            print("independent mistakes:", ", ".join(r.mistakes))
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(reports["as written"].dot)
    ok = reports["corrected"].ok
    print("\nverdict:", "the corrected derivation agrees with the tape" if ok else "still wrong")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""xgrad.diagnose: NumPy hand derivations (each with one deliberate mistake, or none) against the
tape, ported from tests/autodiff/test_diagnose.cpp. Each case asserts the first mistake, what follows
from it and the kind (and wording) of the top explanation; correct derivations assert that nothing is
reported. The hand formulas are NumPy, never xgrad ops."""
import json

import numpy as np
import pytest

import xgrad


def rnd(shape, seed, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def affine(x, w, b=None):  # x·Wᵀ + b
    return x @ w.T + (0 if b is None else b)


def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def one_hot_of(y, c):
    return np.eye(c)[y]


def expect_clean(r):
    assert r.ok, str(r)
    assert r.mistakes == []
    assert all(q.verdict == "ok" for q in r.quantities)


def expect_root(r, label, kind, words, follows=()):
    """The only mistake is `label`, its best explanation is of `kind` and mentions `words`; the
    quantities in `follows` follow from it."""
    assert r.mistakes == [label], str(r)
    q = r[label]
    assert q.verdict in ("MISTAKE", "SHAPE MISMATCH")
    assert q.hypotheses, str(r)
    assert q.hypotheses[0].kind == kind, str(r)
    assert words in q.hypotheses[0].explanation, q.hypotheses[0].explanation
    assert q.hypotheses[0].residual < 1e-9
    for f in follows:
        assert r[f].verdict == "follows", (f, str(r))
        assert r[f].follows_from == label, f


# ---- model A: 2-layer MLP (sigmoid/tanh/ReLU hidden, sigmoid output) under squared error ----------

MLP = {"W1": rnd((5, 3), 1), "b1": rnd((5,), 2), "W2": rnd((2, 5), 3), "b2": rnd((2,), 4)}
X = rnd((4, 3), 5)
T = rnd((4, 2), 6, 0.0, 1.0)
AFTER_Z2 = ["dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"]


def mlp_model(act="sigmoid", reduction="half_sum"):
    f = {"sigmoid": xgrad.sigmoid, "tanh": xgrad.tanh, "relu": xgrad.relu}[act]

    def model(tape):
        v = {k: tape.observe(k, tape.variable(a)) for k, a in MLP.items()}
        z1 = tape.observe("z1", xgrad.linear(tape.constant(X), v["W1"], v["b1"]))
        a1 = tape.observe("a1", f(z1))
        z2 = tape.observe("z2", xgrad.linear(a1, v["W2"], v["b2"]))
        a2 = tape.observe("a2", xgrad.sigmoid(z2))
        return tape.observe("loss", xgrad.mse_loss(a2, T, reduction=reduction))
    return model


def mlp_hand(slip=None, act="sigmoid", reduction="half_sum"):
    c = {"half_sum": 1.0, "sum": 2.0, "mean": 2.0 / 8.0}[reduction]
    f = {"sigmoid": sig, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[act]
    fprime = {"sigmoid": lambda z, a: a * (1 - a), "tanh": lambda z, a: 1 - a * a,
              "relu": lambda z, a: (z > 0).astype(float)}[act]
    W1, b1, W2, b2 = MLP["W1"], MLP["b1"], MLP["W2"], MLP["b2"]

    def hand(h):
        z1 = h.value("z1", affine(X, W1, b1))
        a1v = f(z1)
        if slip == "hidden_slip":
            a1v[2, 3] += 0.1  # an arithmetic slip in one printed number
        a1 = h.value("a1", a1v)
        z2 = h.value("z2", affine(a1, W2, b2))
        a2 = h.value("a2", sig(z2))
        cc = 2 * c if slip in ("half_dropped", "two_mistakes") else c
        d2 = h.grad("z2", cc * (a2 - T) * a2 * (1 - a2))
        dw2 = d2.T @ a1
        if slip == "transpose_w2":
            dw2 = a1.T @ d2
        h.grad("W2", dw2)
        h.grad("b2", d2.sum(axis=0))
        back = d2 @ W2
        d1v = back * fprime(z1, a1)
        if slip == "sigma_as_sigma":
            d1v = back * a1
        d1 = h.grad("z1", d1v)
        h.grad("W1", x_t_mistake(d1) if slip == "two_mistakes" else d1.T @ X)
        h.grad("b1", d1.sum(axis=0))
        if slip == "unknown_name":
            h.grad("W3", d1.T @ X)
    return hand


def x_t_mistake(d1):
    return X.T @ d1  # dW1 transposed


def run_mlp(slip=None, act="sigmoid", reduction="half_sum"):
    return xgrad.diagnose(mlp_model(act, reduction), mlp_hand(slip, act, reduction))


@pytest.mark.parametrize("act,reduction", [("sigmoid", "half_sum"), ("sigmoid", "sum"), ("sigmoid", "mean"),
                                           ("tanh", "half_sum"), ("relu", "sum")])
def test_correct_mlp_reports_nothing(act, reduction):
    r = run_mlp(None, act, reduction)
    expect_clean(r)
    assert [q.label for q in r.quantities] == ["z1", "a1", "z2", "a2", "dL/dz2", "dL/dW2", "dL/db2", "dL/dz1",
                                               "dL/dW1", "dL/db1"]
    assert all(q.max_rel_error < 1e-12 for q in r.quantities)
    assert r.not_given == ["loss"]


def test_dropped_half_is_the_square_factor_and_everything_below_follows():
    r = run_mlp("half_dropped")
    expect_root(r, "dL/dz2", "factor", "square", AFTER_Z2)
    assert r["a2"].verdict == "ok"
    assert r["dL/dz2"].max_rel_error == pytest.approx(1.0, rel=1e-12)  # hand = 2 × tape
    assert "first mistake: dL/dz2" in str(r)


def test_sigma_prime_written_as_sigma():
    expect_root(run_mlp("sigma_as_sigma"), "dL/dz1", "activation derivative", "σ′ written as σ",
                ["dL/dW1", "dL/db1"])


def test_transposed_weight_gradient_is_a_shape_mismatch():
    r = run_mlp("transpose_w2")
    expect_root(r, "dL/dW2", "transpose", "transposed")
    q = r["dL/dW2"]
    assert q.verdict == "SHAPE MISMATCH"
    assert q.hand_shape == (5, 2) and q.tape_shape == (2, 5)
    assert q.max_rel_error == float("inf")
    assert r["dL/dz1"].verdict == "ok"  # W2's gradient feeds nothing downstream


def test_unmatched_name_is_reported():
    r = run_mlp("unknown_name")
    assert r["dL/dW3"].verdict == "UNMATCHED"
    assert not r.ok
    assert r.mistakes == []  # nothing disagrees; the name matches nothing
    assert "no observed quantity or parameter is named 'W3'" in str(r)


def test_one_slip_in_a_hidden_value_and_its_followers():
    r = run_mlp("hidden_slip")
    assert r.mistakes == ["a1"], str(r)
    assert r["a1"].hypotheses == []
    assert "1 of 20 elements differ, only in row 2" in r["a1"].pattern
    for label in ["z2", "a2", "dL/dz2", "dL/dW2", "dL/db2", "dL/dz1", "dL/dW1", "dL/db1"]:
        assert r[label].verdict == "follows", label
        assert r[label].follows_from == "a1", label
    assert r["z1"].verdict == "ok" and r["z1"].follows_from is None


def test_two_independent_mistakes():
    r = run_mlp("two_mistakes")
    assert r.mistakes == ["dL/dz2", "dL/dW1"], str(r)
    assert r["dL/dz2"].hypotheses[0].kind == "factor"
    assert r["dL/dW1"].hypotheses[0].kind == "transpose"
    assert r["dL/dz1"].follows_from == "dL/dz2"
    assert r["dL/db1"].follows_from == "dL/dz2"


# ---- model B: tanh MLP under softmax cross-entropy (mean over B = 4, C = 3) ---------------------

def run_ce(slip=None):
    P = {"W1": rnd((6, 3), 11), "b1": rnd((6,), 12), "W2": rnd((3, 6), 13), "b2": rnd((3,), 14)}
    x = rnd((4, 3), 15)
    y = np.array([0, 2, 1, 2])

    def model(tape):
        v = {k: tape.observe(k, tape.variable(a)) for k, a in P.items()}
        z1 = tape.observe("z1", xgrad.linear(tape.constant(x), v["W1"], v["b1"]))
        a1 = tape.observe("a1", xgrad.tanh(z1))
        z2 = tape.observe("z2", xgrad.linear(a1, v["W2"], v["b2"]))
        return xgrad.cross_entropy(z2, y)

    def hand(h):
        a1 = h.value("a1", np.tanh(affine(x, P["W1"], P["b1"])))
        p = softmax_rows(affine(a1, P["W2"], P["b2"]))
        d2 = {None: (p - one_hot_of(y, 3)) / 4.0, "batch_mean_dropped": p - one_hot_of(y, 3),
              "divided_by_classes": (p - one_hot_of(y, 3)) / 12.0}[slip]
        g2 = h.grad("z2", d2)
        h.grad("W2", g2.T @ a1)
        g1 = h.grad("z1", (g2 @ P["W2"]) * (1 - a1 * a1))
        h.grad("W1", g1.T @ x)
        h.grad("b1", g1.sum(axis=0))

    return xgrad.diagnose(model, hand)


def test_cross_entropy_correct_and_batch_mean_forgotten():
    expect_clean(run_ce())
    expect_root(run_ce("batch_mean_dropped"), "dL/dz2", "factor", "batch size B = 4",
                ["dL/dW2", "dL/dz1", "dL/dW1", "dL/db1"])
    expect_root(run_ce("divided_by_classes"), "dL/dz2", "factor", "number of classes C = 3")


# ---- model C: softmax output under squared error (its Jacobian) ---------------------------------

def run_softmax_mse(elementwise):
    W, b = rnd((4, 3), 21), rnd((4,), 22)
    x, target = rnd((5, 3), 23), rnd((5, 4), 24, 0.0, 1.0)

    def model(tape):
        wv, bv = tape.observe("W", tape.variable(W)), tape.observe("b", tape.variable(b))
        z = tape.observe("z", xgrad.linear(tape.constant(x), wv, bv))
        s = tape.observe("s", xgrad.softmax(z, axis=1))
        return xgrad.mse_loss(s, target, reduction="half_sum")

    def hand(h):
        s = h.value("s", softmax_rows(affine(x, W, b)))
        g = h.grad("s", s - target)
        if elementwise:
            dz = g * s * (1 - s)  # the document's shortcut
        else:
            dz = s * (g - (g * s).sum(axis=1, keepdims=True))
        d = h.grad("z", dz)
        h.grad("W", d.T @ x)
        h.grad("b", d.sum(axis=0))

    return xgrad.diagnose(model, hand)


def test_softmax_elementwise_derivative_where_the_jacobian_belongs():
    expect_clean(run_softmax_mse(False))
    expect_root(run_softmax_mse(True), "dL/dz", "elementwise derivative", "Jacobian", ["dL/dW", "dL/db"])


# ---- model D: conv → ReLU → max pooling → linear, cross-entropy --------------------------------

def run_pool(slip=None):
    K, W = rnd((2, 1, 3, 3), 31), rnd((3, 8), 32)
    x = rnd((2, 1, 6, 6), 33)
    y = np.array([1, 2])

    def model(tape):
        kv, wv = tape.observe("K", tape.variable(K)), tape.observe("W", tape.variable(W))
        z = tape.observe("z", xgrad.conv2d(tape.constant(x), kv))
        a = tape.observe("a", xgrad.relu(z))
        p = tape.observe("p", xgrad.max_pool2d(a, 2))
        return xgrad.cross_entropy(xgrad.linear(xgrad.reshape(p, [2, 8]), wv), y)

    def hand(h):
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (2,1,4,4,3,3)
        z = np.einsum("ncijuv,ocuv->noij", win, K)
        a = np.maximum(z, 0.0)
        blocks = a.reshape(2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 2, 2, 4)  # windows
        p = h.value("p", blocks.max(axis=-1))
        pf = p.reshape(2, 8)
        dlogits = (softmax_rows(pf @ W.T) - one_hot_of(y, 3)) / 2.0
        h.grad("W", dlogits.T @ pf)
        gp = h.grad("p", (dlogits @ W).reshape(2, 2, 2, 2))
        up = np.repeat(np.repeat(gp, 2, axis=2), 2, axis=3)
        if slip == "spread_evenly":
            da = up / 4
        else:
            first = blocks.argmax(axis=-1)  # the window's maximum (the first on ties)
            mask = np.zeros_like(blocks)
            np.put_along_axis(mask, first[..., None], 1.0, axis=-1)
            mask = mask.reshape(2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 4, 4)
            da = up * mask
        ga = h.grad("a", da)
        h.grad("z", ga * (z > 0))

    return xgrad.diagnose(model, hand)


def test_max_pool_gradient_spread_evenly():
    expect_clean(run_pool())
    expect_root(run_pool("spread_evenly"), "dL/da", "pooling routing", "spread evenly", ["dL/dz"])


# ---- model E: a loss with a weight-decay term ---------------------------------------------------

def run_terms(slip=None):
    W, x = rnd((3, 4), 41), rnd((6, 4), 42)
    y = np.array([0, 1, 2, 0, 1, 2])
    lam = 0.3

    def model(tape):
        w = tape.observe("W", tape.variable(W))
        z = tape.observe("z", xgrad.linear(tape.constant(x), w))
        data = tape.observe("data", xgrad.cross_entropy(z, y, reduction="sum"))
        decay = tape.observe("decay", 0.5 * lam * xgrad.sum(xgrad.square(w)))
        return data + decay

    def hand(h):
        g = h.grad("z", softmax_rows(x @ W.T) - one_hot_of(y, 3))
        dw = g.T @ x
        if slip != "decay_missing":
            dw = dw + lam * W
        if slip == "decay_twice":
            dw = dw + lam * W
        h.grad("W", dw)

    return xgrad.diagnose(model, hand)


def test_a_missing_loss_term():
    expect_clean(run_terms())
    expect_root(run_terms("decay_missing"), "dL/dW", "missing term", "'decay'")
    expect_root(run_terms("decay_twice"), "dL/dW", "extra term", "'decay' twice")


# ---- the report object ---------------------------------------------------------------------------

def test_report_dict_json_dot_and_lookup():
    r = run_mlp("half_dropped")
    d = r.to_dict()
    assert d["ok"] is False and d["mistakes"] == ["dL/dz2"]
    assert d == {**d, "not_given": ["loss"]}
    by_label = {q["label"]: q for q in d["quantities"]}
    assert by_label["dL/dz1"]["verdict"] == "follows" and by_label["dL/dz1"]["follows_from"] == "dL/dz2"
    assert by_label["dL/dz2"]["hypotheses"][0]["kind"] == "factor"
    assert by_label["a1"]["follows_from"] is None
    j = json.loads(r.json())  # the C++ JSON agrees with the dict
    assert j["mistakes"] == d["mistakes"]
    assert [q["verdict"] for q in j["quantities"]] == [q["verdict"] for q in d["quantities"]]
    assert "digraph tape" in r.dot and "tomato" in r.dot and "palegreen" in r.dot
    assert r.at("dL/dz2") is not None and "dL/dz2" in r and "dL/dz9" not in r
    assert len(r) == 10
    with pytest.raises(KeyError, match="dL/dz9"):
        r["dL/dz9"]
    assert repr(r) == "<xgrad.DiagnosisReport mistakes: dL/dz2>"
    assert str(r) == r.table()


def test_misuse_and_errors_come_back():
    W = rnd((2, 2), 1)
    with pytest.raises(xgrad.ShapeError):  # the loss must be a scalar
        xgrad.diagnose(lambda t: t.variable(W), lambda h: None)
    with pytest.raises(RuntimeError, match="given twice|twice|already"):  # the same quantity twice
        xgrad.diagnose(lambda t: xgrad.sum(t.observe("W", t.variable(W))),
                       lambda h: (h.grad("W", W), h.grad("W", W)))

    class Boom(Exception):
        pass

    def bad_hand(h):
        raise Boom("from the hand derivation")
    with pytest.raises(Boom):
        xgrad.diagnose(lambda t: xgrad.sum(t.observe("W", t.variable(W))), bad_hand)
    with pytest.raises(TypeError, match="must return the loss"):
        xgrad.diagnose(lambda t: 3.0, lambda h: None)
    other = xgrad.Tape()
    with pytest.raises(ValueError, match="on the tape it is given"):
        xgrad.diagnose(lambda t: xgrad.sum(other.variable(W)), lambda h: None)
    # the borrowed tape and the HandDerivation refuse use after the call
    kept = {}

    def model(t):
        kept["tape"] = t
        return xgrad.sum(t.observe("W", t.variable(W)))

    def hand(h):
        kept["h"] = h
        np.testing.assert_array_equal(h.grad("W", np.ones((2, 2))), np.ones((2, 2)))
    assert xgrad.diagnose(model, hand).ok
    with pytest.raises(RuntimeError):
        kept["tape"].variable(W)
    with pytest.raises(RuntimeError):
        kept["h"].grad("W", W)


def test_observe_on_a_python_tape():
    t = xgrad.Tape()
    v = t.variable(np.ones(3))
    assert t.observe("v", v) is v
    with pytest.raises(RuntimeError, match="already used"):
        t.observe("v", v)
    with pytest.raises(RuntimeError, match="another tape"):
        xgrad.Tape().observe("w", v)


def test_hand_values_are_replaced_by_the_tapes_when_checking_followers():
    """h.value returns the hand array on the first run and the tape's on the rerun after a mistake."""
    seen = []
    W = rnd((3, 2), 7)
    x = rnd((4, 2), 8)

    def model(t):
        z = t.observe("z", xgrad.linear(t.constant(x), t.observe("W", t.variable(W))))
        return xgrad.sum(xgrad.square(z))

    def hand(h):
        z = h.value("z", x @ W.T + 1.0)  # wrong by 1 everywhere
        seen.append(z.copy())
        h.grad("z", 2 * z)

    r = xgrad.diagnose(model, hand)
    assert r.mistakes == ["z"]
    assert r["dL/dz"].verdict == "follows"
    np.testing.assert_allclose(seen[0], x @ W.T + 1.0)
    np.testing.assert_allclose(seen[-1], x @ W.T, rtol=1e-15)


def test_diagnose_from_several_threads():
    """The C++ work runs without the GIL and the callbacks take it back: concurrent calls finish with
    their own results."""
    import threading
    results = {}

    def work(slip):
        for _ in range(5):
            results.setdefault(slip, []).append(run_mlp(slip).mistakes)
    threads = [threading.Thread(target=work, args=(s,)) for s in ("half_dropped", "sigma_as_sigma", None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results["half_dropped"] == [["dL/dz2"]] * 5
    assert results["sigma_as_sigma"] == [["dL/dz1"]] * 5
    assert results[None] == [[]] * 5


def test_model_exception_comes_back():
    def model(t):
        raise ZeroDivisionError("in the model")
    with pytest.raises(ZeroDivisionError, match="in the model"):
        xgrad.diagnose(model, lambda h: None)


def test_printed_numbers_with_their_formulas():
    # a worked example's printed numbers (fixed data): z2 misprinted by a factor 10 in one entry (a
    # slip of its own), a2 worked on from the misprinted z2 (it follows), a gap (NaN) filled from the
    # formula
    W1, b1, W2, b2, x, t = rnd((5, 3), 1), rnd((5,), 2), rnd((2, 5), 3), rnd((2,), 4), rnd((4, 3), 5), rnd((4, 2), 6, 0, 1)

    def model(tape):
        z1 = tape.observe("z1", xgrad.linear(tape.constant(x), tape.constant(W1), tape.constant(b1)))
        a1 = tape.observe("a1", xgrad.sigmoid(z1))
        z2 = tape.observe("z2", xgrad.linear(a1, tape.constant(W2), tape.constant(b2)))
        a2 = tape.observe("a2", xgrad.sigmoid(z2))
        return xgrad.mse_loss(a2, tape.constant(t), reduction="half_sum")

    def hand(h):
        z1f = affine(x, W1, b1)
        printed = z1f.copy()
        printed[0, 0] = np.nan  # not printed
        z1 = h.value("z1", printed, formula=z1f)
        assert z1[0, 0] == z1f[0, 0]
        a1 = h.value("a1", sig(z1), formula=sig(z1))
        z2f = affine(a1, W2, b2)
        z2p = z2f.copy()
        z2p[1, 0] *= 10
        z2 = h.value("z2", z2p, formula=z2f)
        h.value("a2", sig(z2p), formula=sig(z2))  # printed: worked on from the misprinted z2

    r = xgrad.diagnose(model, hand)
    assert r.mistakes == ["z2"], str(r)
    q = r["z2"]
    assert q.hypotheses[0].kind == "printing slip"
    assert "10^1 × what its own formula gives" in q.hypotheses[0].explanation
    assert r["a2"].verdict == "follows" and r["a2"].follows_from == "z2"
    assert r["z1"].verdict == "ok" and r["a1"].verdict == "ok"

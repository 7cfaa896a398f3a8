"""The Python examples run and say what they should."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.environ.get("XGRAD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", script), *args],
                          capture_output=True, text=True, timeout=120)


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", "python", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_my_backprop_diagnoses_document_003():
    ex = load_example("check_my_backprop")
    # as written, against L = (y - yhat)^2: the b5 slip in z5 is the first mistake and the rest of the
    # forward follows from it; the missing factor 2 at delta(3); the three "+ W"; f for f' in delta(1)
    r = ex.diagnose_stage("as written")
    assert r.mistakes == ["z2", "dL/dz3", "dL/dW3", "dL/dW2", "dL/dz1", "dL/dW1"], str(r)
    # only z5 is off, by what b5 = 2 instead of 1 gives
    assert r["z2"].hypotheses[0].kind == "wrong bias", str(r)
    assert "b2[1] = 2 instead of 1" in r["z2"].hypotheses[0].explanation
    assert r["z1"].verdict == "ok" and r["n1"].verdict == "ok"
    for q in ("n2", "z3"):
        assert r[q].follows_from == "z2"
    assert r["dL/dz3"].hypotheses[0].kind == "factor" and "square" in r["dL/dz3"].hypotheses[0].explanation
    for q in ("dL/db3", "dL/dz2", "dL/db2"):
        assert r[q].follows_from == "dL/dz3", q
    assert r["dL/dz1"].hypotheses[0].kind == "activation derivative"
    assert "σ′ written as σ" in r["dL/dz1"].hypotheses[0].explanation
    assert r["dL/db1"].follows_from == "dL/dz1"
    # against the loss the update descends, the "+ W" agrees: only the b5 slip and f for f' are left
    r2 = ex.diagnose_stage("decayed loss")
    assert r2.mistakes == ["z2", "dL/dz1"], str(r2)
    assert r2["dL/dz3"].follows_from == "z2" and r2["dL/db1"].follows_from == "dL/dz1"
    # dL/dW3 = delta(3) n(2)ᵀ + W3 is dominated by W3: the b5 slip moves it by ~3e-9 relative, within
    # diagnose's rtol 1e-8, so it counts as agreeing (as dL/dW2); dL/dW1 (2e-8) follows from delta(1)
    for q in ("dL/dW3", "dL/dW2"):
        assert r2[q].verdict == "ok" and 0 < r2[q].max_rel_error < 1e-8, q
    assert r2["dL/dW1"].follows_from == "dL/dz1"
    assert ex.diagnose_stage("corrected").ok

    out = run("check_my_backprop.py")
    assert out.returncode == 0, out.stderr
    assert "first mistake: z2" in out.stdout
    assert "independent mistakes: z2, dL/dz3, dL/dW3, dL/dW2, dL/dz1, dL/dW1" in out.stdout
    assert "the corrected derivation agrees with the tape" in out.stdout


def test_train_mnist_mlp_short_run():
    data = os.path.join(os.environ.get("XGRAD_DATA", os.path.join(ROOT, "data")), "mnist")
    if not os.path.exists(os.path.join(data, "t10k-labels-idx1-ubyte")) and not os.path.exists(
            os.path.join(data, "t10k-labels-idx1-ubyte.gz")):
        pytest.skip("MNIST not fetched (scripts/fetch-data mnist)")
    r = run("train_mnist_mlp.py", "--epochs", "1", "--train-limit", "3000", "--threads", "1")
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"test accuracy ([0-9.]+)%", r.stdout).group(1))
    assert 80.0 < acc <= 100.0

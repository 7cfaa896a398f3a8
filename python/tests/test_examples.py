"""The Python examples run and say what they should."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.environ.get("XGRAD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", script), *args],
                          capture_output=True, text=True, timeout=120)


def test_check_my_backprop_diagnoses_document_003():
    r = run("check_my_backprop.py")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "the forward passes differ" in out                       # the b5 slip
    assert "b1: no simple relation" in out                          # f for f' in delta(1)
    assert out.count("constant factor ½") == 6                      # the loss without its ½
    assert "after the four fixes the derivation agrees with the tape" in out


def test_train_mnist_mlp_short_run():
    data = os.path.join(os.environ.get("XGRAD_DATA", os.path.join(ROOT, "data")), "mnist")
    if not os.path.exists(os.path.join(data, "t10k-labels-idx1-ubyte")) and not os.path.exists(
            os.path.join(data, "t10k-labels-idx1-ubyte.gz")):
        pytest.skip("MNIST not fetched (scripts/fetch-data mnist)")
    r = run("train_mnist_mlp.py", "--epochs", "1", "--train-limit", "3000", "--threads", "1")
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"test accuracy ([0-9.]+)%", r.stdout).group(1))
    assert 80.0 < acc <= 100.0

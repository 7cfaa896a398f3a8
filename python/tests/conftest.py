import os
import sys

import numpy as np
import pytest

# PYTHONPATH=build/python (CTest sets it); nothing else is imported from the build.
import xgrad  # noqa: F401


def numeric_grad(f, arrays, eps=1e-6):
    """Central differences of the scalar f(*arrays) w.r.t. each array (float64, a copy each)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = f(*arrays)
            flat[i] = old - eps
            fm = f(*arrays)
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def tape_value_and_grads(build, arrays):
    """Value of build(*vars) (reduced by a fixed random weighting to a scalar) and its gradients."""
    tape = xgrad.Tape()
    vs = [tape.variable(np.asarray(a, dtype=np.float64)) for a in arrays]
    y = build(*vs)
    w = weights_for(y.shape)
    loss = xgrad.sum(y * w)
    tape.backward(loss)
    return y.value.copy(), loss.item(), [v.grad.copy() for v in vs]


def weights_for(shape):
    rng = np.random.default_rng(1234)
    return rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def scalar_of(build):
    """f(arrays) -> float: Σ w ⊙ build(vars) on a fresh float64 tape (for finite differences)."""
    def f(*arrays):
        tape = xgrad.Tape()
        vs = [tape.constant(a) for a in arrays]
        y = build(*vs)
        return float(np.sum(y.value * weights_for(y.shape)))
    return f


def expect_value_and_gradient(build, ref, inputs, rtol=1e-12, numeric_fix=None, second_order=False):
    """build(*vars) against the NumPy reference ref(*arrays), its gradients against central finite
    differences (numeric_fix(numeric) may edit those first), then the C++ gradcheck (and gradgradcheck
    of build² with second_order) unless numeric_fix says the true derivative is not what is wanted."""
    value, _, grads = tape_value_and_grads(build, inputs)
    np.testing.assert_allclose(value, ref(*inputs), rtol=rtol, atol=1e-12)
    numeric = numeric_grad(scalar_of(build), inputs)
    if numeric_fix is not None:
        numeric_fix(numeric)
    for g, n in zip(grads, numeric):
        assert g.shape == n.shape
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)
    if numeric_fix is None:
        report = xgrad.gradcheck(build, inputs)
        assert report.passed, str(report)
        if second_order:
            assert xgrad.gradgradcheck(lambda *v: xgrad.square(build(*v)), inputs).passed


@pytest.fixture
def rng():
    return np.random.default_rng(7)

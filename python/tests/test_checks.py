"""gradcheck, gradgradcheck, grad, hvp, hessian, jacobian, jvp and the hand-vs-tape comparison."""
import numpy as np
import pytest

import xgrad


def test_gradcheck_passes_and_reports():
    W = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    b = np.array([0.01, -0.02])
    x = np.array([[0.5, -1.0, 2.0]])
    rep = xgrad.gradcheck(lambda w, bb: xgrad.sum(xgrad.tanh(x @ w + bb)), [W, b], input_names=["W", "b"])
    assert rep.passed and bool(rep)
    d = rep.to_dict()
    assert d["passed"] and [i["name"] for i in d["inputs"]] == ["W", "b"]
    assert d["inputs"][0]["shape"] == [3, 2]
    assert all(i["max_abs_error"] < 1e-8 for i in d["inputs"])
    assert "passed" in str(rep)


def test_gradcheck_catches_a_wrong_gradient():
    # relu at a kink: finite differences straddle 0, the tape uses one side.
    rep = xgrad.gradcheck(lambda a: xgrad.relu(a), [np.array([0.0, 1.0])])
    assert not rep.passed
    assert rep.to_dict()["mismatches"][0]["index"] == [0]
    assert "FAILED" in str(rep) or "failed" in str(rep)


def test_grad_create_graph_second_derivative():
    tape = xgrad.Tape()
    x = tape.variable(np.array([0.5]))
    d1 = xgrad.grad(xgrad.sum(xgrad.tanh(x)), [x], create_graph=True)[0]
    d2 = xgrad.grad(xgrad.sum(d1), x, create_graph=True)[0]
    t = np.tanh(0.5)
    np.testing.assert_allclose(d1.value, [1 - t * t], rtol=1e-14)
    np.testing.assert_allclose(d2.value, [-2 * t * (1 - t * t)], rtol=1e-14)
    y = tape.variable(np.array([1.0]))
    with pytest.raises(RuntimeError):
        xgrad.grad(xgrad.sum(x * 2), [y])
    g = xgrad.grad(xgrad.sum(x * 2), [x, y], allow_unused=True)
    np.testing.assert_array_equal(g[1].value, [0.0])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_hvp_hessian_jacobian_jvp(dtype, tol):
    x = np.array([1.0, 2.0], dtype=dtype)
    f = lambda w: xgrad.sum(xgrad.exp(w) * w)
    H = xgrad.hessian(f, x)
    assert H.dtype == dtype
    np.testing.assert_allclose(H, np.diag((x + 2) * np.exp(x)), rtol=tol)
    v = np.array([1.0, -0.5], dtype=dtype)
    np.testing.assert_allclose(xgrad.hvp(f, x, v), H @ v, rtol=tol)
    A = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]], dtype=dtype)
    g = lambda w: xgrad.tanh(xgrad.matmul(xgrad.reshape(w, [1, 2]), A.T.copy()))
    J = xgrad.jacobian(g, x)
    z = np.tanh(A @ x)
    np.testing.assert_allclose(J.reshape(3, 2), (1 - z ** 2)[:, None] * A, rtol=tol * 10)
    y, jv = xgrad.jvp(g, x, v)
    np.testing.assert_allclose(y.reshape(-1), z, rtol=tol)
    np.testing.assert_allclose(jv.reshape(-1), J.reshape(3, 2) @ v, rtol=tol * 10)


def test_compare_gradients_diagnoses_a_factor_two():
    tape = xgrad.Tape()
    y = tape.variable(np.array([[0.2, 0.7], [0.9, 0.1]]))
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    loss = xgrad.mse_loss(y, t, reduction="half_sum")
    right = y.value - t
    rep = xgrad.compare_gradients(loss, {"y": y}, {"y": right})
    assert rep.passed
    rep = xgrad.compare_gradients(loss, {"y": y}, {"y": 2 * right})
    assert not rep.passed
    d = rep.to_dict()
    assert d["entries"][0]["name"] == "y" and not d["entries"][0]["passed"]
    assert "factor 2" in d["entries"][0]["diagnosis"]
    assert "factor 2" in str(rep)


def test_compare_arrays_and_terms():
    auto = {"w": np.array([1.0, -2.0, 3.0])}
    rep = xgrad.compare_gradients(auto, {"w": np.array([1.0, -2.0, 3.0])})
    assert rep.passed
    rep = xgrad.compare_gradients(auto, {"w": np.array([0.25, -0.5, 0.75])}, batch_size=4)
    assert not rep.passed and rep.to_dict()["entries"][0]["diagnosis"]
    # A hand gradient that leaves out the second term of the loss.
    terms = {"data": {"w": np.array([0.5, -1.0, 1.0])}, "reg": {"w": np.array([0.5, -1.0, 2.0])}}
    rep = xgrad.compare_gradients(auto, {"w": terms["data"]["w"]}, terms=terms)
    assert "reg" in rep.to_dict()["entries"][0]["diagnosis"]
    assert "sign flip" in xgrad.diagnose_gradient(auto["w"], -auto["w"])

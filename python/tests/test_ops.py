"""Every op: value against NumPy, gradient against central finite differences (float64) and against
the C++ gradcheck."""
import numpy as np
import pytest

import xgrad
from conftest import expect_value_and_gradient, tape_value_and_grads

r = np.random.default_rng(11)


def u(*shape, lo=-1.0, hi=1.0):
    return r.uniform(lo, hi, size=shape)


def softmax_np(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def conv2d_np(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def pool_np(x, k, kind):
    n, c, h, w = x.shape
    v = x[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k)
    return v.max(axis=(3, 5)) if kind == "max" else v.mean(axis=(3, 5))


def ce_np(z, y, red):
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    l = lse - z[np.arange(len(y)), y]
    return l.mean() if red == "mean" else l.sum()


def trace_np(y, labels, gamma):
    m = y.mean(0)
    sw = sb = 0.0
    for c in np.unique(labels):
        yc = y[labels == c]
        mc = yc.mean(0)
        sw += ((yc - mc) ** 2).sum()
        sb += len(yc) * ((mc - m) ** 2).sum()
    return 0.5 * gamma * (sw - sb)


labels4 = np.array([0, 2, 1, 2])

# (name, build(vars) -> Var, numpy reference(arrays) -> array, inputs)
CASES = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, [u(3, 4), u(4)]),
    ("sub", lambda a, b: xgrad.sub(a, b), lambda a, b: a - b, [u(3, 4), u(3, 1)]),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, [u(2, 3), u(2, 3)]),
    ("div", lambda a, b: a / b, lambda a, b: a / b, [u(2, 3), u(2, 3, lo=0.5, hi=2)]),
    ("neg", lambda a: -a, lambda a: -a, [u(5)]),
    ("scalars", lambda a: (2.0 - a) * 3 / 1.5 + 0.25 - 1 / (a + 3), lambda a: (2.0 - a) * 3 / 1.5 + 0.25 - 1 / (a + 3), [u(4)]),
    ("pow", lambda a: xgrad.pow(a, 3.0), lambda a: a ** 3, [u(2, 2)]),
    ("pow_op", lambda a: a ** 2, lambda a: a ** 2, [u(3)]),
    ("exp", xgrad.exp, np.exp, [u(3, 2)]),
    ("log", xgrad.log, np.log, [u(3, 2, lo=0.2, hi=2)]),
    ("sqrt", xgrad.sqrt, np.sqrt, [u(3, lo=0.2, hi=2)]),
    ("abs", xgrad.abs, np.abs, [np.array([-1.5, -0.3, 0.4, 2.0])]),
    ("square", xgrad.square, np.square, [u(4)]),
    ("sigmoid", xgrad.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [u(3, 3)]),
    ("tanh", xgrad.tanh, np.tanh, [u(3, 3)]),
    ("relu", xgrad.relu, lambda a: np.maximum(a, 0), [np.array([[-1.0, 0.5], [2.0, -0.25]])]),
    ("softmax", xgrad.softmax, softmax_np, [u(3, 4)]),
    ("softmax_axis0", lambda a: xgrad.softmax(a, axis=0), lambda a: softmax_np(a, 0), [u(3, 4)]),
    ("log_softmax", xgrad.log_softmax, lambda a: np.log(softmax_np(a)), [u(2, 5)]),
    ("sum_all", xgrad.sum, np.sum, [u(3, 4)]),
    ("sum_axis", lambda a: xgrad.sum(a, axis=1), lambda a: a.sum(1), [u(3, 4)]),
    ("sum_axes_keep", lambda a: xgrad.sum(a, axis=[0, 2], keepdims=True), lambda a: a.sum((0, 2), keepdims=True), [u(2, 3, 4)]),
    ("mean", xgrad.mean, np.mean, [u(3, 4)]),
    ("mean_axis", lambda a: xgrad.mean(a, axis=0), lambda a: a.mean(0), [u(3, 4)]),
    ("max", lambda a: xgrad.max(a, axis=1), lambda a: a.max(1), [u(3, 4)]),
    ("matmul", xgrad.matmul, np.matmul, [u(3, 4), u(4, 2)]),
    ("matmul_op", lambda a, b: a @ b, np.matmul, [u(2, 3), u(3, 5)]),
    ("linear", lambda x, w, b: xgrad.linear(x, w, b), lambda x, w, b: x @ w.T + b, [u(4, 3), u(2, 3), u(2)]),
    ("linear_nobias", lambda x, w: xgrad.linear(x, w), lambda x, w: x @ w.T, [u(4, 3), u(2, 3)]),
    ("reshape", lambda a: xgrad.reshape(a, [4, -1]), lambda a: a.reshape(4, -1), [u(2, 6)]),
    ("flatten", xgrad.flatten, lambda a: a.reshape(a.shape[0], -1), [u(2, 3, 2)]),
    ("permute", lambda a: xgrad.permute(a, [2, 0, 1]), lambda a: a.transpose(2, 0, 1), [u(2, 3, 4)]),
    ("transpose", xgrad.transpose, lambda a: a.T, [u(3, 5)]),
    ("slice", lambda a: xgrad.slice(a, 1, 1, 5, 2), lambda a: a[:, 1:5:2], [u(2, 6)]),
    ("concatenate", lambda a, b: xgrad.concatenate([a, b], axis=1), lambda a, b: np.concatenate([a, b], 1), [u(2, 3), u(2, 2)]),
    ("gather", lambda a: xgrad.gather(a, 1, np.array([[0, 2], [1, 1]])),
     lambda a: np.take_along_axis(a, np.array([[0, 2], [1, 1]]), 1), [u(2, 3)]),
    ("pick", lambda a: xgrad.pick(a, labels4), lambda a: a[np.arange(4), labels4], [u(4, 3)]),
    ("sum_to", lambda a: xgrad.sum_to(a, (1, 4)), lambda a: a.sum(0, keepdims=True), [u(3, 4)]),
    ("broadcast_to", lambda a: xgrad.broadcast_to(a, (3, 4)), lambda a: np.broadcast_to(a, (3, 4)), [u(4)]),
    ("conv2d", lambda x, w, b: xgrad.conv2d(x, w, b, stride=1, padding=1),
     lambda x, w, b: conv2d_np(x, w, b, 1, 1), [u(2, 2, 5, 5), u(3, 2, 3, 3), u(3)]),
    ("conv2d_stride_nobias", lambda x, w: xgrad.conv2d(x, w, stride=2),
     lambda x, w: conv2d_np(x, w, None, 2, 0), [u(1, 2, 6, 6), u(2, 2, 2, 2)]),
    ("max_pool2d", lambda x: xgrad.max_pool2d(x, 2), lambda x: pool_np(x, 2, "max"), [u(2, 2, 4, 4)]),
    ("avg_pool2d", lambda x: xgrad.avg_pool2d(x, 2), lambda x: pool_np(x, 2, "avg"), [u(2, 1, 4, 6)]),
    ("cross_entropy", lambda z: xgrad.cross_entropy(z, labels4), lambda z: ce_np(z, labels4, "mean"), [u(4, 3)]),
    ("cross_entropy_sum", lambda z: xgrad.cross_entropy(z, labels4, reduction="sum"), lambda z: ce_np(z, labels4, "sum"), [u(4, 3)]),
    ("nll_loss", lambda z: xgrad.nll_loss(xgrad.log_softmax(z), labels4), lambda z: ce_np(z, labels4, "mean"), [u(4, 3)]),
    ("mse_loss", lambda y, t: xgrad.mse_loss(y, t), lambda y, t: ((y - t) ** 2).mean(), [u(3, 2), u(3, 2)]),
    ("mse_loss_half_sum", lambda y, t: xgrad.mse_loss(y, t, reduction="half_sum"), lambda y, t: 0.5 * ((y - t) ** 2).sum(), [u(3, 2), u(3, 2)]),
    ("sin", xgrad.sin, np.sin, [u(3, 2, lo=-3, hi=3)]),
    ("cos", xgrad.cos, np.cos, [u(3, 2, lo=-3, hi=3)]),
    ("log1p", xgrad.log1p, np.log1p, [u(4, lo=-0.5, hi=2)]),
    ("expm1", xgrad.expm1, np.expm1, [u(4)]),
    ("softplus", xgrad.softplus, lambda a: np.logaddexp(0, a), [u(3, 3, lo=-4, hi=4)]),
    ("silu", xgrad.silu, lambda a: a / (1 + np.exp(-a)), [u(3, 3, lo=-4, hi=4)]),
    ("gelu", xgrad.gelu, lambda a: 0.5 * a * (1 + np.vectorize(__import__("math").erf)(a / np.sqrt(2))), [u(3, 3, lo=-3, hi=3)]),
    ("gelu_tanh", lambda a: xgrad.gelu(a, approximate="tanh"),
     lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3))), [u(3, 3, lo=-3, hi=3)]),
    ("leaky_relu", lambda a: xgrad.leaky_relu(a, negative_slope=0.2), lambda a: np.where(a > 0, a, 0.2 * a),
     [np.array([[-1.0, 0.5], [2.0, -0.25]])]),
    ("elu", lambda a: xgrad.elu(a, alpha=1.5), lambda a: np.where(a > 0, a, 1.5 * np.expm1(a)), [np.array([-1.0, -0.2, 0.3, 2.0])]),
    ("clamp", lambda a: xgrad.clamp(a, -0.5, 0.5) + 0.25 * a, lambda a: np.clip(a, -0.5, 0.5) + 0.25 * a,
     [np.array([-1.0, -0.3, 0.1, 0.7])]),
    ("maximum", xgrad.maximum, np.maximum, [u(3, 4), u(4)]),
    ("minimum", xgrad.minimum, np.minimum, [u(3, 1), u(1, 4)]),
    ("where", lambda a, b: xgrad.where(np.array([True, False, True]), a, b), lambda a, b: np.where([True, False, True], a, b),
     [u(2, 3), u(3)]),
    ("logsumexp", lambda a: xgrad.logsumexp(a, axis=1), lambda a: np.log(np.exp(a).sum(1)), [u(3, 4)]),
    ("var", lambda a: xgrad.var(a, axis=[0, 2]), lambda a: a.var(axis=(0, 2), ddof=1), [u(2, 3, 4)]),
    ("std_keep", lambda a: xgrad.std(a, axis=0, correction=0, keepdims=True), lambda a: a.std(axis=0, ddof=0, keepdims=True),
     [u(5, 2)]),
    ("trace_scatter_loss", lambda y: xgrad.trace_scatter_loss(y, labels4, 0.3), lambda y: trace_np(y, labels4, 0.3), [u(4, 3)]),
]


@pytest.mark.parametrize("name,build,ref,inputs", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient(name, build, ref, inputs):
    expect_value_and_gradient(build, ref, inputs)  # and the C++ gradcheck on the same function agrees


@pytest.mark.parametrize("name,build,ref,inputs", [c for c in CASES if c[0] in
                         ("mul", "tanh", "softmax", "matmul", "conv2d", "max_pool2d", "cross_entropy", "log")],
                         ids=["mul", "tanh", "softmax", "matmul", "conv2d", "max_pool2d", "cross_entropy", "log"])
def test_float32_matches_float64(name, build, ref, inputs):
    v64, _, g64 = tape_value_and_grads(build, inputs)
    tape = xgrad.Tape()
    vs = [tape.variable(np.asarray(a, dtype=np.float32)) for a in inputs]
    y = build(*vs)
    assert y.dtype == np.float32
    tape.backward(xgrad.sum(y * np.asarray(__import__("conftest").weights_for(y.shape), dtype=np.float32)))
    np.testing.assert_allclose(y.value, v64, rtol=1e-4, atol=1e-5)
    for v, g in zip(vs, g64):
        assert v.grad.dtype == np.float32
        np.testing.assert_allclose(v.grad, g, rtol=1e-3, atol=1e-4)


def test_one_hot():
    tape = xgrad.Tape()
    tape.variable(np.zeros(1))
    oh = xgrad.one_hot(tape, np.array([2, 0, 1]), 3)
    np.testing.assert_array_equal(oh.value, np.eye(3)[[2, 0, 1]])
    assert not oh.requires_grad


def test_second_order_ops_gradgradcheck():
    x, w = u(2, 3), u(4, 3)
    rep = xgrad.gradgradcheck(lambda a, b: xgrad.tanh(xgrad.linear(a, b)), [x, w])
    assert rep.passed, str(rep)
    rep = xgrad.gradgradcheck(lambda a: xgrad.log_softmax(a), [x])
    assert rep.passed, str(rep)

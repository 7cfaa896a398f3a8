"""batch_norm, layer_norm and conv2d with dilation/groups, both also channels-last: values against NumPy formulas, gradients
against central finite differences (float64) and the C++ gradcheck/gradgradcheck, the errors."""
import numpy as np
import pytest

import xgrad
from conftest import expect_value_and_gradient

r = np.random.default_rng(31)


def u(*shape):
    return r.uniform(-1.0, 1.0, size=shape)


r_cl = np.random.default_rng(32)  # the channels-last cases' own: the other cases keep their inputs


def u_cl(*shape):
    return r_cl.uniform(-1.0, 1.0, size=shape)


def batch_norm_np(x, w=None, b=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # biased, as in training mode
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mu) / np.sqrt(var + eps)
    return y if w is None else y * w.reshape(shape) + b.reshape(shape)


def layer_norm_np(x, k, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y if w is None else y * w + b


def conv_np(x, w, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + dilation * (kh - 1) + 1:dilation,
                           j * stride:j * stride + dilation * (kw - 1) + 1:dilation]
                y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return y


# (N=3, C=2, 2): batch_norm_relu's check input; its normalized values are at least 0.1 from relu's kink
KINK_FREE_BN = np.array([[[0.5, -0.9], [-1.8, -1.9]], [[1.3, 1.7], [0.4, 0.9]], [[0.2, 1.7], [1.3, -2.0]]])


CASES = [
    ("batch_norm_2d", lambda x, w, b: xgrad.batch_norm(x, w, b), lambda x, w, b: batch_norm_np(x, w, b),
     [u(5, 3), u(3), u(3)]),
    ("batch_norm_4d", lambda x, w, b: xgrad.batch_norm(x, weight=w, bias=b, eps=1e-3),
     lambda x, w, b: batch_norm_np(x, w, b, 1e-3), [u(2, 3, 2, 3), u(3), u(3)]),
    ("batch_norm_plain", lambda x: xgrad.batch_norm(x), lambda x: batch_norm_np(x), [u(4, 2, 3)]),
    # relu's kink: inputs whose normalized values all stay at least 0.1 from 0 (checked below)
    ("batch_norm_relu", lambda x, w, b: xgrad.batch_norm(x, w, b, relu=True),
     lambda x, w, b: np.maximum(batch_norm_np(x, w, b), 0), [KINK_FREE_BN, np.array([1.5, 0.7]), np.array([0.1, -0.2])]),
    ("add_relu", lambda a, b: xgrad.add_relu(a, b), lambda a, b: np.maximum(a + b, 0),
     [np.array([[0.5, -0.75, 1.0], [-0.3, 0.2, -1.2]]), np.array([[0.1, 0.2, -0.3], [0.05, 0.4, 0.25]])]),
    ("layer_norm", lambda x, w, b: xgrad.layer_norm(x, [4], w, b), lambda x, w, b: layer_norm_np(x, 1, w, b),
     [u(3, 4), u(4), u(4)]),
    ("layer_norm_2axes", lambda x: xgrad.layer_norm(x, normalized_shape=[2, 3]), lambda x: layer_norm_np(x, 2),
     [u(2, 2, 3)]),
    # channels-last: the channel the last axis, the same values as the NCHW formula on the permuted data
    ("batch_norm_channels_last", lambda x, w, b: xgrad.batch_norm(x, w, b, channels_last=True),
     lambda x, w, b: batch_norm_np(x.transpose(0, 3, 1, 2), w, b).transpose(0, 2, 3, 1), [u_cl(2, 3, 2, 3), u_cl(3), u_cl(3)]),
    ("batch_norm_relu_channels_last", lambda x, w, b: xgrad.batch_norm(x, w, b, channels_last=True, relu=True),
     lambda x, w, b: np.maximum(batch_norm_np(x.transpose(0, 2, 1), w, b), 0).transpose(0, 2, 1),
     [KINK_FREE_BN.transpose(0, 2, 1).copy(), np.array([1.5, 0.7]), np.array([0.1, -0.2])]),
    ("conv_channels_last", lambda x, w, b: xgrad.conv2d(x, w, b, stride=2, padding=1, channels_last=True),
     lambda x, w, b: (conv_np(x.transpose(0, 3, 1, 2), w, 2, 1, 1, 1) + b.reshape(1, -1, 1, 1)).transpose(0, 2, 3, 1),
     [u_cl(2, 5, 4, 3), u_cl(4, 3, 3, 2), u_cl(4)]),
    ("conv_groups", lambda x, w: xgrad.conv2d(x, w, groups=2, padding=1),
     lambda x, w: conv_np(x, w, 1, 1, 1, 2), [u(1, 4, 4, 4), u(4, 2, 3, 3)]),
    ("conv_dilation", lambda x, w: xgrad.conv2d(x, w, dilation=2, stride=2),
     lambda x, w: conv_np(x, w, 2, 0, 2, 1), [u(2, 1, 7, 7), u(2, 1, 2, 2)]),
]


@pytest.mark.parametrize("name,build,ref,inputs", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient(name, build, ref, inputs):
    expect_value_and_gradient(build, ref, inputs, rtol=1e-10, second_order=True)


def test_fused_relu_inputs_stay_clear_of_the_kink():
    """The finite differences of batch_norm_relu and add_relu above are only meaningful away from 0."""
    pre = batch_norm_np(KINK_FREE_BN, np.array([1.5, 0.7]), np.array([0.1, -0.2]))
    assert np.abs(pre).min() > 0.1
    assert (pre < 0).any() and (pre > 0).any()  # both sides of the mask are exercised


def test_fused_relu_ops_equal_the_two_ops(rng):
    x, w, b = rng.normal(size=(8, 3, 5, 5)), rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    g = rng.normal(size=(8, 3, 5, 5))
    out = {}
    for fused in (True, False):
        tape = xgrad.Tape()
        xv, wv, bv = tape.variable(x), tape.variable(w), tape.variable(b)
        y = xgrad.batch_norm(xv, wv, bv, relu=True) if fused else xgrad.relu(xgrad.batch_norm(xv, wv, bv))
        z = xgrad.add_relu(y, xv) if fused else xgrad.relu(y + xv)
        tape.backward(z, g)
        out[fused] = [z.value, xv.grad, wv.grad, bv.grad]
    for a, c in zip(out[True], out[False]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_add_relu_equals_the_two_ops(rng, channels_last):
    shape = (6, 5, 4, 5)  # 5 channels on axis 1 and on the last axis
    x, s, g = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    w, b = rng.uniform(0.5, 1.5, 5), rng.normal(size=5)
    out = {}
    for fused in (True, False):
        tape = xgrad.Tape()
        xv, sv, wv, bv = tape.variable(x), tape.variable(s), tape.variable(w), tape.variable(b)
        if fused:
            y = xgrad.batch_norm(xv, wv, bv, channels_last=channels_last, relu=True, residual=sv)
        else:
            y = xgrad.add_relu(xgrad.batch_norm(xv, wv, bv, channels_last=channels_last), sv)
        tape.backward(y, g)
        out[fused] = [y.value, xv.grad, sv.grad, wv.grad, bv.grad]
    for a, c in zip(out[True], out[False]):
        np.testing.assert_array_equal(a, c)
    assert 0.2 < (out[True][0] == 0).mean() < 0.7  # the mask matters
    axes = (0, 1, 2) if channels_last else (0, 2, 3)
    shape_c = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
    xh = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out[True][0], np.maximum(xh * w.reshape(shape_c) + b.reshape(shape_c) + s, 0),
                               rtol=1e-12, atol=1e-12)


def test_errors():
    tape = xgrad.Tape()
    x = tape.variable(u(4, 3))
    with pytest.raises(ValueError, match="batch_norm: give both weight and bias"):
        xgrad.batch_norm(x, weight=tape.variable(u(3)))
    with pytest.raises(xgrad.ShapeError, match="batch_norm"):
        xgrad.batch_norm(x, tape.variable(u(2)), tape.variable(u(2)))
    w3, b3 = tape.variable(u(3)), tape.variable(u(3))
    with pytest.raises(xgrad.ShapeError, match=r"batch_norm_add_relu: residual \(3\) must have the input's shape \(4,3\)"):
        xgrad.batch_norm(x, w3, b3, relu=True, residual=tape.variable(u(3)))
    with pytest.raises(ValueError, match="batch_norm_add_relu: a residual is fused only with relu and the affine map"):
        xgrad.batch_norm(x, w3, b3, residual=x)
    with pytest.raises(ValueError, match="batch_norm_add_relu: a residual is fused only with relu and the affine map"):
        xgrad.batch_norm(x, relu=True, residual=x)
    with pytest.raises(xgrad.ShapeError, match="layer_norm"):
        xgrad.layer_norm(x, [5])
    with pytest.raises(xgrad.ShapeError, match=r"conv2d: input \(1,4,5,5\) and weight \(6,2,3,3\) with groups 3"):
        xgrad.conv2d(tape.variable(u(1, 4, 5, 5)), tape.variable(u(6, 2, 3, 3)), groups=3)

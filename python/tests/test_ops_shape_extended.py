"""unsqueeze, squeeze, expand, pad, stack, broadcasting matmul and embedding: values against NumPy,
gradients against central finite differences (float64) and the C++ gradcheck, and the errors."""
import numpy as np
import pytest

import xgrad
from conftest import expect_value_and_gradient

r = np.random.default_rng(23)


def u(*shape):
    return r.uniform(-1.0, 1.0, size=shape)


def embedding_np(w, idx):
    return w[idx]


IDX = np.array([[0, 2, 2], [3, 0, 3]])

# (name, build(vars) -> Var, numpy reference(arrays) -> array, inputs)
CASES = [
    ("unsqueeze", lambda x: xgrad.unsqueeze(x, dim=1), lambda x: np.expand_dims(x, 1), [u(2, 3)]),
    ("unsqueeze_neg", lambda x: xgrad.unsqueeze(x, -1), lambda x: x[..., None], [u(2, 3)]),
    ("squeeze", lambda x: xgrad.squeeze(x, dim=1), lambda x: np.squeeze(x, 1), [u(2, 1, 3)]),
    ("expand", lambda x: xgrad.expand(x, shape=[2, 3, 4]), lambda x: np.broadcast_to(x, (2, 3, 4)), [u(3, 1)]),
    ("expand_keep", lambda x: xgrad.expand(x, [-1, 4]), lambda x: np.broadcast_to(x, (3, 4)), [u(3, 1)]),
    ("pad", lambda x: xgrad.pad(x, pads=[1, 2, 0, 1], value=0.5),
     lambda x: np.pad(x, ((0, 1), (1, 2)), constant_values=0.5), [u(2, 3)]),
    ("pad_crop", lambda x: xgrad.pad(x, [-1, 1]), lambda x: np.pad(x[:, 1:], ((0, 0), (0, 1))), [u(2, 3)]),
    ("stack", lambda a, b: xgrad.stack([a, b, a], axis=1), lambda a, b: np.stack([a, b, a], axis=1), [u(2, 3), u(2, 3)]),
    ("stack_neg", lambda a, b: xgrad.stack([a, b], -1), lambda a, b: np.stack([a, b], -1), [u(2, 1, 3), u(2, 1, 3)]),
    ("matmul_4d", lambda a, b: xgrad.matmul(a, b), lambda a, b: a @ b, [u(2, 2, 3, 4), u(2, 2, 4, 2)]),
    ("matmul_broadcast", lambda a, b: xgrad.matmul(a, b), lambda a, b: a @ b, [u(1, 3, 4), u(2, 4, 2)]),
    ("matmul_broadcast_4d", lambda a, b: xgrad.matmul(a, b), lambda a, b: a @ b, [u(2, 1, 3, 4), u(3, 4, 2)]),
    ("matmul_left_2d", lambda a, b: xgrad.matmul(a, b), lambda a, b: a @ b, [u(3, 4), u(2, 4, 2)]),
    ("embedding", lambda w: xgrad.embedding(w, IDX), lambda w: embedding_np(w, IDX), [u(4, 3)]),
    ("embedding_padding", lambda w: xgrad.embedding(w, indices=IDX, padding_idx=2), lambda w: embedding_np(w, IDX),
     [u(4, 3)]),
]


@pytest.mark.parametrize("name,build,ref,inputs", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient(name, build, ref, inputs):
    def padding_row(numeric):  # finite differences see row 2; padding_idx takes its gradient away
        numeric[0][2] = 0.0
    # (with padding the C++ gradcheck, which sees row 2 too, is not run)
    expect_value_and_gradient(build, ref, inputs, numeric_fix=padding_row if name == "embedding_padding" else None,
                              second_order=True)


def test_embedding_scatter_adds_and_skips_padding():
    w = u(4, 3)
    g = u(2, 3, 3)
    tape = xgrad.Tape()
    vw = tape.variable(w)
    y = xgrad.embedding(vw, IDX, padding_idx=-2)  # row 2
    tape.backward(xgrad.sum(y * g))
    expect = np.zeros_like(w)
    for i in range(2):
        for j in range(3):
            if IDX[i, j] != 2:
                expect[IDX[i, j]] += g[i, j]
    np.testing.assert_allclose(vw.grad, expect, rtol=1e-12, atol=0)
    assert np.all(vw.grad[1] == 0) and np.all(vw.grad[2] == 0)


def test_float32():
    tape = xgrad.Tape()  # float32: the first array's dtype
    x = tape.variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = xgrad.stack([xgrad.pad(x, [1, 0], value=-1.0), xgrad.pad(x, [0, 1])], axis=0)
    assert y.value.dtype == np.float32
    np.testing.assert_array_equal(y.value, np.stack([np.pad(x.value, ((0, 0), (1, 0)), constant_values=-1),
                                                     np.pad(x.value, ((0, 0), (0, 1)))]))


def test_errors_name_the_op():
    tape = xgrad.Tape()
    x = tape.variable(u(2, 3))
    with pytest.raises(xgrad.ShapeError, match=r"squeeze: axis 1 of shape \(2,3\) has size 3, not 1"):
        xgrad.squeeze(x, 1)
    with pytest.raises(xgrad.ShapeError, match=r"expand: \(2,3\) to \(2,4\)"):
        xgrad.expand(x, [2, 4])
    with pytest.raises(ValueError, match="pad: pads"):
        xgrad.pad(x, [1, 2, 3])
    with pytest.raises(xgrad.ShapeError, match=r"matmul: \(2,2,3,4\) x \(3,4,5\): batch dimensions"):
        xgrad.matmul(tape.variable(u(2, 2, 3, 4)), tape.variable(u(3, 4, 5)))
    with pytest.raises(IndexError, match=r"embedding: index 4 .* \(num_embeddings 4\)"):
        xgrad.embedding(tape.variable(u(4, 3)), np.array([1, 4]))

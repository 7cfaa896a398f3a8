"""Tape and Var from Python: NumPy round trips, precisions, views, no_grad, clear, operators."""
import gc

import numpy as np
import pytest

import xgrad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_dtypes(dtype):
    a = np.arange(12, dtype=dtype).reshape(3, 4) / 7
    tape = xgrad.Tape()
    v = tape.variable(a)
    assert tape.dtype == dtype
    assert v.value.dtype == dtype and v.shape == (3, 4) and v.ndim == 2 and v.size == 12
    np.testing.assert_array_equal(v.value, a)
    a[0, 0] = 100  # the tape holds a copy
    assert v.value[0, 0] == 0


def test_non_contiguous_and_transposed_inputs():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    for a in (base.T, base[:, ::2], base[::-1], np.asfortranarray(base)):
        tape = xgrad.Tape()
        v = tape.variable(a)
        np.testing.assert_array_equal(v.value, a)
        tape.backward(xgrad.sum(v * v))
        np.testing.assert_array_equal(v.grad, 2 * a)


def test_zero_size_arrays():
    tape = xgrad.Tape()
    v = tape.variable(np.zeros((0, 3)))
    assert v.shape == (0, 3) and v.value.shape == (0, 3)
    s = xgrad.sum(v * 2.0)
    assert s.item() == 0.0
    tape.backward(s)
    assert v.grad.shape == (0, 3)


def test_value_is_read_only_view_that_keeps_tape_alive():
    tape = xgrad.Tape()
    v = tape.variable(np.array([1.0, 2.0, 3.0]))
    y = xgrad.tanh(v)
    val = y.value
    assert not val.flags.writeable
    with pytest.raises(ValueError):
        val[0] = 5
    assert val.base is not None  # a view, not a copy
    np.testing.assert_array_equal(y.value.__array_interface__["data"][0], val.__array_interface__["data"][0])
    del tape, v, y
    gc.collect()
    np.testing.assert_allclose(val, np.tanh([1.0, 2.0, 3.0]), rtol=1e-15)


def test_scalars_and_arrays_on_either_side():
    tape = xgrad.Tape()
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    v = tape.variable(a)
    c = np.array([0.5, -1.0])
    exprs = [
        (v + c, a + c), (c + v, c + a), (v - c, a - c), (c - v, c - a), (v * c, a * c), (c * v, c * a),
        (v / c, a / c), (c / v, c / a), (2 + v, 2 + a), (v - 1, a - 1), (3 * v, 3 * a), (1 / v, 1 / a),
        (np.float64(2) * v, 2 * a), (np.float32(2) + v, 2 + a), (-v, -a), (v @ a, a @ a), (a @ v, a @ a),
        (v @ np.eye(2), a),
    ]
    for y, ref in exprs:
        assert isinstance(y, xgrad.Var)
        np.testing.assert_allclose(y.value, ref, rtol=1e-15)


def test_backward_gradients_of_operators():
    tape = xgrad.Tape()
    x = tape.variable(np.array([0.5, -1.0, 2.0]))
    w = tape.variable(np.array([1.5, 0.25, -0.75]))
    loss = xgrad.sum(x * w + 3.0 * x / (w + 2.0))
    tape.backward(loss)
    np.testing.assert_allclose(x.grad, w.value + 3.0 / (w.value + 2.0), rtol=1e-14)
    np.testing.assert_allclose(w.grad, x.value - 3.0 * x.value / (w.value + 2.0) ** 2, rtol=1e-14)


def test_mixing_dtypes_is_a_type_error():
    tape = xgrad.Tape()
    v = tape.variable(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        tape.variable(np.ones(3))
    with pytest.raises(TypeError, match="float64"):
        v + np.ones(3)
    other = xgrad.Tape().variable(np.ones(3))
    with pytest.raises(TypeError):
        v * other
    # Integer arrays and Python scalars take the tape's precision.
    assert (v + np.arange(3)).dtype == np.float32
    assert (v * 2).dtype == np.float32


def test_no_grad_and_clear():
    tape = xgrad.Tape()
    x = tape.variable(np.array([1.0, 2.0]))
    with tape.no_grad():
        assert not tape.grad_enabled
        y = x * 2
    assert tape.grad_enabled
    assert not y.requires_grad
    z = x * 3
    assert z.requires_grad
    n = len(tape)
    assert n >= 3
    tape.clear()
    assert len(tape) == 0
    assert not x.valid
    with pytest.raises(RuntimeError, match="clear"):
        x.value


def test_seeded_backward_and_constant():
    tape = xgrad.Tape()
    x = tape.variable(np.array([1.0, 2.0, 3.0]))
    c = tape.constant(np.array([2.0, 2.0, 2.0]))
    y = x * c
    tape.backward(y, np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0, 200.0])
    with pytest.raises(RuntimeError):
        c.grad  # a constant has no gradient


def test_item_float_repr():
    tape = xgrad.Tape()
    s = xgrad.sum(tape.variable(np.array([1.5, 2.5])))
    assert s.item() == 4.0 and float(s) == 4.0
    assert "sum" in repr(s) and "float64" in repr(s)


def test_param_on_tape_accumulates_into_parameter_grad():
    lin = xgrad.nn.Linear(3, 2, dtype=np.float64, seed=1)
    tape = xgrad.Tape()
    w = tape.param(lin.weight)
    x = np.array([[1.0, 2.0, 3.0]])
    tape.backward(xgrad.sum(xgrad.matmul(tape.constant(x), xgrad.transpose(w))))
    np.testing.assert_array_equal(lin.weight.grad, np.repeat(x, 2, axis=0))


def test_threads_train_side_by_side():
    import threading
    rng = np.random.default_rng(5)
    a = rng.normal(size=(64, 64))

    def grad_of(seed):
        tape = xgrad.Tape()
        w = tape.variable(np.full((64, 64), 0.01 * seed))
        tape.backward(xgrad.sum(xgrad.tanh(xgrad.matmul(a, w))))
        return w.grad.copy()

    expected = [grad_of(s) for s in range(4)]
    results = [None] * 4

    def run(s):
        for _ in range(5):
            results[s] = grad_of(s)
    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


def test_views_survive_clear_and_the_next_step():
    tape = xgrad.Tape()
    x = tape.variable(np.array([1.0, 2.0, 3.0]))
    y = xgrad.exp(x)
    tape.backward(xgrad.sum(y))
    val, grad = y.value, x.grad
    tape.clear()
    for n in (3, 1000):  # same shape (the memory would be reused), then a larger one (reallocated)
        z = tape.variable(np.full(n, 7.0))
        tape.backward(xgrad.sum(z * z))
        np.testing.assert_array_equal(z.grad, np.full(n, 14.0))
        tape.clear()
    np.testing.assert_allclose(val, np.exp([1.0, 2.0, 3.0]), rtol=1e-15)
    np.testing.assert_allclose(grad, np.exp([1.0, 2.0, 3.0]), rtol=1e-15)


def test_clear_keeps_the_tape_unless_views_are_alive():
    # Without outstanding views, clear() keeps the C++ tape and its node slots (the training-loop case).
    tape = xgrad.Tape()
    caps = []
    for _ in range(3):
        v = tape.variable(np.ones(4))
        tape.backward(xgrad.sum(v * v))
        assert v.grad.sum() == 8.0  # a temporary view, gone before clear()
        tape.clear()
        caps.append(tape.capacity)
    assert len(tape) == 0 and caps[0] >= 3 and caps == [caps[0]] * 3
    v = tape.variable(np.ones(4))
    kept = v.value
    tape.clear()
    assert tape.capacity == 0  # a fresh C++ tape; the old one stays with the view
    np.testing.assert_array_equal(kept, np.ones(4))


def test_profiler_times_each_op_and_follows_the_tape_across_clear():
    tape = xgrad.Tape()
    kept = []
    with xgrad.Profiler(tape) as prof:  # attached before the tape has a precision
        for _ in range(3):
            w = tape.variable(np.ones((4, 3), np.float32))
            x = tape.constant(np.full((2, 4), 0.5, np.float32))
            tape.backward(xgrad.sum(xgrad.tanh(x @ w)))
            kept.append(w.grad)  # a NumPy view: clear() then continues on a fresh C++ tape
            tape.clear()
        with pytest.raises(RuntimeError, match="already has a profiler"):
            xgrad.Profiler(tape)
    r = prof.report()
    assert r["sweeps"] == 3
    rows = {row["op"]: row for row in r["rows"]}
    assert set(rows) == {"matmul", "tanh", "sum"}
    for row in rows.values():
        assert row["forward_calls"] == 3 and row["backward_calls"] == 3
        assert row["forward_seconds"] > 0 and row["scope"] == ""
    assert 0 < r["op_seconds"] <= r["wall_seconds"]
    assert prof.table().startswith("3 backward sweeps")
    # closed: the report keeps what was measured, nothing more is timed, and a new profiler may attach
    w = tape.variable(np.ones((4, 3), np.float32))
    tape.backward(xgrad.sum(w))
    assert prof.report()["sweeps"] == 3
    again = xgrad.Profiler(tape)
    tape.backward(xgrad.sum(w * 2.0))
    assert again.report()["sweeps"] == 1
    np.testing.assert_allclose(kept[0], kept[2])

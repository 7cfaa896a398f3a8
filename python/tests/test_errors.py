"""C++ errors as Python exceptions."""
import numpy as np
import pytest

import xgrad


def test_shape_error_is_value_error_with_op_and_shapes():
    assert issubclass(xgrad.ShapeError, ValueError)
    tape = xgrad.Tape()
    a = tape.variable(np.ones((64, 784)))
    b = tape.variable(np.ones((100, 10)))
    with pytest.raises(xgrad.ShapeError) as e:
        xgrad.matmul(a, b)
    msg = str(e.value)
    assert "matmul" in msg and "(64,784)" in msg and "(100,10)" in msg
    with pytest.raises(ValueError):
        a + tape.variable(np.ones((3, 3)))


def test_misuse_is_runtime_error():
    tape = xgrad.Tape()
    x = tape.variable(np.ones(3))
    with pytest.raises(RuntimeError):
        tape.backward(x * 2)  # not one element
    other = xgrad.Tape()
    y = other.variable(np.ones(3))
    with pytest.raises(RuntimeError, match="another tape"):
        x + y


def test_bad_arguments():
    tape = xgrad.Tape()
    z = tape.variable(np.ones((2, 3)))
    with pytest.raises(ValueError, match="reduction"):
        xgrad.cross_entropy(z, np.array([0, 1]), reduction="avg")
    with pytest.raises(TypeError, match="integer"):
        xgrad.cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(TypeError):
        tape.variable(np.ones(3, dtype=np.float16))
    with pytest.raises(IndexError):
        xgrad.cross_entropy(z, np.array([0, 7]))


def test_gradcheck_function_errors_propagate():
    def f(x):
        raise KeyError("boom")
    with pytest.raises(KeyError):
        xgrad.gradcheck(f, [np.ones(2)])
    with pytest.raises(TypeError, match="Var"):
        xgrad.gradcheck(lambda x: 3.0, [np.ones(2)])


def test_borrowed_tape_is_unusable_after_the_call():
    kept = {}

    def f(x):
        kept["x"] = x
        return xgrad.sum(x * x)
    xgrad.hvp(f, np.ones(2), np.ones(2))
    with pytest.raises(RuntimeError):
        kept["x"].tape.variable(np.ones(2))
    with pytest.raises(RuntimeError):
        kept["x"].value

"""xgrad: tape-based reverse-mode automatic differentiation (C++17 on xtensor), from Python.

The same engine as the C++ library, with the C++ names: ``Tape``, ``Var``, every op as a function
(``xgrad.matmul``, ``xgrad.conv2d``, ...), ``gradcheck``/``gradgradcheck``, ``grad``, ``hvp``,
``hessian``, ``jacobian``, ``jvp``, the hand-vs-tape comparison ``compare_gradients``, the
quantity-by-quantity diagnosis of a hand derivation ``diagnose`` (with ``tape.observe``), and
``xgrad.nn`` (layers, losses, optimizers, weight files, IDX data). API: docs/python.md.
"""
from . import _xgrad
from ._xgrad import (  # noqa: F401
    AnomalyError, ComparisonReport, DataError, DiagnosisReport, GradcheckReport, HandDerivation, Hypothesis,
    Profiler, QuantityCheck, ShapeError, Tape, Var, WeightFileError,
    max_num_threads, set_num_threads, sgemm_backend,
    abs, add, add_scalar, avg_pool2d, broadcast_to, concatenate, conv2d, cross_entropy, diagnose, diagnose_gradient,
    div, div_scalar, exp, flatten, gather, grad, gradcheck, gradgradcheck, hessian, hvp, jacobian, jvp,
    linear, log, log_softmax, matmul, max, max_pool2d, mean, mse_loss, mul, mul_scalar, neg, nll_loss,
    one_hot, permute, pick, pow, rdiv_scalar, relu, reshape, rsub_scalar, sigmoid, slice, softmax, sqrt,
    square, sub, sum, sum_to, tanh, trace_scatter_loss, transpose,
    clamp, cos, elu, expm1, gelu, leaky_relu, log1p, logsumexp, maximum, minimum, silu, sin, softplus, std, var, where,
    embedding, expand, pad, squeeze, stack, unsqueeze,
    batch_norm, layer_norm, add_relu, activation_avg_pool2d,
)
from . import nn  # noqa: F401,E402


def compare_gradients(*args, rtol=1e-10, atol=1e-14, batch_size=0, terms=None):
    """Hand-derived gradients against the tape's, matched by name, with a diagnosis of each mismatch.

    Two forms, as in C++:

    - ``compare_gradients(loss_terms, wrt, hand)``: ``loss_terms`` a float64 Var (the loss) or a dict
      {term name: Var} whose sum is the loss; ``wrt`` a dict {name: Var} of variables or parameters
      (``tape.param(p)``); ``hand`` a dict {name: NumPy array}. One backward per term, so a hand
      gradient that leaves out a term is recognised.
    - ``compare_gradients(automatic, hand, terms=None)``: both dicts {name: NumPy array}; ``terms``
      optionally {term name: {name: array}}, the automatic gradient of each term of the loss.

    ``batch_size`` lets the diagnosis recognise sum-vs-mean mistakes. Returns a ComparisonReport:
    ``.passed``, ``print(report)`` (a table and one diagnosis line per failure), ``report.to_dict()``.
    """
    if len(args) == 3:
        loss_terms, wrt, hand = args
        if isinstance(loss_terms, Var):
            loss_terms = {"loss": loss_terms}
        return _xgrad._compare_tape(dict(loss_terms), dict(wrt), dict(hand), rtol, atol, batch_size)
    if len(args) == 2:
        automatic, hand = args
        return _xgrad._compare_arrays(dict(automatic), dict(hand), rtol, atol, batch_size, terms)
    raise TypeError("compare_gradients(loss_terms, wrt, hand) or compare_gradients(automatic, hand)")


__all__ = [n for n in dir() if not n.startswith("_")]

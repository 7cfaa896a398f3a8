"""A small CNN's gradients against PyTorch in float64 (skipped without torch, unless CI=true)."""
import os

import numpy as np
import pytest

import xgrad

try:
    import torch
except Exception:  # noqa: BLE001 - any import failure means no reference
    torch = None
    if os.environ.get("CI") == "true":
        raise


@pytest.mark.skipif(torch is None, reason="python3-torch is not installed")
def test_small_cnn_gradients_match_pytorch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2, 6, 6))
    w1, b1 = rng.normal(size=(4, 2, 3, 3)) * 0.3, rng.normal(size=4) * 0.1
    w2, b2 = rng.normal(size=(3, 4, 2, 2)) * 0.3, rng.normal(size=3) * 0.1
    wf, bf = rng.normal(size=(5, 3 * 1 * 1)) * 0.3, rng.normal(size=5) * 0.1
    labels = np.array([4, 0, 2])
    arrays = [x, w1, b1, w2, b2, wf, bf]

    tape = xgrad.Tape()
    vs = [tape.variable(a) for a in arrays]
    X, W1, B1, W2, B2, WF, BF = vs
    h = xgrad.max_pool2d(xgrad.relu(xgrad.conv2d(X, W1, B1, stride=1, padding=1)), 2)   # (3,4,3,3)
    h = xgrad.avg_pool2d(xgrad.tanh(xgrad.conv2d(h, W2, B2, stride=2, padding=1)), 2)   # (3,3,1,1)
    logits = xgrad.linear(xgrad.flatten(h), WF, BF)
    loss = xgrad.cross_entropy(logits, labels) + 0.1 * xgrad.sum(xgrad.square(logits))
    tape.backward(loss)

    F = torch.nn.functional
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tx, tw1, tb1, tw2, tb2, twf, tbf = ts
    th = F.max_pool2d(F.relu(F.conv2d(tx, tw1, tb1, stride=1, padding=1)), 2)
    th = F.avg_pool2d(torch.tanh(F.conv2d(th, tw2, tb2, stride=2, padding=1)), 2)
    tl = F.linear(th.flatten(1), twf, tbf)
    tloss = F.cross_entropy(tl, torch.tensor(labels)) + 0.1 * (tl ** 2).sum()
    tloss.backward()

    assert abs(loss.item() - tloss.item()) <= 1e-12 * max(1.0, abs(tloss.item()))
    for v, t in zip(vs, ts):
        np.testing.assert_allclose(v.grad, t.grad.numpy(), rtol=1e-12, atol=1e-12)

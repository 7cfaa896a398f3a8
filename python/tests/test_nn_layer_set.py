"""The layer set and the sequence layers from Python: outputs, every parameter's gradient, buffers and
state-dict names against PyTorch on the same weights in float64 (skipped without torch, unless
CI=true); LSTM/GRU/MultiheadAttention called as torch.nn's are."""
import os

import numpy as np
import pytest

import xgrad
from xgrad import nn

try:
    import torch
except Exception:  # noqa: BLE001 - any import failure means no reference
    torch = None
    if os.environ.get("CI") == "true":
        raise

needs_torch = pytest.mark.skipif(torch is None, reason="python3-torch is not installed")


def copy_weights(ours, theirs):
    """PyTorch's state dict into ours, by name (the names must be the same set)."""
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in theirs.state_dict().items()}
    assert list(sd) == list(ours.state_dict()), "state-dict names or order differ"
    ours.load_state_dict(sd)


def grads_match(ours, theirs, rtol=1e-10):
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, named[name].grad.numpy(), rtol=rtol, atol=1e-12, err_msg=name)


def tensor(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm_and_gru_match_pytorch(batch_first):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 3) if batch_first else (5, 2, 3))
    h0, c0 = rng.normal(size=(2, 2, 4)), rng.normal(size=(2, 2, 4))
    for kind in ("LSTM", "GRU"):
        ours = getattr(nn, kind)(3, 4, num_layers=2, batch_first=batch_first, dtype=np.float64)
        theirs = getattr(torch.nn, kind)(3, 4, num_layers=2, batch_first=batch_first).double()
        copy_weights(ours, theirs)
        tape = xgrad.Tape()
        xv = tape.variable(x)
        tx = tensor(x)
        if kind == "LSTM":
            out, (h, c) = ours(xv, (tape.variable(h0), tape.variable(c0)))
            tout, (th, tc) = theirs(tx, (torch.tensor(h0), torch.tensor(c0)))
            loss = xgrad.sum(xgrad.square(out)) + xgrad.sum(h) + xgrad.sum(xgrad.square(c))
            tloss = (tout ** 2).sum() + th.sum() + (tc ** 2).sum()
        else:
            out, h = ours(xv, tape.variable(h0))
            tout, th = theirs(tx, torch.tensor(h0))
            loss = xgrad.sum(xgrad.square(out)) + xgrad.sum(h)
            tloss = (tout ** 2).sum() + th.sum()
        np.testing.assert_allclose(out.value, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
        tape.backward(loss)
        tloss.backward()
        np.testing.assert_allclose(xv.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
        grads_match(ours, theirs)


@needs_torch
def test_attention_and_encoder_layer_match_pytorch():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 2, 8))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5).double()
    mha = nn.MultiheadAttention(8, 2, dtype=np.float64)
    tmha = torch.nn.MultiheadAttention(8, 2).double()
    copy_weights(mha, tmha)
    tape = xgrad.Tape()
    xv = tape.variable(x)
    out, weights = mha(xv, xv, xv, attn_mask=mask.numpy())
    tx = tensor(x)
    tout, tweights = tmha(tx, tx, tx, attn_mask=mask)
    np.testing.assert_allclose(out.value, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(weights.value, tweights.detach().numpy(), rtol=1e-12, atol=1e-14)
    tape.backward(xgrad.sum(xgrad.square(out)))
    (tout ** 2).sum().backward()
    np.testing.assert_allclose(xv.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads_match(mha, tmha)

    for norm_first, act in ((True, "gelu"), (False, "relu")):
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation=act, norm_first=norm_first,
                                           dtype=np.float64)
        tlayer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation=act,
                                                  norm_first=norm_first).double()
        copy_weights(layer, tlayer)
        tape = xgrad.Tape()
        xv = tape.variable(x)
        y = layer(xv, is_causal=True)
        tx = tensor(x)
        ty = tlayer(tx, src_mask=mask)
        np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
        tape.backward(xgrad.sum(xgrad.square(y)))
        (ty ** 2).sum().backward()
        np.testing.assert_allclose(xv.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
        grads_match(layer, tlayer)


def outputs_and_gradients_match(net, tnet, x):
    """One forward and backward of sum(y²) on both sides: y, dL/dx and every parameter's gradient
    agree; returns y."""
    tape = xgrad.Tape()
    xv = tape.variable(x)
    y = net(xv)
    tx = tensor(x)
    ty = tnet(tx)
    np.testing.assert_allclose(y.value, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    tape.backward(xgrad.sum(xgrad.square(y)))
    (ty ** 2).sum().backward()
    np.testing.assert_allclose(xv.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads_match(net, tnet)
    return y.value


@needs_torch
def test_fused_batch_norm_relu_matches_pytorch():
    """Sequential.fuse_batch_norm_relu: two [BatchNorm, ReLU] pairs one op each, against PyTorch's
    unfused network (outputs, gradients, running statistics), names unchanged."""
    rng = np.random.default_rng(11)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU(),
                        nn.Conv2d(3, 3, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 25, 4, dtype=np.float64), nn.BatchNorm1d(4, dtype=np.float64),
                        nn.ReLU(), dtype=np.float64)
    T = torch.nn
    tnet = T.Sequential(T.Conv2d(2, 3, 3, padding=1), T.BatchNorm2d(3), T.ReLU(), T.Conv2d(3, 3, 3, padding=1),
                        T.BatchNorm2d(3), T.ReLU(), T.Flatten(), T.Linear(3 * 25, 4), T.BatchNorm1d(4), T.ReLU()).double()
    assert net.fuse_batch_norm_relu() == 3
    copy_weights(net, tnet)  # the same names as before the fusion
    y = outputs_and_gradients_match(net, tnet, rng.normal(size=(4, 2, 5, 5)))
    assert (y == 0).any() and (y > 0).any()
    buffers = dict(net.named_buffers())
    np.testing.assert_allclose(buffers["4.running_var"], tnet[4].running_var.numpy(), rtol=1e-12)


@needs_torch
def test_fused_activation_pool_matches_pytorch():
    """Sequential.fuse_activation_pool: [ReLU, AvgPool2d], [Sigmoid, AvgPool2d(3, 2)] and
    [Tanh, AvgPool2d(2, 1)] one op each, against PyTorch's network (outputs, gradients)."""
    rng = np.random.default_rng(12)
    f64 = dict(dtype=np.float64)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, **f64), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(3, 3, 3, padding=1, **f64), nn.Sigmoid(), nn.AvgPool2d(3, 2),
                        nn.Tanh(), nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(3, 4, **f64), **f64)
    T = torch.nn
    tnet = T.Sequential(T.Conv2d(2, 3, 3, padding=1), T.ReLU(), T.AvgPool2d(2), T.Conv2d(3, 3, 3, padding=1),
                        T.Sigmoid(), T.AvgPool2d(3, 2), T.Tanh(), T.AvgPool2d(2, 1), T.Flatten(), T.Linear(3, 4)).double()
    assert net.fuse_activation_pool() == 3
    copy_weights(net, tnet)
    outputs_and_gradients_match(net, tnet, rng.normal(size=(4, 2, 12, 12)))
    # the op itself, float32, against the two ops
    x = rng.normal(size=(3, 2, 6, 6)).astype(np.float32)
    for act in ("relu", "sigmoid", "tanh"):
        tape = xgrad.Tape()
        xv = tape.variable(x)
        y = xgrad.activation_avg_pool2d(xv, act, 2)
        ty = torch.nn.functional.avg_pool2d(getattr(torch, act)(torch.tensor(x)), 2)
        np.testing.assert_allclose(y.value, ty.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="activation must be"):
        xgrad.activation_avg_pool2d(xv, "gelu", 2)


@needs_torch
def test_norms_embedding_and_activations_match_pytorch():
    rng = np.random.default_rng(7)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2, dtype=np.float64), nn.BatchNorm2d(4, dtype=np.float64),
                        nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6, dtype=np.float64),
                        nn.LayerNorm(6, dtype=np.float64), nn.SiLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.Softplus(),
                        nn.Identity(), dtype=np.float64)
    T = torch.nn
    tnet = T.Sequential(T.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2), T.BatchNorm2d(4), T.GELU(), T.AdaptiveAvgPool2d(1),
                        T.Flatten(), T.Linear(4, 6), T.LayerNorm(6), T.SiLU(), T.LeakyReLU(0.1), T.ELU(), T.Softplus(),
                        T.Identity()).double()
    copy_weights(net, tnet)
    outputs_and_gradients_match(net, tnet, rng.normal(size=(3, 2, 5, 5)))
    # running statistics after one training pass, as buffers and in the state dict
    buffers = dict(net.named_buffers())
    assert list(buffers) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    np.testing.assert_allclose(buffers["1.running_var"], tnet[1].running_var.numpy(), rtol=1e-12)
    np.testing.assert_allclose(net.state_dict()["1.running_mean"], tnet[1].running_mean.numpy(), rtol=1e-12)

    emb = nn.Embedding(7, 3, padding_idx=0, dtype=np.float64)
    temb = torch.nn.Embedding(7, 3, padding_idx=0).double()
    copy_weights(emb, temb)
    idx = np.array([[1, 0, 6], [1, 2, 0]])
    tape = xgrad.Tape()
    e = emb(tape.constant(idx.astype(np.float64)))
    te = temb(torch.tensor(idx))
    np.testing.assert_allclose(e.value, te.detach().numpy(), rtol=0, atol=0)
    tape.backward(xgrad.sum(xgrad.square(e)))
    (te ** 2).sum().backward()
    np.testing.assert_allclose(emb.parameter("weight").grad, temb.weight.grad.numpy(), rtol=1e-14)


def test_sequence_layers_name_their_errors():
    lstm = nn.LSTM(3, 4, dtype=np.float64)
    tape = xgrad.Tape()
    with pytest.raises(xgrad.ShapeError, match=r"LSTM\(3, 4\).*\(L, B, I\).*I = 3"):
        lstm(tape.variable(np.zeros((5, 2, 2))))
    with pytest.raises(xgrad.ShapeError, match=r"h_0 must be \(num_layers, B, H\)"):
        lstm(tape.variable(np.zeros((5, 2, 3))), (tape.variable(np.zeros((1, 3, 4))), tape.variable(np.zeros((1, 2, 4)))))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")

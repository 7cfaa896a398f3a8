"""xgrad.nn from Python: layers, parameters as NumPy views, state dicts, weight files, optimizers."""
import os

import numpy as np
import pytest

import xgrad
from xgrad import nn


def test_linear_forward_backward_and_views():
    lin = nn.Linear(3, 2, seed=5, dtype=np.float64)
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)
    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 2.0]])
    tape = xgrad.Tape()
    y = lin(tape.constant(x))
    np.testing.assert_allclose(y.value, x @ lin.weight.value.T + lin.bias.value, rtol=1e-14)
    tape.backward(xgrad.sum(y))
    np.testing.assert_allclose(lin.weight.grad, np.ones((2, 1)) * x.sum(0), rtol=1e-14)
    np.testing.assert_allclose(lin.bias.grad, [2.0, 2.0])
    lin.weight.value[0, 0] = 42.0  # a writable view of the C++ parameter
    assert lin.state_dict()["weight"][0, 0] == 42.0
    held = lin.weight.grad  # a view of the one gradient buffer
    lin.zero_grad()
    assert not lin.bias.grad.any()
    assert not lin.weight.grad.any() and not held.any()  # reading .grad wrote the zeros into the buffer
    tape.clear()
    tape.backward(xgrad.sum(lin(tape.constant(x))))
    np.testing.assert_allclose(held, np.ones((2, 1)) * x.sum(0), rtol=1e-14)  # backward filled the same buffer
    lin.zero_grad()
    tape.clear()
    tape.backward(xgrad.sum(lin(tape.constant(2 * x))))  # overwritten, not added to the last sweep
    np.testing.assert_allclose(held, np.ones((2, 1)) * 2 * x.sum(0), rtol=1e-14)


def test_sequential_mlp_state_dict_and_safetensors(tmp_path):
    net = nn.Sequential(nn.Linear(4, 5, seed=1), nn.Tanh(), nn.Linear(5, 3, seed=2))
    assert net.dtype == np.float32 and len(net) == 3
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    sd = net.state_dict()
    other = nn.Sequential(nn.Linear(4, 5, seed=9), nn.Tanh(), nn.Linear(5, 3, seed=8))
    assert not np.array_equal(other.state_dict()["0.weight"], sd["0.weight"])
    other.load_state_dict(sd)
    for k in sd:
        np.testing.assert_array_equal(other.state_dict()[k], sd[k])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**sd, "0.bias": np.zeros(7, np.float32)})
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"0.weight": sd["0.weight"]})
    path = str(tmp_path / "w.safetensors")
    net.save_weights(path)
    third = nn.Sequential(nn.Linear(4, 5, seed=3), nn.Tanh(), nn.Linear(5, 3, seed=4))
    nn.load_weights(third, path)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    t1, t2 = xgrad.Tape(), xgrad.Tape()
    np.testing.assert_array_equal(net(t1.constant(x)).value, third(t2.constant(x)).value)
    with pytest.raises(RuntimeError):
        nn.load_weights(nn.Linear(2, 2), path)
    # the layer handles keep the container alive
    first = net[0]
    del net
    assert first.weight.shape == (5, 4)


def test_sgd_and_adam_steps_match_numpy():
    lin = nn.Linear(2, 1, bias=False, dtype=np.float64, seed=3)
    w0 = lin.weight.value.copy()
    opt = nn.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    x = np.array([[1.0, 2.0]])
    v = np.zeros_like(w0)
    w = w0.copy()
    for step in range(3):
        opt.zero_grad()
        tape = xgrad.Tape()
        tape.backward(xgrad.sum(lin(tape.constant(x))))
        g = x.copy()
        v = g if step == 0 else 0.9 * v + g
        w = w - 0.1 * v
        opt.step()
        np.testing.assert_allclose(lin.weight.value, w, rtol=1e-14)
    assert opt.steps == 3 and opt.lr == 0.1
    lin2 = nn.Linear(2, 1, bias=False, dtype=np.float64, seed=3)
    adam = nn.Adam(lin2, lr=0.01, betas=(0.8, 0.99))
    tape = xgrad.Tape()
    tape.backward(xgrad.sum(lin2(tape.constant(x))))
    adam.step()
    m, vv = 0.2 * x, 0.01 * x ** 2
    mh, vh = m / 0.2, vv / 0.01
    np.testing.assert_allclose(lin2.weight.value, w0 - 0.01 * mh / (np.sqrt(vh) + 1e-8), rtol=1e-12)
    with pytest.raises(ValueError):
        nn.SGD(lin.parameters(), lr=-1)


def test_conv_net_and_lambda_and_mlp():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=1, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Lambda("double", lambda v: v * 2.0), nn.Linear(8, 3, seed=2, dtype=np.float64))
    assert net.dtype == np.float64
    x = np.random.default_rng(1).normal(size=(2, 1, 4, 4))
    rep_fn = lambda xv: xgrad.sum(net(xv))
    rep = xgrad.gradcheck(rep_fn, [x])
    assert rep.passed, str(rep)
    mlp = nn.MLP([4, 8, 3], hidden="tanh", seed=3)
    assert [p.shape for p in mlp.parameters()] == [(8, 4), (8,), (3, 8), (3,)]
    assert mlp.num_parameters() == 8 * 4 + 8 + 3 * 8 + 3


def test_schedules_and_scatter_traces():
    assert nn.StepLR(1.0, 2, 0.5).lr(3) == 0.5
    assert abs(nn.CosineLR(1.0, 10).lr(5) - 0.5) < 1e-15
    y = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 3.0]])
    w, b = nn.scatter_traces(y, np.array([0, 0, 1]))
    assert abs(w - 2.0) < 1e-12  # class 0: mean (1,1), deviations (±1, 0)


def test_read_idx_round_trip(tmp_path):
    p = tmp_path / "t.idx"
    data = np.arange(6, dtype=np.uint8).reshape(2, 3)
    with open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + data.tobytes())
    np.testing.assert_array_equal(nn.read_idx(str(p)), data)
    with pytest.raises(RuntimeError):
        nn.read_idx(str(tmp_path / "missing"))


def test_safetensors_file_layout(tmp_path):
    """The file is plain safetensors: 8-byte header length, JSON header, raw little-endian data."""
    import json
    import struct
    net = nn.MLP([3, 4, 2], seed=7, dtype=np.float64)
    path = tmp_path / "m.safetensors"
    nn.save_weights(net, str(path))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    sd = net.state_dict()
    assert sorted(k for k in header if k != "__metadata__") == sorted(sd)
    for k, v in sd.items():
        h = header[k]
        assert h["dtype"] == "F64" and h["shape"] == list(v.shape)
        b, e = h["data_offsets"]
        np.testing.assert_array_equal(np.frombuffer(data[b:e], dtype="<f8").reshape(v.shape), v)


def test_dropout_train_eval_and_adamw():
    d = nn.Dropout(0.5, seed=1)
    tape = xgrad.Tape()
    x = tape.constant(np.ones((50, 40), dtype=np.float32))
    y = d(x).value
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    d.eval()
    assert not d.training
    np.testing.assert_array_equal(d(x).value, 1.0)
    lin = nn.Linear(2, 2, seed=1)
    w0 = lin.weight.value.copy()
    opt = nn.AdamW(lin.parameters(), lr=0.1, weight_decay=0.5)
    opt.step()  # zero gradient: only the decoupled decay moves the weights
    np.testing.assert_allclose(lin.weight.value, w0 * (1 - 0.1 * 0.5), rtol=1e-6)


def test_lambda_errors_come_back_through_the_forward():
    def bad(v):
        raise KeyError("inside lambda")
    net = nn.Sequential(nn.Linear(2, 2), nn.Lambda("bad", bad))
    tape = xgrad.Tape()
    for _ in range(2):  # the module stays usable after an error
        with pytest.raises(KeyError, match="inside lambda"):
            net(tape.constant(np.ones((1, 2), np.float32)))
    with pytest.raises(TypeError, match="xgrad.Var"):
        nn.Sequential(nn.Lambda("three", lambda v: 3))(tape.constant(np.ones(2, np.float32)))

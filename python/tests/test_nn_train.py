"""xgrad.nn additions: the process-wide seed (nn.init.manual_seed), Module.parameter/child/
named_children, the training helpers train_epoch/evaluate (against hand-written loops),
accuracy/confusion_matrix and gradcheck_module."""
import numpy as np
import pytest

import xgrad
from xgrad import nn


def test_layers_without_a_seed_differ_and_manual_seed_repeats_them():
    nn.init.manual_seed(5)
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    assert not np.array_equal(a.weight.value, b.weight.value)
    nn.init.manual_seed(5)
    a2, b2 = nn.Linear(3, 4), nn.Linear(3, 4)
    np.testing.assert_array_equal(a.weight.value, a2.weight.value)  # bit-identical
    np.testing.assert_array_equal(b.weight.value, b2.weight.value)
    np.testing.assert_array_equal(a.bias.value, a2.bias.value)
    # a layer without a seed uses next_seed(); an explicit seed draws nothing from the generator
    nn.init.manual_seed(5)
    s = nn.init.next_seed()
    np.testing.assert_array_equal(nn.Linear(3, 4, seed=s).weight.value, a.weight.value)
    nn.init.manual_seed(5)
    nn.Linear(3, 4, seed=123)
    np.testing.assert_array_equal(nn.Linear(3, 4).weight.value, a.weight.value)
    np.testing.assert_array_equal(nn.Linear(3, 4, seed=123).weight.value, nn.Linear(3, 4, seed=123).weight.value)


def test_unseeded_conv_mlp_and_dropout_follow_the_generator():
    def make():
        return (nn.Conv2d(1, 2, 3).weight.value.copy(), nn.MLP([4, 5, 2]).state_dict(),
                nn.Dropout(0.5))
    nn.init.manual_seed(11)
    c1, m1, d1 = make()
    nn.init.manual_seed(11)
    c2, m2, d2 = make()
    np.testing.assert_array_equal(c1, c2)
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    assert not np.array_equal(m1["0.weight"], nn.MLP([4, 5, 2]).state_dict()["0.weight"])
    x = np.ones((8, 16), dtype=np.float32)
    masks = []
    for d in (d1, d2):
        t = xgrad.Tape()
        masks.append(d(t.constant(x)).numpy())
    np.testing.assert_array_equal(masks[0], masks[1])
    assert set(np.unique(masks[0])) == {0.0, 2.0}  # inverted dropout, p = 0.5


def test_parameter_child_and_named_children():
    net = nn.Sequential(nn.Linear(3, 4, seed=1), nn.ReLU(), nn.Sequential(nn.Linear(4, 2, seed=2)))
    assert [n for n, _ in net.named_children()] == ["0", "1", "2"]
    first = net.child("0")
    assert isinstance(first, nn.Linear)
    np.testing.assert_array_equal(first.weight.value, net.parameter("0.weight").value)
    np.testing.assert_array_equal(net.parameter("2.0.bias").value, dict(net.named_parameters())["2.0.bias"].value)
    inner = net.child("2")
    assert isinstance(inner, nn.Sequential) and len(inner) == 1
    np.testing.assert_array_equal(inner.child("0").parameter("weight").value, net.parameter("2.0.weight").value)
    # the returned parameter is the module's own: writing through it changes the module
    p = net.parameter("0.bias")
    p.value = np.full(4, 0.25, dtype=np.float32)
    np.testing.assert_array_equal(net.child("0").bias.value, np.full(4, 0.25, dtype=np.float32))
    with pytest.raises(KeyError, match="9.weight"):
        net.parameter("9.weight")
    with pytest.raises(KeyError, match="7"):
        net.child("7")
    del net
    assert first.weight.shape == (4, 3)  # a child keeps its container alive


def make_data(n=50, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, d)).astype(np.float32), rng.integers(0, c, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_train_epoch_equals_a_hand_written_loop(dtype):
    images, labels = make_data()
    netA, netB = nn.Linear(6, 3, seed=1, dtype=dtype), nn.Linear(6, 3, seed=1, dtype=dtype)
    optA, optB = nn.SGD(netA, lr=0.1, momentum=0.9), nn.SGD(netB, lr=0.1, momentum=0.9)
    steps_seen = []
    tape = xgrad.Tape()
    stats = nn.train_epoch(tape, optA, (images, labels), lambda t, x: netA(t.constant(x)),
                           lambda out, y: xgrad.cross_entropy(out, y), batch_size=16, seed=3, epoch=2,
                           on_step=lambda *a: steps_seen.append(a))
    # by hand: the same order, batches, steps
    order = nn.epoch_order(50, 3, 2)
    loss_sum, correct = 0.0, 0
    t = xgrad.Tape()
    for b in range(0, 50, 16):
        idx = order[b:b + 16]
        optB.zero_grad()
        out = netB(t.constant(images[idx].astype(dtype)))
        loss = xgrad.cross_entropy(out, labels[idx])
        t.backward(loss)
        optB.step()
        loss_sum += loss.item() * len(idx)
        correct += int(np.sum(np.argmax(out.numpy(), axis=1) == labels[idx]))
        t.clear()
    np.testing.assert_array_equal(netA.weight.value, netB.weight.value)
    np.testing.assert_array_equal(netA.bias.value, netB.bias.value)
    assert stats.loss == pytest.approx(loss_sum / 50, rel=1e-12)
    assert stats.accuracy == correct / 50
    assert [s[:3] for s in steps_seen] == [(1, 4, 16), (2, 4, 32), (3, 4, 48), (4, 4, 50)]
    assert steps_seen[-1][3] == pytest.approx(stats.loss, rel=1e-12)
    assert optA.steps == 4


def test_train_epoch_without_shuffle_and_errors():
    images, labels = make_data(n=20)
    netA, netB = nn.Linear(6, 3, seed=4), nn.Linear(6, 3, seed=4)
    optA, optB = nn.SGD(netA, lr=0.5), nn.SGD(netB, lr=0.5)
    nn.train_epoch(xgrad.Tape(), optA, (images, labels), lambda t, x: netA(t.constant(x)),
                   lambda o, y: xgrad.cross_entropy(o, y), batch_size=8, shuffle=False)
    t = xgrad.Tape()
    for b in range(0, 20, 8):
        optB.zero_grad()
        loss = xgrad.cross_entropy(netB(t.constant(images[b:b + 8])), labels[b:b + 8])
        t.backward(loss)
        optB.step()
        t.clear()
    np.testing.assert_array_equal(netA.weight.value, netB.weight.value)

    class Boom(Exception):
        pass

    def bad_forward(t, x):
        raise Boom()
    with pytest.raises(Boom):
        nn.train_epoch(xgrad.Tape(), optA, (images, labels), bad_forward, lambda o, y: xgrad.cross_entropy(o, y))
    with pytest.raises(ValueError, match="batch_size"):
        nn.train_epoch(xgrad.Tape(), optA, (images, labels), lambda t, x: netA(t.constant(x)),
                       lambda o, y: xgrad.cross_entropy(o, y), batch_size=0)
    with pytest.raises(ValueError, match="one row per label"):
        nn.train_epoch(xgrad.Tape(), optA, (images, labels[:5]), lambda t, x: netA(t.constant(x)),
                       lambda o, y: xgrad.cross_entropy(o, y))
    with pytest.raises(RuntimeError, match="loss is"):  # a non-finite loss names the epoch and step
        nn.train_epoch(xgrad.Tape(), optA, (images, labels), lambda t, x: netA(t.constant(x)) * np.inf,
                       lambda o, y: xgrad.cross_entropy(o, y))


def test_evaluate_against_the_model_over_the_whole_set():
    images, labels = make_data(n=30, seed=2)
    net = nn.Sequential(nn.Linear(6, 8, seed=1), nn.Dropout(0.5, seed=3), nn.Linear(8, 3, seed=2))
    assert net.training
    ev = nn.evaluate(net, xgrad.Tape(), (images, labels), lambda t, x: net(t.constant(x)),
                     lambda o, y: xgrad.cross_entropy(o, y), batch_size=7, keep_outputs=True)
    assert net.training  # the mode is restored
    net.eval()
    t = xgrad.Tape()
    out = net(t.constant(images))
    np.testing.assert_allclose(ev.outputs, out.numpy(), rtol=1e-5, atol=1e-6)  # float32, other batch shapes
    assert ev.outputs.shape == (30, 3)
    assert ev.accuracy == nn.accuracy(out.numpy(), labels)
    assert ev.accuracy == np.mean(np.argmax(out.numpy(), axis=1) == labels)
    assert ev.loss == pytest.approx(xgrad.cross_entropy(out, labels).item(), rel=1e-5)
    ev2 = nn.evaluate(net, xgrad.Tape(), (images, labels), lambda t, x: net(t.constant(x)),
                      lambda o, y: xgrad.cross_entropy(o, y))
    assert ev2.outputs is None and ev2.accuracy == ev.accuracy


def test_accuracy_and_confusion_matrix():
    out = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    y = np.array([0, 2, 1, 2])
    assert nn.accuracy(out, y) == 0.5  # rows 0 and 3; row 2 ties go to the first
    np.testing.assert_array_equal(nn.confusion_matrix(out, y),
                                  [[1, 0, 0], [1, 0, 0], [0, 1, 1]])
    assert nn.confusion_matrix(out, y, num_classes=4).shape == (4, 4)


def test_gradcheck_module():
    net = nn.MLP([3, 4, 2], hidden="tanh", seed=1, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(5, 3))
    r = nn.gradcheck_module(net, x)
    assert r.passed and not r.vacuous
    assert [i["name"] for i in r.to_dict()["inputs"]] == ["0.weight", "0.bias", "2.weight", "2.bias", "input"]
    r2 = nn.gradcheck_module(net, x, loss=lambda y: xgrad.sum(xgrad.square(y)))
    assert r2.passed
    with pytest.raises(TypeError, match="float64"):
        nn.gradcheck_module(nn.Linear(3, 2, seed=1), x)
    lam = nn.Sequential(nn.Linear(3, 2, seed=1, dtype=np.float64), nn.Lambda("sq", lambda v: v * v))
    with pytest.raises(RuntimeError, match="Lambda"):
        nn.gradcheck_module(lam, x)


def test_train_epoch_tape_precision_must_match_the_optimizer():
    images, labels = make_data(n=8)
    net = nn.Linear(6, 3, seed=1)  # float32
    tape = xgrad.Tape()
    tape.variable(np.zeros(2))  # a float64 tape
    with pytest.raises(TypeError, match="float64"):
        nn.train_epoch(tape, nn.SGD(net, lr=0.1), (images, labels), lambda t, x: net(t.constant(x)),
                       lambda o, y: xgrad.cross_entropy(o, y))

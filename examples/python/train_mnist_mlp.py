#!/usr/bin/env python3
"""Train the MNIST MLP from Python: the C++ example mnist_mlp (examples/mnist_mlp.cpp) step for step.

784-256-128-10 ReLU MLP (nn.MLP, seed 1), softmax cross-entropy, Adam lr 1e-3 with a cosine
schedule over the epochs, batch 64, 10 epochs; the last 10,000 training images are the validation
set; batches in the order of nn.epoch_order(n, seed, epoch), as the C++ training loop takes them.
Data: scripts/fetch-data mnist (the IDX files under data/mnist, or $XGRAD_DATA/mnist).

  PYTHONPATH=build/python python3 examples/python/train_mnist_mlp.py [--epochs 10] [--threads 2]
"""
import argparse
import os
import time

import numpy as np

import xgrad
from xgrad import nn


def evaluate(net, tape, images, labels, batch=1000):
    correct, loss = 0, 0.0
    with tape.no_grad():
        for b in range(0, len(labels), batch):
            y = labels[b:b + batch]
            out = net(tape.constant(images[b:b + batch]))
            loss += xgrad.cross_entropy(out, y, reduction="sum").item()
            correct += int((out.value.argmax(axis=1) == y).sum())
            tape.clear()
    return loss / len(labels), correct / len(labels)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="0: xgrad's default")
    ap.add_argument("--val-size", type=int, default=10000)
    ap.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    ap.add_argument("--data-dir", default=None, help="default: $XGRAD_DATA/mnist or <repo>/data/mnist")
    a = ap.parse_args()
    if a.threads:
        xgrad.set_num_threads(a.threads)
    data_dir = a.data_dir or os.path.join(os.environ.get("XGRAD_DATA", os.path.join(here, "..", "..", "data")), "mnist")
    hint = "run `scripts/fetch-data mnist` to fetch and verify it"
    images, labels = nn.load_idx_dataset(data_dir, "train", hint)
    test_x, test_y = nn.load_idx_dataset(data_dir, "t10k", hint)
    n = len(labels) - a.val_size
    val_x, val_y = images[n:], labels[n:]
    if a.train_limit:
        n = min(n, a.train_limit)
    train_x, train_y = images[:n], labels[:n]

    net = nn.MLP([784, 256, 128, 10], hidden="relu", output="identity", seed=a.seed)
    opt = nn.Adam(net.parameters(), lr=a.lr)
    schedule = nn.CosineLR(a.lr, a.epochs)
    tape = xgrad.Tape()
    print(f"mnist_mlp from Python: {n} train / {len(val_y)} validation / {len(test_y)} test images, "
          f"{net.num_parameters()} parameters, batch {a.batch_size}, adam lr {a.lr}, cosine")
    t0 = time.perf_counter()
    train_time = 0.0
    test_acc = 0.0
    for epoch in range(a.epochs):
        opt.lr = schedule.lr(epoch)
        order = nn.epoch_order(n, a.seed, epoch)
        te = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for b in range(0, n, a.batch_size):
            idx = order[b:b + a.batch_size]
            x, y = train_x[idx], train_y[idx]
            opt.zero_grad()
            out = net(tape.constant(x))
            loss = xgrad.cross_entropy(out, y)
            tape.backward(loss)
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.value.argmax(axis=1) == y).sum())
            tape.clear()
        train_time += time.perf_counter() - te
        val_loss, val_acc = evaluate(net, tape, val_x, val_y)
        _, test_acc = evaluate(net, tape, test_x, test_y)
        print(f"epoch {epoch + 1:2d}  lr {opt.lr:.3g}  train loss {loss_sum / n:.4f} acc {100 * correct / n:.2f}%  "
              f"val loss {val_loss:.4f} acc {100 * val_acc:.2f}%  test acc {100 * test_acc:.2f}%", flush=True)
    print(f"test accuracy {100 * test_acc:.2f}% after {a.epochs} epochs; training time {train_time:.1f}s "
          f"(total {time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()

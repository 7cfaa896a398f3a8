#!/usr/bin/python3
"""PyTorch reference for time to accuracy (docs/benchmarks.md, "Time to accuracy"): the recipe of
examples/mnist_mlp.cpp and examples/mnist_lenet.cpp in PyTorch, run by scripts/time-to-accuracy.

Recipe (both sides): images / 255 (no mean/std), the first 50,000 training images for training and
the last 10,000 for validation; batch 64 in a fresh random order every epoch (last batch of 16
kept); mean softmax cross-entropy; Adam (betas 0.9, 0.999, eps 1e-8, no decay), lr 1e-3, cosine to
0 over --epochs, set at the start of each epoch; after every epoch the validation and the test set
are evaluated in batches of 1000 without gradients. PyTorch's default initialization.

Timed per epoch, as the example's `seconds` column: the epoch's training steps plus both
evaluations; process start, `import torch` and data loading are outside. One JSON line per epoch
on stdout.

  /usr/bin/python3 benchmarks/python/tta_torch.py --model lenet --seed 1 --stop-at-accuracy 99
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def read_idx(path):
    """An IDX file (or path.gz) as a numpy uint8 array."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != math.prod(dims):
        raise SystemExit(f"{path}: {data.size} bytes of data, dimensions {dims} need {math.prod(dims)}")
    return data.reshape(dims)


def load(data_dir, prefix):
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte")).astype(np.float32) / np.float32(255)
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x.reshape(len(x), 1, 28, 28).copy()), torch.from_numpy(y.copy())


def mlp():
    # nn::MLP({784, 256, 128, 10}, relu)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def lenet():
    # reference::lenet(seed, max_pool = true)
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


@torch.no_grad()
def evaluate(model, x, y):
    loss, correct = 0.0, 0
    for b in range(0, len(x), 1000):
        out = model(x[b:b + 1000])
        loss += F.cross_entropy(out, y[b:b + 1000], reduction="sum").item()
        correct += (out.argmax(1) == y[b:b + 1000]).sum().item()
    return loss / len(x), correct


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["mlp", "lenet"], required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10, help="the schedule's length and the cap")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop-at-accuracy", type=float, default=0,
                    help="stop after the first epoch whose test accuracy reaches this percentage")
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("XGRAD_DATA", "data"), "mnist"))
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    x, y = load(a.data_dir, "train")
    x_test, y_test = load(a.data_dir, "t10k")
    n = len(x) - 10000  # the last 10,000 training images validate, as in the examples
    x_train, y_train, x_val, y_val = x[:n], y[:n], x[n:], y[n:]

    torch.manual_seed(a.seed)
    model = mlp() if a.model == "mlp" else lenet()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    order_rng = torch.Generator().manual_seed(a.seed)
    print(json.dumps({"model": a.model, "seed": a.seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "parameters": sum(p.numel() for p in model.parameters())}), flush=True)

    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        lr = 0.5 * a.lr * (1 + math.cos(math.pi * epoch / a.epochs))  # CosineLR(lr, epochs).lr(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        order = torch.randperm(n, generator=order_rng)
        loss_sum, correct = 0.0, 0
        for b in range(0, n, a.batch_size):
            idx = order[b:b + a.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            # the example also takes each step's loss and correct count
            loss_sum += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        model.eval()
        val_loss, val_correct = evaluate(model, x_val, y_val)
        _, test_correct = evaluate(model, x_test, y_test)
        seconds = time.perf_counter() - t0
        print(json.dumps({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n,
                          "val_loss": val_loss, "val_acc": val_correct / len(x_val), "test_correct": test_correct,
                          "test_acc": test_correct / len(x_test), "seconds": seconds}), flush=True)
        if a.stop_at_accuracy > 0 and 100 * test_correct / len(x_test) >= a.stop_at_accuracy - 1e-9:
            break


if __name__ == "__main__":
    main()

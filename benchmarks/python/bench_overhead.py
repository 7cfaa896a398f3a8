#!/usr/bin/env python3
"""Python-side speed of xgrad (docs/python.md, "Speed"):

1. per-op overhead: the C++ tape_1 workload (benchmarks/bench_xgrad.cpp) driven from Python, a chain
   of 10,000 ops on a one-element float32 Var (x·1.0001, x + 0.0001, tanh x, x·w in turn), then sum
   and backward; against the same chain in PyTorch eager from Python (requires_grad tensors of
   shape (1,)). Reported in ns per op (forward + backward, divided by 10,000).
2. the MLP training step (784-256-128-10 ReLU, batch 64, float32, cross-entropy, SGD), the C++
   mlp_b64 workload, from Python; against `bench_xgrad tape mlp_b64 <threads>` when --bench-xgrad
   names that binary.

Timing as docs/benchmarks.md: warm-up (>= 10 reps and >= 0.5 s), then >= 30 reps and >= 3 s, median.
--rounds R repeats everything R times and reports the median of the rounds' medians.

  PYTHONPATH=build/python python3 benchmarks/python/bench_overhead.py --rounds 3 \\
      --bench-xgrad build/benchmarks/bench_xgrad --threads 1
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import xgrad
from xgrad import nn

N = 10_000


def timed(rep, warm_n=10, warm_s=0.5, min_n=30, min_s=3.0):
    t0 = time.perf_counter()
    i = 0
    while i < warm_n or time.perf_counter() - t0 < warm_s:
        rep()
        i += 1
    times = []
    t0 = time.perf_counter()
    while len(times) < min_n or time.perf_counter() - t0 < min_s:
        a = time.perf_counter()
        rep()
        times.append(time.perf_counter() - a)
    return statistics.median(times)


def xgrad_chain():
    tape = xgrad.Tape()
    x0 = np.full((1,), 0.5, dtype=np.float32)
    w0 = np.ones((1,), dtype=np.float32)
    tanh, ssum = xgrad.tanh, xgrad.sum

    def rep():
        x = tape.variable(x0)
        w = tape.variable(w0)
        for i in range(N // 4):
            x = x * 1.0001
            x = x + 0.0001
            x = tanh(x)
            x = x * w
        tape.backward(ssum(x))
        tape.clear()
    return rep


def torch_chain(torch):
    def rep():
        x = torch.full((1,), 0.5, requires_grad=True)
        w = torch.ones((1,), requires_grad=True)
        y = x
        for i in range(N // 4):
            y = y * 1.0001
            y = y + 0.0001
            y = torch.tanh(y)
            y = y * w
        y.sum().backward()
    return rep


def xgrad_mlp_step():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(64, 784)).astype(np.float32)
    y = np.arange(64) % 10
    net = nn.MLP([784, 256, 128, 10], hidden="relu", output="identity", seed=3)
    opt = nn.SGD(net.parameters(), lr=0.01)
    tape = xgrad.Tape()

    def rep():
        opt.zero_grad()
        tape.backward(xgrad.cross_entropy(net(tape.constant(x)), y))
        opt.step()
        tape.clear()
    return rep


def cxx(binary, impl, workload, threads):
    out = subprocess.run([binary, impl, workload, str(threads)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench-xgrad", help="path of the C++ bench_xgrad binary (for the C++ figures)")
    ap.add_argument("--quick", action="store_true", help="short timing (a smoke test, not a measurement)")
    a = ap.parse_args()
    if a.quick:
        global timed
        full = timed
        timed = lambda rep: full(rep, 2, 0.01, 3, 0.05)  # noqa: E731
    xgrad.set_num_threads(a.threads)
    try:
        import torch
        torch.set_num_threads(a.threads)
    except Exception:  # noqa: BLE001
        torch = None
    rows = {k: [] for k in ("xgrad_py_ns_per_op", "torch_py_ns_per_op", "cxx_ns_per_op", "xgrad_py_mlp_ms", "cxx_mlp_ms")}
    for r in range(a.rounds):
        rows["xgrad_py_ns_per_op"].append(timed(xgrad_chain()) / N * 1e9)
        if torch is not None:
            rows["torch_py_ns_per_op"].append(timed(torch_chain(torch)) / N * 1e9)
        rows["xgrad_py_mlp_ms"].append(timed(xgrad_mlp_step()) * 1e3)
        if a.bench_xgrad:
            rows["cxx_ns_per_op"].append(cxx(a.bench_xgrad, "tape", "tape_1", a.threads))
            rows["cxx_mlp_ms"].append(cxx(a.bench_xgrad, "tape", "mlp_b64", a.threads))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.4g}" for k, v in rows.items() if v), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"\nmedians of {a.rounds} rounds ({a.threads} thread(s)):")
    for k, v in med.items():
        print(f"  {k:22s} {v:10.4g}")
    if "torch_py_ns_per_op" in med:
        print(f"  per-op overhead, xgrad/PyTorch from Python: {med['xgrad_py_ns_per_op'] / med['torch_py_ns_per_op']:.3f}x (target <= 0.5)")
    if "cxx_mlp_ms" in med:
        print(f"  MLP step, Python/C++: {med['xgrad_py_mlp_ms'] / med['cxx_mlp_ms']:.3f}x (target <= 1.2)")
        print(f"  per-op, Python/C++: {med['xgrad_py_ns_per_op'] / med['cxx_ns_per_op']:.1f}x")
    json.dump(med, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()

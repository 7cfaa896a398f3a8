#!/usr/bin/env python3
"""PyTorch interop test for xgrad (CTest: test_torch_interop).

usage: torch_interop.py INTEROP_BINARY WORK_DIR

Both directions, for an MLP (784-32-10, ReLU), a LeNet (Conv2d, ReLU, MaxPool2d, Flatten, Linear) and
a model with BatchNorm2d, BatchNorm1d and LayerNorm (training mode):
  xgrad -> torch: `INTEROP_BINARY export WORK_DIR` writes xgrad's weights (save_weights) and one batch
      with xgrad's output, loss and parameter gradients; here they are loaded into the equivalent
      torch.nn.Sequential with load_state_dict(strict=True) and compared; the weights are those before
      the pass, and the buffers after it (running statistics) are compared too.
  torch -> xgrad: torch initializes the models (fixed seed), writes its state_dict and batch, output,
      loss and gradients; `INTEROP_BINARY import WORK_DIR` loads them into xgrad and compares.
Then the same both ways for sequence models: LSTM (2 layers, initial states given), GRU (2 layers,
batch_first), MultiheadAttention (2 heads, batch_first, causal mask, head-averaged weights) and a
TransformerEncoderLayer (norm_first, gelu, dropout 0, batch_first, causal mask): outputs (with h_n,
c_n, the attention weights), the loss sum_k sum(R_k * output_k) for fixed R_k written to the io file,
every parameter's gradient and the inputs' gradients.
Tolerance: 1e-5 (float32) of max |reference| per tensor.

Needs only the standard library, numpy and torch; safetensors is parsed and written here (8 bytes of
little-endian header length, a JSON header, raw data). Without torch the test is skipped (exit 77),
except under CI=true, where a missing torch fails.
"""
import json
import os
import struct
import subprocess
import sys

SKIP = 77
TOLERANCE = 1e-5
BATCH = 8


def read_safetensors(path):
    """{name: numpy array}, metadata. Parses the format itself."""
    import numpy as np

    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(dtypes[e["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(e["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: float32 numpy array} as safetensors (header padded with spaces to 8 bytes)."""
    import numpy as np

    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def models():
    import torch.nn as nn

    return {
        "mlp": (lambda: nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), (BATCH, 784)),
        "lenet": (
            lambda: nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
            (BATCH, 1, 28, 28),
        ),
        "norm": (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                nn.Linear(676, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16), nn.LayerNorm(16),
                nn.Linear(16, 10)),
            (BATCH, 1, 28, 28),
        ),
    }


def forward_backward(model, x, labels):
    import torch
    import torch.nn.functional as F

    model.zero_grad()
    out = model(x)
    loss = F.cross_entropy(out, labels)
    loss.backward()
    grads = {name: p.grad.detach().numpy().copy() for name, p in model.named_parameters()}
    return out.detach().numpy(), loss.detach().numpy().reshape(()), grads


def compare(what, got, want):
    import numpy as np

    if got.shape != want.shape:
        print(f"  {what:<16} shape {got.shape} vs {want.shape}  MISMATCH")
        return False
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
    rel = err / scale if scale > 0 else err
    ok = rel <= TOLERANCE
    print(f"  {what:<16} {str(tuple(want.shape)):<16} max |torch - xgrad| / max |xgrad| = {rel:.3g}  {'ok' if ok else 'MISMATCH'}")
    return ok


def xgrad_to_torch(binary, work):
    import torch

    subprocess.run([binary, "export", work], check=True)
    ok = True
    for name, (make, _) in models().items():
        weights, meta = read_safetensors(os.path.join(work, f"{name}_weights.safetensors"))
        io, _ = read_safetensors(os.path.join(work, f"{name}_io.safetensors"))
        model = make()
        # strict: every name present, none extra; a shape that differs (an (in, out) Linear weight) raises
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        print(f"{name}: xgrad's weights in torch (metadata {meta}, {len(weights)} tensors)")
        out, loss, grads = forward_backward(model, torch.from_numpy(io["input"]),
                                            torch.from_numpy(io["labels"].astype("int64")))
        ok = compare("output", out, io["output"]) and ok
        ok = compare("loss", loss, io["loss"]) and ok
        ok = compare_named("grad", grads, io) and ok
        buffers = {k: b.detach().numpy().astype("float32") for k, b in model.named_buffers()}
        ok = compare_named("buffer", buffers, io) and ok
    return seq_xgrad_to_torch(work) and ok


def compare_named(prefix, theirs, io):
    """torch's tensors by name against xgrad's entries '<prefix>.<name>' of io: the same names, each close."""
    written = {k[len(prefix) + 1:] for k in io if k.startswith(prefix + ".")}
    ok = written == set(theirs)
    if not ok:
        print(f"  {prefix}: xgrad wrote {sorted(written)}, torch has {sorted(theirs)}  MISMATCH")
    for name, t in theirs.items():
        if name in written:
            ok = compare(f"{prefix}.{name}", t, io[f"{prefix}.{name}"]) and ok
    return ok


def torch_to_xgrad(binary, work):
    import torch

    torch.manual_seed(1234)
    for name, (make, shape) in models().items():
        model = make()
        x = torch.rand(shape)
        labels = torch.arange(BATCH) * 7 % 10
        # the state before the pass (which moves the running statistics); num_batches_tracked as F32
        state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        out, loss, grads = forward_backward(model, x, labels)
        write_safetensors(os.path.join(work, f"{name}_torch_weights.safetensors"), state, {"format": "pt"})
        io = {"input": x.numpy(), "labels": labels.numpy().astype("float32"), "output": out, "loss": loss}
        io.update({"grad." + k: g for k, g in grads.items()})
        io.update({"buffer." + k: b.detach().numpy().copy() for k, b in model.named_buffers()})
        write_safetensors(os.path.join(work, f"{name}_torch_io.safetensors"), io)
    seq_torch_to_xgrad(work)
    return subprocess.run([binary, "import", work]).returncode == 0


# ---- sequence models ----
STEPS, SEQ_BATCH, IN, HIDDEN, EMBED, FEEDFORWARD = 5, 3, 4, 6, 8, 16


def causal_mask(n):
    import torch

    return torch.triu(torch.full((n, n), float("-inf")), diagonal=1)


def seq_models():
    """{name: (make, {input name: shape} in order, forward(model, inputs) -> {output name: tensor} in order)}"""
    import torch.nn as nn

    def lstm_forward(m, x):
        out, (h_n, c_n) = m(x["x"], (x["h0"], x["c0"]))
        return {"output": out, "h_n": h_n, "c_n": c_n}

    def gru_forward(m, x):
        out, h_n = m(x["x"], x["h0"])
        return {"output": out, "h_n": h_n}

    def mha_forward(m, x):
        out, weights = m(x["x"], x["x"], x["x"], attn_mask=causal_mask(STEPS), need_weights=True)
        return {"output": out, "attn_weights": weights}

    def transformer_forward(m, x):
        return {"output": m(x["x"], src_mask=causal_mask(STEPS))}

    return {
        "lstm": (lambda: nn.LSTM(IN, HIDDEN, num_layers=2),
                 {"x": (STEPS, SEQ_BATCH, IN), "h0": (2, SEQ_BATCH, HIDDEN), "c0": (2, SEQ_BATCH, HIDDEN)}, lstm_forward),
        "gru": (lambda: nn.GRU(IN, HIDDEN, num_layers=2, batch_first=True),
                {"x": (SEQ_BATCH, STEPS, IN), "h0": (2, SEQ_BATCH, HIDDEN)}, gru_forward),
        "mha": (lambda: nn.MultiheadAttention(EMBED, 2, batch_first=True), {"x": (SEQ_BATCH, STEPS, EMBED)}, mha_forward),
        "transformer": (
            lambda: nn.TransformerEncoderLayer(EMBED, 2, dim_feedforward=FEEDFORWARD, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True),
            {"x": (SEQ_BATCH, STEPS, EMBED)}, transformer_forward),
    }


def seq_pass(model, forward, inputs, rs=None):
    """Outputs, loss = sum_k sum(R_k * output_k), parameter and input gradients; R_k drawn when not given."""
    import torch

    model.zero_grad()
    x = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    outs = forward(model, x)
    if rs is None:
        rs = {k: (torch.rand(o.shape) * 2 - 1).numpy() for k, o in outs.items()}
    loss = sum((o * torch.from_numpy(rs[k])).sum() for k, o in outs.items())
    loss.backward()
    return ({k: o.detach().numpy().copy() for k, o in outs.items()}, loss.detach().numpy().reshape(()), rs,
            {k: p.grad.detach().numpy().copy() for k, p in model.named_parameters()},
            {k: t.grad.detach().numpy().copy() for k, t in x.items()})


def seq_xgrad_to_torch(work):
    import torch

    ok = True
    for name, (make, shapes, forward) in seq_models().items():
        weights, meta = read_safetensors(os.path.join(work, f"{name}_weights.safetensors"))
        io, _ = read_safetensors(os.path.join(work, f"{name}_io.safetensors"))
        model = make()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        print(f"{name}: xgrad's weights in torch (metadata {meta}, {len(weights)} tensors)")
        inputs = {k: io[f"input.{k}"] for k in shapes}
        rs = {k[2:]: v for k, v in io.items() if k.startswith("R.")}
        outs, loss, _, grads, input_grads = seq_pass(model, forward, inputs, rs)
        ok = compare_named("output", outs, io) and ok
        ok = compare("loss", loss, io["loss"]) and ok
        ok = compare_named("grad", grads, io) and ok
        ok = compare_named("grad_input", input_grads, io) and ok
    return ok


def seq_torch_to_xgrad(work):
    import torch

    torch.manual_seed(4321)
    for name, (make, shapes, forward) in seq_models().items():
        model = make()
        with torch.no_grad():  # biases and LayerNorm's weights away from 0 and 1, so that a swap would show
            for k, p in model.named_parameters():
                if "bias" in k or "norm" in k:
                    p.copy_((1.0 if "norm" in k and "weight" in k else 0.0) + (torch.rand(p.shape) - 0.5))
        state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        inputs = {k: (torch.rand(s) * 2 - 1).numpy() for k, s in shapes.items()}
        outs, loss, rs, grads, input_grads = seq_pass(model, forward, inputs)
        write_safetensors(os.path.join(work, f"{name}_torch_weights.safetensors"), state, {"format": "pt"})
        io = {"loss": loss}
        io.update({"input." + k: v for k, v in inputs.items()})
        io.update({"R." + k: v for k, v in rs.items()})
        io.update({"output." + k: v for k, v in outs.items()})
        io.update({"grad." + k: g for k, g in grads.items()})
        io.update({"grad_input." + k: g for k, g in input_grads.items()})
        write_safetensors(os.path.join(work, f"{name}_torch_io.safetensors"), io)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        if os.environ.get("CI") == "true":
            print(f"torch_interop: FAILED: {e}; CI=true needs python3-torch (scripts/setup installs it)", file=sys.stderr)
            return 1
        print(f"torch_interop: skipped: {e} (install Debian's python3-torch, e.g. with scripts/setup)")
        return SKIP
    torch.set_num_threads(1)
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    print(f"torch {torch.__version__}")
    ok = xgrad_to_torch(binary, work)
    ok = torch_to_xgrad(binary, work) and ok
    print("torch_interop:", "all outputs and gradients match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

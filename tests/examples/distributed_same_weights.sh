#!/usr/bin/env bash
# usage: distributed_same_weights.sh MPIRUN_LOCAL PROGRAM DATA_ROOT
# PROGRAM --distributed on 2 ranks at batch b against one process at batch 2b on the same data
# order: after a few SGD steps the weights agree to float rounding (every tensor: max |difference|
# ≤ 1e-5 · max |weight|), since the averaged gradient is the one-process gradient summed in another
# order. Rank 0 alone prints and writes.
#   char_lm: rank r serves streams [4r, 4r + 4) of 8; 6 truncated-BPTT steps with clipping.
#   mnist_double_backprop: rank r takes positions r, r + 2, … of each epoch's order; 19 steps of
#     cross-entropy + λ·‖∂ℓ/∂x‖² (double backpropagation: the all-reduce runs in the second sweep).
#   hessian_spectrum: the same shards, 2 epochs; it writes no weights, so the top Hessian
#     eigenvalues after each epoch (spectrum.csv, 6 digits) must agree to 1e-4.
# Without the data: skipped (77), except under CI (CI=true), where it fails.
set -u
mpirun_local=$1 program=$2 data_root=${XGRAD_DATA:-$3}
case "$(basename "$program")" in
  char_lm)
    data=$data_root/fortunes one=8 two=4 weights=model.safetensors
    args=(--threads 1 --epochs 1 --steps-per-epoch 6 --seq-len 16 --embed 8 --hidden 24 --layers 2
          --train-limit 40000 --val-chars 3000 --sample-chars 20 --optimizer sgd --lr 1 --clip 0.5
          --data-dir "$data" --quiet) ;;
  mnist_double_backprop)
    data=$data_root/mnist one=64 two=32 weights=lambda-1/model.safetensors
    args=(--threads 1 --epochs 1 --train-limit 1280 --val-size 100 --hidden 32 --optimizer sgd --lr 0.1
          --schedule none --lambda 1 --data-dir "$data" --quiet) ;;
  hessian_spectrum)  # no weights written: the top eigenvalues after each epoch (1e-4: Lanczos on float HVPs)
    data=$data_root/mnist one=64 two=32 weights=spectrum.csv
    args=(--threads 1 --epochs 2 --train-limit 1280 --val-size 100 --hidden 32 --optimizer sgd --lr 0.1
          --schedule none --hessian-batch 200 --top 2 --lanczos-steps 12 --data-dir "$data") ;;
  *) echo "distributed_same_weights: no settings for $program"; exit 1 ;;
esac
. "$(dirname "$0")/example_test_lib.sh"
example_test_setup distributed_same_weights "$data" "run scripts/fetch-data $(basename "$data")"

log=$(timeout -k 5 300 "$program" "${args[@]}" --batch-size $one --out "$out/one" 2>&1)
rc=$?
printf '%s\n' "$log" | tee "$out/one.log"
[ "$rc" -eq 0 ] || fail "one process: exit status $rc"
log=$(timeout -k 5 300 "$mpirun_local" -n 2 "$program" "${args[@]}" --distributed --batch-size $two --out "$out/two" 2>&1)
rc=$?
printf '%s\n' "$log"
[ "$rc" -eq 0 ] || fail "2 ranks: exit status $rc"
[ "$(printf '%s\n' "$log" | grep -c "$two per rank x 2 ranks")" -ge 1 ] || fail "the run's description does not say 2 ranks"
# Rank 0 alone prints: as many lines as one process.
[ "$(printf '%s\n' "$log" | wc -l)" -eq "$(wc -l < "$out/one.log")" ] || fail "not one process's output (printed by more than rank 0?)"
[ "$(find "$out/two" -name "$(basename "$weights")" | wc -l)" -eq "$(find "$out/one" -name "$(basename "$weights")" | wc -l)" ] ||
    fail "not one process's set of weight files"
python3 - "$out/one/$weights" "$out/two/$weights" <<'PY' || fail "the weights differ"
import csv, json, struct, sys
if sys.argv[1].endswith(".csv"):
    rows = [list(csv.DictReader(open(p))) for p in sys.argv[1:3]]
    assert len(rows[0]) == len(rows[1]) > 1, (len(rows[0]), len(rows[1]))
    worst = max(abs(float(a[k]) - float(b[k])) / abs(float(a[k]))
                for a, b in zip(*rows) for k in a if k.startswith("lambda"))
    print(f"{len(rows[0])} spectra, largest relative difference of an eigenvalue {worst:.3g}")
    sys.exit(0 if worst <= 1e-4 else 1)
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for name, t in head.items():
        if name == "__metadata__": continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    return out
one, two = load(sys.argv[1]), load(sys.argv[2])
assert one.keys() == two.keys(), (sorted(one), sorted(two))
worst = 0.0
for k in one:
    scale = max(abs(v) for v in one[k])
    diff = max(abs(x - y) for x, y in zip(one[k], two[k]))
    worst = max(worst, diff / scale)
print(f"{len(one)} tensors, largest relative difference {worst:.3g}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
echo "distributed_same_weights: $(basename "$program") OK"

#!/usr/bin/env bash
# usage: char_lm_distributed.sh MPIRUN_LOCAL CHAR_LM DATA_ROOT
# char_lm --distributed on 2 ranks of 4 streams each against one process with the same 8 streams
# (rank r serves streams [4r, 4r + 4)): after 6 truncated-BPTT steps (SGD, clipping) the weights
# agree to float rounding (every tensor: max |difference| ≤ 1e-5 · max |weight|) — the averaged
# gradient is the one-process gradient, summed in another order. Rank 0 alone prints and writes.
# Without the fortunes: skipped (77), except under CI (CI=true), where it fails.
set -u
mpirun_local=$1 program=$2 data_root=${XGRAD_DATA:-$3}
data=$data_root/fortunes
if [ ! -d "$data" ]; then
    echo "fortunes not found in $data (run scripts/fetch-data fortunes)"
    [ "${CI:-}" = true ] && exit 1 || exit 77
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/xgrad_char_lm_distributed.XXXXXX")
trap 'rm -rf "$out"' EXIT
fail() { echo "char_lm_distributed: FAIL: $*"; exit 1; }
args=(--threads 1 --epochs 1 --steps-per-epoch 6 --seq-len 16 --embed 8 --hidden 24 --layers 2
      --train-limit 40000 --val-chars 3000 --sample-chars 20 --optimizer sgd --lr 1 --clip 0.5
      --data-dir "$data" --quiet)

log=$(timeout -k 5 300 "$program" "${args[@]}" --batch-size 8 --out "$out/one" 2>&1)
rc=$?
printf '%s\n' "$log"
[ "$rc" -eq 0 ] || fail "one process: exit status $rc"
log=$(timeout -k 5 300 "$mpirun_local" -n 2 "$program" "${args[@]}" --distributed --batch-size 4 --out "$out/two" 2>&1)
rc=$?
printf '%s\n' "$log"
[ "$rc" -eq 0 ] || fail "2 ranks: exit status $rc"
[ "$(printf '%s\n' "$log" | grep -c '4 per rank x 2 ranks')" -eq 1 ] || fail "the run's description not printed exactly once"
[ "$(printf '%s\n' "$log" | grep -Ec '^epoch +1/1 ')" -eq 1 ] || fail "epoch 1's line not printed exactly once"
[ "$(find "$out/two" -name model.safetensors | wc -l)" -eq 1 ] || fail "not exactly one model.safetensors"
python3 - "$out/one/model.safetensors" "$out/two/model.safetensors" <<'PY' || fail "the weights differ"
import json, struct, sys
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
echo "char_lm_distributed: OK"

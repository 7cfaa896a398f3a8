#!/usr/bin/env bash
# usage: distributed_example.sh MPIRUN_LOCAL PROGRAM DATA_ROOT
# An example's --distributed run on 2 ranks (scripts/mpirun-local -n 2), as a user runs it, on real
# MNIST (DATA_ROOT/mnist; $XGRAD_DATA wins): one epoch of 2,000 images, then a second one resumed
# from the checkpoint. Passes when both runs exit 0, rank 0 alone printed (every progress line
# once) and wrote (one metrics.csv with a row per epoch, one model.safetensors, one checkpoint), and
# the model learned. Without MNIST: skipped (77), except under CI (CI=true), where it fails.
set -u
mpirun_local=$1 program=$2 data_root=${XGRAD_DATA:-$3}
data=$data_root/mnist
. "$(dirname "$0")/example_test_lib.sh"
example_test_setup distributed_example "$data/train-images-idx3-ubyte" "run scripts/fetch-data mnist"
# count PATTERN TEXT: lines of TEXT matching the extended regex PATTERN
count() { printf '%s\n' "$2" | grep -Ec "$1"; }

args=(--distributed --threads 1 --train-limit 2000 --val-size 500 --data-dir "$data" --out "$out")
log=$(timeout -k 5 600 "$mpirun_local" -n 2 "$program" "${args[@]}" --epochs 1 2>&1)
rc=$?
printf '%s\n' "$log"
[ "$rc" -eq 0 ] || fail "exit status $rc"
[ "$(count 'per rank x 2 ranks' "$log")" -eq 1 ] || fail "the run's description not printed exactly once"
[ "$(count '^epoch +1/1 ' "$log")" -eq 1 ] || fail "epoch 1's line not printed exactly once"
[ "$(count '^test accuracy' "$log")" -eq 1 ] || fail "the test accuracy not printed exactly once"
[ "$(count '^confusion matrix' "$log")" -eq 1 ] || fail "the confusion matrix not printed exactly once"
for f in metrics.csv model.safetensors checkpoint.safetensors confusion.csv; do
    [ "$(find "$out" -name "$f" | wc -l)" -eq 1 ] || fail "not exactly one $f in $out"
done
[ -z "$(find "$out" -name '*.tmp')" ] || fail "a half-written file was left: $(find "$out" -name '*.tmp')"
[ "$(wc -l < "$out/metrics.csv")" -eq 2 ] || fail "metrics.csv is not a header and one row: $(cat "$out/metrics.csv")"
# 1 epoch of 2,000 images: far above chance (10 %), whatever the summation order.
acc=$(printf '%s\n' "$log" | sed -nE 's/^test accuracy ([0-9.]+)%.*/\1/p')
awk -v a="$acc" 'BEGIN { exit !(a > 60) }' || fail "test accuracy '$acc'% after one epoch"

log=$(timeout -k 5 600 "$mpirun_local" -n 2 "$program" "${args[@]}" --epochs 2 --resume 2>&1)
rc=$?
printf '%s\n' "$log"
[ "$rc" -eq 0 ] || fail "resumed run: exit status $rc"
[ "$(count '^resumed from .* after epoch 1$' "$log")" -eq 1 ] || fail "'resumed from' not printed exactly once"
[ "$(count '^epoch +[0-9]+/2 ' "$log")" -eq 1 ] || fail "the resumed run did not print exactly one epoch line"
[ "$(wc -l < "$out/metrics.csv")" -eq 3 ] || fail "metrics.csv is not a header and two rows: $(cat "$out/metrics.csv")"
echo "distributed_example: OK"

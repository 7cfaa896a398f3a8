#!/usr/bin/env bash
# usage: expect_abort.sh SECONDS PATTERN COMMAND...
# Passes when COMMAND (an mpiexec job with a failing rank) ends within SECONDS, with a non-zero exit
# status and output matching the extended regex PATTERN (which names the failing rank): a hang, a
# zero status or a silent failure fails the test.
set -u
limit=$1 pattern=$2
shift 2
start=$(date +%s%N)
out=$(timeout -k 5 $((limit + 30)) "$@" 2>&1)
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '%s\n' "$out"
echo "expect_abort: exit status $rc after ${elapsed_ms} ms"
if [ "$rc" -eq 0 ]; then echo "expect_abort: FAIL: the job succeeded"; exit 1; fi
# timeout(1) says 124, or 137 if it had to SIGKILL; mpiexec also exits 137 when a rank was killed.
if [ "$rc" -eq 124 ] || [ "$elapsed_ms" -ge $(((limit + 30) * 1000)) ]; then echo "expect_abort: FAIL: the job hung (killed by timeout)"; exit 1; fi
if [ "$elapsed_ms" -gt $((limit * 1000)) ]; then echo "expect_abort: FAIL: took more than ${limit} s"; exit 1; fi
if ! printf '%s\n' "$out" | grep -Eq "$pattern"; then echo "expect_abort: FAIL: no line matches '$pattern'"; exit 1; fi
echo "expect_abort: OK"

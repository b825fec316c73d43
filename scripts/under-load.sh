#!/usr/bin/env bash
# Run a command RUNS times in a row while one busy loop per CPU competes with it; stop at
# the first failure. Usage: scripts/under-load.sh RUNS COMMAND [ARGS...]
set -euo pipefail
runs=$1
shift
busy=()
cleanup() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  busy+=($!)
done
echo "under load: ${#busy[@]} busy loop(s) on $(nproc) CPU(s); load average $(cut -d' ' -f1 /proc/loadavg)"
for run in $(seq "$runs"); do
  echo "== run $run of $runs under load"
  "$@"
done
echo "== $runs run(s) passed under load"

#!/usr/bin/env bash
# make bench: every benchmark in bench/, each printing its figures; the broker runs meanwhile.
set -u
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export CITYOPS_DATA_DIR="${CITYOPS_BENCH_DATA_DIR:-$PWD/.cityops-bench}"
export CITYOPS_KAFKA_PORT="${CITYOPS_BENCH_KAFKA_PORT:-19492}"
trap '"$VENV/bin/cityops" kafka down' EXIT
"$VENV/bin/cityops" kafka up || exit 1
status=0
for b in bench/bench_*.py; do
  [ -f "$b" ] || continue
  echo "=== $b"
  "$VENV/bin/python" "$b" "$@" || status=1
done
exit $status

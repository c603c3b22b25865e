#!/usr/bin/env bash
# Stop the private clickhouse-server started by clickhouse-up.sh (by its recorded pid).
set -uo pipefail
DATA_DIR="${CITYOPS_DATA_DIR:-$PWD/.cityops-data}"
CH_DIR="$DATA_DIR/clickhouse"
PID_FILE="$CH_DIR/server.pid"
[ -f "$PID_FILE" ] || exit 0
PID="$(cat "$PID_FILE")"
if kill -0 "$PID" 2>/dev/null; then
  kill -TERM "$PID"
  for _ in $(seq 1 60); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
  echo "clickhouse-down: stopped pid $PID" >&2
fi
rm -f "$PID_FILE" "$CH_DIR/port"
exit 0

#!/usr/bin/env bash
# make test: start the real services, run pytest, always stop them, exit with pytest's status.
set -u
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export CITYOPS_DATA_DIR="${CITYOPS_TEST_DATA_DIR:-$PWD/.cityops-test}"
export CITYOPS_KAFKA_PORT="${CITYOPS_TEST_KAFKA_PORT:-19392}"
mkdir -p "$CITYOPS_DATA_DIR"
cleanup() {
  for hook in scripts/services.d/*-down.sh; do [ -x "$hook" ] && "$hook"; done
  "$VENV/bin/cityops" kafka down
}
trap cleanup EXIT
"$VENV/bin/cityops" kafka up || exit 1
for hook in scripts/services.d/*-up.sh; do
  [ -x "$hook" ] || continue
  "$hook" || { echo "service hook $hook failed" >&2; exit 1; }
done
"$VENV/bin/python" -m pytest "$@"
status=$?
exit $status

#!/usr/bin/env bash
# make test-cluster: the cluster tests against a local 3-broker KRaft cluster (the fixture
# starts it on CITYOPS_TEST_CLUSTER_KAFKA_PORT, node i on that port + 2i, and stops it).
set -u
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export CITYOPS_DATA_DIR="${CITYOPS_TEST_DATA_DIR:-$PWD/.cityops-test}"
export CITYOPS_TEST_CLUSTER_KAFKA_PORT="${CITYOPS_TEST_CLUSTER_KAFKA_PORT:-19410}"
mkdir -p "$CITYOPS_DATA_DIR"
exec "$VENV/bin/python" -m pytest tests/cluster -m cluster "$@"

"""``cityops sink`` as its own process (as compose and Kubernetes run it): it answers /health,
stores what the clean topics carry into the warehouse, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

CITYOPS = str(Path(sys.executable).with_name("cityops"))
N = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last {last!r}")


def test_sink_process_serves_health_and_stores_clean_events(kafka_broker: str,
                                                            tmp_path: Path) -> None:
    from kafka import KafkaProducer

    prefix = f"s{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = dict(os.environ, CITYOPS_TOPIC_PREFIX=prefix, CITYOPS_DATA_DIR=str(tmp_path / "d"),
               CITYOPS_WAREHOUSE_URL=f"chdb://{tmp_path / 'wh'}",
               CITYOPS_KAFKA_BOOTSTRAP_SERVERS=kafka_broker, CITYOPS_WORKER_WEB_PORT=str(port),
               CITYOPS_SINK_BATCH_S="0.3", CITYOPS_LOG_LEVEL="WARNING")
    for args in (["kafka", "topics"], ["warehouse", "migrate"]):
        subprocess.run([CITYOPS, *args], env=env, check=True, capture_output=True, timeout=180)

    t0 = datetime.now(UTC) - timedelta(hours=1)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    for i in range(N):
        ev = {"event_id": f"e{i}", "source": "fc_jfb_square_01", "zone_id": "jfb_square",
              "entries": i % 7, "exits": i % 3, "interval_s": 30,
              "event_time": (t0 + timedelta(seconds=i)).isoformat()}
        producer.send(f"{prefix}.clean.footfall", json.dumps(ev).encode(), b"fc_jfb_square_01")
    producer.flush(30)
    producer.close()

    log = open(tmp_path / "sink.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([CITYOPS, "sink"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        health = _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2),
                       90, "sink /health")
        assert health.status_code == 200 and health.json()["ok"] is True
        _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/health").json()["rows"] >= N, 90,
              f"{N} rows stored")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "# TYPE" in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, (tmp_path / "sink.log").read_text(errors="replace")[-2000:]
    out = subprocess.run([CITYOPS, "sql", "SELECT count(), sum(entries) FROM footfall_observed",
                          "--format", "csv"], env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout.splitlines()
    assert out[-1] == f"{N},{sum(i % 7 for i in range(N))}"

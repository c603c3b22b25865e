"""Benchmark of the streams worker: events/s and end-to-end latency, printed.

Starts a real ``cityops worker`` (embedded chdb warehouse, its own topic prefix) against the
broker of ``CITYOPS_KAFKA_PORT`` (``make bench`` starts one), then:

1. throughput — produces ``--events`` footfall reports as fast as kafka-python can and times
   until every one is a row in ``footfall_observed`` (validated, deduplicated, enriched,
   aggregated, sunk): worker events/s end to end, and the validation stage's own rate;
2. latency — produces at ``--rate`` events/s for ``--seconds`` and polls the warehouse
   (through the worker's ``/sql``) for each event's row: produced → row visible,
   p50 / p95 / p99 (the poll period, ``--poll-ms``, bounds the resolution).

    .venv/bin/python bench/bench_worker.py [--events 20000] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[1]
CITYOPS = str(Path(sys.executable).with_name("cityops"))
COUNTERS = [("fc_jfb_square_01", "jfb_square"), ("fc_minzu_road_01", "minzu_road"),
            ("fc_minquan_road_01", "minquan_road"), ("fc_bayi_road_01", "bayi_road"),
            ("fc_wuyi_road_01", "wuyi_road"), ("fc_hongyadong_01", "hongyadong")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    def __init__(self, workdir: Path) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ)
        self.env.update({
            "CITYOPS_TOPIC_PREFIX": self.prefix,
            "CITYOPS_DATA_DIR": str(workdir / "data"),
            "CITYOPS_WAREHOUSE_URL": f"chdb://{workdir / 'warehouse'}",
            "CITYOPS_WORKER_WEB_PORT": str(port),
            "CITYOPS_KAFKA_BOOTSTRAP_SERVERS": self.env.get(
                "CITYOPS_KAFKA_BOOTSTRAP_SERVERS",
                f"127.0.0.1:{self.env.get('CITYOPS_KAFKA_PORT', '19092')}"),
            "CITYOPS_STREAM_IDLE_CLOSE_S": "0",
            "CITYOPS_LOG_LEVEL": "WARNING",
        })
        self.bootstrap = self.env["CITYOPS_KAFKA_BOOTSTRAP_SERVERS"]
        self.log = open(workdir / "worker.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([CITYOPS, "worker"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited; see {workdir / 'worker.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("running"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise SystemExit("worker did not become ready")

    def sql(self, query: str) -> list[list]:
        r = httpx.post(f"{self.url}/sql", json={"sql": query}, timeout=60)
        r.raise_for_status()
        return r.json()["rows"]

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def event(i: int, tag: str, t: datetime) -> tuple[bytes, bytes]:
    counter, zone = COUNTERS[i % len(COUNTERS)]
    body = {"event_id": f"{tag}-{i}", "source": counter, "zone_id": zone,
            "entries": i % 9, "exits": i % 7, "interval_s": 30, "event_time": t.isoformat()}
    return counter.encode(), json.dumps(body).encode()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def throughput(w: Worker, prod: KafkaProducer, n: int) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=2)
    started = time.monotonic()
    for i in range(n):
        key, value = event(i, "tp", t0 + timedelta(milliseconds=100 * i))
        prod.send(f"{w.prefix}.raw.footfall", key=key, value=value)
    prod.flush()
    produced_s = time.monotonic() - started
    first_validated = None
    while True:
        h = w.health()
        done_validate = h["validate"]["footfall"]["in"]
        if first_validated is None and done_validate >= n:
            first_validated = time.monotonic() - started
        rows = w.sql("SELECT count() FROM footfall_observed WHERE event_id LIKE 'tp-%'")[0][0]
        if rows >= n:
            break
        if time.monotonic() - started > 600:
            raise SystemExit(f"only {rows}/{n} rows after 600 s")
        time.sleep(0.2)
    total = time.monotonic() - started
    print(f"throughput: {n} events produced in {produced_s:.2f} s "
          f"({n / produced_s:,.0f}/s producer)")
    if first_validated:
        print(f"  validation stage done after {first_validated:.2f} s "
              f"→ {n / first_validated:,.0f} events/s")
    print(f"  all {n} rows visible in the warehouse after {total:.2f} s "
          f"→ worker end-to-end {n / total:,.0f} events/s")


def latency(w: Worker, prod: KafkaProducer, rate: float, seconds: float, poll_s: float) -> None:
    n = int(rate * seconds)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    start = time.monotonic()
    next_poll = start
    i = 0

    def poll() -> None:
        rows = w.sql("SELECT event_id FROM footfall_observed WHERE event_id LIKE 'lat-%' "
                     "AND ingested_at >= now64(3) - INTERVAL 30 SECOND")
        now = time.monotonic()
        for (eid,) in rows:
            if eid in sent and eid not in seen:
                seen[eid] = now

    while i < n:
        due = start + i / rate
        now = time.monotonic()
        if now < due:
            if now >= next_poll:
                poll()
                next_poll = time.monotonic() + poll_s
            else:
                time.sleep(min(due - now, 0.002))
            continue
        key, value = event(i, "lat", t0 + timedelta(milliseconds=50 * i))
        eid = f"lat-{i}"
        sent[eid] = time.monotonic()
        prod.send(f"{w.prefix}.raw.footfall", key=key, value=value)
        i += 1
    prod.flush()
    deadline = time.monotonic() + 60
    while len(seen) < n and time.monotonic() < deadline:
        poll()
        time.sleep(poll_s)
    lat = [(seen[e] - sent[e]) * 1000 for e in seen]
    if not lat:
        raise SystemExit("no event became visible")
    print(f"latency: {n} events at {rate:.0f}/s for {seconds:.0f} s, polled every "
          f"{poll_s * 1000:.0f} ms; {len(lat)} seen")
    print(f"  produced → row visible: p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms, "
          f"p99 {pct(lat, 99):.0f} ms, max {max(lat):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=50.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    w = Worker(workdir)
    prod = KafkaProducer(bootstrap_servers=w.bootstrap, acks="all", linger_ms=5,
                         batch_size=256 * 1024)
    try:
        print(f"bench_worker: worker {w.prefix} (embedded chdb), broker {w.bootstrap}, "
              f"{os.cpu_count()} CPUs")
        throughput(w, prod, args.events)
        latency(w, prod, args.rate, args.seconds, args.poll_ms / 1000)
        sink = w.health().get("sink", {})
        print(f"  sink: {sink.get('batches')} batches, {sink.get('rows')} rows, "
              f"last batch {sink.get('last_batch_s')} s")
    finally:
        prod.close(10)
        w.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

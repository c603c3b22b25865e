"""Producer throughput: cityops' FeedProducer vs plain kafka-python, same bytes, same run.

Runs under ``make bench`` (which starts the local broker); reads ``load_settings()``.
Every producer sends the same simulated wire records (keys and values) to its own fresh
topic and is timed from the first ``send`` until ``flush`` returns (all acknowledged):

* ``kafka-python defaults`` — ``KafkaProducer(bootstrap_servers=…)``, nothing tuned
  (kafka-python 3.x defaults: acks=all, idempotent, linger 0, no compression);
* ``kafka-python + our config`` — the same client with cityops' settings (lz4, linger,
  batch size), no wrapper: isolates what the tuning buys;
* ``cityops FeedProducer`` — the wrapper (config + in-flight bound + accounting).

    python bench/bench_producer.py [--events 200000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from kafka import KafkaProducer

from cityops.core.registry import load_registry
from cityops.core.settings import load_settings
from cityops.ingest.producer import FeedProducer, producer_config
from cityops.ingest.simulate import Simulation


def records(n: int) -> list[tuple[bytes, bytes]]:
    settings = load_settings()
    reg = load_registry(settings.registry_dir)
    start = datetime(2025, 10, 2, 4, tzinfo=ZoneInfo("Asia/Shanghai"))
    out: list[tuple[bytes, bytes]] = []
    sim = Simulation(reg, seed=1, start=start, end=start + timedelta(days=30))
    for rec in sim.wire():
        out.append((rec.key, rec.value))
        if len(out) >= n:
            break
    return out


def run_plain(config: dict, data: list[tuple[bytes, bytes]], topic: str) -> float:
    producer = KafkaProducer(**config)
    try:
        producer.send(topic, b"warm-up", b"warm-up").get(timeout=60)
        t0 = time.perf_counter()
        for key, value in data:
            producer.send(topic, value, key)
        producer.flush()
        return time.perf_counter() - t0
    finally:
        producer.close()


def run_ours(settings, data: list[tuple[bytes, bytes]], topic: str) -> tuple[float, dict]:
    producer = FeedProducer(settings, client_id="bench-cityops")
    try:
        producer.send(topic, b"warm-up", b"warm-up").get(timeout=60)
        t0 = time.perf_counter()
        for key, value in data:
            producer.send(topic, value, key)
        producer.flush()
        elapsed = time.perf_counter() - t0
    finally:
        stats = producer.close()
    return elapsed, stats.as_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings()
    bootstrap = settings.bootstrap_servers
    t0 = time.perf_counter()
    data = records(args.events)
    total_bytes = sum(len(k) + len(v) for k, v in data)
    print(f"{len(data)} simulated records ({total_bytes / 1e6:.1f} MB, "
          f"{total_bytes / len(data):.0f} B/record) generated in {time.perf_counter() - t0:.1f} s;"
          f" broker {bootstrap}, compression {settings.ingest_compression}, "
          f"linger {settings.ingest_linger_ms} ms, batch {settings.ingest_batch_bytes} B")
    tuned = producer_config(settings, client_id="bench-plain-tuned")
    results: dict[str, list[float]] = {"kafka-python defaults": [],
                                       "kafka-python + our config": [],
                                       "cityops FeedProducer": []}
    failures = 0
    for _ in range(args.rounds):
        run_id = uuid.uuid4().hex[:8]
        results["kafka-python defaults"].append(run_plain(
            {"bootstrap_servers": bootstrap.split(","), "client_id": "bench-plain"}, data,
            f"bench.{run_id}.plain"))
        results["kafka-python + our config"].append(run_plain(tuned, data,
                                                              f"bench.{run_id}.tuned"))
        elapsed, stats = run_ours(settings, data, f"bench.{run_id}.cityops")
        results["cityops FeedProducer"].append(elapsed)
        failures += stats["failed"]
    base = min(results["kafka-python defaults"])
    print(f"{'producer':28} {'events/s':>12} {'MB/s':>8} {'vs defaults':>12}")
    for name, times in results.items():
        best = min(times)
        print(f"{name:28} {len(data) / best:12,.0f} {total_bytes / best / 1e6:8.1f} "
              f"{base / best:11.2f}x")
    print(f"delivery failures (cityops): {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

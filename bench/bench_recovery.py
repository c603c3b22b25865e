"""Restart recovery of a real worker whose dedup memory holds a full horizon at 20k events/s.

The dedup log ``<worker id>-seen-footfall-changelog`` is filled, before any worker starts,
with what one worker writes there while running at ``--rate`` events/s for the dedup
horizon (``CITYOPS_STREAM_DEDUP_HORIZON_S``, one hour by default; older deltas are deleted
as the horizon moves, so a day at that rate leaves the same): one delta per validation step
of ``--step-ids`` ids (``streams.partition_dedup.Delta``, JSON, base64 hashes), spread over
the raw partitions, each the union of its group's steps so far (``--rollup-steps`` steps
share one key). The bench then waits until the broker has compacted the log's closed segments,
as an hour of running leaves it, starts one ``cityops worker`` (supervised, no sink) and
times it:

* **ready**: from launch until ``/health`` says running;
* **first output**: until every probe event (``--probes`` footfall reports, produced once
  the worker is ready, over every raw partition) is on ``clean.footfall``: each partition's
  dedup memory read back and restored from its deltas (``PartitionDedup.restore``).

It also prints the worker's peak resident memory and the bytes per remembered id.

    .venv/bin/python bench/bench_recovery.py [--rate 20000] [--horizon-s 3600] [--step-ids 84]

``make bench`` runs it against its broker (``CITYOPS_KAFKA_PORT``).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_streams import Proc, mix, report, setup_topics

from cityops.core import topics as topic_names
from cityops.core.settings import load_settings
from cityops.streams.partition_dedup import ROLLUP_STEPS
from cityops.streams.state_log import BUSY_LOG_CONFIG

PARTITIONS = 6


def _delta(lo: int, hi: int, t: float, by_bucket: dict[int, list[np.ndarray]]) -> bytes:
    return json.dumps({"lo": lo, "hi": hi, "t": t, "dups": [],
                       "b": {str(b): base64.b64encode(np.concatenate(hs).tobytes()).decode()
                             for b, hs in by_bucket.items()}}).encode()


def fill_changelog(bootstrap: str, topic: str, ids: int, step_ids: int, horizon_s: float,
                   newest: float, rollup_steps: int, seed: int = 7) -> tuple[int, int, int]:
    """Write ``ids`` random id hashes as the validation stage does over ``horizon_s`` of
    event time ending at ``newest``: one record per step, the union of its group's steps so
    far (``rollup_steps`` steps share one key, ``PartitionDedup.take_delta``); the topic is
    created as the worker creates it. Returns (records, live records, bytes)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={
            "cleanup.policy": "compact", **BUSY_LOG_CONFIG})])
    finally:
        admin.close()
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                         batch_size=1 << 20, max_request_size=4 << 20)
    rng = np.random.default_rng(seed)
    steps = math.ceil(ids / step_ids)
    per_part = math.ceil(steps / PARTITIONS)
    sent_bytes = 0
    groups: dict[int, tuple[int, dict[int, list[np.ndarray]]]] = {}  # part → (lo, ids)
    keys: set[tuple[int, int]] = set()
    for i in tqdm(range(steps), desc="dedup log records", unit="record", mininterval=2):
        part, k = i % PARTITIONS, i // PARTITIONS
        t = newest - horizon_s + horizon_s * (k + 1) / per_part
        hashes = rng.integers(0, 2**63, size=step_ids, dtype=np.uint64).astype("<u8")
        lo = k * step_ids
        if k % max(1, rollup_steps) == 0:
            groups[part] = (lo, {})
        glo, by_bucket = groups[part]
        by_bucket.setdefault(math.floor(t / 60), []).append(hashes)
        value = _delta(glo, lo + step_ids - 1, t, by_bucket)
        sent_bytes += len(value)
        keys.add((part, glo))
        prod.send(topic, key=json.dumps(f"{part}/{glo}").encode(), value=value, partition=part)
    prod.flush(600)
    prod.close()
    return steps, len(keys), sent_bytes


def topic_bytes(bootstrap: str, topic: str) -> int:
    """Bytes the broker holds for the topic (all partitions, all log dirs)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        dirs = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    total = 0

    def walk(node: object) -> None:  # the response nests results, log dirs and partitions
        nonlocal total
        if isinstance(node, dict):
            if "partition_size" in node:
                total += int(node["partition_size"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)

    walk(dirs)
    return total


def wait_compacted(bootstrap: str, topic: str, settle_s: float) -> tuple[int, int]:
    """Wait (up to ``settle_s``) until the broker's cleaner has compacted the closed segments:
    the topic's size stops shrinking for 30 s. Returns (bytes before, bytes after)."""
    before = last = topic_bytes(bootstrap, topic)
    steady_since = started = time.monotonic()
    with tqdm(desc="waiting for compaction", unit="s", total=int(settle_s)) as bar:
        while time.monotonic() - started < settle_s:
            time.sleep(5)
            bar.update(5)
            now = topic_bytes(bootstrap, topic)
            if now < last:
                last, steady_since = now, time.monotonic()
            elif last < before and time.monotonic() - steady_since > 30:
                break
            bar.set_postfix(mb=f"{now / 1e6:,.0f}")
    return before, last


def clean_count(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def peak_rss_mb(pid: int) -> float:
    """VmHWM of the worker process (the supervisor's child when supervised)."""
    best = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return best


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20_000, help="events/s the state stands for")
    ap.add_argument("--horizon-s", type=float, default=None,
                    help="event time the dedup memory covers (default: the setting)")
    ap.add_argument("--step-ids", type=int, default=500, help="ids per delta (a step)")
    ap.add_argument("--rollup-steps", type=int, default=ROLLUP_STEPS,
                    help="steps sharing one record, as the worker writes them")
    ap.add_argument("--settle-s", type=float, default=300,
                    help="longest wait for the broker to compact the log before the start")
    ap.add_argument("--probes", type=int, default=600)
    ap.add_argument("--timeout-s", type=float, default=900)
    args = ap.parse_args()
    settings0 = load_settings()
    horizon = args.horizon_s or settings0.stream_dedup_horizon_s
    ids = int(args.rate * horizon)
    prefix = f"benchrec{uuid.uuid4().hex[:8]}"
    settings = load_settings(topic_prefix=prefix)
    bootstrap = settings.bootstrap_servers
    setup_topics(prefix, PARTITIONS)
    # probes: event times in the past (the mix advances about 1 s per event), never future
    t_probe = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=args.probes * 4)
    changelog = f"{settings.worker_id}-seen-footfall-changelog"
    started = time.monotonic()
    records, deltas, size = fill_changelog(bootstrap, changelog, ids, args.step_ids, horizon,
                                           t_probe.timestamp() - 60, args.rollup_steps)
    print(f"  dedup log: {ids:,} ids in {records:,} records ({deltas:,} keys), "
          f"{size / 1e6:,.0f} MB, written in {time.monotonic() - started:.0f} s", flush=True)
    held, compacted = wait_compacted(bootstrap, changelog, args.settle_s)
    print(f"  broker holds {held / 1e6:,.0f} MB, {compacted / 1e6:,.0f} MB after compaction",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    worker = Proc("worker", prefix, work, 0, PARTITIONS)
    launched = time.monotonic()
    try:
        worker.wait_ready(timeout=args.timeout_s)
        ready = time.monotonic() - launched
        print(f"  worker ready after {ready:.1f} s", flush=True)
        prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        raw = settings.topic(topic_names.raw("footfall"))
        probes = 0
        for feed, key, value in mix(args.probes * 2, "probe", t_probe):
            if feed == "footfall" and probes < args.probes:
                prod.send(raw, key=key, value=value)
                probes += 1
        prod.flush()
        prod.close()
        clean = settings.topic(topic_names.clean("footfall"))
        while clean_count(bootstrap, clean) < probes:
            if time.monotonic() - launched > args.timeout_s:
                report("recovery", "not finished",
                       f"{clean_count(bootstrap, clean)}/{probes} probes out after "
                       f"{time.monotonic() - launched:.0f} s")
                return
            time.sleep(0.2)
        first = time.monotonic() - launched
        rss = peak_rss_mb(worker.proc.pid)
        report("recovery: ready", f"{ready:.1f} s",
               f"worker launch → running, dedup changelog of {ids:,} ids "
               f"({horizon:,.0f} s at {args.rate:,.0f} events/s), {args.step_ids} ids per "
               f"step, {records:,} records written ({deltas:,} keys, groups of "
               f"{args.rollup_steps} steps), {compacted / 1e6:,.0f} MB held after compaction")
        report("recovery: first output", f"{first:.1f} s",
               f"worker launch → {probes} probe reports over {PARTITIONS} raw partitions on "
               f"clean.footfall (each partition's memory restored from its deltas); "
               f"peak RSS {rss:,.0f} MB, {rss * 1e6 / ids:.1f} bytes per remembered id")
    finally:
        worker.stop()


if __name__ == "__main__":
    main()

"""Soak: the district's feeds at 20× their real rate into one worker for 10 minutes
(``CITYOPS_SOAK_S``), with worker RSS, open file descriptors and consumer lag sampled every
10 s and bounded (lag: 30 s of input after warm-up); at the end the warehouse holds every
event sent, once. Long: run by ``make test-reliability`` (not ``make test``)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streams_harness import WorkerProc, uncommitted, wait_until

from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, load_settings
from cityops.ingest.producer import FeedProducer
from cityops.ingest.simulate import Simulation
from cityops.warehouse.rows import FEED_TABLES

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.long,
              pytest.mark.timeout(3600)]

SPEED = 20.0
SAMPLE_S = 10.0
#: the raw backlog a worker that keeps up may hold after warm-up, in seconds of input
LAG_BOUND_S = 30.0


def _tree(pid: int) -> list[int]:
    """The process and its descendants (the supervisor runs the worker as a child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _fds(pids: list[int]) -> int:
    n = 0
    for p in pids:
        with contextlib.suppress(OSError):
            n += len(os.listdir(f"/proc/{p}/fd"))
    return n


def _fd_kinds(pids: list[int]) -> dict[str, int]:
    """What the descriptors are: socket, pipe, anon_inode or the folder of a file."""
    kinds: dict[str, int] = {}
    for p in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                    kind = target.split(":")[0] if ":" in target and not \
                        target.startswith("/") else str(Path(target).parent.name)
                    kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])


def test_soak_at_twenty_times_the_district_rate(make_worker: Any, kafka_broker: str,
                                               registry: Registry, tmp_path: Path) -> None:
    duration_s = float(os.environ.get("CITYOPS_SOAK_S", "600"))
    worker: WorkerProc = make_worker()
    client = load_settings(kafka_bootstrap_servers=kafka_broker, topic_prefix=worker.prefix)
    span = timedelta(seconds=duration_s * SPEED)
    start = (datetime.now(UTC) - span - timedelta(hours=1)).replace(microsecond=0)
    events = list(Simulation(registry, seed=31, start=start, end=start + span).events())
    sent: dict[str, set[str]] = {f: set() for f in FEEDS}
    samples: list[dict[str, Any]] = []
    done = threading.Event()
    producer = FeedProducer(client, client_id="it-soak")

    def produce() -> None:
        t0 = time.monotonic()
        for ev in events:
            due = (ev.event_time - start).total_seconds() / SPEED
            ahead = due - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            producer.send_event(ev)
            sent[ev.feed].add(ev.event_id)
        producer.flush(120)
        done.set()

    thread = threading.Thread(target=produce, daemon=True)
    t_start = time.monotonic()
    thread.start()
    raw = [client.raw_topic(f) for f in FEEDS]
    assert worker.proc is not None
    while not done.is_set() or time.monotonic() - t_start < duration_s:
        time.sleep(SAMPLE_S)
        pids = _tree(worker.proc.pid)
        samples.append({"t_s": round(time.monotonic() - t_start), "rss_mb": round(_rss_mb(pids)),
                        "fds": _fds(pids), "lag": uncommitted(kafka_broker, client.worker_id, raw),
                        "sent": sum(len(s) for s in sent.values())})
        if time.monotonic() - t_start > duration_s * 3:
            break
    thread.join(120)
    assert done.is_set()
    print("SOAK descriptors at the end: " + json.dumps(_fd_kinds(_tree(worker.proc.pid))))
    stats = producer.close()
    want = {f: len(ids) for f, ids in sent.items() if ids}

    def stored() -> dict[str, int]:
        return {f: worker.scalar(f"SELECT count() FROM {FEED_TABLES[f]} FINAL") for f in want}

    wait_until(lambda: stored() == want, timeout=300, every=2.0, what=f"warehouse = {want}")
    dead = worker.scalar("SELECT count() FROM dead_letters FINAL")
    report = {"duration_s": duration_s, "speed": SPEED, "events": len(events),
              "acked": stats.acked, "failed": stats.failed, "sent": want, "stored": stored(),
              "dead_letters": dead, "samples": samples}
    (tmp_path / "soak.json").write_text(json.dumps(report, indent=1))
    print("SOAK " + json.dumps({k: v for k, v in report.items() if k != "samples"}))
    print("SOAK samples " + json.dumps(samples))
    assert stats.failed == 0 and dead == 0
    warm = [s for s in samples if s["t_s"] >= min(120, duration_s / 3)]
    assert warm, samples
    # bounded: memory levels off after warm-up; descriptors stay far below the usual soft
    # limit of 1024 (the 10-minute run showed two steps, 80 → 266 → 335, flat in between:
    # see docs/reliability.md); the worker keeps up
    assert max(s["rss_mb"] for s in warm) <= 1.5 * warm[0]["rss_mb"] + 100, samples
    assert max(s["fds"] for s in samples) <= 512, samples
    # keeping up: after warm-up the raw backlog never holds more than 30 s of the input (the
    # 10-minute run: at most 114 records, about 5 s)
    per_s = len(events) / duration_s
    assert max(s["lag"] for s in warm) <= LAG_BOUND_S * per_s, (per_s, samples)
    assert uncommitted(kafka_broker, client.worker_id, raw) == 0

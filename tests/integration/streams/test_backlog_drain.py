"""A 12-hour backlog of all four simulated feeds, produced before any worker starts, drained at
full speed: no event goes to ``late`` and every 1-minute and 5-minute footfall window equals an
independent pandas computation over the raw events.

The drain reads the zones' counters through different raw partitions at different speeds;
windows stay right because a zone's watermark waits for its slowest active counter
(``streams.windows``, per-source watermarks). Once with one worker (the windows read from its
embedded warehouse), once with three workers sharing the partitions and one of them
SIGKILLed mid-drain (the windows read from the ``agg.footfall`` topic: each worker's sink
writes its own embedded warehouse).

``CITYOPS_BACKLOG_HOURS`` (12 by default) sets the span. ``make test`` runs the 12 hours at a
sparser cadence (5-min counters, 10-min car parks and micro-stations, hourly national
stations: about 4,100 events); the registry's own cadences (30-s counters: about 46,000
events) are marked ``long`` and run by ``make test-reliability``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from streams_harness import WorkerProc, uncommitted, wait_until

from cityops.core.feeds import Envelope, FootfallObserved
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, load_settings
from cityops.ingest.producer import FeedProducer
from cityops.ingest.simulate import Simulation
from cityops.warehouse.rows import FEED_TABLES

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(1200)]

HOURS = float(os.environ.get("CITYOPS_BACKLOG_HOURS", "12"))
WINDOWS = (("tumbling_1m", 60, 60), ("hopping_5m", 300, 60))
COLUMNS = ["zone_id", "window", "start", "entries", "exits", "events"]


CADENCES = [pytest.param("sparse", id="sparse"),
            pytest.param("registry", id="registry-cadence", marks=pytest.mark.long)]


def _backlog(registry: Registry, seed: int, cadence: str) -> list[Envelope]:
    end = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=HOURS)
    if cadence == "sparse":
        registry = registry.model_copy(update={
            "counters": {k: c.model_copy(update={"cadence_s": 300})
                         for k, c in registry.counters.items()},
            "carparks": {k: c.model_copy(update={"cadence_s": 600})
                         for k, c in registry.carparks.items()},
            "stations": {k: c.model_copy(update={"cadence_s": max(600, c.cadence_s)})
                         for k, c in registry.stations.items()}})
    return list(Simulation(registry, seed=seed, start=start, end=end).events())


def _produce(bootstrap: str, prefix: str, events: list[Envelope]) -> dict[str, int]:
    client = load_settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    producer = FeedProducer(client, client_id="it-backlog")
    for ev in events:
        producer.send_event(ev)
    stats = producer.close()
    assert stats.failed == 0
    counts = {f: 0 for f in FEEDS}
    for ev in events:
        counts[ev.feed] += 1
    return counts


def expected_windows(reports: Iterable[FootfallObserved]) -> pd.DataFrame:
    """Every window a zone's event time has passed, summed from the raw reports: a report
    covers ``[t − interval, t)`` in whole-number parts per minute (docs/warehouse.md) and
    counts once per window."""
    by_zone: dict[str, list[FootfallObserved]] = {}
    for ev in reports:
        by_zone.setdefault(ev.zone_id, []).append(ev)
    rows = []
    for zone, evs in by_zone.items():
        newest = max(ev.event_time.timestamp() for ev in evs)
        for name, size, step in WINDOWS:
            acc: dict[int, list[Any]] = {}
            for ev in evs:
                end = round(ev.event_time.timestamp() * 1000)
                length = ev.interval_s * 1000
                start = end - length
                b = start // 60_000 * 60_000
                while b < end:
                    hi, lo = min(end, b + 60_000) - start, max(b, start) - start
                    pe = ev.entries * hi // length - ev.entries * lo // length
                    px = ev.exits * hi // length - ev.exits * lo // length
                    w = b // 1000
                    s = w // step * step
                    while s + size > w:
                        a = acc.setdefault(s, [0, 0, set()])
                        a[0] += pe
                        a[1] += px
                        a[2].add(ev.event_id)
                        s -= step
                    b += 60_000
            rows.extend((zone, name, s, en, ex, len(ids))
                        for s, (en, ex, ids) in acc.items() if s + size <= newest)
    return _frame(rows)


def _frame(rows: list[Any]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("start", "entries", "exits", "events"):
        df[col] = df[col].astype(int)
    return df.sort_values(["zone_id", "window", "start"]).reset_index(drop=True)


def _read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                          or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"reading {topic} timed out"
            for recs in consumer.poll(timeout_ms=500, max_records=5000).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def _topic_windows(bootstrap: str, prefix: str) -> pd.DataFrame:
    """The highest revision of each window on ``agg.footfall`` (as the warehouse keeps it)."""
    best: dict[tuple[str, str, int], tuple[int, Any]] = {}
    for rec in _read_topic(bootstrap, f"{prefix}.agg.footfall"):
        w = json.loads(rec.value)
        start = int(datetime.fromisoformat(w["window_start"]).timestamp())
        k = (w["zone_id"], w["window"], start)
        if k not in best or w["revision"] >= best[k][0]:
            best[k] = (w["revision"], (w["zone_id"], w["window"], start, w["entries"],
                                       w["exits"], w["events"]))
    return _frame([row for _rev, row in best.values()])


def _assert_equal(got: pd.DataFrame, want: pd.DataFrame, where: str) -> None:
    diff = got.compare(want) if got.shape == want.shape else None
    assert diff is not None and diff.empty, (
        f"windows differ ({where}):\n{diff}\n{got.shape} vs {want.shape}")


def _drained_without_late(kafka_broker: str, prefix: str, groups: dict[str, list[str]],
                          live: list[WorkerProc], t0: float) -> float:
    """Wait until each consumer group has committed all of its topics (the live workers'
    tasks and offsets printed if not), then check that nothing went to ``late``; returns
    the seconds since ``t0``."""
    try:
        wait_until(lambda: sum(uncommitted(kafka_broker, g, t) for g, t in groups.items()) == 0,
                   timeout=900, every=2.0, what="every raw and clean partition drained")
    except AssertionError:
        for w in live:  # where each live worker waits, and its partitions' offsets
            print(f"===== {w.log_path}\n{w.dump()}")
        raise
    drain_s = time.monotonic() - t0
    time.sleep(3)  # the last step's outputs
    late = _read_topic(kafka_broker, f"{prefix}.late")
    assert late == [], f"{len(late)} late events, e.g. {late[0].value[:300]!r}"
    return drain_s


@pytest.mark.parametrize("cadence", CADENCES)
def test_backlog_drained_by_one_worker_has_no_late_event_and_pandas_windows(
        make_worker: Any, kafka_broker: str, registry: Registry, cadence: str) -> None:
    worker: WorkerProc = make_worker(start=False)
    events = _backlog(registry, seed=12, cadence=cadence)
    sent = _produce(kafka_broker, worker.prefix, events)
    want = expected_windows(ev for ev in events if isinstance(ev, FootfallObserved))
    t0 = time.monotonic()
    worker.start()
    counts: list[Any] = []

    def drained() -> bool:
        have = {f: worker.scalar(f"SELECT count() FROM {FEED_TABLES[f]} FINAL") for f in sent}
        n_windows = worker.scalar("SELECT count() FROM footfall_windows FINAL")
        counts[:] = [have, n_windows]
        return have == sent and n_windows == len(want)

    try:
        wait_until(drained, timeout=900, every=2.0, what="backlog drained into the warehouse")
    except AssertionError:
        raise AssertionError(f"want {sent} and {len(want)} windows, have {counts}") from None
    drain_s = time.monotonic() - t0
    time.sleep(2)  # one more sink period: late revisions of windows may still come
    assert worker.scalar("SELECT count() FROM late_events") == 0
    assert _read_topic(kafka_broker, f"{worker.prefix}.late") == []
    assert all(worker.health()["aggregate"][f]["late"] == 0 for f in FEEDS)
    got = _frame(worker.sql(
        "SELECT zone_id, window, toUnixTimestamp(window_start), entries, exits, events "
        "FROM footfall_windows FINAL"))
    _assert_equal(got, want, f"warehouse of {worker.prefix}")
    print(f"backlog {HOURS:g} h ({cadence}): {len(events)} events {sent}, drained by 1 worker in "
          f"{drain_s:.0f} s; 0 late; {len(want)} footfall windows = pandas")


# Several workers, in make test since 2026-12-02 (the registry's cadences stay ``long``).
# Before, a fresh-clone run saw both survivors stall in Faust's table recovery (the worker
# has no Faust table now), and a loaded run a drain that never finished (records thrown away
# by a fetch a rebalance had cancelled: ``streams/seeks.py``).
@pytest.mark.parametrize("cadence", CADENCES)
def test_backlog_drained_by_three_workers_with_a_sigkill_has_no_late_event(
        make_worker: Any, kafka_broker: str, registry: Registry, cadence: str) -> None:
    first: WorkerProc = make_worker(start=False)
    prefix = first.prefix
    events = _backlog(registry, seed=13, cadence=cadence)
    sent = _produce(kafka_broker, prefix, events)
    want = expected_windows(ev for ev in events if isinstance(ev, FootfallObserved))
    workers = [first] + [make_worker(start=False, CITYOPS_TOPIC_PREFIX=prefix)
                         for _ in range(2)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    # SIGKILL one worker while the three share the drain
    wait_until(lambda: sum(w.health()["aggregate"]["footfall"]["in"] for w in workers)
               >= len(events) // 8, timeout=300, every=0.1, what="drain under way")
    workers[1].kill()
    client = load_settings(kafka_bootstrap_servers=kafka_broker, topic_prefix=prefix)
    topics = [client.topic(f"{stage}.{f}") for stage in ("raw", "clean") for f in FEEDS]
    drain_s = _drained_without_late(kafka_broker, prefix, {client.worker_id: topics},
                                    workers[:1] + workers[2:], t0)
    got = _topic_windows(kafka_broker, prefix)
    _assert_equal(got, want, f"topic {prefix}.agg.footfall")
    print(f"backlog {HOURS:g} h ({cadence}): {len(events)} events {sent}, drained by 3 "
          f"workers (one SIGKILLed) in {drain_s:.0f} s; 0 late; {len(want)} footfall "
          f"windows = pandas")


@pytest.mark.parametrize("cadence", CADENCES)
def test_backlog_drained_by_a_validation_and_an_aggregation_worker_has_no_late_event(
        make_worker: Any, kafka_broker: str, registry: Registry, cadence: str) -> None:
    """``CITYOPS_WORKER_STAGES``: the steps in two processes (the validation worker reads
    only raw topics, aligned), the validation worker SIGKILLed mid-drain and another
    started: 0 late events, the windows on ``agg.footfall`` equal pandas."""
    first: WorkerProc = make_worker(start=False, CITYOPS_WORKER_STAGES="validation",
                                    CITYOPS_WORKER_SINK="false")
    prefix = first.prefix
    events = _backlog(registry, seed=14, cadence=cadence)
    sent = _produce(kafka_broker, prefix, events)
    want = expected_windows(ev for ev in events if isinstance(ev, FootfallObserved))
    aggregation = make_worker(start=False, CITYOPS_TOPIC_PREFIX=prefix,
                              CITYOPS_WORKER_STAGES="aggregation", CITYOPS_WORKER_SINK="false")
    t0 = time.monotonic()
    first.start()
    aggregation.start()
    wait_until(lambda: first.health()["validate"]["footfall"]["in"] >= sent["footfall"] // 8,
               timeout=300, every=0.1, what="validation under way")
    first.kill()
    second = make_worker(CITYOPS_TOPIC_PREFIX=prefix, CITYOPS_WORKER_STAGES="validation",
                         CITYOPS_WORKER_SINK="false")
    client = load_settings(kafka_bootstrap_servers=kafka_broker, topic_prefix=prefix)
    groups = {client.model_copy(update={"worker_stages": stage}).worker_group:
              [client.topic(f"{kind}.{f}") for f in FEEDS]
              for stage, kind in (("validation", "raw"), ("aggregation", "clean"))}
    drain_s = _drained_without_late(kafka_broker, prefix, groups, [second, aggregation], t0)
    assert all(aggregation.health()["aggregate"][f]["late"] == 0 for f in FEEDS)
    assert second.health()["aggregate"] == {}
    _assert_equal(_topic_windows(kafka_broker, prefix), want, f"topic {prefix}.agg.footfall")
    print(f"backlog {HOURS:g} h ({cadence}): {len(events)} events {sent}, drained by a "
          f"validation worker (SIGKILLed, then another) and an aggregation worker in "
          f"{drain_s:.0f} s; 0 late; {len(want)} footfall windows = pandas")

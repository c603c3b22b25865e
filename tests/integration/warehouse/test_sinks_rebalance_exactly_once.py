"""Two sinks of one consumer group that rebalance while one is busy writing count every event
once, in the raw table and in the rollups, and commit no offset before its rows are stored.

With a server warehouse several sinks share the partitions; a sink joining or leaving moves
partitions between them while batches are being written. The raw tables would hide a
duplicate after a merge, but the rollup materialized views count on insert. A warehouse that
takes its time over every insert (the real embedded engine behind a pause) keeps the first
sink busy writing when the second joins.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.core.feeds import FootfallObserved
from cityops.core.registry import Registry
from cityops.core.settings import Settings, load_settings
from cityops.deploy.backlog import group_lag
from cityops.warehouse.sink import Batch, WarehouseSink

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


class PausingWarehouse:
    """The embedded warehouse, each insert preceded by a pause (a busy warehouse)."""

    def __init__(self, inner: Any, pause_s: float) -> None:
        self.inner = inner
        self.pause_s = pause_s

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int:
        time.sleep(self.pause_s)
        return int(self.inner.insert(table, rows, dedup_token=dedup_token))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        return list(self.inner.query(sql, params))


class WatchedSink(WarehouseSink):
    """Records each commit, and any event of it not yet stored when it was committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[Batch] = []
        self.unstored_at_commit: list[str] = []

    def _commit(self, batch: Batch) -> None:
        ids = [row["event_id"] for rows in batch.rows.values() for row in rows]
        stored = {i for (i,) in self.warehouse.query(
            "SELECT event_id FROM footfall_observed WHERE event_id IN {ids:Array(String)}",
            {"ids": ids})}
        self.unstored_at_commit.extend(sorted(set(ids) - stored))
        self.commits.append(batch)
        super()._commit(batch)


def _events(registry: Registry, n: int, tag: str, start: datetime) -> list[FootfallObserved]:
    """Footfall reports 5 s apart from ``start`` (each test its own day: the module's tests
    share one database)."""
    counters = list(registry.counters.values())[:6]
    return [FootfallObserved(
        event_id=f"{tag}:{c.id}:{i}", source=c.id, event_time=start + timedelta(seconds=5 * i),
        zone_id=c.zone_id, entries=i % 13, exits=i % 4, interval_s=5)
        for i in range(n) for c in [counters[i % len(counters)]]]


def _topic(broker: str, prefix: str) -> str:
    topic = f"{prefix}.clean.footfall"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    return topic


def _produce(broker: str, topic: str, events: list[FootfallObserved]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    for e in events:
        producer.send(topic, key=e.key(), value=e.to_json())
    producer.flush()
    producer.close()


def _sink(settings: Settings, prefix: str, wh: Any, group: str,
          sink_cls: type[WatchedSink] = WatchedSink, **kw: Any) -> WatchedSink:
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port,
                      worker_session_timeout_s=6.0, **kw)
    return sink_cls(s, wh, group_id=group, topics=[s.topic("clean.footfall")])


def _wait(condition: Any, sinks: list[WatchedSink], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for sink in sinks:
            assert sink.error is None, sink.error
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _assert_counted_once(wh: Any, events: list[FootfallObserved]) -> None:
    ids = [e.event_id for e in events]
    assert wh.query("SELECT count(), uniqExact(event_id) FROM footfall_observed FINAL "
                    "WHERE event_id IN {ids:Array(String)}", {"ids": ids}) == [
        (len(events), len(events))]
    zones = sorted({e.zone_id for e in events})
    since = min(e.event_time for e in events) - timedelta(minutes=1)
    until = max(e.event_time for e in events) + timedelta(minutes=1)
    rollup = wh.query("SELECT sum(entries), sum(exits), sum(reports) FROM footfall_zone_1m "
                      "WHERE zone_id IN {z:Array(String)} AND minute >= {t0:DateTime64(3)} "
                      "AND minute <= {t1:DateTime64(3)}", {"z": zones, "t0": since, "t1": until})
    expected = (sum(e.entries for e in events), sum(e.exits for e in events), len(events))
    assert tuple(int(v) for v in rollup[0]) == expected


def test_two_sinks_that_rebalance_while_one_writes_count_every_event_once(
        kafka_broker: str, settings: Settings, registry: Registry, schema_wh: Any) -> None:
    prefix = f"revoke{uuid.uuid4().hex[:8]}"
    events = _events(registry, 900, prefix, datetime(2026, 11, 30, 23, 50, tzinfo=TZ))
    topic = _topic(kafka_broker, prefix)
    _produce(kafka_broker, topic, events[:300])
    group = f"{prefix}.sink"
    slow = _sink(settings, prefix, PausingWarehouse(schema_wh, 0.4), group,
                 sink_batch_rows=40, sink_batch_s=0.1)
    slow.start()
    other: WatchedSink | None = None
    try:
        _wait(lambda: slow.commits != [], [slow])
        other = _sink(settings, prefix, PausingWarehouse(schema_wh, 0.05), group,
                      sink_batch_rows=40, sink_batch_s=0.1)
        other.start()  # joins while the first sink is busy writing
        _wait(lambda: other is not None and other._consumer is not None
              and bool(other._consumer.assignment()), [slow, other])
        _produce(kafka_broker, topic, events[300:])
        _wait(lambda: group_lag(kafka_broker, group, [topic]) == 0, [slow, other])
    finally:
        slow.stop()
        if other is not None:
            other.stop()
    assert slow.error is None and other is not None and other.error is None
    assert slow.commits and other.commits  # both stored a share
    assert slow.unstored_at_commit == [] and other.unstored_at_commit == []
    # the revocation dropped the slow sink's marks of the newest stored events: the other
    # sink wrote some of its sites meanwhile (``warehouse.stored_marks``)
    assert slow.marks.forgotten >= 1
    _assert_counted_once(schema_wh, events)


class HoldingSink(WatchedSink):
    """Counts the records it has taken into its batches (a batch gathers across polls)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = 0

    def _add(self, batch: Batch, topic: str, msg: Any) -> None:
        self.taken += 1
        super()._add(batch, topic, msg)


class SignallingWarehouse(PausingWarehouse):
    """A paused warehouse that tells when its first insert has begun (its sink has already
    asked which ids are stored)."""

    def __init__(self, inner: Any, pause_s: float) -> None:
        super().__init__(inner, pause_s)
        self.inserting = threading.Event()

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int:
        self.inserting.set()
        return super().insert(table, rows, dedup_token=dedup_token)


def _offsets(sink: WatchedSink) -> set[tuple[str, int, int]]:
    return {(t, p, o) for batch in sink.commits for (t, p), (lo, hi) in batch.ranges.items()
            for o in range(lo, hi + 1)}


def test_a_sink_drops_what_it_gathered_of_partitions_a_rebalance_took_from_it(
        kafka_broker: str, settings: Settings, registry: Registry, schema_wh: Any) -> None:
    """A batch gathers across many polls (a backlog batch for seconds). When a second sink
    joins, the partitions it takes are read again by it from the last commit; the first
    sink must neither write nor commit what it had gathered of them. Otherwise both write
    the same events at once: each asks the warehouse which ids it holds before the other's
    insert lands, and the rollups count those events twice."""
    prefix = f"gather{uuid.uuid4().hex[:8]}"
    events = _events(registry, 300, prefix, datetime(2026, 11, 29, 23, 50, tzinfo=TZ))
    topic = _topic(kafka_broker, prefix)
    _produce(kafka_broker, topic, events)
    group = f"{prefix}.sink"
    gathering = _sink(settings, prefix, PausingWarehouse(schema_wh, 0.0), group,
                      sink_batch_rows=100_000, sink_batch_s=300, sink_backlog_batch_s=0,
                      sink_derived_batch_s=0, sink_cls=HoldingSink)
    assert isinstance(gathering, HoldingSink)
    slow = SignallingWarehouse(schema_wh, 4.0)
    joining: WatchedSink | None = None
    gathering.start()
    try:
        _wait(lambda: gathering.taken >= len(events), [gathering])
        joining = _sink(settings, prefix, slow, group, sink_batch_rows=200, sink_batch_s=0.2)
        joining.start()
        # the joining sink has its share, asked which ids are stored, and is now writing
        _wait(lambda: slow.inserting.is_set(), [gathering, joining])
        gathering.stop()  # flushes what it holds while the other sink's insert is under way
        assert not gathering.alive
        _wait(lambda: group_lag(kafka_broker, group, [topic]) == 0, [joining])
    finally:
        gathering.stop()
        if joining is not None:
            joining.stop()
    assert gathering.error is None and joining is not None and joining.error is None
    assert joining.commits
    assert gathering.stats.given_back >= len(events)  # it held every record when revoked
    _assert_counted_once(schema_wh, events)
    assert _offsets(gathering) & _offsets(joining) == set()

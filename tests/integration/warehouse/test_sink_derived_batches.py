"""The sink writes derived records in their own, slower batches beside the events' batches.

Each embedded insert costs 10-60 ms whatever its size; an events' batch that writes only the
raw tables ends sooner, and the events behind it wait less (``BENCHMARKS.md``, run R). The
derived records (here 1-minute windows) gather for ``CITYOPS_SINK_DERIVED_BATCH_S`` and
commit their own offsets; with 0 they go with every events' batch, as before.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.core.feeds import FootfallObserved
from cityops.core.registry import Registry
from cityops.core.settings import Settings, load_settings
from cityops.streams.records import FootfallWindow
from cityops.warehouse.rows import FEED_TABLES
from cityops.warehouse.sink import Batch, WarehouseSink, is_event_topic
from tests.integration.warehouse.conftest import wait_committed

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
RAW = frozenset(FEED_TABLES.values())


class FlushRecordingSink(WarehouseSink):
    """The real sink, noting the tables and topics of every batch it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flushes: list[tuple[set[str], set[str]]] = []

    def _flush(self, batch: Batch) -> None:
        self.flushes.append((set(batch.rows), {t for t, _ in batch.ranges}))
        super()._flush(batch)


def _feed(broker: str, prefix: str, registry: Registry, start: datetime,
          seconds: float) -> tuple[list[FootfallObserved], list[FootfallWindow]]:
    """Events and windows written together for ``seconds``, like a worker's output."""
    clean, agg = f"{prefix}.clean.footfall", f"{prefix}.agg.footfall"
    producer = KafkaProducer(bootstrap_servers=broker, acks=1, linger_ms=5)
    counters = list(registry.counters.values())[:4]
    events: list[FootfallObserved] = []
    windows: list[FootfallWindow] = []
    ends = time.monotonic() + seconds
    i = 0
    while time.monotonic() < ends:
        c = counters[i % len(counters)]
        t = start + timedelta(seconds=15 * i)
        ev = FootfallObserved(event_id=f"{prefix}:{i}", source=c.id, event_time=t,
                              zone_id=c.zone_id, entries=i % 7, exits=i % 3, interval_s=15)
        minute = t.replace(second=0, microsecond=0)
        win = FootfallWindow(zone_id=c.zone_id, window="tumbling_1m", window_start=minute,
                             window_end=minute + timedelta(minutes=1), entries=i % 7,
                             exits=i % 3, events=1, net_presence=1.0, density_ppm2=0.001,
                             revision=i, emitted_at=t)
        producer.send(clean, key=ev.key(), value=ev.to_json())
        producer.send(agg, key=win.key(), value=win.to_json())
        events.append(ev)
        windows.append(win)
        i += 1
        time.sleep(0.01)
    producer.flush()
    producer.close()
    return events, windows


def _drain(settings: Settings, broker: str, prefix: str, wh: Any, registry: Registry,
           start: datetime, derived_batch_s: float) -> FlushRecordingSink:
    """Feed events and windows to a sink for 4 s; check it stored them all and return it."""
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port,
                      sink_batch_s=0.1, sink_derived_batch_s=derived_batch_s)
    topics = [s.topic("clean.footfall"), s.topic("agg.footfall")]
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(t, 2, 1) for t in topics])
    admin.close()
    sink = FlushRecordingSink(s, wh, group_id=f"{prefix}.sink", topics=topics)
    sink.start()
    try:
        # a live stream, not a backlog: the sink has joined its group before the feed starts
        # (on a slow host the join took longer than the feed, and one batch held it all)
        assert sink.ready.wait(30)
        deadline = time.monotonic() + 60
        while len(sink._consumer.assignment()) < 4:
            assert time.monotonic() < deadline, "the sink was never assigned its partitions"
            time.sleep(0.1)
        events, windows = _feed(broker, prefix, registry, start, 4.0)
        wait_committed(sink, broker, f"{prefix}.sink", topics)
    finally:
        sink.stop()
    assert sink.error is None
    ids = [e.event_id for e in events]
    assert wh.query("SELECT count() FROM footfall_observed FINAL "
                    "WHERE event_id IN {ids:Array(String)}", {"ids": ids}) == [(len(ids),)]
    latest = {w.record_id(): w.revision for w in windows}
    stored = dict(wh.query(
        "SELECT record_id, revision FROM footfall_windows FINAL "
        "WHERE record_id IN {ids:Array(String)}", {"ids": list(latest)}))
    assert stored == latest  # every window, at its newest revision
    return sink


def test_derived_records_gather_in_their_own_slower_batches(
        settings: Settings, registry: Registry, schema_wh: Any, kafka_broker: str) -> None:
    prefix = f"derived{uuid.uuid4().hex[:8]}"
    sink = _drain(settings, kafka_broker, prefix, schema_wh, registry,
                        datetime(2026, 11, 27, 20, tzinfo=TZ), derived_batch_s=1.5)
    event_batches = [tables for tables, _ in sink.flushes if tables & RAW]
    derived_batches = [tables for tables, _ in sink.flushes if tables - RAW]
    assert event_batches and derived_batches
    assert all(tables <= RAW for tables in event_batches)  # events' batches: raw tables only
    assert all(not tables & RAW for tables in derived_batches)
    # each batch commits its own topics: events' from clean.*, derived from the others
    for tables, topics in sink.flushes:
        assert all(is_event_topic(sink.settings, t) == bool(tables & RAW) for t in topics)
    # about 4 s of a steady feed: events every 0.1 s or so, windows every 1.5 s
    assert len(derived_batches) * 3 <= len(event_batches)


def test_with_no_derived_age_they_go_with_every_events_batch(
        settings: Settings, registry: Registry, schema_wh: Any, kafka_broker: str) -> None:
    prefix = f"together{uuid.uuid4().hex[:8]}"
    sink = _drain(settings, kafka_broker, prefix, schema_wh, registry,
                        datetime(2026, 11, 26, 20, tzinfo=TZ), derived_batch_s=0.0)
    assert any(tables & RAW and tables - RAW for tables, _ in sink.flushes)

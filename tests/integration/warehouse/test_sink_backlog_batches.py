"""A sink that is behind writes larger batches; a live record keeps the live batch age.

A record that had waited ``CITYOPS_SINK_BACKLOG_BATCH_S`` when the sink read it starts a
backlog batch, which gathers that long and up to ``CITYOPS_SINK_BACKLOG_BATCH_ROWS``: each
embedded insert costs about 20 ms besides its rows, and each batch a query for the ids
already stored, so fewer, larger batches catch up sooner. Here a backlog written a minute
before the sink starts is stored in a few large batches, each event once; with the backlog
batches off, in batches of ``CITYOPS_SINK_BATCH_ROWS``; and a record written while the sink
is idle goes in a live batch.
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
from cityops.warehouse.sink import Batch, WarehouseSink
from tests.integration.warehouse.conftest import wait_committed

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
BACKLOG = 6_000
LIVE_ROWS = 500  # CITYOPS_SINK_BATCH_ROWS here


class FlushRecordingSink(WarehouseSink):
    """The real sink, noting each batch's rows and whether it was a backlog batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flushes: list[tuple[int, bool]] = []

    def _flush(self, batch: Batch) -> None:
        self.flushes.append((batch.n_rows, batch.backlog))
        super()._flush(batch)


def _events(prefix: str, registry: Registry, start: datetime, n: int,
            first: int = 0) -> list[FootfallObserved]:
    counters = list(registry.counters.values())[:4]
    return [FootfallObserved(event_id=f"{prefix}:{i}", source=counters[i % 4].id,
                             event_time=start + timedelta(seconds=15 * i),
                             zone_id=counters[i % 4].zone_id, entries=i % 7, exits=i % 3,
                             interval_s=15)
            for i in range(first, first + n)]


def _produce(broker: str, topic: str, events: list[FootfallObserved],
             written_ago_s: float) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, acks=1, linger_ms=5)
    at_ms = int((time.time() - written_ago_s) * 1000)
    for ev in events:
        producer.send(topic, key=ev.key(), value=ev.to_json(), timestamp_ms=at_ms)
    producer.flush()
    producer.close()


def _run(settings: Settings, broker: str, wh: Any, registry: Registry,
         backlog_batch_s: float) -> FlushRecordingSink:
    prefix = f"backlog{uuid.uuid4().hex[:8]}"
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port,
                      sink_batch_s=0.1, sink_batch_rows=LIVE_ROWS,
                      sink_backlog_batch_s=backlog_batch_s, sink_backlog_batch_rows=20_000)
    topic = s.topic("clean.footfall")
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    start = datetime(2026, 11, 25, 20, tzinfo=TZ)
    backlog = _events(prefix, registry, start, BACKLOG)
    _produce(broker, topic, backlog, written_ago_s=60)  # an hour's outage, shortened
    sink = FlushRecordingSink(s, wh, group_id=f"{prefix}.sink", topics=[topic])
    sink.start()
    try:
        _wait_committed(sink, broker, prefix, topic)
        live = _events(prefix, registry, start, 3, first=BACKLOG)
        _produce(broker, topic, live, written_ago_s=0)
        _wait_committed(sink, broker, prefix, topic)
    finally:
        sink.stop()
    assert sink.error is None
    ids = [e.event_id for e in backlog + live]
    assert wh.query("SELECT count(), uniqExact(event_id) FROM footfall_observed "
                    "WHERE event_id IN {ids:Array(String)}", {"ids": ids}) == [
        (len(ids), len(ids))]  # every event once, before any merge
    assert sink.flushes[-1] == (3, False), "the live records went in a live batch"
    return sink


def _wait_committed(sink: WarehouseSink, broker: str, prefix: str, topic: str) -> None:
    wait_committed(sink, broker, f"{prefix}.sink", [topic], timeout_s=90)


def test_a_backlog_is_stored_in_a_few_large_batches(
        settings: Settings, registry: Registry, schema_wh: Any, kafka_broker: str) -> None:
    sink = _run(settings, kafka_broker, schema_wh, registry, backlog_batch_s=2.0)
    backlog = sink.flushes[:-1]
    assert sum(n for n, _ in backlog) == BACKLOG
    assert all(is_backlog for _, is_backlog in backlog)
    assert len(backlog) <= 3 and max(n for n, _ in backlog) > 4 * LIVE_ROWS, backlog


def test_with_backlog_batches_off_a_backlog_goes_in_live_batches(
        settings: Settings, registry: Registry, schema_wh: Any, kafka_broker: str) -> None:
    sink = _run(settings, kafka_broker, schema_wh, registry, backlog_batch_s=0.0)
    backlog = sink.flushes[:-1]
    assert sum(n for n, _ in backlog) == BACKLOG
    assert not any(is_backlog for _, is_backlog in backlog)
    assert max(n for n, _ in backlog) <= LIVE_ROWS and len(backlog) >= BACKLOG // LIVE_ROWS

"""A sink keeping up with a fast stream fetches in larger pieces (``CITYOPS_SINK_FETCH_MIN_BYTES``).

With the broker's default (answer a fetch as soon as one record is there) a sink that keeps
up with a stream of thousands of records a second fetches a few records at a time, and every
fetch and poll costs it and the broker CPU. Here the same steady stream is read by a sink
with the default minimum and by one with ``1``: the default's polls that return records are
far fewer, every event is stored once either way, and the consumer carries the setting.
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
from cityops.warehouse.sink import WarehouseSink
from tests.integration.warehouse.conftest import wait_committed

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
RATE = 3_000  # records a second, for STREAM_S
STREAM_S = 3.0


class PollCountingSink(WarehouseSink):
    """The real sink, counting the polls that returned records."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.polls_with_records = 0

    def _consumer_factory(self) -> Any:
        consumer = super()._consumer_factory()
        poll = consumer.poll

        def counted(*args: Any, **kwargs: Any) -> Any:
            polled = poll(*args, **kwargs)
            if polled:
                self.polls_with_records += 1
            return polled

        consumer.poll = counted
        return consumer


def _stream(broker: str, topic: str, events: list[FootfallObserved]) -> None:
    """The events at ``RATE`` a second, as a worker's steps write them (every 10 ms)."""
    producer = KafkaProducer(bootstrap_servers=broker, acks=1, linger_ms=2)
    per_tick = RATE // 100
    started = time.monotonic()
    for tick, first in enumerate(range(0, len(events), per_tick)):
        for ev in events[first:first + per_tick]:
            producer.send(topic, key=ev.key(), value=ev.to_json())
        producer.flush()
        time.sleep(max(0.0, started + (tick + 1) / 100 - time.monotonic()))
    producer.close()


def _run(settings: Settings, broker: str, wh: Any, registry: Registry,
         fetch_min_bytes: int | None) -> PollCountingSink:
    prefix = f"fetch{uuid.uuid4().hex[:8]}"
    extra = {} if fetch_min_bytes is None else {"sink_fetch_min_bytes": fetch_min_bytes}
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port, **extra)
    topic = s.topic("clean.footfall")
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    # the broker knows the topic's partitions before the sink subscribes: a consumer whose
    # first metadata missed them is assigned nothing until its next refresh (30 s)
    producer = KafkaProducer(bootstrap_servers=broker)
    assert len(producer.partitions_for(topic)) == 2
    producer.close()
    counters = list(registry.counters.values())[:4]
    start = datetime(2026, 11, 25, 20, tzinfo=TZ)
    events = [FootfallObserved(event_id=f"{prefix}:{i}", source=counters[i % 4].id,
                               event_time=start + timedelta(seconds=15 * i),
                               zone_id=counters[i % 4].zone_id, entries=i % 7, exits=i % 3,
                               interval_s=15)
              for i in range(int(RATE * STREAM_S))]
    sink = PollCountingSink(s, wh, group_id=f"{prefix}.sink", topics=[topic])
    sink.start()
    try:
        assert sink.ready.wait(30)
        deadline = time.monotonic() + 60
        while not sink._consumer.assignment():  # the group has settled: the stream is live
            assert time.monotonic() < deadline, "the sink was never assigned its partitions"
            time.sleep(0.1)
        assert sink._consumer.config["fetch_min_bytes"] == s.sink_fetch_min_bytes
        _stream(broker, topic, events)
        wait_committed(sink, broker, f"{prefix}.sink", [topic])
    finally:
        sink.stop()
    assert sink.error is None
    ids = [e.event_id for e in events]
    assert wh.query("SELECT count(), uniqExact(event_id) FROM footfall_observed "
                    "WHERE event_id IN {ids:Array(String)}", {"ids": ids}) == [
        (len(ids), len(ids))]
    return sink


def test_a_sink_keeping_up_with_a_fast_stream_fetches_in_larger_pieces(
        settings: Settings, registry: Registry, schema_wh: Any, kafka_broker: str) -> None:
    assert Settings.model_fields["sink_fetch_min_bytes"].default >= 64 * 1024  # waits a piece
    larger = _run(settings, kafka_broker, schema_wh, registry, fetch_min_bytes=None)
    each = _run(settings, kafka_broker, schema_wh, registry, fetch_min_bytes=1)
    assert each.polls_with_records >= 3 * larger.polls_with_records, (
        each.polls_with_records, larger.polls_with_records)

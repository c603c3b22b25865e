"""The sink's effect is exactly once, rollups included, when batches are replayed re-cut.

After a crash the sink re-reads from its last committed offset and may cut the batches
differently; the worker may also re-publish events it had published just before dying. Raw
tables would hide that after a merge (ReplacingMergeTree), but the rollup materialized views
count on insert, so this test replays the same events through a fresh consumer group with a
different batch size, plus re-published copies at new offsets, and compares the rollups.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.core.feeds import FootfallObserved
from cityops.core.registry import Registry
from cityops.core.settings import Settings, load_settings
from cityops.warehouse.sink import WarehouseSink

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def _events(registry: Registry, n: int,
            start: datetime = datetime(2026, 10, 31, 23, 58, tzinfo=TZ)  # midnight, month end
            ) -> list[FootfallObserved]:
    counters = list(registry.counters.values())[:5]
    out = []
    for i in range(n):
        c = counters[i % len(counters)]
        t = start + timedelta(seconds=10 * i)
        out.append(FootfallObserved(
            event_id=f"{c.id}:{int(t.timestamp())}:{i}", source=c.id, event_time=t,
            zone_id=c.zone_id, entries=i % 17, exits=i % 5, interval_s=10))
    return out


def _run_sink(settings: Settings, prefix: str, wh: object, batch_rows: int,
              expected_msgs: int) -> WarehouseSink:
    """Run a sink in a fresh consumer group until it has stored ``expected_msgs`` messages."""
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port,
                      sink_batch_rows=batch_rows, sink_batch_s=0.3)
    sink = WarehouseSink(s, wh, group_id=f"{prefix}-{uuid.uuid4().hex[:6]}",
                         topics=[s.topic("clean.footfall")])
    sink.start()
    deadline = time.monotonic() + 60
    while sink.stats.messages < expected_msgs and time.monotonic() < deadline:
        assert sink.error is None, sink.error
        time.sleep(0.1)
    sink.stop()
    assert sink.error is None, sink.error
    assert sink.stats.messages == expected_msgs
    return sink


def test_replayed_and_republished_events_are_counted_once_in_rollups(
    kafka_broker: str, settings: Settings, registry: Registry, schema_wh: object
) -> None:
    prefix = f"sinktest{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.clean.footfall"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    events = _events(registry, 120)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    for e in events:
        producer.send(topic, key=e.key(), value=e.to_json())
    producer.flush()

    first = _run_sink(settings, prefix, schema_wh, batch_rows=7, expected_msgs=len(events))
    assert first.stats.already_stored == 0

    # the worker re-publishes the last 30 events at new offsets, then a replay re-cuts all
    for e in events[-30:]:
        producer.send(topic, key=e.key(), value=e.to_json())
    producer.flush()
    producer.close()
    second = _run_sink(settings, prefix, schema_wh, batch_rows=11,
                       expected_msgs=len(events) + 30)

    q = schema_wh.query  # type: ignore[attr-defined]
    ids = [e.event_id for e in events]
    assert q("SELECT count() FROM footfall_observed WHERE event_id IN {ids:Array(String)}",
             {"ids": ids}) == [(len(events),)]
    zones = sorted({e.zone_id for e in events})
    rollup = q("SELECT sum(entries), sum(exits), sum(reports) FROM footfall_zone_1m "
               "WHERE zone_id IN {z:Array(String)}", {"z": zones})
    hourly = q("SELECT sum(entries), sum(exits) FROM footfall_zone_1h "
               "WHERE zone_id IN {z:Array(String)}", {"z": zones})
    expected = (sum(e.entries for e in events), sum(e.exits for e in events), len(events))
    assert tuple(int(v) for v in rollup[0]) == expected
    assert tuple(int(v) for v in hourly[0]) == expected[:2]
    assert second.stats.already_stored == len(events) + 30


def test_a_running_sink_drops_copies_of_what_it_stored_and_keeps_late_new_events(
    kafka_broker: str, settings: Settings, registry: Registry, schema_wh: object
) -> None:
    """The sink's own inserts raise its marks of the newest stored event per zone, so batches
    read in order ask nothing; copies re-published afterwards (at or before a mark) are asked
    about and dropped, and new events that arrive late, behind the marks, are stored. Keyed by
    zone, as the validation step keys ``clean.footfall``."""
    prefix = f"sinklive{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.clean.footfall"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    events = _events(registry, 90, datetime(2026, 11, 15, 20, 0, tzinfo=TZ))  # after the rest
    first, copies = events[:60], events[10:25]
    late = [e.model_copy(update={"event_id": f"{e.event_id}:late", "entries": 3})
            for e in events[30:35]]
    s = load_settings(topic_prefix=prefix, kafka_port=settings.kafka_port,
                      sink_batch_rows=9, sink_batch_s=0.3)
    sink = WarehouseSink(s, schema_wh, group_id=f"{prefix}-sink", topics=[topic])
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")

    def send(batch: list[FootfallObserved]) -> None:
        for e in batch:
            producer.send(topic, key=e.zone_id.encode(), value=e.to_json())
        producer.flush()

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 60
        while sink.stats.messages < n and time.monotonic() < deadline:
            assert sink.error is None, sink.error
            time.sleep(0.1)
        assert sink.stats.messages == n

    sink.start()
    try:
        send(first)
        wait_for(len(first))
        assert sink.stats.id_checks == 0 and sink.stats.already_stored == 0
        send(copies + late + events[60:])
        wait_for(len(events) + len(copies) + len(late))
    finally:
        sink.stop()
        producer.close()
    assert sink.error is None, sink.error
    assert sink.stats.already_stored == len(copies)
    assert sink.stats.id_checks >= 1

    q = schema_wh.query  # type: ignore[attr-defined]
    stored = events + late
    assert q("SELECT count(), uniqExact(event_id) FROM footfall_observed "
             "WHERE event_id IN {ids:Array(String)}",
             {"ids": [e.event_id for e in stored]}) == [(len(stored), len(stored))]
    rollup = q("SELECT sum(entries), sum(exits), sum(reports) FROM footfall_zone_1m "
               "WHERE zone_id IN {z:Array(String)} AND minute >= {lo:DateTime64(3)} "
               "AND minute < {hi:DateTime64(3)}",
               {"z": sorted({e.zone_id for e in events}), "lo": events[0].event_time
                - timedelta(minutes=1), "hi": events[-1].event_time + timedelta(minutes=1)})
    expected = (sum(e.entries for e in stored), sum(e.exits for e in stored), len(stored))
    assert tuple(int(v) for v in rollup[0]) == expected

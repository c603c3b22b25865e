"""Each feed model → JSON → the real broker → consumed → equal to the original.

Uses a fresh multi-partition topic per feed, many sources (keys), and checks that every
event comes back equal, that one key's events stay in one partition and in order, and that
keys spread over more than one partition.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.core.contract import decode_event
from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
    Position,
    ValidationContext,
)
from cityops.core.registry import Registry

pytestmark = pytest.mark.integration
PARTITIONS = 4
BASE = datetime(2026, 10, 1, 19, 0, tzinfo=UTC) + timedelta(hours=0)


def _events(feed: str, reg: Registry) -> list[Envelope]:
    out: list[Envelope] = []
    for i in range(12):
        t = BASE + timedelta(seconds=30 * i)
        if feed == "footfall":
            for c in reg.counters.values():
                out.append(FootfallObserved(
                    event_id=f"{c.id}:{i}", source=c.id, event_time=t, zone_id=c.zone_id,
                    entries=i * 3 + 1, exits=i, interval_s=30, dwell_s=41.5 + i))
        elif feed == "parking":
            for cp in reg.carparks.values():
                occ = min(cp.capacity, 50 * i)
                out.append(ParkingObserved(
                    event_id=f"{cp.id}:{i}", source=cp.id, carpark_id=cp.id, event_time=t,
                    capacity=cp.capacity, occupied=occ, free=cp.capacity - occ,
                    position=Position(lat=cp.lat, lon=cp.lon)))
        elif feed == "air":
            for st in reg.stations.values():
                out.append(AirQualityObserved(
                    event_id=f"{st.id}:{i}", source=st.id, station_id=st.id, event_time=t,
                    averaging_s=st.cadence_s, pm25_ugm3=30.5 + i, pm10_ugm3=55.0,
                    o3_ugm3=80.25, no2_ugm3=40.0 + i, co_mgm3=0.8, humidity_pct=75.0))
        else:
            for z in reg.zones.values():
                out.append(IncidentReported(
                    event_id=f"inc-{z.id}:{i}", source="cc_desk_1", incident_id=f"inc-{z.id}",
                    incident_type="medical", severity="high", zone_id=z.id,
                    status=["reported", "dispatched", "on_scene", "resolved"][i % 4],
                    event_time=t, description="傷者 需要帮助 — 解放碑"))
    return out


@pytest.mark.parametrize("feed", ["footfall", "parking", "air", "incidents"])
def test_feed_round_trips_through_real_broker(
    feed: str, kafka_broker: str, registry: Registry, topic_name: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.create_topics([NewTopic(topic_name, PARTITIONS, 1)])
    admin.close()
    events = _events(feed, registry)
    # incidents are keyed by incident, the others by source (sensor / site)
    key_of = ((lambda e: e.incident_id.encode()) if feed == "incidents" else
              (lambda e: e.key()))
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all", linger_ms=5)
    for e in events:
        producer.send(topic_name, key=key_of(e), value=e.to_json())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(topic_name, bootstrap_servers=kafka_broker,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000, group_id=None)
    got = []
    for m in consumer:  # ends at the expected count, or after 10 s of silence
        got.append(m)
        if len(got) == len(events):
            break
    consumer.close()
    assert len(got) == len(events)

    ctx = ValidationContext(registry=registry, now=datetime.now(UTC))
    decoded = [decode_event(feed, m.value, ctx) for m in got]
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)

    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    order_of_key: dict[bytes, list[str]] = defaultdict(list)
    for m, e in zip(got, decoded, strict=True):
        partitions_of_key[m.key].add(m.partition)
        order_of_key[m.key].append(e.event_id)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({next(iter(p)) for p in partitions_of_key.values()}) > 1
    sent_order: dict[bytes, list[str]] = defaultdict(list)
    for e in events:
        sent_order[key_of(e)].append(e.event_id)
    assert order_of_key == sent_order

"""Derived records made without validation, written by orjson: the same records, the same JSON.

The aggregators build their per-event records with ``DerivedRecord.trusted`` (no pydantic
validation) and every derived record is written with orjson (``DerivedRecord.to_json``).
Over the simulator's four feeds, with duplicates, late and out-of-order events, each record
an aggregator makes must validate again into an equal record (every field present, of its
type, within its bounds) and its JSON must be the bytes pydantic writes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.streams.aggregators import FootfallAggregator
from cityops.streams.feed_aggregators import aggregator_for
from cityops.streams.records import (
    DERIVED_RECORDS,
    AirQualityIndex,
    AlertEvent,
    AlertEventKind,
    AlertState,
    DeadLetter,
    FootfallWindow,
    IncidentStats,
    LateEvent,
    ParkingState,
    built,
)
from tests.simulated_clean import clean_events

EMITTED = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def pydantic_json(rec: Any) -> bytes:
    """What pydantic writes for the record (``model_dump_json``)."""
    return rec.__pydantic_serializer__.to_json(rec)


def assert_as_validated(rec: Any) -> None:
    again = type(rec).model_validate(dict(rec.__dict__))  # raises on a bound or a type
    assert again == rec
    assert again.to_json() == rec.to_json() == pydantic_json(rec) == pydantic_json(again)
    assert list(rec.__dict__) == list(type(rec).__pydantic_fields__)


@pytest.mark.parametrize("feed", FEEDS)
def test_every_record_an_aggregator_makes_validates_into_the_same_json(
        feed: str, settings: Settings, registry: Registry) -> None:
    agg = aggregator_for(feed, settings, registry)
    made: dict[type, int] = {}
    for ev in clean_events(registry, feed):
        unit = agg.unit(getattr(ev, "zone_id", None) or ev.source, 0)
        for rec in built(agg.add(unit, ev, EMITTED).records):
            assert_as_validated(rec)
            made[type(rec)] = made.get(type(rec), 0) + 1
    kinds = {"footfall": FootfallWindow, "parking": ParkingState, "air": AirQualityIndex,
             "incidents": IncidentStats}
    assert made.get(kinds[feed], 0) > 50, made


def test_closed_footfall_windows_are_made_alike(settings: Settings,
                                                registry: Registry) -> None:
    """Windows published when an idle zone's windows close (the timer's path)."""
    agg = FootfallAggregator(registry, settings.stream_allowed_lateness_s)
    for ev in clean_events(registry, "footfall", hours=1):
        agg.add(ev, EMITTED)
    closed = agg.close_all_until(EMITTED + timedelta(days=1), EMITTED)
    assert len(closed) > 10
    for rec in closed:
        assert_as_validated(rec)


def test_trusted_refuses_a_record_with_a_field_missing() -> None:
    with pytest.raises(TypeError, match="every field"):
        ParkingState.trusted(carpark_id="cp", event_time=EMITTED, capacity=10, occupied=1,
                             occupancy_rate=0.1, trend_per_min=0.0, emitted_at=EMITTED)


TIMES = [
    EMITTED,
    datetime(2026, 11, 1, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
    datetime(2026, 3, 29, 1, 30, 0, 500000, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(2026, 6, 1, 0, 0, 0, 1, tzinfo=ZoneInfo("UTC")),
    datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(0))),
    datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(1901, 1, 1, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
]
FLOATS = [0.0, -0.0, 1e-7, 0.1, 2.5, 12.0, 1e16, 123456789.123, 5e-324,
          1.7976931348623157e308, 0.30000000000000004, math.inf, -math.inf, math.nan]


def test_every_derived_record_kind_is_written_as_pydantic_writes_it() -> None:
    """Times in several zones (UTC as ``Z``), floats at their edges (non-finite as null),
    enums, nested lists and dicts, text to escape."""
    samples: list[Any] = []
    for t in TIMES:
        for f in FLOATS:
            samples += [
                ParkingState.model_construct(
                    carpark_id='cp-"1"\\é', event_time=t, capacity=3, occupied=2,
                    occupancy_rate=f, trend_per_min=f, minutes_to_full=None, emitted_at=t),
                FootfallWindow.model_construct(
                    zone_id="z\n1", window="hopping_5m", window_start=t, window_end=t,
                    entries=7, exits=0, events=2, net_presence=f, density_ppm2=f, revision=3,
                    emitted_at=EMITTED),
            ]
        samples += [
            AirQualityIndex(station_id="s1", hour_start=t, averaging="1h", pm25_ugm3=35.0,
                            iaqi={"pm25": 50, "o3_1h": 12}, aqi=50,
                            primary_pollutants=["pm25", "臭氧"], category="优", samples=4,
                            emitted_at=t),
            AlertEvent(alert_id="a", rule_id="crowd", rule_version="v1", subject="z1",
                       kind=AlertEventKind.FIRED, state=AlertState.ACTIVE_UNACK,
                       severity="major", value=2.5, threshold=2.0, event_time=t, emitted_at=t),
            LateEvent(feed="air", event_id="e1", source="s1", event_time=t, watermark=t,
                      lateness_s=12.25, payload_json='{"a": "b"}', received_at=t),
            DeadLetter.from_bytes(b"\xff\x00{", feed="air", reason="invalid", detail="x",
                                  source_topic="raw.air", received_at=t),
            IncidentStats(zone_id="z1", event_time=t, incident_id="i1", status="reported",
                          open_count=0, response_s=None, emitted_at=t),
        ]
    assert {type(s) for s in samples} == set(DERIVED_RECORDS)
    for rec in samples:
        assert rec.to_json() == pydantic_json(rec), rec


def test_a_late_reports_watermark_reads_as_a_time_in_the_district_zone(
        settings: Settings, registry: Registry) -> None:
    agg = FootfallAggregator(registry, settings.stream_allowed_lateness_s)
    events = clean_events(registry, "footfall", hours=2)
    for ev in events:
        agg.add(ev, EMITTED)
    first = events[0]
    out = agg.add(msgspec.structs.replace(first, event_id="late-1"), EMITTED)
    assert not out.accepted and out.lateness_s > 0
    assert out.watermark_s is not None and out.watermark is not None
    assert out.watermark.utcoffset() == timedelta(hours=8)
    assert out.watermark.timestamp() == pytest.approx(out.watermark_s)

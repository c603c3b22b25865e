"""A full warehouse of simulated data for ``check`` and the benchmark: raw and derived tables.

Raw rows come from ``warehouse.synth`` (evening peaks, rain, incident lifecycles, events on the
night and month edges). Derived rows come from the stream domain logic itself, the aggregators
and the alert engine of ``cityops.streams`` run in plain Python over the same events, so the
boards' live panels read what a worker would have written. The default span ends on the
National Day holiday night (国庆节, 1 October, from the packaged calendar), so night, holiday and
weekday panels all have data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.core.deadletter import DeadLetter
from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
)
from cityops.core.registry import Registry
from cityops.streams.aggregators import (
    AirQualityAggregator,
    FootfallAggregator,
    IncidentAggregator,
    ParkingAggregator,
)
from cityops.streams.alerts.machine import AlertEngine
from cityops.streams.alerts.rules import RuleSet
from cityops.streams.records import LateEvent
from cityops.warehouse.backend import Warehouse
from cityops.warehouse.rows import event_row, record_row
from cityops.warehouse.synth import synth_events

BATCH = 20_000


def default_end(timezone: str) -> datetime:
    """04:00 local on 2 October 2026: the National Day night has just ended."""
    return datetime(2026, 10, 2, 4, tzinfo=ZoneInfo(timezone))


def _insert(wh: Warehouse, rows: dict[str, list[dict]]) -> int:
    n = 0
    for table, data in rows.items():
        for i in range(0, len(data), BATCH):
            n += wh.insert(table, data[i:i + BATCH])
    return n


def fill_raw(wh: Warehouse, registry: Registry, start: datetime, end: datetime, *,
             timezone: str, seed: int = 9, coarse: bool = False) -> int:
    """Raw feed rows from ``start`` to ``end``, one day at a time (bounded memory), with the
    stream's hourly AQI records (small, and what the AQI board and alert read)."""
    steps = (dict(footfall_step_s=1800, parking_step_s=1800, air_step_s=3600,
                  incidents_per_day=8.0) if coarse else {})
    air = AirQualityAggregator(tz=ZoneInfo(timezone))
    total, day = 0, start
    while day < end:
        nxt = min(day + timedelta(days=1), end)
        rows: dict[str, list[dict]] = {}
        # incidents of the day run their whole lifecycle, even past midnight
        events = list(synth_events(registry, day, nxt + timedelta(hours=3),
                                   seed=seed + day.toordinal(), timezone=timezone,
                                   **steps))  # type: ignore[arg-type]
        today = {ev.incident_id for ev in events if isinstance(ev, IncidentReported)
                 and ev.status.value == "reported" and ev.event_time < nxt}
        for ev in events:
            keep = (ev.incident_id in today if isinstance(ev, IncidentReported)
                    else ev.event_time < nxt)
            if not keep:
                continue
            table, row = event_row(ev, ingested_at=ev.event_time + timedelta(seconds=1.5))
            rows.setdefault(table, []).append(row)
            if isinstance(ev, AirQualityObserved):  # the stream's hourly AQI, as the worker writes
                for rec in air.add(ev, ev.event_time + timedelta(seconds=1)).records:
                    t, r = record_row(rec)
                    rows.setdefault(t, []).append(r)
        total += _insert(wh, rows)
        day = nxt
    return total


def derived_records(registry: Registry, rules: RuleSet, events: list[Envelope], *,
                    timezone: str, lateness_s: float = 120.0) -> Iterator[object]:
    """What the stream worker publishes for ``events``: windows, states, AQI, stats, alerts."""
    from cityops.streams.alerting import incident_observation, observations_from

    tz = ZoneInfo(timezone)
    foot = FootfallAggregator(registry, lateness_s, tz=tz)
    park, air, inc = ParkingAggregator(tz=tz), AirQualityAggregator(tz=tz), IncidentAggregator(tz)
    events = sorted(events, key=lambda e: e.event_time)
    now = {"t": events[0].event_time if events else datetime.now(UTC)}
    engine = AlertEngine(rules, registry, clock=lambda: now["t"])
    next_tick = now["t"]
    for ev in events:
        now["t"] = ev.event_time
        emitted = ev.event_time + timedelta(seconds=1)
        while next_tick <= ev.event_time:
            yield from engine.tick(next_tick)
            next_tick += timedelta(seconds=60)
        yield from engine.heartbeat(ev.source, ev.event_time)
        if isinstance(ev, FootfallObserved):
            out = foot.add(ev, emitted)
        elif isinstance(ev, ParkingObserved):
            out = park.add(ev, emitted)
        elif isinstance(ev, AirQualityObserved):
            out = air.add(ev, emitted)
        elif isinstance(ev, IncidentReported):
            out = inc.add(ev, emitted)
        else:  # pragma: no cover - synth makes only the four feeds
            continue
        if not out.accepted and out.lateness_s > 0:
            yield LateEvent(feed=ev.feed,
                            event_id=ev.event_id, source=ev.source, event_time=ev.event_time,
                            watermark=out.watermark or ev.event_time, lateness_s=out.lateness_s,
                            payload_json="{}", received_at=emitted)
        yield from out.records
        for obs in observations_from(out.records, ev.event_time):
            yield from engine.observed(obs["kind"], obs["subject"], obs["value"], obs["ts"])
        for rec in out.records:
            if isinstance(ev, IncidentReported) and type(rec).__name__ == "IncidentStats":
                obs = incident_observation(rec, ev.severity.value)
                yield from engine.observe("incident", obs["subject"], obs["value"],
                                          ev.event_time)


def dead_letters(start: datetime, end: datetime, every: timedelta) -> list[DeadLetter]:
    """A few dead letters of each reason across the span (the pipeline board's bars)."""
    out, t, i = [], start, 0
    reasons = ("malformed_json", "out_of_range", "unknown_source", "schema_version")
    while t < end:
        out.append(DeadLetter.from_bytes(
            b'{"bad": ' + str(i).encode(), feed=("footfall", "parking", "air")[i % 3],
            reason=reasons[i % len(reasons)], detail="simulated", source_topic="raw",
            source_partition=0, source_offset=i, received_at=t, stage="ingest"))
        t += every
        i += 1
    return out


def fill_derived(wh: Warehouse, registry: Registry, rules: RuleSet, start: datetime,
                 end: datetime, *, timezone: str, seed: int = 9) -> int:
    """Derived rows for ``start``–``end`` from the stream logic over freshly simulated events."""
    events = list(synth_events(registry, start, end, seed=seed, timezone=timezone,
                               footfall_step_s=60, parking_step_s=120, air_step_s=600,
                               incidents_per_day=24.0))
    rows: dict[str, list[dict]] = {}
    for ev in events:
        table, row = event_row(ev, ingested_at=ev.event_time + timedelta(seconds=1.5))
        rows.setdefault(table, []).append(row)
    for rec in derived_records(registry, rules, events, timezone=timezone):
        table, row = record_row(rec)  # type: ignore[arg-type]
        rows.setdefault(table, []).append(row)
    for extra in [*dead_letters(start, end, timedelta(minutes=7)),
                  *late_events(start, end, timedelta(minutes=13))]:
        table, row = record_row(extra)
        rows.setdefault(table, []).append(row)
    return _insert(wh, rows)


def fill(wh: Warehouse, registry: Registry, rules: RuleSet, *, timezone: str, end: datetime,
         raw_days: float, live_hours: float) -> dict[str, int]:
    """Coarse raw history of ``raw_days`` before the live span, then ``live_hours`` in full."""
    live_start = end - timedelta(hours=live_hours)
    raw = fill_raw(wh, registry, end - timedelta(days=raw_days), live_start,
                   timezone=timezone, coarse=True)
    live = fill_derived(wh, registry, rules, live_start, end, timezone=timezone)
    return {"history_rows": raw, "live_rows": live}


def late_events(start: datetime, end: datetime, every: timedelta) -> list[LateEvent]:
    """A few late events across the span (the pipeline board's late-event series)."""
    out, t, i = [], start, 0
    while t < end:
        out.append(LateEvent(feed="footfall", event_id=f"late{i}", source="sim",
                             event_time=t - timedelta(minutes=10), watermark=t,
                             lateness_s=600.0, payload_json="{}", received_at=t))
        t += every
        i += 1
    return out

"""A small deterministic generator of raw warehouse rows, for tests, the benchmark and demos.

It builds real feed models (so rows go through ``rows.event_row`` exactly as the sink's do) on
a fixed step per sensor, with an evening peak, a few rainy hours and incident lifecycles, and
adds events *exactly* on the edges that matter to rollups and the night view: 18:00:00.000,
23:59:59.999, 00:00:00.000, 01:59:59.999, 02:00:00.000 local time and month ends. For
realistic volumes (the 30-day benchmark) use ``cityops.ingest.simulate`` instead.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
    ParkingStatus,
)
from cityops.core.registry import Registry
from cityops.warehouse.rows import event_row

EDGE_TIMES = ((17, 59, 59, 999), (18, 0, 0, 0), (23, 59, 59, 999), (0, 0, 0, 0),
              (1, 59, 59, 999), (2, 0, 0, 0))


def _hour_weight(hour: int) -> float:
    """Relative footfall by local hour: quiet night, midday bump, evening peak."""
    return 0.15 + 0.5 * math.exp(-((hour - 13) ** 2) / 8) + 1.0 * math.exp(-((hour - 20) ** 2) / 6)


def edge_moments(start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    out = []
    day = start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for h, m, s, ms in EDGE_TIMES:
            t = day.replace(hour=h, minute=m, second=s, microsecond=ms * 1000)
            if start <= t < end:
                out.append(t)
        day += timedelta(days=1)
    return out


def synth_events(registry: Registry, start: datetime, end: datetime, *, seed: int = 7,
                 footfall_step_s: int = 600, parking_step_s: int = 900,
                 air_step_s: int = 1800, incidents_per_day: float = 8.0,
                 timezone: str | None = None, edges: bool = True) -> Iterator[Envelope]:
    """Feed events between ``start`` and ``end`` (aware datetimes), deterministic per seed;
    edges in ``timezone`` (default: the registry's district zone)."""
    tz = ZoneInfo(timezone or registry.manifest.timezone)
    rng = random.Random(seed)
    step_ff, step_pk, step_aq = (timedelta(seconds=s) for s in
                                 (footfall_step_s, parking_step_s, air_step_s))
    extra = edge_moments(start, end, tz) if edges else []
    # footfall
    moments = sorted({*_range(start, end, step_ff), *extra})
    for t in moments:
        w = _hour_weight(t.astimezone(tz).hour)
        for c in registry.counters.values():
            base = 40 * w * (1.3 if t.astimezone(tz).isoweekday() >= 5 else 1.0)
            yield FootfallObserved(
                event_id=f"{c.id}:{int(t.timestamp() * 1000)}", source=c.id, event_time=t,
                zone_id=c.zone_id, entries=int(rng.random() * base * 2),
                exits=int(rng.random() * base * 2), interval_s=footfall_step_s,
                density_ppm2=round(rng.random() * w * 1.5, 3))
    # parking
    for t in sorted({*_range(start, end, step_pk), *extra}):
        hour = t.astimezone(tz).hour
        for cp in registry.carparks.values():
            level = min(1.0, 0.25 + 0.8 * _hour_weight(hour) / 1.15 + rng.uniform(-0.05, 0.1))
            occupied = min(cp.capacity, int(cp.capacity * max(level, 0)))
            status = (ParkingStatus.FULL if occupied >= cp.capacity else
                      ParkingStatus.ALMOST_FULL if occupied >= cp.capacity * 0.95 else
                      ParkingStatus.OPEN)
            yield ParkingObserved(
                event_id=f"{cp.id}:{int(t.timestamp() * 1000)}", source=cp.id, event_time=t,
                carpark_id=cp.id, capacity=cp.capacity, occupied=occupied,
                free=cp.capacity - occupied, status=status)
    # air quality: rainy spells raise humidity and wash out particles
    for t in sorted({*_range(start, end, step_aq), *extra}):
        local = t.astimezone(tz)
        rainy = (local.toordinal() * 7 + local.hour // 6) % 5 == 0
        for st in registry.stations.values():
            pm25 = round(max(1.0, rng.gauss(60 if not rainy else 25, 20)), 1)
            yield AirQualityObserved(
                event_id=f"{st.id}:{int(t.timestamp() * 1000)}", source=st.id, event_time=t,
                station_id=st.id, averaging_s=air_step_s, pm25_ugm3=pm25,
                pm10_ugm3=round(pm25 * 1.6, 1), o3_ugm3=round(max(0, rng.gauss(90, 40)), 1),
                no2_ugm3=round(max(0, rng.gauss(45, 15)), 1),
                so2_ugm3=round(max(0, rng.gauss(8, 3)), 1),
                co_mgm3=round(max(0, rng.gauss(0.8, 0.3)), 2),
                temperature_c=round(rng.uniform(4, 12), 1),
                humidity_pct=round(rng.uniform(96, 100) if rainy else rng.uniform(55, 85), 1))
    # incidents: lifecycles, some crossing midnight or a month end
    zones = sorted(registry.zones)
    hours = (end - start).total_seconds() / 3600
    n = max(1, int(incidents_per_day * hours / 24))
    types = ("medical", "fall", "theft", "lost_person", "crowd_crush_risk", "escalator_fault")
    for i in range(n):
        reported = start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))
        zone = zones[i % len(zones)]
        kind = types[rng.randrange(len(types))]
        severity = ("low", "medium", "high", "critical")[rng.randrange(4)]
        times = [reported]
        for lo, hi in ((60, 300), (120, 900), (600, 3600)):
            times.append(times[-1] + timedelta(seconds=rng.uniform(lo, hi)))
        for j, (stage, t) in enumerate(zip(("reported", "dispatched", "on_scene", "resolved"),
                                           times, strict=True)):
            if t >= end:
                break
            yield IncidentReported(
                event_id=f"inc{seed}_{i}:{j}", source=zone, event_time=t,
                incident_id=f"inc{seed}_{i}", incident_type=kind, severity=severity,
                zone_id=zone, status=stage)


def _range(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += step


def synth_rows(registry: Registry, start: datetime, end: datetime,
               **kw: object) -> dict[str, list[dict]]:
    """``{table: rows}`` of ``synth_events``; ``ingested_at`` fixed for reproducible batches."""
    out: dict[str, list[dict]] = {}
    for ev in synth_events(registry, start, end, **kw):  # type: ignore[arg-type]
        table, row = event_row(ev, ingested_at=start)
        out.setdefault(table, []).append(row)
    return out

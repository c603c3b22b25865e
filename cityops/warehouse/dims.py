"""Dimension rows: the site registry and the official calendar as table rows (pure logic)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import orjson

from cityops.core.holidays import FIRST_YEAR, LAST_YEAR, calendar_day
from cityops.core.registry import Registry


def calendar_rows(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR + 1) -> list[dict]:
    """One row per date: official holidays and make-up working days from chinese-calendar
    (``cityops.core.holidays``) for the years it covers, weekends only for the year after."""
    rows = []
    d, end = date(first_year, 1, 1), date(last_year, 12, 31)
    while d <= end:
        day = calendar_day(d)
        rows.append({
            "date": d, "weekday": d.isoweekday(), "is_weekend": day.is_weekend,
            "is_holiday": day.is_holiday, "holiday_name": day.name,
            "is_workday": day.is_workday})
        d += timedelta(days=1)
    return rows


def registry_rows(reg: Registry) -> dict[str, list[dict]]:
    """Rows of dim_zones, dim_counters, dim_carparks and dim_stations."""
    version = reg.version
    zones = [{
        "zone_id": z.id, "name_zh": z.name_zh, "name_en": z.name_en, "kind": z.kind,
        "area_m2": z.area_m2, "lat": z.lat, "lon": z.lon,
        "density_warning_ppm2": z.density_warning_ppm2,
        "density_critical_ppm2": z.density_critical_ppm2, "approximate": z.approximate,
        "registry_version": version} for z in reg.zones.values()]
    counters = [{
        "counter_id": c.id, "zone_id": c.zone_id, "technology": c.technology,
        "cadence_s": c.cadence_s, "registry_version": version} for c in reg.counters.values()]
    carparks = [{
        "carpark_id": c.id, "name_zh": c.name_zh, "name_en": c.name_en, "capacity": c.capacity,
        "ring_road": c.ring_road, "cadence_s": c.cadence_s, "neighbours": list(c.neighbours),
        "lat": c.lat, "lon": c.lon, "approximate": c.approximate, "registry_version": version}
        for c in reg.carparks.values()]
    stations = [{
        "station_id": s.id, "name_zh": s.name_zh, "name_en": s.name_en, "kind": s.kind,
        "cadence_s": s.cadence_s, "zone_id": s.zone_id, "lat": s.lat, "lon": s.lon,
        "approximate": s.approximate, "registry_version": version}
        for s in reg.stations.values()]
    return {"dim_zones": zones, "dim_counters": counters, "dim_carparks": carparks,
            "dim_stations": stations}


def dimension_rows(reg: Registry) -> dict[str, list[dict]]:
    rows = registry_rows(reg)
    rows["dim_calendar"] = calendar_rows()
    return rows


def content_hash(rows: dict[str, list[dict]]) -> str:
    """Stable hash of dimension content: reload only when it changes."""
    blob = orjson.dumps(rows, default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:16]

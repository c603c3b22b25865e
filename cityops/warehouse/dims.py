"""Dimension rows: the site registry and the holiday calendar as table rows (pure logic)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import orjson
import yaml

from cityops.core.registry import Registry

CALENDAR_FILE = Path(__file__).resolve().parent / "data" / "calendar_cn.yaml"


@dataclass(frozen=True)
class Holiday:
    name: str
    start: date
    end: date
    workdays: tuple[date, ...] = ()


def load_holidays(path: Path = CALENDAR_FILE) -> tuple[list[int], list[Holiday]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = [Holiday(h["name"], h["from"], h["to"], tuple(h.get("workdays") or ()))
           for h in data["holidays"]]
    return list(data["years"]), out


def calendar_rows(path: Path = CALENDAR_FILE, first_year: int | None = None,
                  last_year: int | None = None) -> list[dict]:
    """One row per date of the covered years (plus one year either side, weekends only)."""
    years, holidays = load_holidays(path)
    start = date((first_year or min(years) - 1), 1, 1)
    end = date((last_year or max(years) + 1), 12, 31)
    names: dict[date, str] = {}
    makeup: set[date] = set()
    for h in holidays:
        d = h.start
        while d <= h.end:
            names[d] = h.name
            d += timedelta(days=1)
        makeup.update(h.workdays)
    rows = []
    d = start
    while d <= end:
        weekday = d.isoweekday()
        weekend = weekday >= 6
        holiday = d in names
        rows.append({
            "date": d, "weekday": weekday, "is_weekend": weekend, "is_holiday": holiday,
            "holiday_name": names.get(d, ""),
            "is_workday": (not holiday) and (not weekend or d in makeup),
        })
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


def dimension_rows(reg: Registry, calendar: Path = CALENDAR_FILE) -> dict[str, list[dict]]:
    rows = registry_rows(reg)
    rows["dim_calendar"] = calendar_rows(calendar)
    return rows


def content_hash(rows: dict[str, list[dict]]) -> str:
    """Stable hash of dimension content: reload only when it changes."""
    blob = orjson.dumps(rows, default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:16]

"""Hourly AQI arithmetic (HJ 633-2012) and the calendar / registry dimension rows."""

from __future__ import annotations

from datetime import date

import pytest

from cityops.core.registry import Registry
from cityops.warehouse.aqi_sql import (
    BREAKPOINTS,
    aqi_py,
    category_py,
    iaqi_py,
    iaqi_sql,
    render_context,
)
from cityops.warehouse.dims import calendar_rows, content_hash, dimension_rows, registry_rows


@pytest.mark.parametrize(("pollutant", "c", "iaqi"), [
    ("pm25", 0, 0), ("pm25", 35, 50), ("pm25", 35.1, 51), ("pm25", 75, 100), ("pm25", 36, 52),
    ("pm25", 500, 500), ("pm25", 900, 500), ("pm10", 150, 100), ("o3", 160, 50),
    ("o3", 200, 100), ("no2", 100, 50), ("co", 10, 100), ("so2", 150, 50), ("so2", 800, 200),
    ("so2", 801, 201),  # above 800 µg/m³ the 24-hour table applies: (801-800)/800*100+200
    ("pm25", None, None), ("pm25", -3, 0),
])
def test_iaqi(pollutant: str, c: float | None, iaqi: int | None) -> None:
    assert iaqi_py(pollutant, c) == iaqi


def test_aqi_primary_and_category() -> None:
    assert aqi_py({"pm25": 20, "pm10": 30}) == (30, [])  # ≤ 50: no primary pollutant
    assert aqi_py({"pm25": 80, "pm10": 100, "o3": 100}) == (107, ["PM2.5"])
    assert aqi_py({}) == (None, [])
    assert [category_py(a) for a in (None, 50, 51, 150, 201, 301)] == [
        "", "优", "良", "轻度污染", "重度污染", "严重污染"]


def test_sql_expressions_cover_every_pollutant() -> None:
    ctx = render_context()
    assert set(ctx) == {f"iaqi_{p}" for p in BREAKPOINTS} | {"aqi", "primary", "category"}
    assert iaqi_sql("pm25", "x").startswith("if(isNull(x), NULL, multiIf(")
    assert "SO2" in ctx["primary"] and "严重污染" in ctx["category"]


def test_calendar_rows() -> None:
    rows = {r["date"]: r for r in calendar_rows()}
    assert rows[date(2026, 2, 15)]["is_holiday"] and not rows[date(2026, 2, 15)]["is_workday"]
    assert rows[date(2026, 2, 14)]["is_workday"] and rows[date(2026, 2, 14)]["weekday"] == 6
    assert rows[date(2026, 10, 7)]["holiday_name"].startswith("National Day")
    assert not rows[date(2026, 3, 7)]["is_workday"] and rows[date(2026, 3, 7)]["is_weekend"]
    assert rows[date(2025, 10, 8)]["is_holiday"]
    assert min(rows) == date(2023, 1, 1) and max(rows) == date(2027, 12, 31)


def test_registry_rows_and_hash(registry: Registry) -> None:
    rows = registry_rows(registry)
    assert len(rows["dim_zones"]) == len(registry.zones)
    assert {r["counter_id"] for r in rows["dim_counters"]} == set(registry.counters)
    cp = next(r for r in rows["dim_carparks"] if r["carpark_id"] == "cp_wfc")
    assert cp["ring_road"] is True and isinstance(cp["neighbours"], list)
    assert all(r["registry_version"] == registry.version for r in rows["dim_stations"])
    assert content_hash(dimension_rows(registry)) == content_hash(dimension_rows(registry))

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


def test_calendar_rows_from_the_official_arrangements() -> None:
    """Known dates of the State Council notices (国办发明电〔2024〕12号, 〔2025〕7号)."""
    rows = {r["date"]: r for r in calendar_rows()}

    def day(y: int, m: int, d: int) -> tuple:
        r = rows[date(y, m, d)]
        return r["is_holiday"], r["is_workday"], r["holiday_name"]

    # 2026 Spring Festival: 15–23 Feb off (Lunar New Year's Day is Tue 17 Feb); Saturdays
    # 14 and 28 Feb are make-up working days
    assert day(2026, 2, 17) == (True, False, "Spring Festival 春节")
    assert day(2026, 2, 15)[:2] == (True, False) and day(2026, 2, 23)[:2] == (True, False)
    assert day(2026, 2, 14) == (False, True, "") and rows[date(2026, 2, 14)]["weekday"] == 6
    assert day(2026, 2, 28) == (False, True, "") and rows[date(2026, 2, 28)]["is_weekend"]
    assert day(2026, 2, 24) == (False, True, "")
    # 2026 National Day: 1–7 Oct off; Sunday 20 Sep and Saturday 10 Oct are working days
    assert day(2026, 10, 1) == (True, False, "National Day 国庆节")
    assert day(2026, 10, 7)[:2] == (True, False)
    assert day(2026, 9, 20) == (False, True, "") and day(2026, 10, 10) == (False, True, "")
    assert day(2026, 10, 8) == (False, True, "")
    # the festivals the hand-made calendar lacked
    assert day(2026, 4, 5) == (True, False, "Tomb-sweeping Day 清明")
    assert day(2026, 6, 19) == (True, False, "Dragon Boat Festival 端午")
    assert day(2026, 9, 25) == (True, False, "Mid-autumn Festival 中秋")
    # 2025: Mid-Autumn fell inside the National Day break (1–8 Oct)
    assert day(2025, 10, 6) == (True, False, "Mid-autumn Festival 中秋")
    assert day(2025, 10, 8)[:2] == (True, False)
    # an ordinary weekend is neither a holiday nor a working day
    assert day(2026, 3, 7) == (False, False, "") and rows[date(2026, 3, 7)]["is_weekend"]
    # the year after the package's last notice: weekends only
    last = max(rows)
    assert rows[last]["is_workday"] == (last.isoweekday() < 6) and not rows[last]["is_holiday"]


def test_registry_rows_and_hash(registry: Registry) -> None:
    rows = registry_rows(registry)
    assert len(rows["dim_zones"]) == len(registry.zones)
    assert {r["counter_id"] for r in rows["dim_counters"]} == set(registry.counters)
    cp = next(r for r in rows["dim_carparks"] if r["carpark_id"] == "cp_wfc")
    assert cp["ring_road"] is True and isinstance(cp["neighbours"], list)
    assert all(r["registry_version"] == registry.version for r in rows["dim_stations"])
    assert content_hash(dimension_rows(registry)) == content_hash(dimension_rows(registry))

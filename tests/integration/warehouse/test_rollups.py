"""Rollups equal the same aggregation over the raw rows, exactly — computed by ClickHouse from
the raw table and, independently, in Python from the generated rows — on data that covers a
month end, day boundaries and the midnight of a night (events exactly on 18:00, 23:59:59.999,
00:00, 01:59:59.999 and 02:00 local time)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from cityops.warehouse.aqi_sql import aqi_py, category_py, iaqi_py
from cityops.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def _local(t: datetime) -> datetime:
    return t.astimezone(TZ)


def test_footfall_rollups_equal_raw(seeded_wh: EmbeddedWarehouse, seeded: dict) -> None:
    for view, bucket in (("footfall_zone_1m", "toStartOfMinute"),
                         ("footfall_zone_1h", "toStartOfHour")):
        col = "minute" if view.endswith("1m") else "hour"
        rollup = seeded_wh.query(
            f"SELECT zone_id, {col}, entries, exits, reports, max_density_ppm2 FROM {view} "
            f"ORDER BY zone_id, {col}")
        raw = seeded_wh.query(
            f"SELECT zone_id, {bucket}(event_time) AS b, sum(entries), sum(exits), count(), "
            "max(density_ppm2) FROM footfall_observed FINAL GROUP BY zone_id, b "
            "ORDER BY zone_id, b")
        assert rollup == raw, view

    # independent check in Python, bucketing in local time
    expected: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in seeded["footfall_observed"]:
        hour = _local(r["event_time"]).replace(minute=0, second=0, microsecond=0)
        e = expected[(r["zone_id"], hour)]
        e[0] += r["entries"]
        e[1] += r["exits"]
        e[2] += 1
    got = {(z, h): [a, b, c] for z, h, a, b, c in seeded_wh.query(
        "SELECT zone_id, hour, entries, exits, reports FROM footfall_zone_1h")}
    assert got == dict(expected)


def test_month_and_day_boundaries(seeded_wh: EmbeddedWarehouse) -> None:
    # 2026-02-01 00:00 local (= 2026-01-31 16:00 UTC) belongs to February
    parts = dict(seeded_wh.query(
        "SELECT hour, _partition_id FROM agg_footfall_zone_1h WHERE hour IN "
        "(toDateTime('2026-01-31 23:00:00', 'Asia/Shanghai'), "
        " toDateTime('2026-02-01 00:00:00', 'Asia/Shanghai'))"))
    assert sorted(set(parts.values())) == ["202601", "202602"]
    # the event at 23:59:59.999 is in the 23:59 minute, the one at 00:00 in the next day
    minutes = seeded_wh.query(
        "SELECT toString(minute), sum(reports) FROM footfall_zone_1m WHERE minute BETWEEN "
        "toDateTime('2026-01-31 23:58:00', 'Asia/Shanghai') AND "
        "toDateTime('2026-02-01 00:00:00', 'Asia/Shanghai') GROUP BY minute ORDER BY minute")
    assert [m for m, _ in minutes] == ["2026-01-31 23:59:00", "2026-02-01 00:00:00"]


def test_night_view_assigns_the_early_hours_to_the_evening(
        seeded_wh: EmbeddedWarehouse, seeded: dict) -> None:
    expected: dict[tuple[date, str], int] = defaultdict(int)
    for r in seeded["footfall_observed"]:
        t = _local(r["event_time"])
        if t.hour >= 18 or t.hour < 2:
            expected[((t - timedelta(hours=2)).date(), r["zone_id"])] += r["entries"]
    got = {(d, z): e for d, z, e in seeded_wh.query(
        "SELECT night_date, zone_id, entries FROM night_footfall")}
    assert got == dict(expected)
    # the reports at 01:59:59.999 on 1 Feb count for the night of 31 Jan; 02:00 for none
    edge = {r["event_id"] for r in seeded["footfall_observed"]
            if _local(r["event_time"]).strftime("%m-%d %H:%M:%S.%f") == "02-01 01:59:59.999000"}
    assert edge
    nights = seeded_wh.query(
        "SELECT DISTINCT toDate(event_time - INTERVAL 2 HOUR) FROM footfall_observed "
        "WHERE event_id IN {ids:Array(String)}", {"ids": sorted(edge)})
    assert nights == [(date(2026, 1, 31),)]
    holiday = dict(seeded_wh.query(
        "SELECT night_date, any(is_holiday) FROM night_footfall GROUP BY night_date"))
    assert holiday[date(2026, 2, 15)] and not holiday[date(2026, 2, 14)]


def test_parking_rollup_equals_raw(seeded_wh: EmbeddedWarehouse) -> None:
    rollup = seeded_wh.query(
        "SELECT carpark_id, hour, samples, occupied_avg, occupied_min, occupied_max, capacity, "
        "occupied_last, full_samples FROM parking_1h ORDER BY carpark_id, hour")
    raw = seeded_wh.query(
        "SELECT carpark_id, toStartOfHour(event_time) AS h, count(), sum(occupied) / count(), "
        "min(occupied), max(occupied), max(capacity), argMax(occupied, event_time), "
        "countIf(status = 'full' OR occupied >= capacity) FROM parking_observed FINAL "
        "GROUP BY carpark_id, h ORDER BY carpark_id, h")
    assert rollup == raw and len(raw) > 100


def test_air_rollup_equals_raw_and_aqi_matches_python(seeded_wh: EmbeddedWarehouse,
                                                      seeded: dict) -> None:
    pollutants = ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")
    rollup = seeded_wh.query(
        f"SELECT station_id, hour, samples, {', '.join(pollutants)} FROM air_quality_1h "
        "ORDER BY station_id, hour")
    rounded = "toDecimal128(ifNull({p}, 0) + if(ifNull({p}, 0) >= 0, 0.0005, -0.0005), 3)"
    means = ", ".join(f"toFloat64(sum({rounded.format(p=p)})) / count({p})"
                      for p in pollutants)
    raw = seeded_wh.query(
        f"SELECT station_id, toStartOfHour(event_time) AS h, count(), {means} "
        "FROM air_quality_observed FINAL GROUP BY station_id, h ORDER BY station_id, h")
    assert rollup == raw

    # Python: exact decimal means (3 places, as stored), then HJ 633 hourly AQI
    sums: dict[tuple[str, datetime], dict[str, list[Decimal]]] = defaultdict(
        lambda: defaultdict(list))
    for r in seeded["air_quality_observed"]:
        key = (r["station_id"], _local(r["event_time"]).replace(minute=0, second=0,
                                                                 microsecond=0))
        for p in pollutants:
            sums[key][p].append(Decimal(str(r[p])).quantize(Decimal("0.001")))
    # the stored means are the readings' own decimal means (no float truncation: 32.3 stays)
    for station, hour, _samples, *values in rollup:
        for p, got in zip(pollutants, values, strict=True):
            vals = sums[(station, hour)][p]
            assert got == pytest.approx(float(sum(vals) / len(vals)), abs=1e-9), (station, p)
    rows = seeded_wh.query(
        "SELECT station_id, hour, iaqi_pm25, aqi, primary_pollutants, category "
        "FROM air_quality_1h")
    assert len(rows) == len(sums)
    for station, hour, iaqi_pm25, aqi, primary, category in rows:
        m = {p.split("_")[0]: float(sum(v) / len(v)) for p, v in sums[(station, hour)].items()}
        assert iaqi_pm25 == iaqi_py("pm25", m["pm25"])
        exp_aqi, exp_primary = aqi_py(m)
        assert (aqi, sorted(primary), category) == (exp_aqi, sorted(exp_primary),
                                                    category_py(exp_aqi))


def test_incident_rollup_equals_raw(seeded_wh: EmbeddedWarehouse) -> None:
    rollup = seeded_wh.query(
        "SELECT zone_id, incident_type, hour, updates, reported, dispatched, on_scene, "
        "resolved, incidents FROM incidents_1h ORDER BY zone_id, incident_type, hour")
    raw = seeded_wh.query(
        "SELECT zone_id, incident_type, toStartOfHour(event_time) AS h, count(), "
        "countIf(status = 'reported'), countIf(status = 'dispatched'), "
        "countIf(status = 'on_scene'), countIf(status = 'resolved'), uniqExact(incident_id) "
        "FROM incidents_reported FINAL GROUP BY zone_id, incident_type, h "
        "ORDER BY zone_id, incident_type, h")
    assert rollup == raw and raw
    lifecycle = seeded_wh.query(
        "SELECT count(), countIf(response_s > 0) FROM incident_lifecycle")
    total = seeded_wh.query("SELECT uniqExact(incident_id) FROM incidents_reported")[0][0]
    assert lifecycle[0][0] == total and lifecycle[0][1] > 0

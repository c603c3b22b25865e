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

from cityops.core.intervals import MINUTE_MS, interval_ms, spread_aligned, spread_hours
from cityops.warehouse.aqi_sql import aqi_py, category_py, iaqi_py
from cityops.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def _local(t: datetime) -> datetime:
    return t.astimezone(TZ)


def _spread_expected(rows: list[dict]) -> tuple[dict, dict]:
    """Rollups worked out in Python from the interval rule (cityops.core.intervals)."""
    minutes: dict[tuple[str, datetime], list] = defaultdict(lambda: [0, 0, 0, None])
    hours: dict[tuple[str, datetime], list] = defaultdict(lambda: [0, 0, 0, None])
    for r in rows:
        end_ms = round(r["event_time"].timestamp() * 1000)
        start_ms, end_ms = interval_ms(end_ms, r["interval_s"])
        for out, split in ((minutes, lambda n, a=start_ms, b=end_ms:
                            spread_aligned(n, a, b, MINUTE_MS)),
                           (hours, lambda n, a=start_ms, b=end_ms: spread_hours(n, a, b, TZ))):
            ins, outs = split(r["entries"]), split(r["exits"])
            for i, ((b, e), (_, x)) in enumerate(zip(ins, outs, strict=True)):
                acc = out[(r["zone_id"], datetime.fromtimestamp(b / 1000, TZ))]
                acc[0] += e
                acc[1] += x
                acc[2] += 1 if i == 0 else 0
                d = r.get("density_ppm2")
                if d is not None:
                    acc[3] = d if acc[3] is None else max(acc[3], d)
    return dict(minutes), dict(hours)


def test_footfall_rollups_spread_intervals(seeded_wh: EmbeddedWarehouse, seeded: dict) -> None:
    minutes, hours = _spread_expected(seeded["footfall_observed"])
    for view, expected in (("footfall_zone_1m", minutes), ("footfall_zone_1h", hours)):
        col = "minute" if view.endswith("1m") else "hour"
        got = {(z, b): [e, x, n, d] for z, b, e, x, n, d in seeded_wh.query(
            f"SELECT zone_id, {col}, entries, exits, reports, max_density_ppm2 FROM {view}")}
        assert got.keys() == expected.keys(), view
        for key, (e, x, n, d) in expected.items():
            g = got[key]
            assert g[:3] == [e, x, n], (view, key)
            assert (g[3] is None) == (d is None) and (d is None or abs(g[3] - d) < 1e-4)


def test_month_and_day_boundaries(seeded_wh: EmbeddedWarehouse, seeded: dict) -> None:
    # 2026-02-01 00:00 local (= 2026-01-31 16:00 UTC) belongs to February
    parts = dict(seeded_wh.query(
        "SELECT hour, _partition_id FROM agg_footfall_zone_1h WHERE hour IN "
        "(toDateTime('2026-01-31 23:00:00', 'Asia/Shanghai'), "
        " toDateTime('2026-02-01 00:00:00', 'Asia/Shanghai'))"))
    assert sorted(set(parts.values())) == ["202601", "202602"]
    # a report ending at 00:00:00.000 covers the last seconds of 31 January: its people
    # are in the 23:59 minute, and the next day starts with the report ending after it
    minutes = dict(seeded_wh.query(
        "SELECT toString(minute), sum(entries) FROM footfall_zone_1m WHERE minute BETWEEN "
        "toDateTime('2026-01-31 23:59:00', 'Asia/Shanghai') AND "
        "toDateTime('2026-02-01 00:00:00', 'Asia/Shanghai') GROUP BY minute"))
    expected, _ = _spread_expected(seeded["footfall_observed"])
    for label in ("2026-01-31 23:59:00", "2026-02-01 00:00:00"):
        b = datetime.fromisoformat(label).replace(tzinfo=TZ)
        assert minutes.get(label, 0) == sum(v[0] for (_, m), v in expected.items() if m == b)


def test_night_view_counts_intervals_inside_18_to_02(
        seeded_wh: EmbeddedWarehouse, seeded: dict) -> None:
    _, hours = _spread_expected(seeded["footfall_observed"])
    expected: dict[tuple[date, str], int] = defaultdict(int)
    for (zone, h), (e, _x, _n, _d) in hours.items():
        if h.hour >= 18 or h.hour < 2:
            night = h.date() - timedelta(days=1) if h.hour < 2 else h.date()
            expected[(night, zone)] += e
    got = {(d, z): e for d, z, e in seeded_wh.query(
        "SELECT night_date, zone_id, entries FROM night_footfall")}
    assert got == {k: v for k, v in expected.items() if v or k in got}
    # the report ending at 02:00:00.000 on 1 Feb covers 01:59:xx: it counts for the night of
    # 31 Jan; the one ending at 18:00:00.000 covers 17:59:xx: it does not count for any night
    edge = [r for r in seeded["footfall_observed"]
            if _local(r["event_time"]).strftime("%m-%d %H:%M:%S.%f") == "02-01 02:00:00.000000"]
    assert edge
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
    # each sample in the hour of its midpoint, [event_time − averaging_s, event_time)
    raw = seeded_wh.query(
        "SELECT station_id, toStartOfHour(event_time - toIntervalMillisecond("
        f"toUInt64(averaging_s) * 500)) AS h, count(), {means} "
        "FROM air_quality_observed FINAL GROUP BY station_id, h ORDER BY station_id, h")
    assert rollup == raw

    # Python: exact decimal means (3 places, as stored), then HJ 633 hourly AQI
    sums: dict[tuple[str, datetime], dict[str, list[Decimal]]] = defaultdict(
        lambda: defaultdict(list))
    for r in seeded["air_quality_observed"]:
        mid = r["event_time"] - timedelta(seconds=r["averaging_s"] / 2)
        key = (r["station_id"], _local(mid).replace(minute=0, second=0, microsecond=0))
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

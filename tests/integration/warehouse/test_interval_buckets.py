"""Footfall counted where its interval lies: hand-computed fixtures on the real chdb engine.

A report covers [event_time − interval_s, event_time); the expected numbers below were worked
out by hand from that rule (docs/warehouse.md, "Counting intervals"), not by the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.migrate import discover, migrate
from tests.integration.warehouse.conftest import drop, open_warehouse

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")


def _row(zone: str, end: datetime, entries: int, interval_s: int, n: list[int]) -> dict:
    n[0] += 1
    return {"event_id": f"{zone}-{n[0]}", "source": f"c-{zone}", "zone_id": zone,
            "event_time": end, "entries": entries, "exits": entries // 2,
            "interval_s": interval_s}


def _evening_rows() -> list[dict]:
    """Friday 2026-03-06, district time: counters of three cadences across 18:00 and 02:00."""
    n = [0]
    d = datetime(2026, 3, 6, tzinfo=SH)
    at = lambda h, m=0, s=0: d + timedelta(hours=h, minutes=m, seconds=s)  # noqa: E731
    return [
        # hourly: 17–18 (afternoon), 18–19, 01–02 (night), 02–03 (morning)
        _row("z_hourly", at(18), 100, 3600, n), _row("z_hourly", at(19), 200, 3600, n),
        _row("z_hourly", at(26), 40, 3600, n), _row("z_hourly", at(27), 10, 3600, n),
        # hourly on the half hour: 17:30–18:30 with 61 people → 30 before 18:00, 31 after
        _row("z_hourly_half", at(18, 30), 61, 3600, n),
        # 15 minutes: 17:45–18:00, 18:00–18:15, 01:45–02:00, 02:00–02:15
        _row("z_15m", at(18), 15, 900, n), _row("z_15m", at(18, 15), 20, 900, n),
        _row("z_15m", at(26), 7, 900, n), _row("z_15m", at(26, 15), 9, 900, n),
        # 30 s: 17:59:30–18:00, 18:00–18:00:30, 01:59:30–02:00, 02:00–02:00:30, and one
        # straddling 18:00 (17:59:45–18:00:15, 10 people → 5 | 5)
        _row("z_30s", at(18), 3, 30, n), _row("z_30s", at(18, 0, 30), 4, 30, n),
        _row("z_30s", at(26), 5, 30, n), _row("z_30s", at(26, 0, 30), 6, 30, n),
        _row("z_30s", at(18, 0, 15), 10, 30, n),
    ]


@pytest.fixture(scope="module")
def evening_wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=400, registry=registry)
    wh.insert("footfall_observed", _evening_rows())
    yield wh
    drop(wh)


def _hours(wh: EmbeddedWarehouse, zone: str) -> dict[str, int]:
    return {h.strftime("%d %H:%M"): int(e) for h, e in wh.query(
        "SELECT hour, entries FROM footfall_zone_1h WHERE zone_id = {z:String} ORDER BY hour",
        {"z": zone})}


def test_hourly_counter_hours_are_exact(evening_wh: EmbeddedWarehouse) -> None:
    assert _hours(evening_wh, "z_hourly") == {
        "06 17:00": 100, "06 18:00": 200, "07 01:00": 40, "07 02:00": 10}
    assert _hours(evening_wh, "z_hourly_half") == {"06 17:00": 30, "06 18:00": 31}


def test_fifteen_minute_and_thirty_second_counters(evening_wh: EmbeddedWarehouse) -> None:
    assert _hours(evening_wh, "z_15m") == {
        "06 17:00": 15, "06 18:00": 20, "07 01:00": 7, "07 02:00": 9}
    assert _hours(evening_wh, "z_30s") == {
        "06 17:00": 3 + 5, "06 18:00": 4 + 5, "07 01:00": 5, "07 02:00": 6}
    minutes = {m.strftime("%H:%M:%S"): int(e) for m, e in evening_wh.query(
        "SELECT minute, entries FROM footfall_zone_1m WHERE zone_id = 'z_30s' "
        "AND minute < '2026-03-06 19:00:00'")}
    assert minutes == {"17:59:00": 8, "18:00:00": 9}


def test_hourly_report_spreads_over_its_minutes(evening_wh: EmbeddedWarehouse) -> None:
    rows = evening_wh.query(
        "SELECT minute, entries FROM footfall_zone_1m WHERE zone_id = 'z_hourly' "
        "AND minute >= '2026-03-06 17:00:00' AND minute < '2026-03-06 18:00:00' ORDER BY minute")
    parts = [int(e) for _, e in rows]
    # 100 people over 60 minutes: floor(100k/60) − floor(100(k−1)/60): 1 or 2 each
    assert len(parts) == 60 and sum(parts) == 100
    assert parts[0] == 1 and parts[1] == 2 and parts[-1] == 2
    assert sorted(set(parts)) == [1, 2]


def test_minute_and_hour_rollups_agree(evening_wh: EmbeddedWarehouse) -> None:
    diff = evening_wh.query(
        "SELECT h.zone_id, h.hour, h.entries, m.e FROM footfall_zone_1h AS h "
        "LEFT JOIN (SELECT zone_id, toStartOfHour(minute) AS hour, sum(entries) AS e "
        "FROM footfall_zone_1m GROUP BY zone_id, hour) AS m "
        "ON m.zone_id = h.zone_id AND m.hour = h.hour WHERE h.entries != m.e")
    assert diff == []


def test_night_footfall_counts_18_to_02(evening_wh: EmbeddedWarehouse) -> None:
    nights = {z: (str(d), int(e)) for d, z, e in evening_wh.query(
        "SELECT night_date, zone_id, entries FROM night_footfall")}
    assert nights == {
        "z_hourly": ("2026-03-06", 200 + 40),
        "z_hourly_half": ("2026-03-06", 31),
        "z_15m": ("2026-03-06", 20 + 7),
        "z_30s": ("2026-03-06", 4 + 5 + 5),
    }


def test_reports_count_once_at_their_start(evening_wh: EmbeddedWarehouse) -> None:
    total = evening_wh.query("SELECT sum(reports) FROM footfall_zone_1h")[0][0]
    assert total == len(_evening_rows())


# --- a district with daylight saving ---------------------------------------------------------

@pytest.fixture(scope="module")
def london_wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    migrate(wh, timezone="Europe/London", raw_ttl_days=400, registry=registry)
    n = [0]
    utc = ZoneInfo("UTC")
    rows = []
    # fall back, Sunday 2026-10-25 02:00 BST → 01:00 GMT: the night of Saturday 24th runs from
    # 18:00 BST (17:00 UTC) to 02:00 GMT (02:00 UTC), nine hours, 01:00–02:00 twice.
    base = datetime(2026, 10, 24, 16, tzinfo=utc)  # 17:00 BST
    rows.append(_row("z_fall", base + timedelta(hours=1), 2000, 3600, n))  # 17–18 BST
    for k in range(9):
        rows.append(_row("z_fall", base + timedelta(hours=2 + k), 10 * (k + 1), 3600, n))
    rows.append(_row("z_fall", base + timedelta(hours=11), 1000, 3600, n))  # 02–03 GMT
    # spring forward, Sunday 2026-03-29 01:00 GMT → 02:00 BST: the night of Saturday 28th runs
    # from 18:00 GMT to 02:00 BST (01:00 UTC), seven hours.
    base = datetime(2026, 3, 28, 18, tzinfo=utc)
    for k in range(7):
        rows.append(_row("z_spring", base + timedelta(hours=1 + k), 100, 3600, n))
    rows.append(_row("z_spring", base + timedelta(hours=8), 5000, 3600, n))  # 02–03 BST
    wh.insert("footfall_observed", [{**r, "event_time": r["event_time"].astimezone(LONDON)}
                                    for r in rows])
    yield wh
    drop(wh)


def test_night_across_a_dst_change(london_wh: EmbeddedWarehouse) -> None:
    nights = {z: (str(d), int(e), int(h)) for d, z, e, h in london_wh.query(
        "SELECT night_date, zone_id, entries, hours FROM night_footfall ORDER BY zone_id")}
    assert nights == {
        "z_fall": ("2026-10-24", 10 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9), 9),
        "z_spring": ("2026-03-28", 700, 7),
    }
    hours = london_wh.query(
        "SELECT toString(hour), entries FROM footfall_zone_1h WHERE zone_id = 'z_fall' "
        "AND toHour(hour) = 1 ORDER BY hour")
    assert [int(e) for _, e in hours] == [80, 90]  # 01:00 BST and 01:00 GMT, both local 01


# --- re-bucketing data written before the migration ------------------------------------------

def test_migration_rebuckets_existing_rollups(settings: Settings, registry: Registry) -> None:
    wh = open_warehouse(settings)
    try:
        before = [m for m in discover() if m.version < 6]
        migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry,
                migrations=before)
        rows = _evening_rows()
        # a report from a week earlier whose raw row is gone (expired) before the migration
        old = _row("z_hourly", datetime(2026, 2, 27, 19, tzinfo=SH), 70, 3600, [99])
        wh.insert("footfall_observed", [*rows, old])
        wh.execute("DELETE FROM footfall_observed WHERE event_id = {e:String}",
                   {"e": old["event_id"]})
        # written with end-of-interval buckets: the 17–18 hour shows up at 18:00
        assert _hours(wh, "z_hourly")["06 18:00"] == 100
        report = migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry,
                         migrations=[m for m in discover() if m.version <= 6])
        assert report.applied == ["0006_interval_buckets"]
        assert _hours(wh, "z_hourly") == {
            "27 19:00": 70,  # the limit: no raw row left, keeps its end-of-interval bucket
            "06 17:00": 100, "06 18:00": 200, "07 01:00": 40, "07 02:00": 10}
        assert _hours(wh, "z_30s") == {
            "06 17:00": 8, "06 18:00": 9, "07 01:00": 5, "07 02:00": 6}
        # new inserts go through the new views
        wh.insert("footfall_observed", [_row("z_hourly", datetime(2026, 3, 7, 20, tzinfo=SH),
                                             33, 3600, [200])])
        assert _hours(wh, "z_hourly")["07 19:00"] == 33
        # a later run applies only the migrations after this one: the rollups stay rebucketed
        hours = _hours(wh, "z_hourly")
        assert migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0,
                       registry=registry).applied == [m.label for m in discover()
                                                      if m.version > 6]
        assert _hours(wh, "z_hourly") == hours
    finally:
        drop(wh)


# --- a backfill older than the raw TTL -------------------------------------------------------

def test_backfill_older_than_raw_ttl_stays_in_the_raw_table(
        settings: Settings, registry: Registry) -> None:
    """Raw TTL counts from ingestion: two-year-old history loaded today survives TTL merges."""
    wh = open_warehouse(settings)
    try:
        migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=30, registry=registry)
        n = [0]
        old = datetime(2024, 11, 29, tzinfo=SH)  # two years before the test machine's today
        rows = [_row("z_backfill", old + timedelta(hours=18 + h), 10 * h, 3600, n)
                for h in range(1, 9)]  # reports ending 19:00 … 02:00: the night's 8 hours
        wh.insert("footfall_observed", rows)
        for table in ("footfall_observed", "agg_footfall_zone_1h"):
            wh.execute(f"OPTIMIZE TABLE {table} FINAL")  # runs the TTL merge now
        assert wh.query("SELECT count(), sum(entries) FROM footfall_observed") == [
            (8, 10 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8))]
        ddl = wh.query("SELECT create_table_query FROM system.tables WHERE database = "
                       "{db:String} AND name = 'footfall_observed'", {"db": wh.database})[0][0]
        assert "ingested_at" in ddl.split(" TTL ")[1]
        # 18:00–02:00 of 29 Nov 2024: the reports ending 19:00 … 02:00 (10 … 80 people)
        assert wh.query("SELECT night_date, entries FROM night_footfall") == [
            (datetime(2024, 11, 29).date(), 360)]
        # a row ingested 31 days ago (by its ingested_at) does expire: the TTL still works
        wh.insert("footfall_observed", [{**_row("z_backfill", old, 5, 3600, n),
                                         "ingested_at": datetime.now(SH) - timedelta(days=31)}])
        wh.execute("OPTIMIZE TABLE footfall_observed FINAL")
        assert wh.query("SELECT count() FROM footfall_observed")[0][0] == 8
    finally:
        drop(wh)

"""Migrations against the real engine (chdb): every DDL statement runs; a re-run is a no-op;
a failed step leaves a reported state and a fixed re-run resumes; the raw TTL follows the
setting; dimensions come from the site registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cityops.core.registry import Registry
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import MigrationError
from cityops.warehouse.migrate import MIGRATIONS_DIR, TTL_TABLES, discover, migrate, status

pytestmark = pytest.mark.integration

EXPECTED_OBJECTS = {
    "footfall_observed", "parking_observed", "air_quality_observed", "incidents_reported",
    "footfall_windows", "parking_states", "air_quality_index", "incident_stats", "alerts",
    "dead_letters", "late_events", "dim_zones", "dim_counters", "dim_carparks", "dim_stations",
    "dim_calendar", "agg_footfall_zone_1m", "agg_footfall_zone_1h", "agg_parking_1h",
    "agg_air_1h", "agg_incidents_1h", "footfall_zone_1m", "footfall_zone_1h", "parking_1h",
    "air_quality_1h", "incidents_1h", "night_footfall", "daily_footfall", "incident_lifecycle",
    "alert_lifecycle", "parking_latest", "footfall_windows_latest", "air_quality_index_latest",
    "dead_letters_daily", "schema_migrations", "schema_meta",
}


def _objects(wh: EmbeddedWarehouse) -> dict[str, tuple[str, str]]:
    rows = wh.query("SELECT name, engine, comment FROM system.tables "
                    "WHERE database = {db:String}", {"db": wh.database})
    return {n: (e, c) for n, e, c in rows}


def test_full_schema_applies_and_second_run_is_noop(empty_wh: EmbeddedWarehouse,
                                                    registry: Registry) -> None:
    first = migrate(empty_wh, timezone="Asia/Shanghai", raw_ttl_days=30, registry=registry)
    assert first.applied == [m.label for m in discover()]
    assert first.ttl_changed == "0 -> 30 (from ingestion)"
    assert first.dimensions_loaded["dim_zones"] == len(registry.zones)
    objects = _objects(empty_wh)
    assert set(objects) >= EXPECTED_OBJECTS
    assert {n for n, (e, _) in objects.items() if e == "MaterializedView"} == {
        "mv_footfall_zone_1m", "mv_footfall_zone_1h", "mv_parking_1h", "mv_air_1h",
        "mv_incidents_1h"}
    undocumented = [n for n, (_, c) in objects.items() if not c.strip()]
    assert not undocumented, f"tables/views without a COMMENT: {undocumented}"

    history = empty_wh.query("SELECT count() FROM schema_migrations")[0][0]
    second = migrate(empty_wh, timezone="Asia/Shanghai", raw_ttl_days=30, registry=registry)
    assert not second.changed
    assert second.skipped == first.applied
    assert empty_wh.query("SELECT count() FROM schema_migrations")[0][0] == history
    assert _objects(empty_wh) == objects
    assert {line.status for line in status(empty_wh)} == {"applied"}


def test_the_alerts_comments_list_every_alert_event_kind(schema_wh: EmbeddedWarehouse) -> None:
    """The catalogue shows analysts the kinds an alert event can have: a kind added to the
    stream (``reminded``) needs a migration that lists it."""
    from cityops.streams.records import AlertEventKind

    table = _objects(schema_wh)["alerts"][1]
    column = schema_wh.query(
        "SELECT comment FROM system.columns WHERE database = {db:String} AND table = 'alerts' "
        "AND name = 'kind'", {"db": schema_wh.database})[0][0]
    assert [k.value for k in AlertEventKind if k.value not in table] == []
    assert column.split(" | ") == [k.value for k in AlertEventKind]


def test_time_columns_have_an_explicit_zone(schema_wh: EmbeddedWarehouse) -> None:
    rows = schema_wh.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
        "AND type LIKE '%DateTime%' AND table NOT IN ('schema_migrations', 'schema_meta')",
        {"db": schema_wh.database})
    assert rows
    zoneless = [(t, n, ty) for t, n, ty in rows if "'Asia/Shanghai'" not in ty]
    assert not zoneless


def test_raw_ttl_follows_the_setting(schema_wh: EmbeddedWarehouse, registry: Registry) -> None:
    def ddl(table: str) -> str:
        return schema_wh.query("SELECT create_table_query FROM system.tables WHERE "
                               "database = {db:String} AND name = {t:String}",
                               {"db": schema_wh.database, "t": table})[0][0]

    assert "toIntervalDay(400)" in ddl("footfall_observed")
    report = migrate(schema_wh, timezone="Asia/Shanghai", raw_ttl_days=90, registry=registry)
    assert report.ttl_changed == "400 -> 90 (from ingestion)" and not report.applied
    for table in TTL_TABLES:
        assert "toIntervalDay(90)" in ddl(table), table
    assert "TTL" not in ddl("agg_footfall_zone_1h")  # rollups are kept long
    migrate(schema_wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry)
    assert "TTL" not in ddl("footfall_observed")
    migrate(schema_wh, timezone="Asia/Shanghai", raw_ttl_days=400, registry=registry)


def test_failed_step_is_reported_and_a_fixed_rerun_resumes(
        empty_wh: EmbeddedWarehouse, tmp_path: Path) -> None:
    db = f"{empty_wh.database}_f"
    empty_wh.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    wh = EmbeddedWarehouse(empty_wh.path, database=db)
    try:
        folder = tmp_path / "migrations"
        folder.mkdir()
        shutil.copy(MIGRATIONS_DIR / "0001_raw_tables.sql", folder)
        (folder / "0002_broken.sql").write_text(
            "CREATE TABLE IF NOT EXISTS ok_one (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
            "CREATE TABLE IF NOT EXISTS broken (a NoSuchType) ENGINE = MergeTree ORDER BY a;\n"
            "CREATE TABLE IF NOT EXISTS ok_two (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
        with pytest.raises(MigrationError) as err:
            migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=None,
                    migrations=discover(folder))
        assert err.value.code == "migration_failed"
        assert "0002_broken failed at statement 2/3" in str(err.value)
        lines = {line.label: line for line in status(wh, discover(folder))}
        assert lines["0001_raw_tables"].status == "applied"
        assert lines["0002_broken"].status == "failed"
        assert "at statement 2/3" in lines["0002_broken"].detail
        assert wh.table_exists("ok_one") and not wh.table_exists("ok_two")

        (folder / "0002_broken.sql").write_text(
            "CREATE TABLE IF NOT EXISTS ok_one (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
            "CREATE TABLE IF NOT EXISTS broken (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
            "CREATE TABLE IF NOT EXISTS ok_two (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
        report = migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=None,
                         migrations=discover(folder))
        assert report.applied == ["0002_broken"]
        assert {line.status for line in status(wh, discover(folder))} == {"applied"}

        # an applied migration must not change afterwards
        (folder / "0002_broken.sql").write_text("SELECT 1;\n")
        with pytest.raises(MigrationError) as changed:
            migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=None,
                    migrations=discover(folder))
        assert changed.value.code == "checksum_mismatch"
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {db} SYNC")
        wh.close()


def test_dimensions_come_from_the_registry(schema_wh: EmbeddedWarehouse,
                                           registry: Registry) -> None:
    zones = dict(schema_wh.query("SELECT zone_id, area_m2 FROM dim_zones"))
    assert zones == {z.id: z.area_m2 for z in registry.zones.values()}
    assert schema_wh.query("SELECT count() FROM dim_carparks")[0][0] == len(registry.carparks)
    cal = dict(((d.isoformat(), (h, w)) for d, h, w in schema_wh.query(
        "SELECT date, is_holiday, is_workday FROM dim_calendar "
        "WHERE date IN ('2026-02-14', '2026-02-15', '2026-10-01', '2026-03-02')")))
    assert cal == {"2026-02-14": (False, True), "2026-02-15": (True, False),
                   "2026-10-01": (True, False), "2026-03-02": (False, True)}

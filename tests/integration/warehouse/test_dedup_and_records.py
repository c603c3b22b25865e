"""Duplicates are harmless: the same batch inserted twice leaves every count unchanged (raw
tables, rollups and analyst views); derived records of the streams contract fit their tables
and a newer revision of the same record replaces the older one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.records import (
    AirQualityIndex,
    AlertEvent,
    AlertEventKind,
    AlertState,
    DeadLetter,
    FootfallWindow,
    IncidentStats,
    LateEvent,
    ParkingState,
)
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import SchemaError
from cityops.warehouse.rows import FEED_TABLES, record_row
from cityops.warehouse.sink import SITE_COLUMNS, newest_stored_query, stored_ids_query

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 31, 15, 59, tzinfo=UTC)  # 23:59 local, the last minute of January


def _snapshot(wh: EmbeddedWarehouse) -> dict[str, tuple]:
    """Row count of every table and the totals of every rollup view."""
    tables = [t for (t,) in wh.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE "
        "'%MergeTree' AND name NOT LIKE 'schema_%'", {"db": wh.database})]
    snap = {t: wh.query(f"SELECT count() FROM {t}")[0] for t in tables}
    snap["footfall_zone_1m"] = wh.query(
        "SELECT sum(entries), sum(exits), sum(reports) FROM footfall_zone_1m")[0]
    snap["night_footfall"] = wh.query("SELECT sum(entries), count() FROM night_footfall")[0]
    snap["parking_1h"] = wh.query("SELECT sum(samples), sum(occupied_avg) FROM parking_1h")[0]
    snap["air_quality_1h"] = wh.query("SELECT sum(samples), sum(aqi) FROM air_quality_1h")[0]
    snap["incidents_1h"] = wh.query("SELECT sum(updates), sum(incidents) FROM incidents_1h")[0]
    return snap


def test_same_batches_again_change_nothing(seeded_wh: EmbeddedWarehouse,
                                          seeded: dict) -> None:
    """The seeded data was inserted in 5000-row batches without a token (the backend derives
    one from the content); replaying all of it leaves every table and rollup unchanged."""
    before = _snapshot(seeded_wh)
    for table, rows in seeded.items():
        for i in range(0, len(rows), 5000):
            seeded_wh.insert(table, rows[i:i + 5000])
    assert _snapshot(seeded_wh) == before


def test_retried_batch_with_its_token_changes_nothing(schema_wh: EmbeddedWarehouse,
                                                      registry: Registry) -> None:
    from cityops.warehouse.synth import synth_rows

    first = synth_rows(registry, T0, T0 + timedelta(hours=3), seed=3)
    second = synth_rows(registry, T0 + timedelta(hours=3), T0 + timedelta(hours=6), seed=4)
    for table, batch in first.items():
        assert schema_wh.insert(table, batch, dedup_token=f"topic:0:{table}:0-99") == len(batch)
    for table, batch in second.items():
        schema_wh.insert(table, batch)
    before = _snapshot(schema_wh)
    assert before["footfall_observed"][0] > 0 and before["incidents_1h"][0] > 0
    for _ in range(2):
        for table, batch in first.items():
            schema_wh.insert(table, batch, dedup_token=f"topic:0:{table}:0-99")  # a retry
        for table, batch in second.items():
            schema_wh.insert(table, batch)
    assert _snapshot(schema_wh) == before


def _records(revision: int, emitted: datetime) -> list:
    start = T0
    return [
        FootfallWindow(zone_id="jfb_square", window="tumbling_1m", window_start=start,
                       window_end=start + timedelta(minutes=1), entries=10 + revision,
                       exits=4, events=3, net_presence=120.5, density_ppm2=0.01,
                       revision=revision, emitted_at=emitted),
        ParkingState(carpark_id="cp_wfc", event_time=start, capacity=650, occupied=600,
                     occupancy_rate=600 / 650, trend_per_min=2.5, minutes_to_full=20.0,
                     emitted_at=emitted),
        AirQualityIndex(station_id="aq_jiefangbei", hour_start=start, averaging="1h",
                        pm25_ugm3=80.0, pm10_ugm3=120.0, iaqi={"pm25": 106, "pm10": 85},
                        aqi=106, primary_pollutants=["PM2.5"], category="轻度污染",
                        samples=60, revision=revision, emitted_at=emitted),
        IncidentStats(zone_id="hongyadong", event_time=start, incident_id="inc-1",
                      status="on_scene", open_count=2, response_s=310.0, emitted_at=emitted),
        AlertEvent(alert_id="al-1", rule_id="crowd_density", rule_version="1",
                   subject="jfb_square", kind=AlertEventKind.FIRED,
                   state=AlertState.ACTIVE_UNACK, severity="major", value=2.1, threshold=2.0,
                   message="density 2.1 p/m² ≥ 2.0; it's 'quoted' \\ and \n new-lined",
                   event_time=start, emitted_at=emitted, seq=0),
        DeadLetter.from_bytes(b"\xff\x00not json", feed="footfall", reason="bad_encoding",
                              detail="not UTF-8", source_topic="cityops.raw.footfall",
                              source_partition=1, source_offset=42, received_at=emitted),
        LateEvent(feed="footfall", event_id="fc_1:1", source="fc_jfb_square_01",
                  event_time=start, watermark=start + timedelta(minutes=5), lateness_s=300.0,
                  payload_json='{"entries": 1}', received_at=emitted),
    ]


def test_every_record_class_fits_its_table_and_newer_revisions_win(
        schema_wh: EmbeddedWarehouse) -> None:
    old = datetime(2026, 2, 1, tzinfo=UTC)
    for revision, emitted in ((0, old), (1, old + timedelta(minutes=2))):
        by_table: dict[str, list[dict]] = {}
        for rec in _records(revision, emitted):
            table, row = record_row(rec)
            by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            assert schema_wh.insert(table, rows) == len(rows)
    # a stale replay of revision 0 after revision 1
    for rec in _records(0, old):
        table, row = record_row(rec)
        schema_wh.insert(table, [row], dedup_token=f"replay:{table}")
    latest = schema_wh.query(
        "SELECT record_id, revision, entries FROM footfall_windows_latest")
    assert latest == [("jfb_square:tumbling_1m:2026-01-31T15:59:00+00:00", 1, 11)]
    assert schema_wh.query("SELECT revision FROM air_quality_index FINAL") == [(1,)]
    for table in ("parking_states", "incident_stats", "alerts", "dead_letters", "late_events"):
        assert schema_wh.query(f"SELECT count() FROM {table} FINAL") == [(1,)], table
    msg, = schema_wh.query("SELECT message FROM alerts FINAL")[0]
    assert msg == "density 2.1 p/m² ≥ 2.0; it's 'quoted' \\ and \n new-lined"
    raw, = schema_wh.query("SELECT raw_b64 FROM dead_letters")[0]
    assert DeadLetter.model_validate({**_records(0, old)[5].model_dump(), "raw_b64": raw}).raw \
        == b"\xff\x00not json"
    life = schema_wh.query("SELECT fired_at IS NOT NULL, is_active, peak_severity "
                           "FROM alert_lifecycle")
    assert life == [(True, True, "major")]


def test_insert_checks_names_against_the_schema(schema_wh: EmbeddedWarehouse,
                                                settings: Settings) -> None:
    with pytest.raises(SchemaError) as unknown_table:
        schema_wh.insert("footfall_observed; DROP TABLE alerts", [{"event_id": "x"}])
    assert unknown_table.value.code == "bad_identifier"
    with pytest.raises(SchemaError) as missing:
        schema_wh.insert("no_such_table", [{"a": 1}])
    assert missing.value.code == "unknown_table"
    with pytest.raises(SchemaError) as col:
        schema_wh.insert("alerts", [{"alert_id": "a", "evil) VALUES (1); --": 1}])
    assert col.value.code == "unknown_column"
    with pytest.raises(SchemaError) as computed:
        schema_wh.insert("footfall_windows", [{"_version": 1}])
    assert computed.value.code == "computed_column"
    with pytest.raises(SchemaError) as null:
        schema_wh.insert("late_events", [{"feed": "x", "event_id": None}])
    assert null.value.code == "null_value"
    assert schema_wh.table_exists("alerts")


def test_rows_of_one_batch_may_leave_out_a_column(schema_wh: EmbeddedWarehouse) -> None:
    """A column some rows of a batch hold and others leave out is NULL in those, if the
    column may be; if it may not, the batch is refused as if the value were None."""
    states = [ParkingState(carpark_id=f"cp_gap_{n}", event_time=T0, capacity=100, occupied=40,
                           occupancy_rate=0.4, trend_per_min=0.5, minutes_to_full=120.0,
                           emitted_at=T0) for n in range(2)]
    rows = [record_row(state)[1] for state in states]
    del rows[1]["minutes_to_full"]
    assert schema_wh.insert("parking_states", rows) == 2
    assert schema_wh.query("SELECT carpark_id, minutes_to_full FROM parking_states WHERE "
                           "carpark_id LIKE 'cp_gap_%' ORDER BY carpark_id") == [
        ("cp_gap_0", 120.0), ("cp_gap_1", None)]
    short = [record_row(state)[1] for state in states]
    del short[0]["capacity"]
    with pytest.raises(SchemaError) as missing:
        schema_wh.insert("parking_states", short)
    assert missing.value.code == "null_value"


def test_the_sinks_stored_ids_check_names_each_raw_tables_leading_sort_columns(
        schema_wh: EmbeddedWarehouse) -> None:
    """The sink's check for ids already stored narrows by site and time: the two columns each
    raw table sorts by first, so the check reads only the granules of a batch's sites."""
    keys = dict(schema_wh.query(
        "SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name IN {names:Array(String)}", {"names": sorted(SITE_COLUMNS)}))
    assert set(keys) == set(SITE_COLUMNS) == set(FEED_TABLES.values())
    for table, site in SITE_COLUMNS.items():
        assert [c.strip() for c in keys[table].split(",")][:2] == [site, "event_time"], table


def test_the_sinks_stored_ids_query_finds_what_the_embedded_warehouse_holds(
        schema_wh: EmbeddedWarehouse, registry: Registry) -> None:
    """Over two raw tables at once: the stored ids of a batch, none of its new ones, and none
    of another site's (the same id at another zone is another row of the table)."""
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    zones = sorted(registry.zones)[:2]
    counters = {z: next(c.id for c in registry.counters.values() if c.zone_id == z)
                for z in zones}

    def footfall(i: int, zone: str) -> dict:
        return {"event_id": f"q{i}", "source": counters[zone], "zone_id": zone,
                "event_time": t0 + timedelta(minutes=i), "entries": i, "exits": 0,
                "interval_s": 60}

    def parking(i: int) -> dict:
        return {"event_id": f"p{i}", "source": "pk", "carpark_id": "cp1",
                "event_time": t0 + timedelta(minutes=i), "capacity": 100, "occupied": i}

    schema_wh.insert("footfall_observed", [footfall(i, zones[0]) for i in range(30)])
    schema_wh.insert("parking_observed", [parking(i) for i in range(10)])
    batch = {"footfall_observed": {r["event_id"]: r for r in
                                   [footfall(i, zones[0]) for i in range(20, 40)]},
             "parking_observed": {r["event_id"]: r for r in [parking(i) for i in range(5, 15)]}}
    ask = stored_ids_query(batch)
    assert ask is not None
    assert sorted(schema_wh.query(*ask)) == sorted(
        [("footfall_observed", f"q{i}") for i in range(20, 30)]
        + [("parking_observed", f"p{i}") for i in range(5, 10)])
    elsewhere = {"footfall_observed": {f"q{i}": footfall(i, zones[1]) for i in range(30)}}
    ask = stored_ids_query(elsewhere)
    assert ask is not None and schema_wh.query(*ask) == []


def test_the_sinks_newest_stored_query_reads_each_sources_newest_event_in_milliseconds(
        schema_wh: EmbeddedWarehouse) -> None:
    """Where the sink's marks start (``warehouse.stored_marks``): per table, site and source,
    the newest stored event time in whole milliseconds (the table keeps a time's
    milliseconds); a site the table holds nothing of has no row, and another table's rows do
    not count."""
    t0 = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)  # after the other tests' rows
    zones = ["marks_a", "marks_b", "marks_c"]  # sites no other test of the module writes
    schema_wh.insert("footfall_observed", [
        {"event_id": f"n{i}", "source": f"marks_counter{i % 2}", "zone_id": zones[0],
         "event_time": t0 + timedelta(minutes=i, microseconds=250_750), "entries": 1,
         "exits": 0, "interval_s": 60} for i in range(5)])
    schema_wh.insert("incidents_reported", [
        {"event_id": "i1", "source": "ops", "zone_id": zones[1], "incident_id": "inc1",
         "incident_type": "crowding", "severity": "low", "status": "reported",
         "event_time": t0 + timedelta(hours=2)}])
    ask = newest_stored_query({"footfall_observed": {zones[0], zones[1]},
                               "incidents_reported": {zones[1], zones[2]}})
    assert ask is not None

    def ms(at: datetime) -> int:
        return int(at.timestamp()) * 1000 + at.microsecond // 1000

    assert sorted(schema_wh.query(*ask)) == sorted([
        ("footfall_observed", zones[0], "marks_counter0",
         ms(t0 + timedelta(minutes=4, microseconds=250_750))),
        ("footfall_observed", zones[0], "marks_counter1",
         ms(t0 + timedelta(minutes=3, microseconds=250_750))),
        ("incidents_reported", zones[1], "ops", ms(t0 + timedelta(hours=2)))])
    assert newest_stored_query({"footfall_observed": set()}) is None

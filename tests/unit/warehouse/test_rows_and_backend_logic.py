"""Row mapping of events and records, Arrow typing, error conversion, retries, URLs and the
migration files — all without a database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from cityops.core.feeds import FootfallObserved, IncidentReported, ParkingObserved, Position
from cityops.streams.records import DERIVED_RECORDS, FootfallWindow
from cityops.warehouse.backend import Column, RetryPolicy, check_readonly_statement, connect
from cityops.warehouse.catalog import load_catalogue
from cityops.warehouse.embedded import _all_aware, arrow_type, to_arrow
from cityops.warehouse.exceptions import (
    PermanentWarehouseError,
    ReadOnlyViolation,
    ResultTooLarge,
    SchemaError,
    TransientWarehouseError,
    from_clickhouse,
    short_message,
)
from cityops.warehouse.migrate import discover, template_context
from cityops.warehouse.rows import EVENT_TABLES, FEED_TABLES, event_row, record_row

T = datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)


def test_event_row_flattens_position() -> None:
    ev = FootfallObserved(event_id="fc:1", source="fc_jfb_square_01", event_time=T,
                          zone_id="jfb_square", entries=3, exits=1, interval_s=30,
                          position=Position(lat=29.56, lon=106.57))
    table, row = event_row(ev, ingested_at=T)
    assert table == "footfall_observed"
    assert row["lat"] == 29.56 and row["lon"] == 106.57 and "position" not in row
    assert row["ingested_at"] == T and row["event_time"] == T and row["dwell_s"] is None
    _, prow = event_row(ParkingObserved(event_id="p:1", source="cp_wfc", event_time=T,
                                        carpark_id="cp_wfc", capacity=10, occupied=5))
    assert prow["lat"] is None and prow["status"] == "open"  # enums as plain values
    _, irow = event_row(IncidentReported(
        event_id="i:1", source="jfb_square", event_time=T, incident_id="i1",
        incident_type="fall", severity="high", zone_id="jfb_square", status="reported"))
    assert irow["incident_type"] == "fall" and type(irow["incident_type"]) is str
    assert set(FEED_TABLES) == {"footfall", "parking", "air", "incidents"}
    assert len(EVENT_TABLES) == 4


def test_record_row_carries_record_id() -> None:
    w = FootfallWindow(zone_id="z", window="tumbling_1m", window_start=T,
                       window_end=T + timedelta(minutes=1), entries=1, exits=0, events=1,
                       net_presence=1.0, density_ppm2=0.1, emitted_at=T)
    table, row = record_row(w)
    assert table == "footfall_windows" and row["record_id"] == w.record_id()
    assert row["window"] == "tumbling_1m"
    assert {cls.table for cls in DERIVED_RECORDS} == {
        "footfall_windows", "parking_states", "air_quality_index", "incident_stats", "alerts",
        "dead_letters", "late_events"}


@pytest.mark.parametrize(("ch", "arrow"), [
    ("UInt32", pa.uint32()), ("LowCardinality(String)", pa.string()),
    ("Nullable(Float64)", pa.float64()), ("DateTime64(3, 'Asia/Shanghai')",
                                          pa.timestamp("us", tz="UTC")),
    ("Array(LowCardinality(String))", pa.list_(pa.string())),
    ("Map(LowCardinality(String), UInt16)", pa.map_(pa.string(), pa.uint16())),
    ("Decimal(18, 3)", pa.decimal128(18, 3)), ("Decimal128(3)", pa.decimal128(38, 3)),
    ("SimpleAggregateFunction(sum, UInt64)", pa.uint64()), ("Bool", pa.bool_()),
    ("Date", pa.date32()),
])
def test_arrow_types(ch: str, arrow: pa.DataType) -> None:
    assert arrow_type(ch) == arrow


def test_to_arrow_refuses_naive_times_and_bad_values() -> None:
    cols = [Column("at", "DateTime64(3, 'UTC')", ""), Column("n", "UInt8", "")]
    table = to_arrow(cols, [[T], [5]])
    assert table.num_rows == 1
    with pytest.raises(SchemaError) as naive:
        to_arrow(cols, [[datetime(2026, 1, 1)], [5]])
    assert naive.value.code == "naive_datetime"
    with pytest.raises(SchemaError) as bad:
        to_arrow(cols, [[T], ["five"]])
    assert bad.value.code == "bad_value"
    with pytest.raises(SchemaError):
        arrow_type("AggregateFunction(uniq, String)")


class _NoOffset(tzinfo):
    """A zone that knows no offset: its times count as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


def test_naive_times_are_refused_wherever_they_stand_in_a_column() -> None:
    """The column's zones are read in C when every value is a time in a known zone; any
    other column (a None, a naive time, an unknown zone) is looked at value by value."""
    cols = [Column("at", "Nullable(DateTime64(3, 'UTC'))", "")]
    pydantic_time = FootfallWindow.model_validate_json(
        FootfallWindow(zone_id="z", window="tumbling_1m", window_start=T, window_end=T,
                       entries=0, exits=0, events=0, net_presence=0.0, density_ppm2=0.0,
                       emitted_at=T).to_json()).window_start
    zones = [T, T.astimezone(ZoneInfo("Asia/Shanghai")), pydantic_time,
             T.astimezone(timezone(timedelta(hours=8)))]
    assert _all_aware(zones)
    assert to_arrow(cols, [zones]).num_rows == 4
    assert not _all_aware([*zones, None])
    assert to_arrow(cols, [[*zones, None]]).num_rows == 5
    for naive in (T.replace(tzinfo=None), T.replace(tzinfo=_NoOffset())):
        for column in ([*zones, naive], [naive, *zones], [None, *zones, naive]):
            assert not _all_aware(column)
            with pytest.raises(SchemaError) as refused:
                to_arrow(cols, [column])
            assert refused.value.code == "naive_datetime"


def test_error_conversion() -> None:
    msg = "Code: 396. DB::Exception: Limit for result exceeded. Stack trace:\n0. foo"
    assert isinstance(from_clickhouse(msg), ResultTooLarge)
    assert short_message(msg) == "Code: 396. DB::Exception: Limit for result exceeded"
    assert isinstance(from_clickhouse("Code: 164. readonly"), ReadOnlyViolation)
    assert from_clickhouse("Code: 60. no table").code == "unknown_table"
    t = from_clickhouse("Code: 252. Too many parts")
    assert isinstance(t, TransientWarehouseError) and t.transient and t.server_code == 252
    assert from_clickhouse("boom").code == "clickhouse_error"
    assert from_clickhouse("x", network=True).code == "network_error"


def test_retry_policy() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientWarehouseError("busy", code="too_many_parts")
        return "ok"

    assert RetryPolicy(retries=3, backoff_s=0).run("x", flaky) == "ok" and len(calls) == 3
    with pytest.raises(TransientWarehouseError):
        RetryPolicy(retries=1, backoff_s=0).run("x", lambda: flaky() if False else (_ for _ in
                                                ()).throw(TransientWarehouseError("down")))
    perm: list[int] = []

    def permanent() -> None:
        perm.append(1)
        raise PermanentWarehouseError("bad sql")

    with pytest.raises(PermanentWarehouseError):
        RetryPolicy(retries=5, backoff_s=0).run("x", permanent)
    assert len(perm) == 1  # never retried


def test_retry_policy_until_an_event_keeps_trying_while_it_is_clear() -> None:
    """The sink's mode: retry past ``retries`` while running; once stopping, give up after
    ``retries`` more at most (its batch stays uncommitted)."""
    import threading

    stopping = threading.Event()
    calls: list[int] = []

    def down_then_up() -> str:
        calls.append(1)
        if len(calls) < 8:
            raise TransientWarehouseError("down", code="network_error")
        return "ok"

    policy = RetryPolicy(retries=2, backoff_s=0)
    assert policy.run("x", down_then_up, until=stopping) == "ok" and len(calls) == 8
    stopping.set()
    calls.clear()
    with pytest.raises(TransientWarehouseError):
        policy.run("x", down_then_up, until=stopping)
    assert len(calls) == 3


def test_retry_policy_reads_the_warehouse_retry_settings() -> None:
    from cityops.core.settings import load_settings

    settings = load_settings(warehouse_insert_retries=7, warehouse_retry_backoff_s=0.5)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(retries=7, backoff_s=0.5)


def test_readonly_keywords() -> None:
    for ok in ("SELECT 1", "with x as (select 1) select * from x", "SHOW TABLES",
               "DESCRIBE TABLE t", "EXPLAIN SELECT 1", "EXISTS TABLE t"):
        check_readonly_statement(ok)
    for bad in ("INSERT INTO t VALUES (1)", "DROP TABLE t", "ALTER TABLE t DELETE WHERE 1",
                "SYSTEM SHUTDOWN", "KILL QUERY WHERE 1", "SET readonly = 0", "OPTIMIZE TABLE t",
                "CREATE TABLE x (a UInt8) ENGINE = Memory", "GRANT ALL ON *.* TO x"):
        with pytest.raises(ReadOnlyViolation):
            check_readonly_statement(bad)


def test_unknown_url_scheme() -> None:
    with pytest.raises(PermanentWarehouseError) as err:
        connect("postgres://x")
    assert err.value.code == "bad_url"


def test_migration_files_are_idempotent_templates() -> None:
    migrations = discover()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    ctx = template_context("Asia/Shanghai")
    for m in migrations:
        cleared: set[str] = set()
        for stmt in m.statements(ctx):
            assert "${" not in stmt
            flat = " ".join(re.sub(r"--[^\n]*", "", stmt).split())
            head = flat[:60]
            if deleted := re.match(r"DELETE FROM (\w+) WHERE ", flat):
                cleared.add(deleted.group(1))
                continue
            if rebuilt := re.match(r"INSERT INTO (\w+) ", flat):
                # a rebuild is re-runnable only after clearing what it rewrites, and with
                # insert deduplication off (a re-run's identical block would be skipped)
                assert rebuilt.group(1) in cleared, head
                assert "insert_deduplicate = 0" in flat, head
                continue
            # a comment set twice is the same comment
            assert re.match(r"(CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS |"
                            r"DROP VIEW IF EXISTS |CREATE OR REPLACE VIEW |"
                            r"ALTER TABLE \w+ (MODIFY COMMENT|COMMENT COLUMN \w+) ')", head), head
    with pytest.raises(PermanentWarehouseError):
        template_context("Asia/Shanghai'); DROP TABLE x; --")


def test_catalogue_parser(tmp_path) -> None:
    doc = tmp_path / "q.md"
    doc.write_text("# t\n## Q1. First\ntext\n```sql\nSELECT 1\n```\n## Q2. Second\n"
                   "```sql\nSELECT 2\nFROM t\n```\n```sql\nignored\n```\n")
    qs = load_catalogue(doc)
    assert [(q.id, q.title, q.sql) for q in qs] == [("Q1", "First", "SELECT 1"),
                                                   ("Q2", "Second", "SELECT 2\nFROM t")]

"""The embedded backend (chdb) itself: parameters are never pasted into SQL, hostile analyst
SQL gets a clear error, one shared session serves many threads, one path per process."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cityops.core.settings import Settings
from cityops.warehouse import connect
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import (
    MultipleStatements,
    PermanentWarehouseError,
    ReadOnlyViolation,
    ResultTooLarge,
)

pytestmark = pytest.mark.integration

HOSTILE = [
    "plain", "", "it's", "'; DROP TABLE t; --", "back\\slash", "trailing\\", "\\'", "\"dq\"",
    "new\nline", "tab\tcr\r", "nul\x00byte", "%(x)s", "{y:String}", "`bt`", "/* c */ -- d",
    "解放碑 洪崖洞 🏮", "\\N", "NULL", "\\\\n",
]


@pytest.fixture(scope="module")
def wh(empty_wh: EmbeddedWarehouse) -> EmbeddedWarehouse:
    empty_wh.execute("CREATE TABLE notes (id UInt32, note String, at DateTime64(3, "
                     "'Asia/Shanghai')) ENGINE = MergeTree ORDER BY id")
    empty_wh.insert("notes", [{"id": i, "note": v, "at": datetime(2026, 1, 1, tzinfo=UTC)}
                              for i, v in enumerate(HOSTILE)])
    return empty_wh


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_round_trip(wh: EmbeddedWarehouse, value: str) -> None:
    assert wh.query("SELECT {v:String}", {"v": value}) == [(value,)]
    assert wh.query("SELECT id FROM notes WHERE note = {v:String}", {"v": value}) == [
        (HOSTILE.index(value),)]
    assert wh.query("SELECT has({a:Array(String)}, {v:String})",
                    {"a": ["x", value], "v": value}) == [(True,)]


def test_datetime_parameters_keep_their_instant(wh: EmbeddedWarehouse) -> None:
    shanghai = timezone(timedelta(hours=8))
    t = datetime(2026, 1, 1, 8, 0, tzinfo=shanghai)  # == 2026-01-01 00:00 UTC
    for typ in ("DateTime64(3, 'Asia/Shanghai')", "DateTime64(3, 'UTC')", "DateTime('UTC')"):
        assert wh.query(f"SELECT count() FROM notes WHERE at = {{t:{typ}}}", {"t": t}) == [
            (len(HOSTILE),)], typ
    with pytest.raises(PermanentWarehouseError) as naive:
        wh.query("SELECT {t:DateTime}", {"t": datetime(2026, 1, 1)})
    assert naive.value.code == "naive_datetime"


@pytest.mark.parametrize(("sql", "error"), [
    ("SELECT 1; SELECT 2", MultipleStatements),
    ("SELECT 1; DROP TABLE notes", MultipleStatements),
    ("SELECT 1 /* a ; */ ; DROP TABLE notes -- ;", MultipleStatements),
    ("INSERT INTO notes (id) VALUES (99)", ReadOnlyViolation),
    ("DROP TABLE notes", ReadOnlyViolation),
    ("ALTER TABLE notes DELETE WHERE 1", ReadOnlyViolation),
    ("TRUNCATE TABLE notes", ReadOnlyViolation),
    ("SELECT number FROM system.numbers", ResultTooLarge),
    ("SELECT * FROM numbers(10) AS a, numbers(10000) AS b", ResultTooLarge),
])
def test_hostile_analyst_sql_gets_a_clear_error(wh: EmbeddedWarehouse, sql: str,
                                                error: type[Exception]) -> None:
    with pytest.raises(error) as err:
        wh.analyst_df(sql, max_rows=5000, max_seconds=30)
    assert str(err.value)
    assert wh.query("SELECT count() FROM notes") == [(len(HOSTILE),)]
    # the engine is usable right after the failure (chdb 4.4 stale-output workaround)
    assert wh.query("SELECT 42") == [(42,)]


def test_readonly_allows_reads(wh: EmbeddedWarehouse) -> None:
    assert wh.analyst_df("SELECT count() AS n FROM notes;")["n"][0] == len(HOSTILE)
    assert wh.analyst_df("WITH 2 AS k SELECT k * 21 AS x -- comment; still one")["x"][0] == 42
    assert "notes" in set(wh.analyst_df("SHOW TABLES")["name"])
    assert len(wh.analyst_df("DESCRIBE TABLE notes")) == 3
    assert wh.analyst_df("SELECT ';' AS s")["s"][0] == ";"
    df = wh.analyst_df("INSERT INTO notes (id, note, at) VALUES (1000, 'w', now())",
                       readonly=False)
    assert df.empty
    wh.execute("DELETE FROM notes WHERE id = 1000")


def test_one_session_serves_many_threads(wh: EmbeddedWarehouse) -> None:
    wh.execute("CREATE TABLE IF NOT EXISTS hits (worker UInt8, n UInt32) "
               "ENGINE = MergeTree ORDER BY worker")

    def work(worker: int) -> int:
        for batch in range(10):
            wh.insert("hits", [{"worker": worker, "n": batch * 100 + i} for i in range(100)])
            wh.query("SELECT count() FROM hits")
        return worker

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert sorted(pool.map(work, range(6))) == list(range(6))
    assert wh.query("SELECT count(), uniqExact(worker, n) FROM hits") == [(6000, 6000)]


def test_second_path_in_one_process_is_refused(wh: EmbeddedWarehouse,
                                               settings: Settings, tmp_path) -> None:
    with pytest.raises(PermanentWarehouseError) as err:
        connect(f"chdb://{tmp_path / 'other'}")
    assert err.value.code == "chdb_busy"
    same = connect(f"{wh.url.split('?')[0]}?database={wh.database}")  # same path: shared
    assert same.query("SELECT count() FROM notes") == [(len(HOSTILE),)]
    same.close()
    assert wh.query("SELECT 1") == [(1,)]


@pytest.mark.parametrize(("sql", "named"), [
    # the process's own environment: every secret of the worker or the CLI
    ("SELECT line FROM file('/proc/self/environ', 'RawBLOB', 'line String')", "file()"),
    ("SELECT file('/etc/hostname') AS s", "file()"),  # the ordinary function, not the table
    ("SELECT id FROM notes WHERE note = file('/etc/hostname')", "file()"),
    ("WITH (SELECT file('/etc/hostname')) AS h SELECT h", "file()"),
    ("SELECT id FROM notes WHERE note IN (SELECT line FROM file('/etc/hostname', "
     "'LineAsString'))", "file()"),
    ("SELECT * FROM notes AS n JOIN url('http://127.0.0.1:9/x', 'CSV', 'id UInt32') AS u "
     "USING id", "url()"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k.csv', 'CSV', 'a String')", "s3()"),
    ("SELECT * FROM remote('127.0.0.1:9', system.one)", "remote()"),
    ("SELECT * FROM executable('ls', 'TSV', 'a String')", "executable()"),
    # schema inference reads the file: a header line would come back as column names
    ("DESCRIBE file('/proc/self/environ', 'CSVWithNames')", "file()"),
    ("EXPLAIN SELECT * FROM file('/etc/hostname', 'LineAsString')", "file()"),
])
def test_readonly_sql_reaches_nothing_outside_the_warehouse(wh: EmbeddedWarehouse, sql: str,
                                                            named: str) -> None:
    """Read-only SQL (``cityops sql``, the worker's /sql) once read any file of the host with
    ``file()``, the process's environment and its secrets included, and fetched URLs."""
    with pytest.raises(ReadOnlyViolation, match=re.escape(named)) as err:
        wh.analyst_df(sql, max_rows=5000, max_seconds=30)
    assert "outside the warehouse" in str(err.value)
    assert wh.query("SELECT 42") == [(42,)]


def test_readonly_sql_keeps_the_table_functions_that_read_nothing(wh: EmbeddedWarehouse) -> None:
    assert wh.analyst_df("SELECT count() AS n FROM numbers(10)")["n"][0] == 10
    assert wh.analyst_df("SELECT sum(a) AS s FROM values('a UInt8', 1, 2, 3)")["s"][0] == 6
    assert len(wh.analyst_df("SELECT * FROM generateRandom('a UInt8') LIMIT 3")) == 3
    assert wh.analyst_df("SELECT count() AS n FROM notes AS t JOIN numbers(1000) AS n "
                         "ON t.id = n.number")["n"][0] == len(HOSTILE)
    # a column named like a refused function is no call of it
    assert wh.analyst_df("SELECT 'file' AS file, 1 AS url")["file"][0] == "file"

"""The server backend against a real clickhouse-server over the native protocol (compressed).

Debian's package is ClickHouse 18.16: too old for the full schema (no DateTime64, codecs,
comments), so these tests cover the backend's insert, select and DataFrame paths, parameter
safety and error conversion on plain MergeTree tables. The full schema runs on chdb.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas
import pytest

from cityops.warehouse import connect
from cityops.warehouse.backend import RetryPolicy
from cityops.warehouse.exceptions import (
    MultipleStatements,
    PermanentWarehouseError,
    ReadOnlyViolation,
    ResultTooLarge,
    SchemaError,
    TransientWarehouseError,
)
from cityops.warehouse.server import ServerWarehouse

pytestmark = [pytest.mark.integration, pytest.mark.server]

HOSTILE = [
    "plain", "", "it's", "'; DROP TABLE t; --", "back\\slash", "trailing\\", "\\'", "\"dq\"",
    "new\nline", "tab\tcr\r", "nul\x00byte", "%(x)s", "%s %% %", "{y:String}", "`bt`",
    "/* c */ -- d", "解放碑 洪崖洞 🏮", "\\N", "NULL",
]


@pytest.fixture(scope="module")
def server(clickhouse_port: int) -> Iterator[ServerWarehouse]:
    wh = connect(f"clickhouse://default@127.0.0.1:{clickhouse_port}/default?compression=lz4")
    assert isinstance(wh, ServerWarehouse)
    db = f"t_{uuid.uuid4().hex[:10]}"
    wh.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    wh.close()
    wh = connect(f"clickhouse://default@127.0.0.1:{clickhouse_port}/{db}?compression=lz4")
    assert isinstance(wh, ServerWarehouse)
    wh.execute("""CREATE TABLE events (
        event_id String, zone_id String, event_time DateTime('Asia/Shanghai'),
        entries UInt32, density Nullable(Float64), tags Array(String), note String)
        ENGINE = MergeTree PARTITION BY toYYYYMM(event_time) ORDER BY (zone_id, event_time)""")
    yield wh
    wh.execute(f"DROP DATABASE IF EXISTS {db}")
    wh.close()


def _rows(n: int, offset: int = 0) -> list[dict]:
    t0 = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)
    return [{"event_id": f"e{offset + i}", "zone_id": f"z{i % 3}",
             "event_time": t0 + timedelta(minutes=i), "entries": i,
             "density": None if i % 4 == 0 else i / 8, "tags": [f"t{i}", HOSTILE[i % 19]],
             "note": HOSTILE[i % len(HOSTILE)]} for i in range(n)]


def test_columnar_insert_select_and_dataframe(server: ServerWarehouse) -> None:
    assert server.server_version >= (18, 16)
    rows = _rows(500)
    assert server.insert("events", rows) == 500
    got = server.query("SELECT event_id, zone_id, event_time, entries, density, tags, note "
                       "FROM events ORDER BY entries")
    assert [r[0] for r in got] == [r["event_id"] for r in rows]
    assert [r[6] for r in got] == [r["note"] for r in rows]
    assert [r[5] for r in got] == [r["tags"] for r in rows]
    assert [r[4] for r in got] == [r["density"] for r in rows]
    assert got[0][2] == rows[0]["event_time"]  # same instant, zone-aware
    assert got[0][2].utcoffset() == timedelta(hours=8)

    df = server.query_df("SELECT zone_id, count() AS n, sum(entries) AS entries "
                         "FROM events GROUP BY zone_id ORDER BY zone_id")
    assert isinstance(df, pandas.DataFrame)
    assert list(df.columns) == ["zone_id", "n", "entries"]
    assert df["n"].sum() == 500 and df["entries"].sum() == sum(range(500))
    # the month boundary falls where the district's zone says (UTC+8)
    months = dict(server.query("SELECT toYYYYMM(event_time) AS m, count() FROM events "
                               "GROUP BY m ORDER BY m"))
    assert months == {202601: 60, 202602: 440}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameters_round_trip(server: ServerWarehouse, value: str) -> None:
    assert server.query("SELECT {v:String}", {"v": value}) == [(value,)]
    assert server.query("SELECT count() FROM events WHERE note = {v:String} AND "
                        "zone_id LIKE 'z%'", {"v": value})[0][0] >= 0
    assert server.table_exists("events")


def test_typed_parameters(server: ServerWarehouse) -> None:
    t = datetime(2026, 2, 1, 0, 0, tzinfo=UTC) - timedelta(hours=8)  # 00:00 local
    n = server.query("SELECT count() FROM events WHERE event_time >= "
                     "{t:DateTime('Asia/Shanghai')} AND entries < {k:UInt32} AND "
                     "has({zones:Array(String)}, zone_id)",
                     {"t": t, "k": 1000, "zones": ["z0", "z1", "z2", "it's"]})
    assert n == [(440,)]
    with pytest.raises(PermanentWarehouseError) as err:
        server.query("SELECT {a:String}", {"b": "x"})
    assert err.value.code == "missing_parameter"


def test_insert_is_checked_against_the_schema(server: ServerWarehouse) -> None:
    with pytest.raises(SchemaError):
        server.insert("events", [{"event_id": "x", "no_such_column": 1}])
    with pytest.raises(SchemaError):
        server.insert("events`; DROP TABLE events; --", [{"event_id": "x"}])
    with pytest.raises(SchemaError):
        server.insert("missing_table", [{"event_id": "x"}])


def test_hostile_analyst_sql_is_refused(server: ServerWarehouse) -> None:
    with pytest.raises(MultipleStatements):
        server.analyst_df("SELECT 1; DROP TABLE events")
    with pytest.raises(ReadOnlyViolation):
        server.analyst_df("INSERT INTO events (event_id) VALUES ('x')")
    with pytest.raises(ResultTooLarge):
        server.analyst_df("SELECT number FROM system.numbers LIMIT 100000", max_rows=1000)
    # the server enforces read-only itself, whatever the client-side check says
    with pytest.raises(ReadOnlyViolation):
        server._run("INSERT INTO events (event_id) SELECT 'x'", None, settings={"readonly": 2})
    assert server.analyst_df("SELECT count() AS n FROM events")["n"][0] >= 500


def test_unreachable_server_is_transient_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wh = ServerWarehouse(host="127.0.0.1", port=port, user="default", password="",
                         database="default", retry=RetryPolicy(retries=2, backoff_s=0.01),
                         connect_timeout=1)
    with pytest.raises(TransientWarehouseError) as err:
        wh.query("SELECT 1")
    assert err.value.code == "network_error"
    wh.close()

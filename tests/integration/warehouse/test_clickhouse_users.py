"""Least-privilege users (cityops/deploy/clickhouse/users.d) on the real clickhouse-server.

``scripts/services.d/clickhouse-up.sh`` installs the shipped XML unchanged, with random
passwords in the server's environment (``users.env``). Each refusal is the server's own:
164 READONLY, 396 TOO_MANY_ROWS_OR_BYTES, 159 TIMEOUT_EXCEEDED, 201 QUOTA_EXPIRED,
193 WRONG_PASSWORD. Only the long-query case shortens the reader's 60 s time limit, through
one more users.d file (as an operator would), so the suite does not wait a minute.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from cityops.core.settings import Settings, load_settings
from cityops.warehouse import connect
from cityops.warehouse.exceptions import WarehouseError

pytestmark = [pytest.mark.integration, pytest.mark.server]

SHIPPED = Path(__file__).resolve().parents[3] / "cityops/deploy/clickhouse/users.d"


@pytest.fixture(scope="module")
def ch(settings: Settings, clickhouse_port: int) -> Iterator[dict[str, str | int]]:
    ch_dir = settings.data_dir.resolve() / "clickhouse"
    env_file = ch_dir / "users.env"
    if not env_file.exists():
        pytest.fail(f"{env_file} missing: this clickhouse-server was started before the "
                    "users were shipped; restart it (scripts/services.d/clickhouse-down.sh, "
                    "then clickhouse-up.sh)")
    installed = (ch_dir / "users.d" / "cityops-users.xml").read_text()
    assert installed == (SHIPPED / "cityops-users.xml").read_text()
    pw = dict(line.split("=", 1) for line in env_file.read_text().split())
    db = f"u_{uuid.uuid4().hex[:10]}"
    info: dict[str, str | int] = {"port": clickhouse_port, "db": db, "dir": str(ch_dir),
                                  "writer": pw["CITYOPS_CH_WRITER_PASSWORD"],
                                  "reader": pw["CITYOPS_CH_READER_PASSWORD"]}
    yield info
    Client("127.0.0.1", port=clickhouse_port).execute(f"DROP DATABASE IF EXISTS {db}")


def _client(ch: dict, user: str, password: str | None = None, **kw: object) -> Client:
    return Client("127.0.0.1", port=ch["port"], user=f"cityops_{user}",
                  password=ch[user] if password is None else password, database="default",
                  **kw)


def _code(fn: object) -> int:
    with pytest.raises(ServerException) as err:
        fn()  # type: ignore[operator]
    return err.value.code


def test_writer_creates_and_inserts_through_cityops_settings(
        ch: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text(ch["writer"] + "\n")
    monkeypatch.setenv("CITYOPS_WAREHOUSE_PASSWORD_FILE", str(tmp_path / "pw"))
    base = f"clickhouse://cityops_writer@127.0.0.1:{ch['port']}"
    s = load_settings(warehouse_url=f"{base}/default")
    wh = connect(s.effective_warehouse_url, settings=s)
    wh.execute(f"CREATE DATABASE IF NOT EXISTS {ch['db']}")
    wh.close()
    s = load_settings(warehouse_url=f"{base}/{ch['db']}")
    wh = connect(s.effective_warehouse_url, settings=s)
    wh.execute("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
    wh.insert("t", [{"n": i} for i in range(10)])
    assert wh.query("SELECT count() FROM t")[0][0] == 10
    wh.close()


def test_reader_reads_but_never_writes(ch: dict) -> None:
    reader = _client(ch, "reader")
    assert reader.execute("SELECT value FROM system.settings WHERE name = 'readonly'") == \
        [("1",)]
    Client("127.0.0.1", port=ch["port"]).execute(
        f"CREATE TABLE IF NOT EXISTS {ch['db']}.r (n UInt64) ENGINE = MergeTree ORDER BY n")
    assert reader.execute(f"SELECT count() FROM {ch['db']}.r") == [(0,)]
    assert _code(lambda: reader.execute(f"INSERT INTO {ch['db']}.r VALUES", [(1,)])) == 164
    assert _code(lambda: reader.execute(f"DROP TABLE {ch['db']}.r")) == 164
    assert _code(lambda: reader.execute(f"CREATE TABLE {ch['db']}.x (n UInt8) "
                                        "ENGINE = Memory")) == 164
    # readonly=1: the reader cannot lift its own limits
    assert _code(lambda: reader.execute("SET max_result_rows = 0")) == 164
    # … nor through per-query settings (18.16 ignores them for a readonly user)
    assert _code(lambda: reader.execute("SELECT number FROM system.numbers LIMIT 1000001",
                                        settings={"max_result_rows": 0})) == 396


def test_reader_oversize_result_refused(ch: dict) -> None:
    reader = _client(ch, "reader")
    assert len(reader.execute("SELECT number FROM system.numbers LIMIT 1000000")) == 1_000_000
    assert _code(lambda: reader.execute(
        "SELECT number FROM system.numbers LIMIT 1000001")) == 396


def test_reader_long_query_refused(ch: dict) -> None:
    """max_execution_time, shortened to 2 s by an extra users.d file for this test."""
    extra = Path(ch["dir"]) / "users.d" / "zz-test-short-reader-time.xml"
    extra.write_text("<?xml version=\"1.0\"?><yandex><profiles><cityops_reader>"
                     "<max_execution_time>2</max_execution_time></cityops_reader></profiles>"
                     "</yandex>")

    def limit() -> str:
        return _client(ch, "reader").execute(
            "SELECT value FROM system.settings WHERE name = 'max_execution_time'")[0][0]

    try:
        _wait(lambda: limit() == "2")
        reader = _client(ch, "reader")
        t0 = time.monotonic()
        assert _code(lambda: reader.execute(
            "SELECT count() FROM system.numbers WHERE NOT ignore(sipHash64(number))")) == 159
        assert time.monotonic() - t0 < 30
    finally:
        extra.unlink()
    _wait(lambda: limit() == "60")


def test_wrong_password_refused_without_echo(ch: dict) -> None:
    assert _code(lambda: _client(ch, "reader", "nOtThePassw0rd").execute("SELECT 1")) == 193
    wh = connect(f"clickhouse://cityops_reader:nOtThePassw0rd@127.0.0.1:{ch['port']}/default")
    with pytest.raises(WarehouseError) as err:
        wh.query("SELECT 1")
    assert "nOtThePassw0rd" not in str(err.value) and "nOtThePassw0rd" not in repr(wh.url)


def test_reader_quota_refuses_excess_queries(ch: dict) -> None:
    """Last: it spends the reader's queries for a minute (1200, the shipped quota).

    The quota's interval is aligned to the clock minute, so a burst can straddle two
    intervals and stay under 1200 in each; it keeps asking until one full interval is spent
    (a few thousand queries at most), bounded by three minutes.
    """
    reader = _client(ch, "reader")
    deadline = time.monotonic() + 180
    with pytest.raises(ServerException) as err:
        while time.monotonic() < deadline:
            reader.execute("SELECT 1")
    assert err.value.code == 201
    assert "Quota" in err.value.message or "quota" in err.value.message


def _wait(pred: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError("clickhouse-server did not reload its users within 30 s")

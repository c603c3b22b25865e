"""Fixtures of the warehouse tests: real chdb warehouses and a real clickhouse-server.

chdb allows one on-disk path per process, so every embedded warehouse here lives under the
same path (``$CITYOPS_DATA_DIR/warehouse-tests``) in its own database, and each fixture closes
it at the end of its module. The server fixture reads the port written by
``scripts/services.d/clickhouse-up.sh`` (``make test`` runs it) or starts the server itself
with that script; it fails, never skips, when the server cannot start.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cityops.core.intervals import interval_ms, spread_hours
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.migrate import migrate
from cityops.warehouse.synth import synth_rows

ROOT = Path(__file__).resolve().parents[3]
TZ = ZoneInfo("Asia/Shanghai")
#: simulated spans: a month end with the night across it, and a holiday weekend
SPANS = (
    (datetime(2026, 1, 31, 12, tzinfo=TZ), datetime(2026, 2, 2, 4, tzinfo=TZ)),
    (datetime(2026, 2, 13, 12, tzinfo=TZ), datetime(2026, 2, 16, 4, tzinfo=TZ)),
)


def wait_committed(sink: Any, broker: str, group: str, topics: list[str],
                   timeout_s: float = 60.0) -> None:
    """Until the sink's group has committed every record of ``topics``; fails on a sink
    error or after ``timeout_s``."""
    from cityops.deploy.backlog import group_lag

    deadline = time.monotonic() + timeout_s
    while group_lag(broker, group, topics) != 0:
        assert sink.error is None, sink.error
        assert time.monotonic() < deadline, "the sink did not commit every record"
        time.sleep(0.2)


def night_totals(rows: list[dict], tz: ZoneInfo) -> dict[tuple, int]:
    """Entries per (night, zone) from raw rows, worked out in Python from the interval rule:
    each report spread over the local hours of [event_time − interval_s, event_time)."""
    totals: dict[tuple, int] = {}
    for r in rows:
        start_ms, end_ms = interval_ms(round(r["event_time"].timestamp() * 1000),
                                       r["interval_s"])
        for b, part in spread_hours(r["entries"], start_ms, end_ms, tz):
            h = datetime.fromtimestamp(b / 1000, tz)
            if h.hour >= 18 or h.hour < 2:
                night = h.date() - timedelta(days=1) if h.hour < 2 else h.date()
                totals[(night, r["zone_id"])] = totals.get((night, r["zone_id"]), 0) + part
    return totals


def wh_path(settings: Settings) -> Path:
    return (settings.data_dir / "warehouse-tests").resolve()


def open_warehouse(settings: Settings, database: str | None = None) -> EmbeddedWarehouse:
    db = database or f"t_{uuid.uuid4().hex[:10]}"
    return EmbeddedWarehouse(str(wh_path(settings)), database=db,
                             url=f"chdb://{wh_path(settings)}?database={db}")


def drop(wh: EmbeddedWarehouse) -> None:
    db = wh.database
    wh.execute(f"DROP DATABASE IF EXISTS {db} SYNC")
    wh.close()


def migrated(settings: Settings, registry: Registry) -> EmbeddedWarehouse:
    wh = open_warehouse(settings)
    migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=400, registry=registry)
    return wh


def seed_rows(registry: Registry) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for i, (start, end) in enumerate(SPANS):
        for table, rows in synth_rows(registry, start, end, seed=11 + i).items():
            out.setdefault(table, []).extend(rows)
    return out


@pytest.fixture(scope="module")
def empty_wh(settings: Settings) -> Iterator[EmbeddedWarehouse]:
    """A fresh database without schema."""
    wh = open_warehouse(settings)
    yield wh
    drop(wh)


@pytest.fixture(scope="module")
def schema_wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    """A fresh, fully migrated database without facts."""
    wh = migrated(settings, registry)
    yield wh
    drop(wh)


@pytest.fixture(scope="module")
def seeded(registry: Registry) -> dict[str, list[dict]]:
    return seed_rows(registry)


@pytest.fixture(scope="module")
def seeded_wh(settings: Settings, registry: Registry,
              seeded: dict[str, list[dict]]) -> Iterator[EmbeddedWarehouse]:
    """A migrated database holding the generated raw rows of ``SPANS``."""
    wh = migrated(settings, registry)
    for table, rows in seeded.items():
        for i in range(0, len(rows), 5000):
            wh.insert(table, rows[i:i + 5000])
    yield wh
    drop(wh)


# --- real clickhouse-server ------------------------------------------------------------------

def _answers(port: int) -> bool:
    from clickhouse_driver import Client

    try:
        Client("127.0.0.1", port=port, connect_timeout=3).execute("SELECT 1")
    except Exception:
        return False
    return True


def _hook_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["CITYOPS_DATA_DIR"] = str(settings.data_dir.resolve())
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


@pytest.fixture(scope="session")
def clickhouse_port(settings: Settings) -> Iterator[int]:
    """Native port of a running clickhouse-server (started here if make test did not)."""
    port_file = settings.data_dir.resolve() / "clickhouse" / "port"
    started = False
    if not (port_file.exists() and _answers(int(port_file.read_text().strip()))):
        env = _hook_env(settings)
        proc = subprocess.run([str(ROOT / "scripts/services.d/clickhouse-up.sh")], env=env,
                              capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail(f"clickhouse-server did not start:\n{proc.stdout}\n{proc.stderr}")
        started = True
    port = int(port_file.read_text().strip())
    if not _answers(port):
        pytest.fail(f"clickhouse-server on port {port} does not answer")
    yield port
    if started:
        env = _hook_env(settings)
        subprocess.run([str(ROOT / "scripts/services.d/clickhouse-down.sh")], env=env,
                       check=False, timeout=120)

"""Compose the streams worker with the warehouse: migrate, sink thread, ``/sql`` handler.

``cityops worker`` calls ``build_worker``; ``streams/`` itself never imports ``warehouse/``.
In embedded mode (chdb) the worker process holds the only chdb session, so the ``/sql``
endpoint answers ``cityops sql`` for other processes (see ``streams.web.remote_sql_url``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import uuid
from typing import Any

import structlog

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.web import SqlHandler
from cityops.streams.worker import StreamsWorker
from cityops.warehouse import connect_settings
from cityops.warehouse.base import Warehouse
from cityops.warehouse.migrate import migrate
from cityops.warehouse.sink import WarehouseSink

log = structlog.get_logger(__name__)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):  # pandas' NULL of a nullable float column
            return None
        return value if math.isfinite(value) else str(value)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def sql_handler(wh: Warehouse, settings: Settings) -> SqlHandler:
    """``/sql``: one read-only statement → ``{"columns", "types", "rows"}`` (JSON-able),
    within ``CITYOPS_SQL_MAX_RESULT_ROWS`` (a caller may ask for fewer) and
    ``CITYOPS_SQL_MAX_EXECUTION_S``."""
    limit = settings.sql_max_result_rows

    def handle(sql: str, body: dict[str, Any]) -> dict[str, Any]:
        max_rows = min(int(body.get("max_rows") or limit), limit)
        df = wh.analyst_df(sql, readonly=True, max_rows=max_rows,
                           max_seconds=settings.sql_max_execution_s)
        rows = [[_plain(v) for v in rec] for rec in df.itertuples(index=False, name=None)]
        return {"columns": [str(c) for c in df.columns],
                "types": [str(t) for t in df.dtypes], "rows": rows}

    return handle


def open_warehouse(settings: Settings, registry: Registry | None) -> Warehouse:
    """Connect and bring the schema up to date (idempotent)."""
    wh = connect_settings(settings)
    migrate(wh, timezone=settings.timezone, raw_ttl_days=settings.raw_ttl_days,
            registry=registry)
    return wh


def build_worker(settings: Settings, registry: Registry,
                 warehouse: Warehouse | None = None) -> StreamsWorker:
    """The streams worker with the warehouse sink inside it (and ``/sql`` in embedded mode)."""
    wh = warehouse or open_warehouse(settings, registry)
    sink = WarehouseSink(settings, wh)
    embedded = settings.effective_warehouse_url.startswith("chdb:")

    def sink_health() -> dict[str, Any]:
        st = sink.stats
        return {"ok": sink.alive and sink.error is None, "batches": st.batches,
                "rows": st.rows, "messages": st.messages, "errors": st.errors,
                "skipped": st.skipped, "last_batch_s": round(st.last_batch_s, 4),
                "error": None if sink.error is None else str(sink.error)[:300]}

    return StreamsWorker(settings, registry, services=[sink],
                         sql_handler=sql_handler(wh, settings) if embedded else None,
                         health_extra=sink_health)


def latest_alerts(settings: Settings, include_all: bool = False) -> list[dict[str, Any]]:
    """Latest state of each alert from the warehouse (when no worker is running)."""
    wh = connect_settings(settings)
    where = "" if include_all else "WHERE state != 'cleared_ack'"
    rows = wh.query(
        "SELECT alert_id, rule_id, subject, severity, state, value, event_time FROM ("
        " SELECT alert_id, argMax(rule_id, seq) AS rule_id, argMax(subject, seq) AS subject,"
        " argMax(severity, seq) AS severity, argMax(state, seq) AS state,"
        " argMax(value, seq) AS value, max(event_time) AS event_time"
        f" FROM alerts FINAL GROUP BY alert_id) {where} ORDER BY event_time")
    keys = ("alert_id", "rule_id", "subject", "severity", "state", "value", "event_time")
    return [{k: _plain(v) for k, v in zip(keys, r, strict=True)} for r in rows]

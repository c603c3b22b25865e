"""What a process needs of the warehouse: open it migrated, answer ``/sql``, read alerts.

The processes are assembled in ``cityops.cli.assembly``. In embedded mode (chdb) the process
holding the warehouse holds the only chdb session, so its ``/sql`` endpoint answers
``cityops sql`` for other processes.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse import connect_settings
from cityops.warehouse.base import Warehouse
from cityops.warehouse.migrate import migrate

log = structlog.get_logger(__name__)

#: ``/sql``: (statement, request body) → ``{"columns", "types", "rows"}``
SqlHandler = Callable[[str, dict[str, Any]], dict[str, Any]]


def plain_value(value: Any) -> Any:
    """A cell as JSON holds it (``/sql``, alerts, the CLI's text output): arrays as lists,
    times as ISO-8601 with their offset, NaN as null."""
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
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return plain_value(value.tolist())
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
        rows = [[plain_value(v) for v in rec] for rec in df.itertuples(index=False, name=None)]
        return {"columns": [str(c) for c in df.columns],
                "types": [str(t) for t in df.dtypes], "rows": rows}

    return handle


def open_warehouse(settings: Settings, registry: Registry | None) -> Warehouse:
    """Connect and bring the schema up to date (idempotent)."""
    wh = connect_settings(settings)
    migrate(wh, timezone=settings.timezone, raw_ttl_days=settings.raw_ttl_days,
            registry=registry)
    return wh


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
    return [{k: plain_value(v) for k, v in zip(keys, r, strict=True)} for r in rows]

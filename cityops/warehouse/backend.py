"""The warehouse interface and its factory: ``connect(url)`` picks the backend by URL scheme.

* ``chdb:///abs/path[?database=name]`` — embedded ClickHouse (chdb), data on disk (default);
* ``clickhouse://user:password@host:9000/database[?compression=lz4]`` — a ClickHouse server
  over the native protocol (clickhouse-driver), compressed.

Both implement ``Warehouse``; inserts are batched and columnar, checked against the live schema
(``system.columns``) before any SQL is built, deduplicated by token and retried with backoff
on transient errors. Parameters use ClickHouse placeholders ``{name:Type}`` (see ``sqltext``).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qs, unquote, urlparse

import pandas
import structlog

from cityops.core.secrets import redact_url
from cityops.warehouse.exceptions import (
    PermanentWarehouseError,
    ReadOnlyViolation,
    SchemaError,
    TransientWarehouseError,
    WarehouseError,
)
from cityops.warehouse.sqltext import READ_KEYWORDS, check_identifier, first_keyword

log = structlog.get_logger(__name__)
T = TypeVar("T")


@runtime_checkable
class Warehouse(Protocol):
    """What every backend offers. All errors are ``WarehouseError`` subclasses."""

    url: str

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]: ...

    def query_df(self, sql: str,
                 params: Mapping[str, Any] | None = None) -> pandas.DataFrame: ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default_kind: str  # "", DEFAULT, MATERIALIZED, ALIAS, EPHEMERAL

    @property
    def insertable(self) -> bool:
        return self.default_kind not in ("MATERIALIZED", "ALIAS")

    @property
    def nullable(self) -> bool:
        inner = self.type.removeprefix("LowCardinality(")
        return inner.startswith("Nullable(")

    @property
    def has_default(self) -> bool:
        return self.default_kind in ("DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    def run(self, what: str, fn: Callable[[], T]) -> T:
        """Call ``fn``; on ``TransientWarehouseError`` retry with jittered exponential backoff."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except TransientWarehouseError as exc:
                if attempt >= self.retries:
                    raise
                log.warning("warehouse_retry", what=what, attempt=attempt + 1,
                            code=exc.code, error=str(exc)[:200], sleep_s=round(delay, 3))
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")


class BaseWarehouse:
    """Schema cache, insert checks and analyst-query checks shared by the backends."""

    url: str
    database: str

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self._columns: dict[str, dict[str, Column]] = {}
        self._columns_lock = threading.Lock()

    # --- to be provided by the backend -------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    # --- schema ------------------------------------------------------------------------------
    columns_sql = ("SELECT name, type, default_kind FROM system.columns "
                   "WHERE database = {db:String} AND table = {t:String} ORDER BY position")

    def columns(self, table: str, *, refresh: bool = False) -> dict[str, Column]:
        """Columns of ``table`` in this database, from ``system.columns`` (cached)."""
        check_identifier(table, "table name")
        with self._columns_lock:
            if not refresh and table in self._columns:
                return self._columns[table]
        rows = self.query(self.columns_sql, {"db": self.database, "t": table})
        if not rows:
            raise SchemaError(f"unknown table {self.database}.{table}", code="unknown_table")
        cols = {name: Column(name, typ, kind or "") for name, typ, kind in rows}
        with self._columns_lock:
            self._columns[table] = cols
        return cols

    def forget_schema(self) -> None:
        """Drop cached columns (after migrations)."""
        with self._columns_lock:
            self._columns.clear()

    def table_exists(self, table: str) -> bool:
        check_identifier(table, "table name")
        return bool(self.query(
            "SELECT 1 FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": self.database, "t": table}))

    def plan_insert(self, table: str, rows: Sequence[Mapping[str, Any]]
                    ) -> tuple[list[Column], list[list[Any]]]:
        """Columns to insert (schema order) and their values, checked against the schema."""
        cols = self.columns(table)
        names: set[str] = set()
        for row in rows:
            names.update(row)
        unknown = sorted(names - set(cols))
        if unknown:
            raise SchemaError(f"{table}: unknown column(s) {unknown}", code="unknown_column")
        computed = sorted(n for n in names if not cols[n].insertable)
        if computed:
            raise SchemaError(f"{table}: column(s) {computed} are computed (ALIAS/MATERIALIZED)",
                              code="computed_column")
        chosen = [c for c in cols.values() if c.name in names]
        values: list[list[Any]] = []
        for col in chosen:
            data = [row.get(col.name) for row in rows]
            if not col.nullable and any(v is None for v in data):
                raise SchemaError(f"{table}.{col.name} ({col.type}) is not nullable but a row "
                                  "has no value for it", code="null_value")
            values.append(data)
        return chosen, values

    # --- analyst queries ------------------------------------------------------------------------
    def analyst_df(self, sql: str, *, readonly: bool = True, max_rows: int = 1_000_000,
                   max_seconds: float = 120.0) -> pandas.DataFrame:
        """Run one analyst statement; read-only unless told, with a result-size limit."""
        raise NotImplementedError


def check_readonly_statement(sql: str) -> str:
    """Refuse anything but a read statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)."""
    keyword = first_keyword(sql)
    if keyword not in READ_KEYWORDS:
        raise ReadOnlyViolation(
            f"read-only mode: {keyword or 'this statement'} is not allowed; only "
            f"{', '.join(sorted(READ_KEYWORDS))} (use --write to change data)")
    return keyword


def token_hash(token: str) -> str:
    """A deduplication token safe to place in SQL text: the hex digest of the caller's token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_url(url: str) -> tuple[str, Any]:
    parsed = urlparse(url)
    return parsed.scheme, parsed


def _query_value(parsed: Any, key: str, default: str | None = None) -> str | None:
    values = parse_qs(parsed.query).get(key)
    return values[-1] if values else default


def connect(url: str, *, retry: RetryPolicy | None = None, settings: Any = None) -> Warehouse:
    """Open the warehouse at ``url`` (``chdb://`` embedded or ``clickhouse://`` server).

    A server password comes from the URL when it has one, else from
    ``settings.warehouse_password``; the warehouse keeps only the redacted URL."""
    if settings is not None and retry is None:
        retry = RetryPolicy(settings.warehouse_insert_retries, settings.warehouse_retry_backoff_s)
    scheme, parsed = parse_url(url)
    if scheme == "chdb":
        from cityops.warehouse.embedded import EmbeddedWarehouse

        path = (parsed.netloc + parsed.path) or ":memory:"
        database = _query_value(parsed, "database", "default") or "default"
        return EmbeddedWarehouse(path, database=database, url=url, retry=retry)
    if scheme == "clickhouse":
        from cityops.warehouse.server import ServerWarehouse

        compression = _query_value(parsed, "compression")
        if compression is None and settings is not None:
            compression = settings.clickhouse_server_compression
        timeout = float(settings.clickhouse_server_timeout_s) if settings is not None else 10.0
        password = unquote(parsed.password) if parsed.password is not None else (
            settings.warehouse_password.get_secret_value() if settings is not None else "")
        return ServerWarehouse(
            host=parsed.hostname or "127.0.0.1", port=parsed.port or 9000,
            user=unquote(parsed.username or "default"), password=password,
            database=(parsed.path or "/").strip("/") or "default",
            compression=compression or "lz4", url=redact_url(url), retry=retry,
            connect_timeout=timeout)
    raise PermanentWarehouseError(
        f"unsupported warehouse URL scheme {scheme!r} (use chdb:///path or clickhouse://host)",
        code="bad_url")


def connect_settings(settings: Any) -> Warehouse:
    """The warehouse of ``settings`` (``effective_warehouse_url``) with its retry policy."""
    return connect(settings.effective_warehouse_url, settings=settings)


__all__ = ["Column", "RetryPolicy", "Warehouse", "WarehouseError", "connect",
           "connect_settings"]

"""Server backend: a ClickHouse server over the native protocol (clickhouse-driver), compressed.

One ``clickhouse_driver.Client`` per warehouse, guarded by a lock (the client is not
thread-safe). Parameters: ``{name:Type}`` placeholders become ``CAST(%(name)s AS Type)`` and
the driver quotes the value (``sqltext.to_driver_query``); servers before 22.x have no
server-side parameters on the native protocol, so this works from 18.16 to today.
Inserts are columnar (``columnar=True``) and carry ``insert_deduplication_token`` when the
server knows the setting (22.2+); older servers rely on ReplacingMergeTree alone.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pandas
import structlog

from cityops.warehouse.base import BaseWarehouse, RetryPolicy, check_readonly_statement
from cityops.warehouse.base import token_hash as _token_hash
from cityops.warehouse.exceptions import (
    PermanentWarehouseError,
    TransientWarehouseError,
    WarehouseError,
    from_clickhouse,
)
from cityops.warehouse.sqltext import check_identifier, single_statement, to_driver_query

log = structlog.get_logger(__name__)


def _convert(exc: Exception) -> WarehouseError:
    from clickhouse_driver import errors

    if isinstance(exc, WarehouseError):
        return exc
    if isinstance(exc, (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError)):
        return TransientWarehouseError(f"network error: {exc}", code="network_error")
    code = getattr(exc, "code", None)
    return from_clickhouse(getattr(exc, "message", None) or str(exc), code)


class ServerWarehouse(BaseWarehouse):
    """Warehouse on a ClickHouse server reached over the native TCP protocol."""

    def __init__(self, *, host: str, port: int, user: str, password: str, database: str,
                 compression: str = "lz4", url: str | None = None,
                 retry: RetryPolicy | None = None, connect_timeout: float = 10.0) -> None:
        from clickhouse_driver import Client

        super().__init__(retry)
        self.database = check_identifier(database, "database name")
        self.url = url or f"clickhouse://{host}:{port}/{database}"
        self._lock = threading.RLock()
        self._client = Client(
            host=host, port=port, user=user, password=password, database=database,
            compression=False if compression == "none" else compression,
            connect_timeout=connect_timeout, send_receive_timeout=300,
            client_name="cityops", settings={"strings_as_bytes": False})
        self._version: tuple[int, int] | None = None

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        if self._client is None:
            raise PermanentWarehouseError("warehouse is closed", code="closed")
        with self._lock:
            try:
                return fn(*args, **kw)
            except Exception as exc:
                raise _convert(exc) from None

    def _run(self, sql: str, params: Mapping[str, Any] | None, *,
             settings: Mapping[str, Any] | None = None, columns: bool = False) -> Any:
        sql = single_statement(sql)
        text, values = to_driver_query(sql, params)
        return self.retry.run("query", lambda: self._call(
            self._client.execute, text, values or None, with_column_types=columns,
            settings=dict(settings or {})))

    @property
    def server_version(self) -> tuple[int, int]:
        if self._version is None:
            (version,), = self._run("SELECT version()", None)
            major, minor = (int(p) for p in str(version).split(".")[:2])
            self._version = (major, minor)
        return self._version

    @property
    def columns_sql(self) -> str:  # type: ignore[override]
        if self.server_version >= (20, 1):
            return BaseWarehouse.columns_sql
        # before 20.x system.columns has no ``position``; it lists columns in table order
        return ("SELECT name, type, default_kind FROM system.columns "
                "WHERE database = {db:String} AND table = {t:String}")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        return [tuple(r) for r in self._run(sql, params)]

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pandas.DataFrame:
        rows, types = self._run(sql, params, columns=True)
        return _frame(rows, types)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int:
        if not rows:
            return 0
        cols, values = self.plan_insert(table, rows)
        names = ", ".join(c.name for c in cols)  # checked against system.columns
        settings: dict[str, Any] = {}
        if self.server_version >= (22, 2):
            settings["insert_deduplication_token"] = _token_hash(dedup_token) if dedup_token \
                else hashlib.sha256(table.encode() + orjson.dumps(
                    values, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME)).hexdigest()
        sql = f"INSERT INTO {self.database}.{table} ({names}) VALUES"

        def attempt() -> int:
            self._call(self._client.execute, sql, values, columnar=True, types_check=True,
                       settings=settings)
            return len(rows)

        return self.retry.run(f"insert {table}", attempt)

    def close(self) -> None:
        if self._client is not None:
            with self._lock:
                self._client.disconnect()
                self._client = None

    def __enter__(self) -> ServerWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyst_df(self, sql: str, *, readonly: bool = True, max_rows: int = 1_000_000,
                   max_seconds: float = 120.0) -> pandas.DataFrame:
        statement = single_statement(sql)
        settings: dict[str, Any] = {"max_execution_time": int(max_seconds)}
        if readonly:
            check_readonly_statement(statement)
            settings.update(readonly=2, max_result_rows=int(max_rows),
                            result_overflow_mode="throw")
        rows, types = self._run(statement, None, settings=settings, columns=True)
        return _frame(rows, types)


def _frame(rows: list[tuple], types: list[tuple[str, str]]) -> pandas.DataFrame:
    names = [name for name, _ in types]
    if not rows:
        return pandas.DataFrame({n: pandas.Series(dtype=object) for n in names})
    return pandas.DataFrame.from_records(rows, columns=names)

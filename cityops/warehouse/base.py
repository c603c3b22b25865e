"""The warehouse seam: the ``Warehouse`` protocol, the shared base of the backends, ``Column``
and the retry policy.

Both backends (``embedded``, ``server``) build on this module; ``backend.connect`` picks one by
URL. Keeping the shared parts here, apart from the factory, is what lets the factory import the
backends without the backends importing the factory back.
"""

from __future__ import annotations

import hashlib
import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import pandas
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from cityops.warehouse.exceptions import (
    ReadOnlyViolation,
    SchemaError,
    TransientWarehouseError,
)
from cityops.warehouse.sqltext import READ_KEYWORDS, check_identifier, first_keyword

log = structlog.get_logger(__name__)
T = TypeVar("T")


@runtime_checkable
class Warehouse(Protocol):
    """What every backend offers. All errors are ``WarehouseError`` subclasses."""

    url: str
    database: str  # the database queries run in (the cluster schema's Distributed tables name it)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]: ...

    def query_df(self, sql: str,
                 params: Mapping[str, Any] | None = None) -> pandas.DataFrame: ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int: ...

    def analyst_df(self, sql: str, *, readonly: bool = True, max_rows: int = 1_000_000,
                   max_seconds: float = 120.0) -> pandas.DataFrame: ...

    def forget_schema(self) -> None: ...

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


class RetrySettings(Protocol):
    """The settings a retry policy reads (``core.settings.Settings`` has them)."""

    @property
    def warehouse_insert_retries(self) -> int: ...

    @property
    def warehouse_retry_backoff_s(self) -> float: ...


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientWarehouseError)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient warehouse errors are retried: tenacity, exponential backoff, full jitter.

    ``retries`` and ``backoff_s`` come from ``CITYOPS_WAREHOUSE_INSERT_RETRIES`` and
    ``CITYOPS_WAREHOUSE_RETRY_BACKOFF_S`` (``from_settings``); a permanent error is raised at
    once, never retried.
    """

    retries: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(settings.warehouse_insert_retries, settings.warehouse_retry_backoff_s)

    def retrying(self, what: str, *, until: threading.Event | None = None) -> Retrying:
        """A tenacity ``Retrying`` for transient errors.

        Without ``until`` it gives up after ``retries`` retries. With ``until`` it retries for
        as long as the event is not set (a sink that must never skip a batch), sleeping on the
        event so that setting it wakes the wait, and gives up once it is set and ``retries``
        retries were spent.
        """

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("warehouse_retry", what=what, attempt=state.attempt_number,
                        code=getattr(exc, "code", None), error=str(exc)[:200],
                        sleep_s=round(state.upcoming_sleep, 3))

        limit = stop_after_attempt(self.retries + 1)
        if until is None:
            stop: Any = limit
            sleep: Callable[[float], Any] = time.sleep
        else:
            def stop(state: RetryCallState) -> bool:
                return until.is_set() and limit(state)

            sleep = until.wait
        return Retrying(
            retry=retry_if_exception(_transient), stop=stop, sleep=sleep,
            wait=wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            before_sleep=log_retry, reraise=True)

    def run(self, what: str, fn: Callable[[], T], *, until: threading.Event | None = None) -> T:
        """Call ``fn``, retrying ``TransientWarehouseError`` as ``retrying`` says."""
        return self.retrying(what, until=until)(fn)


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
            try:  # every row has the column (the usual batch): read in C
                data = list(map(operator.itemgetter(col.name), rows))
            except KeyError:
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

"""Embedded backend: the ClickHouse engine in-process (chdb), data on disk.

chdb allows one session per process and is not thread-safe, so every ``EmbeddedWarehouse`` on
the same path shares one ``chdb.session.Session`` guarded by one re-entrant lock (the streams
worker calls it from a thread executor). Opening a second, different path while the first is
open is refused with a clear error. Inserts travel as one Arrow IPC stream per batch
(``send_insert(..., "ArrowStream")``): columnar, and no value ever appears in SQL text.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import operator
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pydantic_core import TzInfo

from cityops.warehouse.base import BaseWarehouse, Column, RetryPolicy, check_readonly_statement
from cityops.warehouse.base import token_hash as _token_hash
from cityops.warehouse.exceptions import (
    MultipleStatements,
    PermanentWarehouseError,
    ReadOnlyViolation,
    SchemaError,
    WarehouseError,
    from_clickhouse,
)
from cityops.warehouse.sqltext import (
    SAFE_TABLE_FUNCTIONS,
    check_identifier,
    check_params,
    functions_refused,
    param_text,
    single_statement,
)

log = structlog.get_logger(__name__)


class _Shared:
    """One chdb session, its lock and the database it currently uses."""

    def __init__(self, path: str) -> None:
        import chdb.session

        if path != ":memory:":
            Path(path).mkdir(parents=True, exist_ok=True)
        self.path = path
        self.session = chdb.session.Session(path)
        self.lock = threading.RLock()
        self.current_db = "default"
        self.users = 0


_REGISTRY_LOCK = threading.Lock()
_SHARED: dict[str, _Shared] = {}


def _acquire(path: str) -> _Shared:
    key = path if path == ":memory:" else str(Path(path).resolve())
    with _REGISTRY_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            if _SHARED:
                other = next(iter(_SHARED))
                raise PermanentWarehouseError(
                    f"an embedded warehouse is already open at {other}; chdb allows one "
                    f"session per process (close it before opening {key})", code="chdb_busy")
            try:
                shared = _Shared(key)
            except Exception as exc:  # chdb raises plain RuntimeError
                raise from_clickhouse(f"cannot open chdb at {key}: {exc}") from None
            _SHARED[key] = shared
        shared.users += 1
        return shared


def _drain(shared: _Shared) -> None:
    """chdb 4.4 workaround: after a failed query in an Arrow format, the *next* query returns
    the failed one's partial output. One throw-away query takes it, so callers never see it."""
    with contextlib.suppress(Exception):  # best effort: the original error is what matters
        shared.session.query("SELECT 1", "CSV")


def _release(shared: _Shared) -> None:
    with _REGISTRY_LOCK:
        shared.users -= 1
        if shared.users <= 0:
            _SHARED.pop(shared.path, None)
            with shared.lock:
                shared.session.close()


# --- ClickHouse type → Arrow type --------------------------------------------------------------

_INT_TYPES = {
    "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(), "UInt64": pa.uint64(),
    "Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64(),
    "Float32": pa.float32(), "Float64": pa.float64(), "Bool": pa.bool_(),
    "String": pa.string(), "Date": pa.date32(), "Date32": pa.date32(), "UUID": pa.string(),
}


def _unwrap(typ: str, wrapper: str) -> str | None:
    prefix = wrapper + "("
    return typ[len(prefix):-1] if typ.startswith(prefix) and typ.endswith(")") else None


def _split_args(inner: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in inner:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def arrow_type(typ: str) -> pa.DataType:
    """The Arrow type ClickHouse reads into column type ``typ``."""
    for wrapper in ("LowCardinality", "Nullable", "SimpleAggregateFunction"):
        inner = _unwrap(typ, wrapper)
        if inner is not None:
            if wrapper == "SimpleAggregateFunction":
                inner = _split_args(inner)[1]
            return arrow_type(inner)
    if typ in _INT_TYPES:
        return _INT_TYPES[typ]
    if typ.startswith(("DateTime64", "DateTime")):
        return pa.timestamp("us", tz="UTC")
    if typ.startswith(("FixedString", "Enum8", "Enum16")):
        return pa.string()
    m = re.fullmatch(r"Decimal(?:\d+)?\((\d+)(?:,\s*(\d+))?\)", typ)
    if m:
        if typ.startswith("Decimal("):
            precision, scale = int(m.group(1)), int(m.group(2) or 0)
        else:  # Decimal64(S) etc.
            precision = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38}.get(
                typ.split("(")[0], 38)
            scale = int(m.group(1))
        return pa.decimal128(min(precision, 38), scale)
    inner = _unwrap(typ, "Array")
    if inner is not None:
        return pa.list_(arrow_type(inner))
    inner = _unwrap(typ, "Map")
    if inner is not None:
        key, value = _split_args(inner)
        return pa.map_(arrow_type(key), arrow_type(value))
    raise SchemaError(f"column type {typ} is not supported for inserts", code="unsupported_type")


#: time zones whose ``utcoffset`` is never None for a datetime
_FIXED_ZONES = (timezone, ZoneInfo, TzInfo)
_TZINFO = operator.attrgetter("tzinfo")


def _all_aware(values: list[Any]) -> bool:
    """Whether every value is a time in a zone of ``_FIXED_ZONES``, read in C: the check
    per value in Python cost the sink about 0.35 µs a time, six times per event. False
    does not mean a naive time: ``_check_aware`` then looks at each value."""
    try:
        zones = set(map(_TZINFO, values))
    except AttributeError:  # a None, or a value that is no time
        return False
    return all(isinstance(zone, _FIXED_ZONES) for zone in zones)


def _check_aware(col: Column, values: list[Any]) -> list[Any]:
    if col.type.replace("Nullable(", "").startswith("DateTime") and not _all_aware(values):
        for v in values:
            if isinstance(v, datetime) and (v.tzinfo is None or v.utcoffset() is None):
                raise SchemaError(f"{col.name}: naive datetime {v.isoformat()}; times must be "
                                  "timezone-aware", code="naive_datetime")
    if col.type.replace("LowCardinality(", "").replace("Nullable(", "").startswith("Map("):
        return [None if v is None else list(v.items()) for v in values]
    return values


def to_arrow(cols: list[Column], values: list[list[Any]]) -> pa.Table:
    """Columnar Arrow table of the planned insert."""
    arrays = []
    for col, data in zip(cols, values, strict=True):
        try:
            arrays.append(pa.array(_check_aware(col, data), type=arrow_type(col.type)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as exc:
            raise SchemaError(f"{col.name} ({col.type}): {exc}", code="bad_value") from None
    return pa.Table.from_arrays(arrays, names=[c.name for c in cols])


_DATETIME_RE = re.compile(r"(?:Nullable\()?DateTime(?:\('([^']+)'\))?\)?")


class EmbeddedWarehouse(BaseWarehouse):
    """Warehouse on chdb at ``path`` (one shared session per path), database ``database``."""

    def __init__(self, path: str, *, database: str = "default", url: str | None = None,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__(retry)
        self.database = check_identifier(database, "database name")
        self.path = path
        self.url = url or f"chdb://{path}"
        self._shared: _Shared | None = _acquire(path)
        if database != "default":
            shared = self.shared
            with shared.lock:
                try:
                    shared.session.query(f"CREATE DATABASE IF NOT EXISTS {database}", "CSV")
                except Exception as exc:
                    _drain(shared)
                    self.close()
                    raise from_clickhouse(str(exc)) from None

    # --- core ------------------------------------------------------------------------------
    @property
    def shared(self) -> _Shared:
        if self._shared is None:
            raise PermanentWarehouseError("warehouse is closed", code="closed")
        return self._shared

    def _run(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> Any:
        shared = self.shared
        encoded = {k: param_text(v) for k, v in (params or {}).items()}
        with shared.lock:
            try:
                if shared.current_db != self.database:
                    shared.session.query(f"USE {self.database}", "CSV")
                    shared.current_db = self.database
                result = shared.session.query(sql, fmt, params=encoded or None)
                if fmt in ("ArrowTable", "DataFrame") or result is None:
                    return result
                return result.bytes().decode("utf-8", "replace")  # copy while locked
            except WarehouseError:
                raise
            except Exception as exc:
                _drain(shared)
                raise from_clickhouse(str(exc)) from None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        sql = single_statement(sql)
        check_params(sql, params)
        self._run(sql, params, "CSV")

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        sql = single_statement(sql)
        check_params(sql, params)
        result = self._run(sql, params, "ArrowTable")
        if not isinstance(result, pa.Table):
            return pa.table({})
        return self._fix_datetimes(result, sql, params)

    def _fix_datetimes(self, table: pa.Table, sql: str,
                       params: Mapping[str, Any] | None) -> pa.Table:
        """ClickHouse writes ``DateTime`` (seconds) to Arrow as plain uint32; turn those
        columns back into zone-aware timestamps, reading the types with ``DESCRIBE``."""
        suspects = [i for i, f in enumerate(table.schema) if f.type == pa.uint32()]
        if not suspects:
            return table
        try:
            types = [r[1] for r in self._describe(sql, params)]
        except WarehouseError:  # e.g. SHOW / EXPLAIN cannot be described: leave as is
            return table
        if len(types) != table.num_columns:
            return table
        arrays = list(table.columns)
        for i in suspects:
            m = _DATETIME_RE.fullmatch(types[i])
            if m:
                zone = m.group(1) or self._server_tz()
                arrays[i] = pc.cast(pc.cast(arrays[i], pa.int64()), pa.timestamp("s", tz=zone))
        return pa.Table.from_arrays(arrays, names=table.column_names)

    def _describe(self, sql: str, params: Mapping[str, Any] | None) -> list[tuple]:
        text = self._run(f"DESCRIBE TABLE (\n{sql}\n)", params, "TSVRaw")
        return [tuple(line.split("\t")) for line in (text or "").splitlines() if line]

    def _server_tz(self) -> str:
        if not hasattr(self, "_tz"):
            self._tz = (self._run("SELECT timezone()", None, "TSV") or "UTC").strip()
        return self._tz

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        table = self.arrow(sql, params)
        if table.num_columns == 0:
            return []
        columns = [c.to_pylist() for c in table.columns]
        return list(zip(*columns, strict=True))

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pandas.DataFrame:
        return _to_pandas(self.arrow(sql, params))

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]], *,
               dedup_token: str | None = None) -> int:
        if not rows:
            return 0
        cols, values = self.plan_insert(table, rows)
        data = to_arrow(cols, values)
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        payload = sink.getvalue()
        token = _token_hash(dedup_token) if dedup_token else hashlib.sha256(
            table.encode() + b"\0" + payload).hexdigest()
        names = ", ".join(c.name for c in cols)  # checked against system.columns
        sql = (f"INSERT INTO {self.database}.{table} ({names}) "
               f"SETTINGS insert_deduplication_token = '{token}'")
        shared = self.shared

        def attempt() -> int:
            with shared.lock:
                try:
                    inserter = shared.session.send_insert(sql, "ArrowStream")
                    inserter.append(payload)
                    inserter.finish()
                except Exception as exc:
                    _drain(shared)
                    raise from_clickhouse(str(exc)) from None
            return len(rows)

        return self.retry.run(f"insert {table}", attempt)

    def close(self) -> None:
        if self._shared is not None:
            _release(self._shared)
            self._shared = None

    def __enter__(self) -> EmbeddedWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- analyst queries ----------------------------------------------------------------------
    def analyst_df(self, sql: str, *, readonly: bool = True, max_rows: int = 1_000_000,
                   max_seconds: float = 120.0) -> pandas.DataFrame:
        statement = single_statement(sql)
        # the engine's own parser must agree that this is exactly one statement
        try:
            formatted = self._run("SELECT formatQuery({q:String})", {"q": statement}, "CSV")
        except WarehouseError as exc:
            if "Multi-statements" in str(exc):
                raise MultipleStatements("more than one statement; run one at a time") from None
            raise
        normalized = (formatted or "").strip().strip('"')
        if not readonly:
            return self.query_df(statement)
        keyword = check_readonly_statement(normalized or statement)
        # the engine confines no file, URL or process a function can reach: the engine's own
        # parse says which functions the statement calls (readonly only stops some of them)
        refused = functions_refused(str(self._run(f"EXPLAIN AST {statement}", None,
                                                  "TSVRaw") or ""))
        if refused:
            names = sorted(set(refused))
            they = "it reaches" if len(names) == 1 else "they reach"
            raise ReadOnlyViolation(
                f"read-only mode: {', '.join(names)} not allowed ({they} outside the "
                f"warehouse); table functions allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))}")
        limits = (f"readonly = 2, max_result_rows = {int(max_rows)}, "
                  f"result_overflow_mode = 'throw', max_execution_time = {float(max_seconds)}")
        if keyword in ("SELECT", "WITH"):
            wrapped = f"SELECT * FROM (\n{statement}\n) SETTINGS {limits}"
            return self.query_df(wrapped)
        return self.query_df(statement)


def _to_pandas(table: pa.Table) -> pandas.DataFrame:
    if table.num_columns == 0:
        return pandas.DataFrame()
    # dictionary (LowCardinality) columns as plain values, not categoricals
    arrays = [pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c
              for c in table.columns]
    return pa.Table.from_arrays(arrays, names=table.column_names).to_pandas()

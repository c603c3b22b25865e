"""Warehouse errors. Driver errors (chdb, clickhouse-driver) are converted here, at the boundary.

    WarehouseError                      code: machine-readable, e.g. ``unknown_table``
    ├── TransientWarehouseError         worth retrying: network, server overloaded, timeouts
    │   └── SinkInterrupted             the sink was stopped while the warehouse was failing;
    │                                   its batch stays uncommitted and is replayed
    └── PermanentWarehouseError         retrying cannot help: bad SQL, unknown table, types
        ├── SchemaError                 table / column not in the schema (checked before SQL)
        ├── ReadOnlyViolation           a write or DDL in read-only mode (``cityops sql``)
        ├── MultipleStatements          more than one statement in one query
        ├── ResultTooLarge              result above the configured row limit
        └── MigrationError              a migration step failed; names version and statement
"""

from __future__ import annotations

import re

from cityops.exceptions import CityopsError


class WarehouseError(CityopsError):
    """Any warehouse failure; ``code`` is stable and machine-readable."""

    code = "warehouse_error"
    transient = False

    def __init__(self, message: str, *, code: str | None = None,
                 server_code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.server_code = server_code


class TransientWarehouseError(WarehouseError):
    code = "transient"
    transient = True


class SinkInterrupted(TransientWarehouseError):
    code = "sink_interrupted"


class PermanentWarehouseError(WarehouseError):
    code = "permanent"


class SchemaError(PermanentWarehouseError):
    code = "schema"


class ReadOnlyViolation(PermanentWarehouseError):
    code = "read_only"


class MultipleStatements(PermanentWarehouseError):
    code = "multiple_statements"


class ResultTooLarge(PermanentWarehouseError):
    code = "result_too_large"


class MigrationError(PermanentWarehouseError):
    code = "migration_failed"


# ClickHouse error codes (src/Common/ErrorCodes.cpp) → our code and transience.
_TRANSIENT_CODES: dict[int, str] = {
    3: "unexpected_end_of_file", 159: "timeout_exceeded", 160: "too_slow",
    202: "too_many_simultaneous_queries", 203: "no_free_connection",
    209: "socket_timeout", 210: "network_error", 241: "memory_limit_exceeded",
    242: "table_is_read_only", 252: "too_many_parts", 236: "aborted", 319: "unknown_status",
    425: "system_error", 999: "keeper_exception", 1000: "poco_exception",
}
_PERMANENT_CODES: dict[int, str] = {
    16: "no_such_column", 47: "unknown_identifier", 60: "unknown_table", 81: "unknown_database",
    62: "syntax_error", 27: "cannot_parse", 6: "cannot_parse_text", 26: "cannot_parse_quoted",
    38: "cannot_parse_date", 41: "cannot_parse_datetime", 53: "type_mismatch",
    43: "illegal_type_of_argument", 46: "unknown_function", 57: "table_already_exists",
    70: "cannot_convert_type", 164: "read_only", 396: "result_too_large",
    456: "unknown_query_parameter", 457: "bad_query_parameter", 497: "access_denied",
    516: "authentication_failed", 192: "unknown_user", 193: "wrong_password",
    158: "too_many_rows", 307: "too_many_bytes",
}

_CODE_RE = re.compile(r"Code:\s*(\d+)")


def server_code_of(message: str) -> int | None:
    """The ClickHouse error number in a driver message (``Code: 62. DB::Exception: ...``)."""
    m = _CODE_RE.search(message)
    return int(m.group(1)) if m else None


def short_message(message: str) -> str:
    """The first line of a ClickHouse message, without the stack trace."""
    text = message.strip()
    for marker in (". Stack trace:", "Stack trace:"):
        text = text.split(marker, 1)[0]
    text = " ".join(text.split())
    return text[:2000]


def from_clickhouse(message: str, server_code: int | None = None, *,
                    network: bool = False) -> WarehouseError:
    """Convert a ClickHouse / driver failure to a ``WarehouseError`` subclass."""
    if server_code is None:
        server_code = server_code_of(message)
    text = short_message(message)
    if network:
        return TransientWarehouseError(text, code="network_error", server_code=server_code)
    if server_code in (158, 307, 396):
        return ResultTooLarge(text, server_code=server_code)
    if server_code == 164:
        return ReadOnlyViolation(text, server_code=server_code)
    if server_code is not None and server_code in _TRANSIENT_CODES:
        return TransientWarehouseError(text, code=_TRANSIENT_CODES[server_code] or "transient",
                                       server_code=server_code)
    if server_code is not None and server_code in _PERMANENT_CODES:
        return PermanentWarehouseError(text, code=_PERMANENT_CODES[server_code],
                                       server_code=server_code)
    return PermanentWarehouseError(text, code=f"clickhouse_{server_code}" if server_code
                                   else "clickhouse_error", server_code=server_code)

"""The warehouse factory: ``connect(url)`` picks the backend by URL scheme.

* ``chdb:///abs/path[?database=name]`` — embedded ClickHouse (chdb), data on disk (default);
* ``clickhouse://user:password@host:9000/database[?compression=lz4]`` — a ClickHouse server
  over the native protocol (clickhouse-driver), compressed.

Both implement ``Warehouse``; inserts are batched and columnar, checked against the live schema
(``system.columns``) before any SQL is built, deduplicated by token and retried with backoff
on transient errors. Parameters use ClickHouse placeholders ``{name:Type}`` (see ``sqltext``).
The ``Warehouse`` protocol and what the backends share live in ``base``; the names are
re-exported here for callers that import them from the factory's module.
"""

from __future__ import annotations

from urllib.parse import ParseResult, parse_qs, unquote, urlparse

from cityops.core.secrets import redact_url
from cityops.core.settings import Settings
from cityops.warehouse.base import (
    BaseWarehouse,
    Column,
    RetryPolicy,
    Warehouse,
    check_readonly_statement,
    token_hash,
)
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import PermanentWarehouseError, WarehouseError
from cityops.warehouse.server import ServerWarehouse


def parse_url(url: str) -> tuple[str, ParseResult]:
    """The scheme and parts of a warehouse URL; a port that is no port is refused here, in
    one line without the URL (it may hold a password), not as a traceback when connecting."""
    parsed = urlparse(url)
    try:
        _ = parsed.port
    except ValueError:
        raise PermanentWarehouseError("the warehouse URL's port must be a number from 0 to "
                                      "65535", code="bad_url") from None
    return parsed.scheme, parsed


def embedded_path(url: str) -> str | None:
    """The on-disk path (or ``:memory:``) of a ``chdb://`` URL; None for any other scheme."""
    scheme, parsed = parse_url(url)
    return (parsed.netloc + parsed.path) or ":memory:" if scheme == "chdb" else None


def _query_value(parsed: ParseResult, key: str, default: str | None = None) -> str | None:
    values = parse_qs(parsed.query).get(key)
    return values[-1] if values else default


def connect(url: str, *, retry: RetryPolicy | None = None,
            settings: Settings | None = None) -> Warehouse:
    """Open the warehouse at ``url`` (``chdb://`` embedded or ``clickhouse://`` server).

    A server password comes from the URL when it has one, else from
    ``settings.warehouse_password``; the warehouse keeps only the redacted URL."""
    if settings is not None and retry is None:
        retry = RetryPolicy.from_settings(settings)
    scheme, parsed = parse_url(url)
    if scheme == "chdb":
        path = embedded_path(url) or ":memory:"
        database = _query_value(parsed, "database", "default") or "default"
        return EmbeddedWarehouse(path, database=database, url=url, retry=retry)
    if scheme == "clickhouse":
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


def connect_settings(settings: Settings) -> Warehouse:
    """The warehouse of ``settings`` (``effective_warehouse_url``) with its retry policy."""
    return connect(settings.effective_warehouse_url, settings=settings)


__all__ = ["BaseWarehouse", "Column", "RetryPolicy", "Warehouse", "WarehouseError",
           "check_readonly_statement", "connect", "connect_settings", "token_hash"]

"""Versioned, idempotent schema migrations: ``cityops warehouse migrate | status``.

Migrations are the SQL files ``migrations/NNNN_name.sql`` applied in order. Every statement is
idempotent (``IF NOT EXISTS``), so a re-run after a failure resumes safely. ClickHouse has no
transactional DDL, so progress is recorded per migration in ``schema_migrations`` (status
``running`` → ``applied`` | ``failed``, the statement reached and the error): a failed step
leaves a clear state that ``status`` reports. An applied migration whose file changed is
refused (checksum) — add a new one instead.

After the versions, two idempotent steps: the raw-data TTL is aligned with
``CITYOPS_RAW_TTL_DAYS``, and the dimension tables are reloaded from the site registry and the
holiday calendar when their content hash changed. A second run is a no-op.

Templates: ``${tz}`` (the district time zone) and the AQI expressions of ``aqi_sql``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import structlog

from cityops.core.registry import Registry
from cityops.warehouse import aqi_sql
from cityops.warehouse.base import Warehouse
from cityops.warehouse.cluster import ClusterLayout, cluster_statements, ttl_table
from cityops.warehouse.dims import content_hash, dimension_rows
from cityops.warehouse.exceptions import MigrationError, WarehouseError
from cityops.warehouse.sqltext import split_statements

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TZ_RE = re.compile(r"^[A-Za-z0-9_/+\-]+$")

#: tables with raw data and the time column their TTL counts from: the moment a row was
#: ingested, so a backfill of old history stays raw for the full TTL (cityops/ingest/retention.py)
TTL_TABLES: dict[str, str] = {
    "footfall_observed": "ingested_at", "parking_observed": "ingested_at",
    "air_quality_observed": "ingested_at", "incidents_reported": "ingested_at",
    "dead_letters": "received_at", "late_events": "ingested_at",
}
#: recorded in schema_meta: a TTL set on another basis (event time, before) is re-applied
TTL_BASIS = "ingested"

BOOKKEEPING = (
    """CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32, name String, checksum String,
    status LowCardinality(String) COMMENT 'running | applied | failed',
    statements UInt32, applied_statements UInt32, error String,
    at DateTime64(3, 'UTC'), seq UInt64
)
ENGINE = ReplacingMergeTree(seq) ORDER BY version
COMMENT 'Schema migrations: one row per state change, the latest (highest seq) wins'""",
    """CREATE TABLE IF NOT EXISTS schema_meta
(
    key String, value String, at DateTime64(3, 'UTC'), seq UInt64
)
ENGINE = ReplacingMergeTree(seq) ORDER BY key
COMMENT 'Warehouse state kept by migrate: raw TTL in force, dimension content hash'""",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def template(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:16]

    def statements(self, context: dict[str, str],
                   layout: ClusterLayout | None = None) -> list[str]:
        """The migration's statements; their ``ON CLUSTER`` forms when ``layout`` is given."""
        single = split_statements(Template(self.template).substitute(context))
        if layout is None:
            return single
        return [c for stmt in single for c in cluster_statements(stmt, layout)]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not NNNN_name.sql",
                                 code="bad_migration_name")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("duplicate migration version", code="bad_migration_name")
    return found


def template_context(timezone: str) -> dict[str, str]:
    if not _TZ_RE.match(timezone):
        raise MigrationError(f"time zone {timezone!r} cannot be used in DDL", code="bad_timezone")
    return {"tz": timezone, **aqi_sql.render_context()}


@dataclass
class MigrationState:
    version: int
    name: str
    checksum: str
    status: str
    statements: int
    applied_statements: int
    error: str
    at: Any


@dataclass
class Report:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ttl_changed: str | None = None
    dimensions_loaded: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.ttl_changed or self.dimensions_loaded)


def _now_seq() -> int:
    return time.time_ns()


def bookkeeping_statements(layout: ClusterLayout | None = None) -> list[str]:
    if layout is None:
        return list(BOOKKEEPING)
    return [c for ddl in BOOKKEEPING for c in cluster_statements(ddl, layout)]


def _ensure_bookkeeping(wh: Warehouse, layout: ClusterLayout | None = None) -> None:
    for ddl in bookkeeping_statements(layout):
        wh.execute(ddl)


def schema_ddl(timezone: str, layout: ClusterLayout | None = None,
               migrations: list[Migration] | None = None) -> list[tuple[str, str]]:
    """``(migration label, statement)`` of the whole schema, single-node or cluster form."""
    context = template_context(timezone)
    out = [("bookkeeping", ddl) for ddl in bookkeeping_statements(layout)]
    for m in migrations if migrations is not None else discover():
        out.extend((m.label, stmt) for stmt in m.statements(context, layout))
    return out


def read_states(wh: Warehouse) -> dict[int, MigrationState]:
    rows = wh.query(
        "SELECT version, argMax(name, seq), argMax(checksum, seq), argMax(status, seq), "
        "argMax(statements, seq), argMax(applied_statements, seq), argMax(error, seq), "
        "argMax(at, seq) FROM schema_migrations GROUP BY version ORDER BY version")
    return {r[0]: MigrationState(*r) for r in rows}


def _record(wh: Warehouse, m: Migration, status: str, statements: int, done: int,
            error: str = "") -> None:
    from datetime import UTC, datetime

    wh.insert("schema_migrations", [{
        "version": m.version, "name": m.name, "checksum": m.checksum, "status": status,
        "statements": statements, "applied_statements": done, "error": error[:4000],
        "at": datetime.now(UTC), "seq": _now_seq()}])


def read_meta(wh: Warehouse) -> dict[str, str]:
    rows = wh.query("SELECT key, argMax(value, seq) FROM schema_meta GROUP BY key")
    return dict(rows)


def _set_meta(wh: Warehouse, key: str, value: str) -> None:
    from datetime import UTC, datetime

    wh.insert("schema_meta", [{"key": key, "value": value, "at": datetime.now(UTC),
                               "seq": _now_seq()}])


def migrate(wh: Warehouse, *, timezone: str, raw_ttl_days: int, registry: Registry | None,
            migrations: list[Migration] | None = None,
            progress: Callable[[str], None] | None = None,
            layout: ClusterLayout | None = None) -> Report:
    """Apply pending migrations, align the raw TTL, reload changed dimensions.

    With ``layout`` the cluster form is applied (``ON CLUSTER``, replicated local tables,
    ``Distributed`` tables over them): see ``cityops.warehouse.cluster``.
    """
    say = progress or (lambda _msg: None)
    report = Report()
    context = template_context(timezone)
    _ensure_bookkeeping(wh, layout)
    states = read_states(wh)
    for m in migrations if migrations is not None else discover():
        state = states.get(m.version)
        if state is not None and state.status == "applied":
            if state.checksum != m.checksum:
                raise MigrationError(
                    f"migration {m.label} was applied with checksum {state.checksum} but the "
                    f"file now has {m.checksum}; never edit an applied migration, add a new one",
                    code="checksum_mismatch")
            report.skipped.append(m.label)
            continue
        statements = m.statements(context, layout)
        say(f"applying {m.label} ({len(statements)} statements)")
        _record(wh, m, "running", len(statements), 0)
        for i, stmt in enumerate(statements):
            try:
                wh.execute(stmt)
            except WarehouseError as exc:
                head = " ".join(stmt.split())[:120]
                message = (f"migration {m.label} failed at statement {i + 1}/{len(statements)} "
                           f"({head} …): {exc}")
                _record(wh, m, "failed", len(statements), i, str(exc))
                log.error("migration_failed", migration=m.label, statement=i + 1,
                          error=str(exc)[:500])
                raise MigrationError(
                    message + f"; statements 1–{i} are in place and idempotent: fix the cause "
                    "and run `cityops warehouse migrate` again", code="migration_failed",
                ) from None
        _record(wh, m, "applied", len(statements), len(statements))
        log.info("migration_applied", migration=m.label, statements=len(statements))
        report.applied.append(m.label)
    wh_forget = getattr(wh, "forget_schema", None)
    if wh_forget is not None:
        wh_forget()
    meta = read_meta(wh)
    report.ttl_changed = _sync_ttl(wh, meta, raw_ttl_days, say, layout)
    if registry is not None:
        report.dimensions_loaded = _sync_dimensions(wh, meta, registry, say)
    return report


def _sync_ttl(wh: Warehouse, meta: dict[str, str], days: int,
              say: Callable[[str], None], layout: ClusterLayout | None = None) -> str | None:
    current = int(meta.get("raw_ttl_days", "0"))
    days = int(days)
    if current == days and (days == 0 or meta.get("raw_ttl_basis") == TTL_BASIS):
        return None
    say(f"raw TTL {current or 'none'} → {days or 'none'} days")
    for table, column in TTL_TABLES.items():
        target = ttl_table(table, layout)
        if days > 0:
            wh.execute(f"ALTER TABLE {target} MODIFY TTL toDateTime({column}) + "
                       f"INTERVAL {days} DAY")
        else:
            wh.execute(f"ALTER TABLE {target} REMOVE TTL")
    _set_meta(wh, "raw_ttl_days", str(days))
    _set_meta(wh, "raw_ttl_basis", TTL_BASIS)
    return f"{current} -> {days} (from ingestion)"


def _sync_dimensions(wh: Warehouse, meta: dict[str, str], registry: Registry,
                     say: Callable[[str], None]) -> dict[str, int]:
    rows = dimension_rows(registry)
    digest = content_hash(rows)
    if meta.get("dimensions_hash") == digest:
        return {}
    say(f"loading dimensions (registry {registry.version})")
    loaded = {}
    for table, data in rows.items():
        wh.execute(f"TRUNCATE TABLE IF EXISTS {table}")
        loaded[table] = wh.insert(table, data, dedup_token=f"{table}:{digest}:{time.time_ns()}")
    _set_meta(wh, "dimensions_hash", digest)
    return loaded


@dataclass
class StatusLine:
    label: str
    status: str  # applied | pending | failed | running | changed
    detail: str


def status(wh: Warehouse, migrations: list[Migration] | None = None) -> list[StatusLine]:
    """State of every known migration, plus any recorded one missing from this build."""
    _ensure_bookkeeping(wh)
    states = read_states(wh)
    lines = []
    known = migrations if migrations is not None else discover()
    for m in known:
        st = states.get(m.version)
        if st is None:
            lines.append(StatusLine(m.label, "pending", "not applied"))
        elif st.status == "applied" and st.checksum != m.checksum:
            lines.append(StatusLine(m.label, "changed",
                                    f"file checksum {m.checksum} != applied {st.checksum}"))
        elif st.status == "applied":
            lines.append(StatusLine(m.label, "applied", f"{st.statements} statements at {st.at}"))
        elif st.status == "failed":
            lines.append(StatusLine(
                m.label, "failed", f"at statement {st.applied_statements + 1}/{st.statements}: "
                f"{st.error[:300]}"))
        else:
            lines.append(StatusLine(m.label, st.status,
                                    f"{st.applied_statements}/{st.statements} statements"))
    versions = {m.version for m in known}
    for v, st in states.items():
        if v not in versions:
            lines.append(StatusLine(f"{v:04d}_{st.name}", "unknown",
                                    "recorded in the warehouse but not in this build"))
    return lines

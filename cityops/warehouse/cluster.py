"""Cluster schema, generated from the single-node migrations (never a hand-kept copy).

Each single-node statement becomes its cluster form, all with ``ON CLUSTER <name>``:

* a fact table ``t`` (MergeTree family) becomes ``t_local`` with the ``Replicated*`` form of
  the same engine, path ``/clickhouse/tables/{shard}/{database}/{table}`` and ``{replica}``,
  plus ``t`` as a ``Distributed`` table over it, sharded by :data:`SHARDING_KEYS`. Writers and
  readers keep using ``t``; columns, ORDER BY, PARTITION BY and comments are unchanged;
* a small table every query joins (dimensions, migration bookkeeping) is replicated to every
  node in full (one Keeper path without ``{shard}``), so joins stay local;
* a materialized view reads and writes the ``_local`` tables: it fires on the shard where
  the raw rows land, so the rollups are sharded by the same key as their raw table;
* plain views are created unchanged; they read the ``Distributed`` names.

Sharding keys are columns of the table's ORDER BY key, normally the zone or site first in it:
every copy of a record (re-sent event, newer window revision) lands on one shard, so the
``ReplacingMergeTree`` of that shard replaces it and ``FINAL`` stays exact across the cluster,
and a zone's or site's rows stay together. ``non_replicated_deduplication_window`` becomes
``replicated_deduplication_window`` (insert deduplication of retried batches, in Keeper).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cityops.warehouse.exceptions import MigrationError
from cityops.warehouse.sqltext import IDENT_RE, tokenize

#: fact / rollup table → its sharding key columns (each one in the table's ORDER BY key)
SHARDING_KEYS: dict[str, tuple[str, ...]] = {
    "footfall_observed": ("zone_id",),
    "parking_observed": ("carpark_id",),
    "air_quality_observed": ("station_id",),
    "incidents_reported": ("zone_id",),
    "footfall_windows": ("zone_id",),
    "parking_states": ("carpark_id",),
    "air_quality_index": ("station_id",),
    "incident_stats": ("zone_id",),
    "alerts": ("subject",),
    "dead_letters": ("record_id",),
    "late_events": ("event_id",),
    "agg_footfall_zone_1m": ("zone_id",),
    "agg_footfall_zone_1h": ("zone_id",),
    "agg_parking_1h": ("carpark_id",),
    "agg_air_1h": ("station_id",),
    "agg_incidents_1h": ("zone_id",),
}

#: small tables every node holds in full (joined by views; loaded by migrate)
EVERY_NODE: frozenset[str] = frozenset({
    "dim_zones", "dim_counters", "dim_carparks", "dim_stations", "dim_calendar",
    "schema_migrations", "schema_meta",
})

LOCAL_SUFFIX = "_local"
SHARD_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
EVERY_NODE_PATH = "/clickhouse/tables/all/{database}/{table}"

_HEAD_RE = re.compile(
    r"^\s*CREATE\s+(?P<kind>TABLE|MATERIALIZED\s+VIEW|VIEW)\s+IF\s+NOT\s+EXISTS\s+"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_ENGINE_RE = re.compile(r"\bENGINE\s*=\s*(?P<engine>[A-Za-z]+)(?:\s*\((?P<args>[^()]*)\))?",
                        re.IGNORECASE)
_MV_TO_RE = re.compile(r"\bTO\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+AS\b", re.IGNORECASE)
_FROM_RE = re.compile(r"\bFROM\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\b", re.IGNORECASE)
_TRAILING_COMMENT_RE = re.compile(r"\bCOMMENT\s+('(?:[^'\\]|\\.|'')*')\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterLayout:
    """Where the cluster schema goes: the ClickHouse cluster and the database name."""

    cluster: str
    database: str

    def __post_init__(self) -> None:
        for what, value in (("cluster", self.cluster), ("database", self.database)):
            if not IDENT_RE.match(value):
                raise MigrationError(f"{what} name {value!r} is not a plain identifier",
                                     code="bad_cluster_name")

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER {self.cluster}"


def local_name(table: str) -> str:
    """The replicated local table behind the ``Distributed`` table ``table``."""
    return table + LOCAL_SUFFIX


def sharding_expr(table: str) -> str:
    """``cityHash64(<key columns>)`` of a sharded table."""
    return f"cityHash64({', '.join(SHARDING_KEYS[table])})"


def _without_comments(sql: str) -> str:
    return "".join("\n" if t.kind == "comment" else t.text for t in tokenize(sql)).strip()


def _replace_in_code(sql: str, pattern: re.Pattern[str], repl: str) -> str:
    """Apply ``pattern`` → ``repl`` once, only inside code (never inside a string literal)."""
    out, done = [], False
    for tok in tokenize(sql):
        if tok.kind == "code" and not done:
            new, n = pattern.subn(repl, tok.text, count=1)
            out.append(new)
            done = n > 0
        else:
            out.append(tok.text)
    if not done:
        raise MigrationError(f"cannot rewrite for the cluster: {pattern.pattern!r} not found "
                             f"in {sql[:120]!r}", code="cluster_rewrite")
    return "".join(out)


def replicated_engine(engine: str, args: str | None, path: str) -> str:
    """``ReplacingMergeTree(v)`` → ``ReplicatedReplacingMergeTree('<path>', '{replica}', v)``."""
    if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
        raise MigrationError(f"engine {engine} has no replicated form here",
                             code="cluster_rewrite")
    extra = f", {args.strip()}" if args and args.strip() else ""
    return f"ENGINE = Replicated{engine}('{path}', '{{replica}}'{extra})"


def _table_statements(sql: str, name: str, layout: ClusterLayout) -> list[str]:
    m = _ENGINE_RE.search(sql)
    if m is None:
        raise MigrationError(f"table {name} has no ENGINE clause", code="cluster_rewrite")
    settings_fixed = re.sub(r"\bnon_replicated_deduplication_window\b",
                            "replicated_deduplication_window", sql)
    if name in EVERY_NODE:
        path = EVERY_NODE_PATH
        target = name
    elif name in SHARDING_KEYS:
        path = SHARD_PATH
        target = local_name(name)
    else:
        raise MigrationError(
            f"table {name} has no cluster placement: add it to SHARDING_KEYS (a column of its "
            "ORDER BY key) or EVERY_NODE in cityops/warehouse/cluster.py",
            code="cluster_unplaced_table")
    engine = replicated_engine(m.group("engine"), m.group("args"), path)
    head = re.compile(rf"\bIF\s+NOT\s+EXISTS\s+{name}\b", re.IGNORECASE)
    local = _replace_in_code(settings_fixed, head,
                             f"IF NOT EXISTS {target} {layout.on_cluster}")
    local = _replace_in_code(local, _ENGINE_RE, engine)
    if name in EVERY_NODE:
        return [local]
    comment = _TRAILING_COMMENT_RE.search(sql)
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {name} {layout.on_cluster} AS {target}\n"
        f"ENGINE = Distributed({layout.cluster}, {layout.database}, {target}, "
        f"{sharding_expr(name)})"
        + (f"\nCOMMENT {comment.group(1)}" if comment else ""))
    return [local, distributed]


def _mv_statement(sql: str, name: str, layout: ClusterLayout) -> str:
    to = _MV_TO_RE.search(sql)
    src = _FROM_RE.search(sql)
    if to is None or src is None:
        raise MigrationError(f"materialized view {name} needs TO <table> and FROM <table>",
                             code="cluster_rewrite")
    for table in (to.group("name"), src.group("name")):
        if table not in SHARDING_KEYS:
            raise MigrationError(f"materialized view {name} uses {table}, which is not sharded",
                                 code="cluster_rewrite")
    head = re.compile(rf"\bIF\s+NOT\s+EXISTS\s+{name}\b", re.IGNORECASE)
    out = _replace_in_code(sql, head, f"IF NOT EXISTS {name} {layout.on_cluster}")
    out = _replace_in_code(out, _MV_TO_RE, f"TO {local_name(to.group('name'))} AS")
    return _replace_in_code(out, _FROM_RE, f"FROM {local_name(src.group('name'))}")


_DROP_VIEW_RE = re.compile(r"^\s*DROP\s+VIEW\s+IF\s+EXISTS\s+(?P<name>\w+)", re.IGNORECASE)
_REPLACE_VIEW_RE = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+(?P<name>\w+)",
                              re.IGNORECASE)
_DELETE_RE = re.compile(r"^\s*DELETE\s+FROM\s+(?P<name>\w+)", re.IGNORECASE)
_INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s+(?P<name>\w+)", re.IGNORECASE)
#: the only ALTERs a migration holds: a table's or a column's comment
_ALTER_COMMENT_RE = re.compile(
    r"^\s*ALTER\s+TABLE\s+(?P<name>\w+)\s+(?:MODIFY\s+COMMENT|COMMENT\s+COLUMN)\b",
    re.IGNORECASE)


def cluster_statements(sql: str, layout: ClusterLayout) -> list[str]:
    """The cluster form of one single-node statement (one or two statements).

    Besides ``CREATE … IF NOT EXISTS``: ``DROP VIEW IF EXISTS`` and ``CREATE OR REPLACE VIEW``
    run ``ON CLUSTER``; a lightweight ``DELETE`` runs on every node's local table; an
    ``INSERT … SELECT`` backfill runs once, through the Distributed names (rows go to the
    shard of their key); a comment (``ALTER TABLE … MODIFY COMMENT | COMMENT COLUMN``) is
    changed on the local tables and on the Distributed one, which the catalogue lists."""
    sql = _without_comments(sql)
    a = _ALTER_COMMENT_RE.match(sql)
    if a is not None:
        name = a.group("name")
        head = re.compile(rf"\bTABLE\s+{name}\b", re.IGNORECASE)
        if name in EVERY_NODE:
            return [_replace_in_code(sql, head, f"TABLE {name} {layout.on_cluster}")]
        if name not in SHARDING_KEYS:
            raise MigrationError(f"ALTER of {name}, which has no cluster placement",
                                 code="cluster_rewrite")
        return [_replace_in_code(sql, head, f"TABLE {table} {layout.on_cluster}")
                for table in (local_name(name), name)]
    for pattern in (_DROP_VIEW_RE, _REPLACE_VIEW_RE):
        d = pattern.match(sql)
        if d is not None:
            name = d.group("name")
            return [_replace_in_code(sql, re.compile(rf"\b{name}\b"),
                                     f"{name} {layout.on_cluster}")]
    d = _DELETE_RE.match(sql)
    if d is not None:
        name = d.group("name")
        if name not in SHARDING_KEYS:
            raise MigrationError(f"DELETE from {name}, which is not sharded",
                                 code="cluster_rewrite")
        return [_replace_in_code(sql, re.compile(rf"\bFROM\s+{name}\b", re.IGNORECASE),
                                 f"FROM {local_name(name)} {layout.on_cluster}")]
    if _INSERT_RE.match(sql) is not None:
        return [sql]
    m = _HEAD_RE.match(sql)
    if m is None:
        raise MigrationError(f"no cluster form for {sql[:80]!r}: migrations may hold only "
                             "CREATE TABLE | MATERIALIZED VIEW | VIEW IF NOT EXISTS, DROP VIEW "
                             "IF EXISTS, CREATE OR REPLACE VIEW, DELETE FROM, INSERT INTO and "
                             "ALTER TABLE … MODIFY COMMENT | COMMENT COLUMN",
                             code="cluster_rewrite")
    kind, name = " ".join(m.group("kind").upper().split()), m.group("name")
    if kind == "TABLE":
        return _table_statements(sql, name, layout)
    if kind == "MATERIALIZED VIEW":
        return [_mv_statement(sql, name, layout)]
    head = re.compile(rf"\bIF\s+NOT\s+EXISTS\s+{name}\b", re.IGNORECASE)
    return [_replace_in_code(sql, head, f"IF NOT EXISTS {name} {layout.on_cluster}")]


def ttl_table(table: str, layout: ClusterLayout | None) -> str:
    """The table (and ON CLUSTER clause) an ``ALTER … TTL`` of raw ``table`` applies to."""
    if layout is None:
        return table
    return f"{local_name(table)} {layout.on_cluster}"

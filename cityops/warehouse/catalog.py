"""What the warehouse holds, for ``cityops warehouse tables`` and the docs: every table and
view with its kind, row count and description (the ``COMMENT`` written in the migrations)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cityops.warehouse.base import Warehouse

INTERNAL_PREFIXES = ("agg_", "mv_", "schema_")


@dataclass(frozen=True)
class WarehouseObject:
    name: str
    kind: str  # table | view | rollup storage | materialized view | bookkeeping
    engine: str
    rows: int | None
    comment: str


def _kind(name: str, engine: str) -> str:
    if engine == "MaterializedView":
        return "materialized view"
    if engine == "View":
        return "view"
    if name.startswith("agg_"):
        return "rollup storage"
    if name.startswith("schema_"):
        return "bookkeeping"
    if name.startswith("dim_"):
        return "dimension"
    return "table"


def list_objects(wh: Warehouse, *, include_internal: bool = False) -> list[WarehouseObject]:
    db = getattr(wh, "database", "default")
    rows = wh.query(
        "SELECT name, engine, total_rows, comment FROM system.tables "
        "WHERE database = {db:String} ORDER BY name", {"db": db})
    out = []
    for name, engine, total, comment in rows:
        if not include_internal and name.startswith(INTERNAL_PREFIXES):
            continue
        out.append(WarehouseObject(name, _kind(name, engine), engine, total, comment))
    order = {"table": 0, "dimension": 1, "view": 2, "rollup storage": 3,
             "materialized view": 4, "bookkeeping": 5}
    return sorted(out, key=lambda o: (order.get(o.kind, 9), o.name))


@dataclass(frozen=True)
class CatalogueQuery:
    id: str
    title: str
    sql: str


_HEADING = re.compile(r"^##\s+(Q\d+)\.\s+(.+?)\s*$")


def load_catalogue(path: Path) -> list[CatalogueQuery]:
    """The queries of ``docs/analyst-queries.md``: a ``## Qn. title`` heading, then the first
    fenced ```sql block under it."""
    queries: list[CatalogueQuery] = []
    current: tuple[str, str] | None = None
    block: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _HEADING.match(line)
        if m:
            current, block = (m.group(1), m.group(2)), None
            continue
        if current and block is None and line.strip() == "```sql":
            block = []
            continue
        if current and block is not None:
            if line.strip() == "```":
                queries.append(CatalogueQuery(current[0], current[1], "\n".join(block).strip()))
                current, block = None, None
            else:
                block.append(line)
    return queries

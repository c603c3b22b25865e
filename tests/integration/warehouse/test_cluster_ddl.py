"""The generated cluster schema against ClickHouse's own parser (chdb ``formatQuery``): every
statement parses, and each replicated local table equals its single-node table column for
column, with the same engine apart from replication."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from cityops.core.settings import Settings
from cityops.warehouse.cluster import SHARDING_KEYS, ClusterLayout, local_name
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import WarehouseError
from cityops.warehouse.migrate import schema_ddl

from .conftest import drop, open_warehouse

pytestmark = pytest.mark.integration

LAYOUT = ClusterLayout("cityops_cluster", "cityops")
_NAME_RE = re.compile(r"^CREATE (?:OR REPLACE )?(?:TABLE|MATERIALIZED VIEW|VIEW) "
                      r"(?:IF NOT EXISTS )?(\w+)")
_ENGINE_LINE_RE = re.compile(r"^ENGINE = (\w+)(?:\((.*)\))?$")


@pytest.fixture(scope="module")
def wh(settings: Settings) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    yield wh
    drop(wh)


def fmt(wh: EmbeddedWarehouse, sql: str) -> str:
    """The statement as ClickHouse's parser reads it (raises on a syntax error)."""
    return wh.query("SELECT formatQuery({q:String})", {"q": sql})[0][0]


def parts(formatted: str) -> tuple[str, list[str], str, list[str]]:
    """(head line, column lines, engine line, the lines after the engine)."""
    lines = formatted.splitlines()
    close = lines.index(")")
    engine_at = next(i for i, line in enumerate(lines) if line.startswith("ENGINE = "))
    assert lines[1] == "(" and engine_at == close + 1, formatted
    return lines[0], lines[2:close], lines[engine_at], lines[engine_at + 1:]


def _args(text: str | None) -> list[str]:
    return [a.strip() for a in text.split(",")] if text else []


@pytest.fixture(scope="module")
def formatted(wh: EmbeddedWarehouse) -> dict[str, dict[str, str]]:
    """name → formatted statement, single-node and cluster."""
    out: dict[str, dict[str, str]] = {"single": {}, "cluster": {}}
    for mode, layout in (("single", None), ("cluster", LAYOUT)):
        for _, stmt in schema_ddl("Asia/Shanghai", layout):
            text = fmt(wh, stmt)  # every statement parses
            m = _NAME_RE.match(text)
            if m:  # CREATE statements by name; DROP / DELETE / INSERT only parse
                out[mode][m.group(1)] = text
    return out


def test_every_cluster_statement_parses_and_names_the_cluster(
        formatted: dict[str, dict[str, str]]) -> None:
    cluster = formatted["cluster"]
    assert len(cluster) >= 40
    for name, text in cluster.items():
        assert f" {name} ON CLUSTER {LAYOUT.cluster}" in text.splitlines()[0], text[:200]


def test_the_parser_refuses_a_broken_statement(wh: EmbeddedWarehouse) -> None:
    _, stmt = next(s for s in schema_ddl("Asia/Shanghai", LAYOUT) if "_local" in s[1])
    with pytest.raises(WarehouseError):
        fmt(wh, stmt.replace("ENGINE = ", "ENGINE = (", 1))


def test_local_tables_equal_single_node_tables_apart_from_replication(
        formatted: dict[str, dict[str, str]]) -> None:
    single, cluster = formatted["single"], formatted["cluster"]
    tables = [n for n, t in single.items() if t.startswith("CREATE TABLE")]
    assert len(tables) >= 20
    for name in tables:
        local = local_name(name) if name in SHARDING_KEYS else name
        s_head, s_cols, s_engine, s_rest = parts(single[name])
        c_head, c_cols, c_engine, c_rest = parts(cluster[local])
        assert c_head == s_head.replace(f" {name}", f" {local} ON CLUSTER {LAYOUT.cluster}")
        assert c_cols == s_cols, name
        se, ce = _ENGINE_LINE_RE.match(s_engine), _ENGINE_LINE_RE.match(c_engine)
        assert se and ce, (s_engine, c_engine)
        assert ce.group(1) == "Replicated" + se.group(1), name
        c_args = _args(ce.group(2))
        shard = "{shard}" if name in SHARDING_KEYS else "all"
        assert c_args[:2] == [f"'/clickhouse/tables/{shard}/{{database}}/{{table}}'",
                              "'{replica}'"], name
        assert c_args[2:] == _args(se.group(2)), name
        assert c_rest == [line.replace("non_replicated_deduplication_window",
                                       "replicated_deduplication_window") for line in s_rest]


def test_distributed_tables_shard_by_a_column_of_the_sorting_key(
        formatted: dict[str, dict[str, str]]) -> None:
    single, cluster = formatted["single"], formatted["cluster"]
    for name, key in SHARDING_KEYS.items():
        text = cluster[name]
        expected = (f"ENGINE = Distributed({LAYOUT.cluster}, {LAYOUT.database}, "
                    f"{local_name(name)}, cityHash64({', '.join(key)}))")
        assert expected in text.splitlines(), text
        assert f"AS {local_name(name)}" in text.splitlines()[0]
        order_by = next(line for line in single[name].splitlines()
                        if line.startswith("ORDER BY "))
        sort_cols = re.findall(r"\w+", order_by.removeprefix("ORDER BY "))
        assert set(key) <= set(sort_cols), (name, key, order_by)


def test_materialized_views_read_and_write_local_tables(
        formatted: dict[str, dict[str, str]]) -> None:
    views = {n: t for n, t in formatted["cluster"].items()
             if t.startswith("CREATE MATERIALIZED VIEW")}
    assert len(views) == 5
    for name, text in views.items():
        target = re.search(r" TO (\w+)", text.splitlines()[0]).group(1)
        sources = re.findall(r"\bFROM (\w+)", text)
        assert target.endswith("_local") and sources and all(
            s.endswith("_local") for s in sources), (name, target, sources)
        # the rollup is sharded like its raw table: the view fires where the raw rows land
        assert SHARDING_KEYS[target.removesuffix("_local")] == \
            SHARDING_KEYS[sources[0].removesuffix("_local")]


def test_plain_views_read_the_distributed_names(formatted: dict[str, dict[str, str]]) -> None:
    single, cluster = formatted["single"], formatted["cluster"]
    views = [n for n, t in single.items() if t.startswith("CREATE VIEW")]
    assert views
    for name in views:
        assert cluster[name] == single[name].replace(
            f"{name}", f"{name} ON CLUSTER {LAYOUT.cluster}", 1)
        assert "_local" not in cluster[name]

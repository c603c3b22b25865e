"""Cluster rewriting rules that need no engine: placement is explicit, names are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.warehouse.cluster import ClusterLayout, cluster_statements, ttl_table
from cityops.warehouse.exceptions import MigrationError

LAYOUT = ClusterLayout("city", "cityops")


def test_a_new_table_without_a_placement_is_refused() -> None:
    with pytest.raises(MigrationError, match="no cluster placement"):
        cluster_statements("CREATE TABLE IF NOT EXISTS brand_new (x UInt8) "
                           "ENGINE = MergeTree ORDER BY x", LAYOUT)


def test_cluster_and_database_names_must_be_identifiers() -> None:
    with pytest.raises(MigrationError):
        ClusterLayout("city; DROP TABLE x", "cityops")


def test_strings_are_never_rewritten() -> None:
    sql = ("CREATE VIEW IF NOT EXISTS v AS SELECT 'FROM footfall_observed' AS s "
           "FROM footfall_observed COMMENT 'reads FROM footfall_observed'")
    (out,) = cluster_statements(sql, LAYOUT)
    assert out.count("footfall_observed_local") == 0
    assert "ON CLUSTER city" in out


def test_raw_ttl_alters_the_local_tables_on_the_cluster() -> None:
    assert ttl_table("footfall_observed", None) == "footfall_observed"
    assert ttl_table("footfall_observed", LAYOUT) == "footfall_observed_local ON CLUSTER city"


def test_a_comment_changes_on_the_local_and_the_distributed_table() -> None:
    column = "ALTER TABLE alerts COMMENT COLUMN kind 'fired | cleared'"
    assert cluster_statements(column, LAYOUT) == [
        "ALTER TABLE alerts_local ON CLUSTER city COMMENT COLUMN kind 'fired | cleared'",
        "ALTER TABLE alerts ON CLUSTER city COMMENT COLUMN kind 'fired | cleared'"]
    table = "ALTER TABLE dim_zones MODIFY COMMENT 'zones of alerts'"
    assert cluster_statements(table, LAYOUT) == [
        "ALTER TABLE dim_zones ON CLUSTER city MODIFY COMMENT 'zones of alerts'"]


def test_an_alter_other_than_a_comment_has_no_cluster_form() -> None:
    with pytest.raises(MigrationError, match="no cluster form"):
        cluster_statements("ALTER TABLE alerts DROP COLUMN kind", LAYOUT)
    with pytest.raises(MigrationError, match="no cluster placement"):
        cluster_statements("ALTER TABLE brand_new MODIFY COMMENT 'x'", LAYOUT)


def test_ddl_command_prints_the_cluster_schema() -> None:
    result = CliRunner().invoke(app, ["warehouse", "ddl", "--cluster", "city"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE IF NOT EXISTS footfall_observed_local ON CLUSTER city" in result.output
    assert "ENGINE = Distributed(city, cityops, footfall_observed_local, cityHash64(zone_id))" \
        in result.output


def test_migrate_cluster_refuses_the_embedded_warehouse(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["warehouse", "migrate", "--cluster", "city", "--url",
                                      f"chdb://{tmp_path / 'wh'}"])
    assert result.exit_code != 0
    assert "needs a ClickHouse server URL" in result.output

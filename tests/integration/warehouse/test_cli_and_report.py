"""The warehouse CLI end to end on chdb (migrate, status, tables, sql in every format with
hostile input) and the night-economy report (files, charts, numbers equal to the views)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas
import pytest
from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.report import night_economy_report

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def cli_env(settings: Settings, seeded_wh: EmbeddedWarehouse,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    url = f"chdb://{seeded_wh.path}?database={seeded_wh.database}"
    yield {"CITYOPS_WAREHOUSE_URL": url, "CITYOPS_WORKER_SQL_URL": "",
           "CITYOPS_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
           "COLUMNS": "200"}


def _run(env: dict[str, str], *args: str) -> object:
    return runner.invoke(app, list(args), env=env)


def test_migrate_twice_and_status(cli_env: dict[str, str]) -> None:
    first = _run(cli_env, "warehouse", "migrate")
    assert first.exit_code == 0, first.output
    assert "up to date" in first.output and "nothing to do" in first.output
    status = _run(cli_env, "warehouse", "status")
    assert status.exit_code == 0, status.output
    assert status.output.count("applied") >= 5 and "400 days" in status.output


def test_tables_lists_views_with_descriptions(cli_env: dict[str, str]) -> None:
    result = _run(cli_env, "warehouse", "tables")
    assert result.exit_code == 0, result.output
    for name in ("night_footfall", "footfall_observed", "incident_lifecycle", "dim_zones"):
        assert name in result.output
    assert "agg_footfall_zone_1m" not in result.output
    assert "belongs to the evening" in result.output


def test_sql_formats(cli_env: dict[str, str], tmp_path: Path) -> None:
    q = "SELECT zone_id, sum(entries) AS entries FROM night_footfall GROUP BY zone_id " \
        "ORDER BY zone_id"
    table = _run(cli_env, "sql", q)
    assert table.exit_code == 0 and "jfb_square" in table.output
    csv = _run(cli_env, "sql", q, "--format", "csv")
    df = pandas.read_csv(io.StringIO(csv.stdout))
    assert list(df.columns) == ["zone_id", "entries"] and len(df) >= 5
    js = _run(cli_env, "sql", q, "--format", "json")
    records = [json.loads(line) for line in js.stdout.splitlines() if line.strip()]
    assert records[0].keys() == {"zone_id", "entries"}
    assert sum(r["entries"] for r in records) == int(df["entries"].sum())
    out = tmp_path / "r.parquet"
    pq = _run(cli_env, "sql", q, "--format", "parquet", "--out", str(out))
    assert pq.exit_code == 0, pq.output
    assert pandas.read_parquet(out)["entries"].sum() == df["entries"].sum()


@pytest.mark.parametrize(("sql", "code"), [
    ("SELECT 1; DROP TABLE footfall_observed", "multiple_statements"),
    ("DROP TABLE footfall_observed", "read_only"),
    ("INSERT INTO dim_zones (zone_id) VALUES ('x')", "read_only"),
    ("SELECT * FROM footfall_observed AS f, numbers(1000) AS n", "result_too_large"),
    ("SELEC broken", "syntax_error"),
])
def test_sql_hostile_input_gets_a_clear_error(cli_env: dict[str, str], sql: str,
                                              code: str) -> None:
    result = _run(cli_env, "sql", sql, "--max-rows", "1000")
    assert result.exit_code == 1
    assert code in result.output
    assert "Traceback" not in result.output
    check = _run(cli_env, "sql", "SELECT count() AS n FROM footfall_observed", "-f", "csv")
    assert int(check.stdout.splitlines()[1]) > 0


def test_report_files_and_numbers(seeded_wh: EmbeddedWarehouse, tmp_path: Path) -> None:
    result = night_economy_report(seeded_wh, date(2026, 1, 31), date(2026, 2, 15),
                                  tmp_path / "report", progress=False)
    assert result.nights == 5  # 31 Jan, 1 Feb, 13, 14 and 15 Feb
    expected = {"nightly_footfall", "hour_weekday_heatmap", "holiday_vs_normal", "top_zones",
                "evening_parking_pressure", "incidents_per_10k"}
    assert set(result.tables) == expected and set(result.charts) == expected
    for path in [*result.tables.values(), *result.charts.values()]:
        assert path.stat().st_size > 100, path
    html = result.index.read_text(encoding="utf-8")
    for key in expected:
        assert f"{key}.png" in html and f"{key}.csv" in html
    nightly = pandas.read_csv(result.tables["nightly_footfall"])
    total = seeded_wh.query("SELECT sum(entries) FROM night_footfall WHERE night_date BETWEEN "
                            "'2026-01-31' AND '2026-02-15'")[0][0]
    assert nightly["entries"].sum() == total
    top = pandas.read_csv(result.tables["top_zones"])
    assert top["night_entries"].sum() == total
    assert abs(top["share_pct"].sum() - 100) < 0.5
    kinds = set(pandas.read_csv(result.tables["holiday_vs_normal"])["night_type"])
    assert "holiday" in kinds and "weekend night (Fri/Sat)" in kinds
    heat = pandas.read_csv(result.tables["hour_weekday_heatmap"], index_col=0)
    assert heat.shape == (7, 24)


def test_report_command(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "cli-report"
    result = _run(cli_env, "report", "night-economy", "--from", "2026-02-13", "--to",
                  "2026-02-15", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert re.search(r"3 nights", result.output)
    assert (out / "index.html").exists()
    bad = _run(cli_env, "report", "night-economy", "--from", "2026-02-15", "--to",
               "2026-02-01", "--out", str(out))
    assert bad.exit_code == 2 and "before" in bad.output

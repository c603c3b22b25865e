"""The warehouse CLI end to end on chdb (migrate, status, tables, sql in every format with
hostile input) and the night-economy report (files, charts, numbers equal to the views)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
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


def test_sql_text_output_keeps_arrays_and_district_times_readable(
        cli_env: dict[str, str]) -> None:
    """CSV and the table printed arrays as numpy text (``['a' 'b']``, ``array([1, 2],
    dtype=uint8)``) and JSON moved district times to UTC (00:30 became the day before's
    16:30Z)."""
    q = ("SELECT ['a', 'b'] AS s, [[1, 2], [3]] AS n, "
         "toDateTime64('2026-12-07 00:30:00', 3, 'Asia/Shanghai') AS t")
    csv = _run(cli_env, "sql", q, "--format", "csv")
    row = pandas.read_csv(io.StringIO(csv.stdout)).iloc[0]
    assert json.loads(row["s"]) == ["a", "b"] and json.loads(row["n"]) == [[1, 2], [3]]
    assert row["t"] == "2026-12-07 00:30:00+08:00"
    js = _run(cli_env, "sql", q, "--format", "json")
    assert json.loads(js.stdout) == {"s": ["a", "b"], "n": [[1, 2], [3]],
                                     "t": "2026-12-07T00:30:00+08:00"}
    table = _run(cli_env, "sql", q)
    assert '["a", "b"]' in table.stdout and "dtype" not in table.stdout


def test_sql_json_gives_a_date_as_a_date(cli_env: dict[str, str]) -> None:
    """A ``Date`` (a night, a report day) came out of ``--format json`` as a midnight,
    ``2026-12-01T00:00:00.000``, where ``/sql`` and CSV say ``2026-12-01``; a decimal as a
    float."""
    q = ("SELECT toDate('2026-12-01') AS night, [toDate('2026-12-02')] AS nights, "
         "toDecimal64('12.30', 2) AS share, CAST(NULL AS Nullable(Date)) AS none")
    js = _run(cli_env, "sql", q, "--format", "json")
    assert js.exit_code == 0, js.output
    assert json.loads(js.stdout) == {"night": "2026-12-01", "nights": ["2026-12-02"],
                                     "share": "12.30", "none": None}


def test_an_out_path_that_cannot_be_written_is_one_line(cli_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for args in (["sql", "SELECT 1", "-f", "csv", "--out", str(tmp_path / "no" / "x.csv")],
                 ["sql", "SELECT 1", "-f", "csv", "--out", str(tmp_path)],
                 ["report", "night-economy", "--from", "2026-01-31", "--to", "2026-01-31",
                  "--out", str(afile / "r"), "--no-progress"]):
        result = _run(cli_env, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "--out" in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


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
                                  tmp_path / "report", timezone="Asia/Shanghai",
                                  progress=False)
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


def test_the_heatmap_covers_the_report_s_nights(seeded_wh: EmbeddedWarehouse,
                                                tmp_path: Path) -> None:
    """The heatmap took calendar dates while the rest of the report takes nights: a one-night
    report (Sunday 1 Feb) left out that night's hours after midnight and kept the early
    morning of the night before."""
    result = night_economy_report(seeded_wh, date(2026, 2, 1), date(2026, 2, 1),
                                  tmp_path / "one-night", timezone="Asia/Shanghai",
                                  progress=False)
    heat = pandas.read_csv(result.tables["hour_weekday_heatmap"], index_col=0)
    hours = dict(seeded_wh.query(
        "SELECT toHour(hour) AS h, sum(entries) FROM footfall_zone_1h "
        "WHERE hour >= toDateTime('2026-02-01 06:00:00', 'Asia/Shanghai') "
        "AND hour < toDateTime('2026-02-02 06:00:00', 'Asia/Shanghai') GROUP BY h"))
    assert hours[1] > 0 and hours[20] > 0  # the seeded night runs past midnight
    sunday = heat.loc["Sun"]
    for h in range(24):  # one day of each weekday: the mean is the day's own total
        assert (sunday[str(h)] if h in hours else 0) == pytest.approx(hours.get(h, 0)), h
    others = heat.drop(index="Sun")
    assert others.isna().all().all()  # nothing of Saturday's night (31 Jan) leaks in


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


def test_a_report_of_nights_without_footfall_says_which_nights_there_are(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    """A range the warehouse holds nothing of gave a report of empty tables and blank charts
    with exit 0 and no word why; the analyst now learns which nights there are."""
    held = _run(cli_env, "sql", "SELECT min(night_date), max(night_date) FROM night_footfall",
                "-f", "csv").stdout.splitlines()[1].split(",")
    out = tmp_path / "empty-report"
    result = _run(cli_env, "report", "night-economy", "--from", "2025-06-01", "--to",
                  "2025-06-03", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    note = (f"no night in this range has footfall: the warehouse holds nights {held[0]} to "
            f"{held[1]}")
    assert f"warning: {note}" in result.output
    assert note.capitalize() in (out / "index.html").read_text(encoding="utf-8")
    full = _run(cli_env, "report", "night-economy", "--from", held[0], "--to", held[1],
                "--out", str(tmp_path / "full"), "--no-progress")
    assert full.exit_code == 0 and "warning" not in full.output, full.output


def test_sql_goes_to_the_worker_endpoint_when_one_is_set(cli_env: dict[str, str]) -> None:
    """`remote_sql_url`: with CITYOPS_WORKER_SQL_URL set, `cityops sql` posts the statement to
    that read-only endpoint (the worker's /sql contract) instead of opening chdb itself."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            if body["sql"].lstrip().upper().startswith("DROP"):
                status, reply = 400, {"error": "read-only mode: DROP", "code": "read_only"}
            else:
                status, reply = 200, {"columns": ["zone_id", "n"], "types": ["str", "int"],
                                      "rows": [["jfb_square", 3], ["minzu_road", 4]]}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**cli_env, "CITYOPS_WAREHOUSE_URL": "",
               "CITYOPS_WORKER_SQL_URL": f"http://127.0.0.1:{server.server_port}/sql"}
        ok = _run(env, "sql", "SELECT zone_id, n FROM t", "--format", "csv")
        assert ok.exit_code == 0, ok.output
        assert ok.stdout.splitlines() == ["zone_id,n", "jfb_square,3", "minzu_road,4"]
        assert seen[0]["sql"] == "SELECT zone_id, n FROM t"
        refused = _run(env, "sql", "DROP TABLE alerts")
        assert refused.exit_code == 1 and "read_only" in refused.output
    finally:
        server.shutdown()
        server.server_close()


def test_alerts_list_shows_whole_ids_on_a_narrow_terminal(cli_env: dict[str, str],
                                                          seeded_wh: EmbeddedWarehouse) -> None:
    """The id is what `alerts ack` takes; an 80-column table cut it to `dead_sen…`."""
    alert_id = "dead_sensor:cp_wfc:1796665380"
    at = datetime(2026, 2, 14, 20, tzinfo=UTC)
    seeded_wh.insert("alerts", [{
        "record_id": f"{alert_id}:1", "alert_id": alert_id, "rule_id": "dead_sensor",
        "rule_version": "t", "subject": "cp_wfc", "kind": "fired", "state": "active_unack",
        "severity": "major", "value": 60.0, "threshold": 60.0, "message": "silent",
        "escalation_level": 0, "actor": None, "event_time": at, "emitted_at": at, "seq": 1}])
    try:
        listed = _run({**cli_env, "COLUMNS": "80"}, "alerts", "list")
        assert listed.exit_code == 0, listed.output
        cells = "".join(line.strip("│ ").split("│")[-1].strip()
                        for line in listed.stdout.splitlines() if line.startswith("│"))
        assert alert_id in cells and "…" not in listed.stdout
    finally:
        seeded_wh.execute("DELETE FROM alerts WHERE alert_id = {a:String}", {"a": alert_id})


def test_reading_a_warehouse_that_is_not_there_makes_none(cli_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    """chdb makes a warehouse wherever it is pointed: a mistyped --url made an empty one, and
    the query then found no table."""
    missing = tmp_path / "typo" / "warehouse"
    for args in (["sql", "SELECT 1", "--url", f"chdb://{missing}"],
                 ["report", "night-economy", "--from", "2026-01-31", "--to", "2026-01-31",
                  "--out", str(tmp_path / "r"), "--url", f"chdb://{missing}"],
                 ["warehouse", "status", "--url", f"chdb://{missing}"],
                 ["warehouse", "tables", "--url", f"chdb://{missing}"]):
        result = _run(cli_env, *args)
        assert result.exit_code == 1, (args, result.output)
        assert f"no warehouse at {missing}" in " ".join(result.output.split())
        assert not missing.exists() and not (tmp_path / "typo").exists()


def test_a_warehouse_url_whose_port_is_no_port_is_one_line(cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    """``clickhouse://…:notaport/db`` passed the settings and ended in urllib's traceback
    when connecting."""
    for bad in ("clickhouse://u:pw-x1@h:notaport/db", "clickhouse://u:pw-x1@h:99999/db"):
        for args in (["warehouse", "status", "--url", bad], ["sql", "SELECT 1", "--url", bad],
                     ["warehouse", "migrate", "--url", bad]):
            result = _run(cli_env, *args)
            assert result.exit_code == 1, (args, result.output)
            assert "port must be a number from 0 to 65535" in result.output, result.output
            assert "Traceback" not in result.output and "pw-x1" not in result.output
        env = _run({**cli_env, "CITYOPS_WAREHOUSE_URL": bad}, "settings")
        assert env.exit_code == 2 and "port must be a number" in env.output, env.output
        assert "pw-x1" not in env.output

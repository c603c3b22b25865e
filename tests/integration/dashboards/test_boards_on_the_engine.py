"""Every panel and alert query, expanded by our macros, on the real ClickHouse engine (chdb)
over the full schema with simulated data spanning a holiday night."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from rich.console import Console

from cityops.dashboards import check, macros
from cityops.dashboards.provisioning import Bundle
from cityops.dashboards.terminal import frame
from cityops.warehouse.backend import Warehouse

pytestmark = pytest.mark.integration


def test_every_panel_query_runs_and_returns_what_its_panel_needs(
        boards_wh: Warehouse, bundle: Bundle, board_end: datetime) -> None:
    report = check.Report()
    timings: list[float] = []
    check.run_panels(boards_wh, bundle, board_end, report,
                     on_query=lambda _w, s: timings.append(s))
    assert report.problems == []
    n_queries = sum(len(p.queries) for b in bundle.boards for p in b.panels)
    assert len(timings) == 2 * n_queries  # every query with All and with one value selected


def test_long_range_queries_skip_granules_and_read_the_rollups(
        boards_wh: Warehouse, bundle: Bundle, board_end: datetime) -> None:
    report = check.Report()
    check.check_pruning(boards_wh, bundle, board_end, report)
    assert report.checked >= 30 and report.problems == []
    series = bundle.boards[1].panel("series").queries[0].sql
    week = check.tables_read(boards_wh, macros.expand(
        series, check.context(board_end - timedelta(days=7), board_end)))
    hour = check.tables_read(boards_wh, macros.expand(
        series, check.context(board_end - timedelta(hours=1), board_end)))
    assert week["agg_footfall_zone_1h"] > 0 and week["footfall_observed"] == 0
    assert hour["footfall_observed"] > 0 and hour["agg_footfall_zone_1h"] == 0


def test_alert_queries_return_one_signal_per_subject(
        boards_wh: Warehouse, bundle: Bundle, board_end: datetime) -> None:
    report = check.Report()
    check.run_alert_queries(boards_wh, bundle, board_end, report)
    assert report.checked == len(bundle.rules) and report.problems == []


def test_terminal_board_draws_the_overview_from_the_same_queries(
        boards_wh: Warehouse, bundle: Bundle, board_end: datetime) -> None:
    console = Console(record=True, width=140)
    errors: list[str] = []
    console.print(frame(boards_wh, bundle.boards[0], board_end - timedelta(hours=2),
                        on_error=lambda name, exc: errors.append(f"{name}: {exc}")))
    text = console.export_text()
    assert errors == []
    for heading in ("Crowd density", "Car parks", "AQI per station", "Open incidents",
                    "Active alerts", "Pipeline"):
        assert heading in text
    assert "洪崖洞 Hongyadong" in text and "1.5/2.5" in text  # the zone's own thresholds
    assert "重庆来福士停车场" in text


def test_the_holiday_panel_takes_the_district_s_dates(
        boards_wh: Warehouse, bundle: Bundle, board_end: datetime) -> None:
    """``toDate($__fromTime)`` took the server's date (UTC here): a range from 00:30 in
    Chongqing, 16:30 UTC the day before, counted the night before as well."""
    from datetime import time
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    day = board_end.astimezone(tz).date() - timedelta(days=2)
    start, end = datetime.combine(day, time(0, 30), tz), datetime.combine(day, time(23), tz)
    sql = bundle.boards[1].panel("holiday").queries[0].sql
    got = boards_wh.query_df(macros.expand(sql, check.context(start, end)))
    want = boards_wh.query("SELECT count() FROM night_footfall WHERE night_date = {d:Date}",
                           {"d": day})[0][0]
    assert want > 0 and int(got["zone_nights"].sum()) == want, (day, got)

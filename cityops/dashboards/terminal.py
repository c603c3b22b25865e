"""The command-centre board in the terminal (``cityops board``, the live view of ``cityops run``).

It runs the overview board's own panel queries, expanded by ``macros`` exactly as Grafana would
expand them, over the worker's read-only ``/sql`` endpoint (or any warehouse), and draws them
with rich: density per zone coloured by level, car parks with free spaces and minutes to full,
AQI per station with its category, open incidents, active alerts with acknowledgement state,
and pipeline throughput and lag. A query that works here works in Grafana, and back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pandas
from rich.console import Group, RenderableType
from rich.panel import Panel as RichPanel
from rich.table import Table
from rich.text import Text

from cityops.dashboards import macros
from cityops.dashboards.exceptions import SqlEndpointError
from cityops.dashboards.spec import Board

LEVEL_STYLE = {"critical": "bold white on red", "warning": "black on yellow", "normal": "green"}
SEVERITY_STYLE = {"critical": "bold red", "major": "red", "warning": "yellow", "info": "cyan"}
STATE_TEXT = {"active_unack": "active · unacknowledged", "active_ack": "active · acknowledged",
              "cleared_unack": "cleared · awaiting ack"}
#: HJ 633-2012 category → rich style (the standard's colours, approximated in a terminal)
AQI_STYLE = {"优": "green", "良": "yellow", "轻度污染": "dark_orange", "中度污染": "red",
             "重度污染": "magenta", "严重污染": "bold white on dark_red"}


class QueryRunner(Protocol):
    """Anything that runs one read-only SELECT and returns a frame."""

    def query_df(self, sql: str) -> pandas.DataFrame: ...


@dataclass
class WorkerSql:
    """The worker's read-only ``POST /sql`` (``cityops sql`` uses it too); bearer token optional."""

    url: str
    token: str = ""
    timeout_s: float = 10.0
    max_rows: int = 10_000

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def query_df(self, sql: str) -> pandas.DataFrame:
        import httpx

        try:
            resp = httpx.post(self.url, json={"sql": sql, "format": "json",
                                              "max_rows": self.max_rows},
                              headers=self.headers(), timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise SqlEndpointError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (401, 403):
            raise SqlEndpointError(f"{self.url} refused the query ({resp.status_code}): set "
                                   "CITYOPS_WORKER_TOKEN (an analyst token)")
        try:
            body = resp.json()
        except ValueError:
            raise SqlEndpointError(f"{self.url} answered {resp.status_code} without JSON") from None
        if resp.status_code != 200:
            raise SqlEndpointError(f"{body.get('code', 'error')}: {body.get('error', '')}"[:300])
        return pandas.DataFrame(body.get("rows") or [], columns=body.get("columns") or [])


def run_panel(runner: QueryRunner, board: Board, key: str, now: datetime,
              variables: dict[str, Any] | None = None) -> pandas.DataFrame:
    """One overview panel's query A, expanded for the window ``now - 1 h … now``."""
    panel = board.panel(key)
    start = now - timedelta(hours=1)
    ctx = macros.QueryContext(start, now, macros.auto_interval_ms(3600), variables or {
        "zone": macros.ALL, "carpark": macros.ALL, "station": macros.ALL})
    return runner.query_df(macros.expand(panel.queries[0].sql, ctx))


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(title: str, cols: list[str]) -> Table:
    """A table whose first column gives way (ellipsis) before the figures do."""
    t = Table(title=title, title_justify="left", expand=True, pad_edge=False)
    for i, c in enumerate(cols):
        t.add_column(c, no_wrap=True, overflow="ellipsis", ratio=3 if i == 0 else None,
                     min_width=None if i == 0 else len(c), justify="left" if i == 0 else "right")
    return t


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def density_table(df: pandas.DataFrame) -> Table:
    t = _table("人群密度 Crowd density (persons/m²)", ["zone", "now", "warn/crit", "level"])
    for r in df.itertuples(index=False):
        style = LEVEL_STYLE.get(r.level, "")
        t.add_row(f"{r.zone_zh} {r.zone}", _fmt(r.density_ppm2),
                  f"{_fmt(r.warning_ppm2, 1)}/{_fmt(r.critical_ppm2, 1)}",
                  Text(r.level, style=style))
    return t


def carpark_table(df: pandas.DataFrame) -> Table:
    t = _table("停车 Car parks (⇄ ring road)", ["car park", "free", "occ.", "min to full"])
    for r in df.itertuples(index=False):
        occ = float(r.occupancy)
        style = "red" if occ >= 0.95 else "yellow" if occ >= 0.85 else "green"
        t.add_row(f"{r.carpark_zh}{' ⇄' if r.ring_road else ''}", f"{int(r.free):,}",
                  Text(f"{occ:.0%}", style=style), _fmt(r.minutes_to_full, 0))
    return t


def aqi_table(df: pandas.DataFrame) -> Table:
    t = _table("空气 AQI per station (HJ 633-2012, hourly)", ["station", "AQI", "category",
                                                              "primary"])
    for r in df.itertuples(index=False):
        t.add_row(f"{r.station_zh}", _fmt(r.aqi), Text(str(r.category),
                                                       style=AQI_STYLE.get(r.category, "")),
                  r.primary_pollutant or "—")
    return t


def incidents_table(df: pandas.DataFrame, limit: int = 8) -> Table:
    t = _table(f"事件 Open incidents ({len(df)})", ["type · zone", "severity", "status",
                                                      "open min"])
    for r in df.head(limit).itertuples(index=False):
        t.add_row(f"{r.type} · {r.zone_id}",
                  Text(r.severity, style=SEVERITY_STYLE.get(r.severity, "")), r.status,
                  _fmt(r.open_min))
    return t


def alerts_table(df: pandas.DataFrame, limit: int = 8) -> Table:
    t = _table(f"告警 Active alerts ({len(df)})", ["rule · subject", "severity", "value",
                                                     "state"])
    for r in df.head(limit).itertuples(index=False):
        state = STATE_TEXT.get(str(r.state), str(r.state))
        by = _text(r.acknowledged_by)
        t.add_row(f"{r.rule} · {r.subject}",
                  Text(str(r.severity), style=SEVERITY_STYLE.get(str(r.severity), "")),
                  _fmt(r.value), Text(state + (f" ({by})" if by else ""),
                                      style="bold" if str(r.state).endswith("unack") else "dim"))
    return t


def pipeline_table(line: pandas.DataFrame, feeds: pandas.DataFrame) -> Table:
    head = line.iloc[0] if not line.empty else {}
    t = _table(f"管道 Pipeline: {int(head.get('events_5m', 0)):,} events, "
               f"{int(head.get('dead_letters_5m', 0))} dead letters in 5 min; "
               f"{int(head.get('late_1h', 0))} late in 1 h",
               ["feed", "events 5 min", "lag s", "sink p95 s"])
    for r in feeds.itertuples(index=False):
        lag = int(r.lag_s)
        t.add_row(r.feed, f"{int(r.events):,}", Text(str(lag), style="red" if lag > 120 else ""),
                  _fmt(r.sink_p95_s, 1))
    return t


def frame(runner: QueryRunner, board: Board, now: datetime, *, title: str = "",
          on_error: Callable[[str, Exception], None] | None = None) -> RenderableType:
    """One screen of the board at ``now``; a failing panel shows its error, not a crash."""
    parts: dict[str, RenderableType] = {}
    makers: dict[str, tuple[tuple[str, ...], Callable[..., Table]]] = {
        "density": (("density",), density_table), "carparks": (("carparks",), carpark_table),
        "stations": (("stations",), aqi_table), "incidents": (("incidents",), incidents_table),
        "alerts": (("alerts",), alerts_table),
        "pipeline": (("pipeline", "feeds"), pipeline_table)}
    for name, (keys, make) in makers.items():
        try:
            parts[name] = make(*(run_panel(runner, board, k, now) for k in keys))
        except Exception as exc:  # one bad panel must not blank the video wall
            if on_error:
                on_error(name, exc)
            parts[name] = Text(f"{name}: {str(exc)[:160]}", style="red")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(parts["density"], parts["carparks"])
    grid.add_row(parts["stations"], parts["alerts"])
    grid.add_row(parts["incidents"], parts["pipeline"])
    heading = title or f"{board.title} — {now:%Y-%m-%d %H:%M:%S %Z}"
    return RichPanel(Group(grid), title=heading, border_style="blue")

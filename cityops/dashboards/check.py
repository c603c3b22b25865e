"""``cityops dashboards check``: every board and alert rule proven as a contract.

No Grafana runs here, so each promise Grafana would rely on is checked directly:

* **structure** — unique uids, panel ids and refIds; panels inside the 24-column grid and not
  overlapping; every ``$variable`` defined; every datasource uid the provisioned one; titles in
  Chinese and English; the district time zone; 5–10 s refresh on live boards; alert rules whose
  condition and expression refIds chain up, with no browser-only syntax; contact points and
  policy receivers that resolve;
* **queries** — every panel and alert query expanded by ``macros`` and run on the real
  ClickHouse engine, returning the columns its panel type needs;
* **pruning** — ``EXPLAIN indexes = 1`` of every long-range query over the history shows
  granules skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas

from cityops.dashboards import macros
from cityops.dashboards.alerts import EXPR_UID
from cityops.dashboards.grafana import DATASOURCE_UID
from cityops.dashboards.provisioning import Bundle
from cityops.dashboards.spec import Board, Format, Panel, Query
from cityops.warehouse.backend import Warehouse

_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]{3,}")
_GRANULES = re.compile(r"Granules:\s*(\d+)/(\d+)")
_RANGE = re.compile(r"now-(\d+)([mhd])")


@dataclass
class Report:
    """Findings of a check: problems (must be empty) and figures (printed)."""

    problems: list[str] = field(default_factory=list)
    checked: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, ok: bool, problem: str) -> None:
        self.checked += 1
        if not ok:
            self.problems.append(problem)


def board_range(board: Board, end: datetime) -> tuple[datetime, datetime]:
    m = _RANGE.fullmatch(board.time_from)
    if m is None:
        raise ValueError(f"{board.uid}: unsupported default range {board.time_from}")
    size = timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})
    return end - size, end


def context(start: datetime, end: datetime,
            variables: dict[str, Any] | None = None) -> macros.QueryContext:
    rng = (end - start).total_seconds()
    vars_ = variables if variables is not None else {
        "zone": macros.ALL, "carpark": macros.ALL, "station": macros.ALL}
    return macros.QueryContext(start, end, macros.auto_interval_ms(rng), vars_)


# --- structure ---------------------------------------------------------------------------------

def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def check_structure(bundle: Bundle, timezone: str, report: Report) -> None:
    uids = [b.uid for b in bundle.boards]
    report.add(len(uids) == len(set(uids)), f"duplicate board uids: {uids}")
    for board in bundle.boards:
        d = bundle.dashboards[board.uid]
        where = board.uid
        report.add(bool(_CJK.search(board.title) and _LATIN.search(board.title)),
                   f"{where}: title needs Chinese and English")
        report.add(d.get("timezone") == timezone, f"{where}: time zone {d.get('timezone')}")
        if board.refresh and board.refresh.endswith("s"):
            report.add(5 <= int(board.refresh[:-1]) <= 10, f"{where}: refresh {board.refresh}")
        defined = {v["name"] for v in d["templating"]["list"]}
        for v in d["templating"]["list"]:
            report.add(v["datasource"]["uid"] == DATASOURCE_UID, f"{where}: ${v['name']} ds")
        ids = [p["id"] for p in d["panels"]]
        report.add(len(ids) == len(set(ids)), f"{where}: duplicate panel ids")
        keys = [p.key for p in board.panels]
        report.add(len(keys) == len(set(keys)), f"{where}: duplicate panel keys")
        grids: list[tuple[str, tuple[int, int, int, int]]] = []
        for p in d["panels"]:
            g = p["gridPos"]
            rect = (g["x"], g["y"], g["w"], g["h"])
            report.add(g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0,
                       f"{where}/{p['title']}: outside the 24-column grid {rect}")
            for other_title, other in grids:
                report.add(not _overlap(rect, other),
                           f"{where}: '{p['title']}' overlaps '{other_title}'")
            grids.append((p["title"], rect))
            report.add(bool(_CJK.search(p["title"]) and _LATIN.search(p["title"])),
                       f"{where}/{p['title']}: title needs Chinese and English")
            report.add(p["datasource"]["uid"] == DATASOURCE_UID, f"{where}/{p['title']}: ds")
            refs = [t["refId"] for t in p["targets"]]
            report.add(len(refs) == len(set(refs)), f"{where}/{p['title']}: duplicate refIds")
            for t in p["targets"]:
                report.add(t["datasource"]["uid"] == DATASOURCE_UID,
                           f"{where}/{p['title']}/{t['refId']}: datasource uid")
                report.add(t.get("editorType") == "sql" and t.get("format") in (0, 1),
                           f"{where}/{p['title']}: not a plugin SQL target")
                used = macros.variables_used(t["rawSql"])
                report.add(used <= defined, f"{where}/{p['title']}: undefined {used - defined}")
    _check_alert_structure(bundle, report)


def _check_alert_structure(bundle: Bundle, report: Report) -> None:
    uids = [r.uid for r in bundle.rules]
    report.add(len(uids) == len(set(uids)), "duplicate alert rule uids")
    for r in bundle.rules:
        body, where = r.body, f"alert {r.uid}"
        refs = {q["refId"]: q for q in body["data"]}
        report.add(len(refs) == len(body["data"]), f"{where}: duplicate refIds")
        report.add(body["condition"] in refs, f"{where}: condition {body['condition']} missing")
        for q in body["data"]:
            model = q["model"]
            if q["datasourceUid"] == EXPR_UID:
                report.add(model.get("expression") in refs and model.get("expression") !=
                           q["refId"], f"{where}/{q['refId']}: expression refers to nothing")
            else:
                report.add(q["datasourceUid"] == DATASOURCE_UID, f"{where}: datasource uid")
                bad = macros.frontend_only_syntax(model["rawSql"])
                report.add(not bad, f"{where}: browser-only syntax in an alert query: {bad}")
    from cityops.dashboards.alerts import notifications_provisioning

    notify = notifications_provisioning()
    names = {cp["name"] for cp in notify["contactPoints"]}

    def receivers(node: dict[str, Any]) -> Iterator[str]:
        yield node["receiver"]
        for child in node.get("routes", []):
            yield from receivers(child)

    for pol in notify["policies"]:
        for rec in receivers(pol):
            report.add(rec in names, f"policy receiver {rec} is no contact point")


# --- queries on the engine -----------------------------------------------------------------------

def _numeric(df: pandas.DataFrame) -> list[str]:
    return [c for c in df.columns if pandas.api.types.is_numeric_dtype(df[c])
            and not pandas.api.types.is_bool_dtype(df[c])]


def shape_problem(panel: Panel, query: Query, df: pandas.DataFrame) -> str | None:
    """Why ``df`` cannot feed this panel type, or None."""
    cols = list(df.columns)
    if df.empty:
        return "returned no rows on the simulated data"
    if query.fmt is Format.TIME_SERIES:
        if not cols or cols[0] != "time" or not pandas.api.types.is_datetime64_any_dtype(
                df["time"]):
            return f"time series needs a first datetime column 'time', got {cols}"
        if not _numeric(df.drop(columns=["time"])):
            return "time series needs a numeric value column"
        return None
    if panel.kind == "geomap":
        if not {"latitude", "longitude"} <= set(_numeric(df)):
            return f"geomap needs numeric latitude and longitude, got {cols}"
        return None
    if panel.kind == "stat":
        if len(df) != 1 or not _numeric(df):
            return f"stat needs one row with a number, got {len(df)} rows"
        return None
    if panel.kind == "heatmap":
        if len(_numeric(df)) < 3:
            return f"heatmap needs numeric x, y and value, got {cols}"
        return None
    if panel.kind in ("bargauge", "barchart", "histogram") and not _numeric(df):
        return f"{panel.kind} needs a numeric column, got {cols}"
    return None


def run_panels(wh: Warehouse, bundle: Bundle, end: datetime, report: Report,
               on_query: Callable[[str, float], None] | None = None) -> None:
    import time

    one = _one_each(wh)
    for board in bundle.boards:
        start, stop = board_range(board, end)
        for panel in board.panels:
            for q in panel.queries:
                where = f"{board.uid}/{panel.key}/{q.ref_id}"
                for label, ctx in (("All", context(start, stop)),
                                   ("one", context(start, stop, one))):
                    sql = macros.expand(q.sql, ctx)
                    try:
                        t0 = time.perf_counter()
                        df = wh.query_df(sql)
                        if on_query:
                            on_query(where, time.perf_counter() - t0)
                    except Exception as exc:  # a failing query is a finding, not a crash
                        report.add(False, f"{where} ({label}): {str(exc)[:300]}")
                        continue
                    problem = shape_problem(panel, q, df) if label == "All" else None
                    report.add(problem is None, f"{where}: {problem}")


def _one_each(wh: Warehouse) -> dict[str, Any]:
    """One value of each variable (the non-All path of ``$__conditionalAll``)."""
    pick: dict[str, Any] = {}
    for name, sql in (("zone", "SELECT min(zone_id) FROM dim_zones"),
                      ("carpark", "SELECT min(carpark_id) FROM dim_carparks"),
                      ("station", "SELECT min(station_id) FROM dim_stations")):
        pick[name] = [str(wh.query(sql)[0][0])]
    return pick


def granules(wh: Warehouse, sql: str) -> list[tuple[int, int]]:
    """(selected, total) granule pairs of ``EXPLAIN indexes = 1``."""
    text = "\n".join(str(r[0]) for r in wh.query(f"EXPLAIN indexes = 1 {sql}"))
    return [(int(a), int(b)) for a, b in _GRANULES.findall(text)]


_READ = re.compile(r"ReadFromMergeTree \((?:[\w.]+\.)?(\w+)\)")
_PARTS = re.compile(r"^\s*[│ ]*Parts: \d+ \| Granules: (\d+)")
RAW_TABLES = ("footfall_observed", "parking_observed", "air_quality_observed",
              "incidents_reported")


def tables_read(wh: Warehouse, sql: str) -> dict[str, int]:
    """Granules each table's read step will read (0: the step reads nothing), from EXPLAIN."""
    out: dict[str, int] = {}
    current = None
    for (line,) in wh.query(f"EXPLAIN indexes = 1 {sql}"):
        m = _READ.search(str(line))
        if m:
            current = m.group(1)
            out[current] = out.get(current, 0)
            continue
        m = _PARTS.match(str(line))
        if m and current is not None:
            out[current] += int(m.group(1))
            current = None
    return out


def check_pruning(wh: Warehouse, bundle: Bundle, end: datetime, report: Report,
                  range_days: float = 7) -> None:
    """Long ranges skip granules and read only rollups; short ranges read no rollup."""
    from cityops.dashboards.boards import RAW_MAX_RANGE_S, SHORT

    start = end - timedelta(days=range_days)
    short = end - timedelta(seconds=RAW_MAX_RANGE_S // 6)
    for board in bundle.boards:
        for panel in board.panels:
            for q in panel.queries:
                if not q.long_range:
                    continue
                where = f"{board.uid}/{panel.key}"
                sql = macros.expand(q.sql, context(start, end))
                try:
                    pairs = granules(wh, sql)
                except Exception as exc:  # a failing EXPLAIN is a finding
                    report.add(False, f"{where}: EXPLAIN failed: {str(exc)[:300]}")
                    continue
                skipped = any(sel < total for sel, total in pairs)
                report.add(skipped, f"{where}: EXPLAIN shows no granule skipped over "
                           f"{range_days:g} days ({pairs})")
                if SHORT not in q.sql:
                    continue
                long_reads = tables_read(wh, sql)
                raw = {t: n for t, n in long_reads.items() if t in RAW_TABLES and n}
                report.add(not raw, f"{where}: a {range_days:g}-day range reads raw {raw}")
                short_reads = tables_read(wh, macros.expand(q.sql, context(short, end)))
                agg = {t: n for t, n in short_reads.items() if t.startswith("agg_") and n}
                report.add(not agg, f"{where}: a short range reads rollups {agg}")


def run_alert_queries(wh: Warehouse, bundle: Bundle, end: datetime, report: Report) -> None:
    for r in bundle.rules:
        ctx = macros.QueryContext(end - timedelta(seconds=r.lookback_s), end, 10_000, {})
        try:
            df = wh.query_df(macros.expand_backend(r.sql, ctx))
        except Exception as exc:
            report.add(False, f"alert {r.uid}: {str(exc)[:300]}")
            continue
        ok = list(df.columns) == ["subject", "signal"] and df["subject"].is_unique
        report.add(ok, f"alert {r.uid}: needs one (subject, signal) row per subject, got "
                   f"{list(df.columns)}")


def run_all(wh: Warehouse, bundle: Bundle, timezone: str, end: datetime, *,
            pruning: bool = True) -> Report:
    report = Report()
    check_structure(bundle, timezone, report)
    run_panels(wh, bundle, end, report)
    run_alert_queries(wh, bundle, end, report)
    if pruning:
        check_pruning(wh, bundle, end, report)
    return report

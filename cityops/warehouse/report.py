"""Night-economy study: ``cityops report night-economy --from D --to D --out DIR``.

A night runs 18:00–02:00 local time and belongs to the evening's date (the ``night_footfall``
view). The report writes one CSV per table, one PNG per chart and an ``index.html`` that shows
them with the method; every number comes from the warehouse's analyst views, so the study is
reproducible with ``cityops sql`` and the queries of ``docs/analyst-queries.md``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas
import structlog
from tqdm import tqdm

from cityops.warehouse.base import Warehouse
from cityops.warehouse.exceptions import PermanentWarehouseError

log = structlog.get_logger(__name__)

NIGHT_HOURS = "(toHour(hour) >= 18 OR toHour(hour) < 2)"
#: the evening a night hour belongs to (DST-safe and monotonic in ``hour``, like night_footfall:
#: every night hour minus 6 h lies between about 11:00 and 21:00 of its evening's date)
NIGHT_DATE = "toDate(hour - INTERVAL 6 HOUR)"
#: charts show this many zones by night-time entries, the rest summed as "others"
TOP_ZONES = 8
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass
class ReportResult:
    index: Path
    nights: int
    tables: dict[str, Path] = field(default_factory=dict)
    charts: dict[str, Path] = field(default_factory=dict)
    #: when no night of the range has footfall: the first and last nights the warehouse
    #: holds (None when it holds none), so the reader learns which range to ask for
    held: tuple[date, date] | None = None

    @property
    def empty_note(self) -> str | None:
        """Why the report is empty, in one sentence; None when it holds nights."""
        if self.nights:
            return None
        if self.held is None:
            return "no night in this range has footfall: the warehouse holds none yet"
        return (f"no night in this range has footfall: the warehouse holds nights "
                f"{self.held[0]} to {self.held[1]}")


def _nights_held(wh: Warehouse) -> tuple[date, date] | None:
    df = wh.query_df("SELECT min(night_date) AS first, max(night_date) AS last, "
                     "count() AS n FROM night_footfall")
    if df.empty or not int(df["n"].iloc[0]):
        return None
    return (pandas.Timestamp(df["first"].iloc[0]).date(),
            pandas.Timestamp(df["last"].iloc[0]).date())


@dataclass
class _Section:
    key: str
    title: str
    text: str
    table: pandas.DataFrame
    chart: str | None = None


def _nightly(wh: Warehouse, p: dict) -> pandas.DataFrame:
    return wh.query_df(
        "SELECT night_date, zone_id, if(empty(zone_name_en), zone_id, zone_name_en) AS "
        "zone_name_en, entries, exits, weekday, is_weekend_night, "
        "is_holiday, holiday_name FROM night_footfall "
        "WHERE night_date BETWEEN {d0:Date} AND {d1:Date} ORDER BY night_date, zone_id", p)


def _heatmap(wh: Warehouse, p: dict) -> pandas.DataFrame:
    # the report's nights, as night_footfall dates them (hour − 6 h: the evening's date): the
    # last night's hours after midnight are in, the first date's early morning (the night
    # before the range) is out, and an hour after midnight counts under its evening's weekday
    # (monotonic in ``hour``, so the filter still prunes the rollup by its key)
    df = wh.query_df(
        "SELECT toDayOfWeek(day) AS weekday, toHour(hour) AS hour_of_day, "
        "sum(entries) AS entries, uniqExact(day) AS days FROM "
        "(SELECT hour, entries, toDate(hour - INTERVAL 6 HOUR) AS day FROM footfall_zone_1h "
        " WHERE toDate(hour - INTERVAL 6 HOUR) BETWEEN {d0:Date} AND {d1:Date}) "
        "GROUP BY weekday, hour_of_day ORDER BY weekday, hour_of_day", p)
    if df.empty:
        return pandas.DataFrame(index=WEEKDAYS, columns=range(24), dtype=float)
    df["mean_entries"] = df["entries"] / df["days"]
    grid = df.pivot(index="weekday", columns="hour_of_day", values="mean_entries")
    grid = grid.reindex(index=range(1, 8), columns=range(24))
    grid.index = WEEKDAYS
    return grid.round(1)


def _night_type(row: Any) -> str:
    if bool(row["is_holiday"]):
        return "holiday"
    return "weekend night (Fri/Sat)" if bool(row["is_weekend_night"]) else "weekday night"


def _holiday_vs_normal(nightly: pandas.DataFrame) -> pandas.DataFrame:
    if nightly.empty:
        return pandas.DataFrame(columns=["night_type", "nights", "mean_entries_per_zone_night",
                                         "mean_entries_per_night"])
    df = nightly.copy()
    df["night_type"] = df.apply(_night_type, axis=1)
    per_night = df.groupby(["night_type", "night_date"])["entries"].sum().reset_index()
    out = df.groupby("night_type").agg(nights=("night_date", "nunique"),
                                       mean_entries_per_zone_night=("entries", "mean"))
    out["mean_entries_per_night"] = per_night.groupby("night_type")["entries"].mean()
    return out.reset_index().round(1)


def _top_zones(nightly: pandas.DataFrame) -> pandas.DataFrame:
    if nightly.empty:
        return pandas.DataFrame(columns=["zone_id", "zone_name_en", "night_entries", "share_pct",
                                         "mean_per_night", "peak_night", "peak_entries"])
    g = nightly.groupby(["zone_id", "zone_name_en"])
    out = g.agg(night_entries=("entries", "sum"), mean_per_night=("entries", "mean"))
    peak = nightly.loc[g["entries"].idxmax(), ["zone_id", "night_date", "entries"]]
    out = out.reset_index().merge(
        peak.rename(columns={"night_date": "peak_night", "entries": "peak_entries"}),
        on="zone_id")
    out["share_pct"] = 100 * out["night_entries"] / out["night_entries"].sum()
    out = out.sort_values("night_entries", ascending=False)
    cols = ["zone_id", "zone_name_en", "night_entries", "share_pct", "mean_per_night",
            "peak_night", "peak_entries"]
    return out[cols].round(1).reset_index(drop=True)


def top_and_others(nightly: pandas.DataFrame, top: int = TOP_ZONES) -> pandas.DataFrame:
    """Nightly entries per night (rows) for the ``top`` zones by total night-time entries and
    one "others (n zones)" column with the rest, so a chart of 20+ zones stays readable."""
    pivot = nightly.pivot_table(index="night_date", columns="zone_name_en", values="entries",
                                aggfunc="sum", fill_value=0)
    order = pivot.sum().sort_values(ascending=False).index
    if len(order) <= top + 1:
        return pivot[order]
    out = pivot[order[:top]].copy()
    out[f"others ({len(order) - top} zones)"] = pivot[order[top:]].sum(axis=1)
    return out


def _date_axis(ax: Any, fig: Any) -> None:
    """Dates on the x axis that never overlap: matplotlib picks the tick spacing for the width,
    and the concise formatter writes each label once, short."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.autofmt_xdate(rotation=0, ha="center")


def nightly_figure(nightly: pandas.DataFrame) -> Any:
    """Nightly entries stacked by zone: the top zones, and the rest as one "others" band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    if not nightly.empty:
        lines = top_and_others(nightly)
        lines.index = pandas.to_datetime(lines.index)
        # stacked: the top of the pile is the district's night total, each band one zone
        colours: list[Any] = [plt.get_cmap("tab10")(i) for i in range(len(lines.columns))]
        if str(lines.columns[-1]).startswith("others"):
            colours[-1] = "#bdc3c7"
        ax.stackplot(lines.index, *[lines[c].to_numpy() for c in lines.columns],
                     labels=[str(c) for c in lines.columns], colors=colours, alpha=0.9)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
        _date_axis(ax, fig)
    ax.set(title=f"Nightly footfall, top {TOP_ZONES} zones and the others (18:00–02:00)",
           xlabel="night (evening date)", ylabel="entries")
    return fig


def _parking(wh: Warehouse, p: dict) -> pandas.DataFrame:
    return wh.query_df(
        "SELECT p.carpark_id AS carpark_id, any(d.name_en) AS name_en, "
        "any(d.ring_road) AS ring_road, any(d.capacity) AS capacity, "
        "round(avg(p.occupancy_avg), 3) AS mean_evening_occupancy, "
        "round(max(p.occupancy_max), 3) AS peak_occupancy, "
        "countIf(p.occupancy_max >= 0.95) AS hours_at_95pct, count() AS evening_hours "
        f"FROM parking_1h AS p LEFT JOIN dim_carparks AS d ON d.carpark_id = p.carpark_id "
        f"WHERE {NIGHT_HOURS.replace('hour', 'p.hour')} "
        f"AND {NIGHT_DATE.replace('hour', 'p.hour')} BETWEEN {{d0:Date}} AND {{d1:Date}} "
        "GROUP BY carpark_id ORDER BY mean_evening_occupancy DESC", p)


def _incidents(wh: Warehouse, p: dict, nightly: pandas.DataFrame) -> pandas.DataFrame:
    inc = wh.query_df(
        "SELECT zone_id, sum(reported) AS incidents, sum(severe_reported) AS severe "
        f"FROM incidents_1h WHERE {NIGHT_HOURS} AND {NIGHT_DATE} BETWEEN {{d0:Date}} "
        "AND {d1:Date} GROUP BY zone_id", p)
    visitors = (nightly.groupby(["zone_id", "zone_name_en"])["entries"].sum().rename("visitors")
                .reset_index() if not nightly.empty else
                pandas.DataFrame(columns=["zone_id", "zone_name_en", "visitors"]))
    out = visitors.merge(inc, on="zone_id", how="outer")
    for col in ("incidents", "severe", "visitors"):
        out[col] = pandas.to_numeric(out[col], errors="coerce").fillna(0).astype("int64")
    out["per_10k_visitors"] = (10_000 * out["incidents"] / out["visitors"].where(
        out["visitors"] > 0)).round(2)
    return out.sort_values("per_10k_visitors", ascending=False, na_position="last") \
        .reset_index(drop=True)


def _charts(out: Path, sections: dict[str, _Section], nightly: pandas.DataFrame,
            heat: pandas.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, key: str) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=110)
        plt.close(fig)
        sections[key].chart = f"{key}.png"

    save(nightly_figure(nightly), "nightly_footfall")

    fig, ax = plt.subplots(figsize=(10, 3.8))
    values = heat.astype(float).to_numpy()
    im = ax.imshow(values, aspect="auto", cmap="magma")
    ax.set(xticks=range(24), yticks=range(7), yticklabels=list(heat.index),
           title="Mean entries by hour of day × weekday", xlabel="hour (local)")
    fig.colorbar(im, ax=ax, label="entries per hour")
    save(fig, "hour_weekday_heatmap")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    hv = sections["holiday_vs_normal"].table
    if not hv.empty:
        ax.barh(hv["night_type"], hv["mean_entries_per_night"], color="#c0392b")
    ax.set(title="Mean footfall per night by type of night", xlabel="entries per night")
    save(fig, "holiday_vs_normal")

    fig, ax = plt.subplots(figsize=(7, 3.8))
    top = sections["top_zones"].table
    if not top.empty:
        shown = top.head(TOP_ZONES)
        labels, values = list(shown["zone_name_en"]), list(shown["night_entries"])
        if len(top) > TOP_ZONES + 1:
            labels.append(f"others ({len(top) - TOP_ZONES} zones)")
            values.append(top["night_entries"].iloc[TOP_ZONES:].sum())
        ax.barh(labels[::-1], values[::-1],
                color=["#95a5a6" if str(x).startswith("others") else "#2c3e50"
                       for x in labels[::-1]])
    ax.set(title=f"Top {TOP_ZONES} zones by night-time entries, and the others",
           xlabel="entries")
    save(fig, "top_zones")

    fig, ax = plt.subplots(figsize=(8, 3.8))
    pk = sections["evening_parking_pressure"].table
    if not pk.empty:
        pk = pk.iloc[::-1]
        colours = ["#e67e22" if bool(r) else "#7f8c8d" for r in pk["ring_road"]]
        ax.barh(pk["name_en"], pk["mean_evening_occupancy"], color=colours)
        ax.axvline(0.95, ls="--", color="red", lw=1)
        ax.tick_params(axis="y", labelsize=7)
        fig.set_figheight(max(3.8, 0.22 * len(pk) + 1.2))
    ax.set(title="Evening occupancy per car park (orange: ring-road access)",
           xlabel="mean occupancy")
    save(fig, "evening_parking_pressure")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    inc = sections["incidents_per_10k"].table.dropna(subset=["per_10k_visitors"])
    if not inc.empty:
        inc = inc.iloc[::-1]
        ax.barh(inc["zone_name_en"].fillna(inc["zone_id"]), inc["per_10k_visitors"],
                color="#8e44ad")
        ax.tick_params(axis="y", labelsize=7)
        fig.set_figheight(max(3.5, 0.22 * len(inc) + 1.2))
    ax.set(title="Night incidents per 10,000 visitors", xlabel="incidents / 10k entries")
    save(fig, "incidents_per_10k")


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}td,th{border:1px solid
#ccc;padding:.2rem .5rem;text-align:right}th{background:#f3f3f3}img{max-width:100%}
.note{color:#555;font-size:.9rem}
.empty{color:#a40000}"""


def _html(start: date, end: date, sections: list[_Section], wh_url: str, nights: int,
          timezone: str, empty_note: str | None = None) -> str:
    parts = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Night economy "
             f"{start} – {end}</title><style>{_CSS}</style><body>",
             f"<h1>Night economy, Yuzhong district — nights {start} to {end}</h1>",
             f"<p class='note'>{nights} nights. A night runs 18:00–02:00 {html.escape(timezone)} "
             "local time (counts placed where their counting interval lies) and "
             "belongs to the evening's date. Source: warehouse "
             f"<code>{html.escape(wh_url)}</code>, views <code>night_footfall</code>, "
             "<code>footfall_zone_1h</code>, <code>parking_1h</code>, <code>incidents_1h</code>; "
             f"generated {datetime.now().astimezone().isoformat(timespec='seconds')}.</p>"]
    if empty_note:
        parts.append(f"<p class='empty'><strong>{html.escape(empty_note.capitalize())}."
                     "</strong></p>")
    for s in sections:
        parts.append(f"<h2 id='{s.key}'>{html.escape(s.title)}</h2>"
                     f"<p class='note'>{html.escape(s.text)} "
                     f"(<a href='{s.key}.csv'>{s.key}.csv</a>)</p>")
        if s.chart:
            parts.append(f"<img src='{s.chart}' alt='{html.escape(s.title)}'>")
        shown = s.table if len(s.table) <= 60 else s.table.head(60)
        parts.append(shown.to_html(index=s.key == "hour_weekday_heatmap", na_rep="–",
                                   border=0))
    parts.append("</body></html>")
    return "\n".join(parts)


def night_economy_report(wh: Warehouse, start: date, end: date, out: Path, *, timezone: str,
                         progress: bool = True,
                         on_step: Callable[[str], None] | None = None) -> ReportResult:
    """Compute the study for nights ``start``..``end`` (evening dates) and write it to ``out``."""
    if end < start:
        raise PermanentWarehouseError("--to is before --from", code="bad_range")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = {"d0": start, "d1": end}
    steps = ["nightly footfall", "hour × weekday", "holiday vs normal", "top zones",
             "parking pressure", "incidents per 10k", "charts", "html"]
    bar = tqdm(total=len(steps), desc="night-economy", unit="step", disable=not progress)
    sections: dict[str, _Section] = {}

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        if on_step:
            on_step(name)

    try:
        step(steps[0])
        nightly = _nightly(wh, p)
        sections["nightly_footfall"] = _Section(
            "nightly_footfall", "Nightly footfall per zone",
            "Entries per zone and night (18:00–02:00), with weekday and holiday flags.",
            nightly)
        bar.update()
        step(steps[1])
        heat = _heatmap(wh, p)
        sections["hour_weekday_heatmap"] = _Section(
            "hour_weekday_heatmap", "Hour of day × weekday",
            "Mean entries per hour over all zones, by weekday (rows) and local hour (columns); "
            "a day runs 06:00–06:00, so the hours after midnight count under their evening's "
            "weekday, as the nights do.",
            heat)
        bar.update()
        step(steps[2])
        sections["holiday_vs_normal"] = _Section(
            "holiday_vs_normal", "Holiday versus normal nights",
            "Public-holiday nights (dim_calendar) against Friday/Saturday and other nights.",
            _holiday_vs_normal(nightly))
        bar.update()
        step(steps[3])
        sections["top_zones"] = _Section(
            "top_zones", "Top zones", "Night-time entries per zone, share, mean and peak night.",
            _top_zones(nightly))
        bar.update()
        step(steps[4])
        sections["evening_parking_pressure"] = _Section(
            "evening_parking_pressure", "Evening parking pressure",
            "Mean and peak hourly occupancy per car park over the night hours, and hours at or "
            "above 95 % occupancy.", _parking(wh, p))
        bar.update()
        step(steps[5])
        sections["incidents_per_10k"] = _Section(
            "incidents_per_10k", "Incidents per 10,000 visitors",
            "Incidents reported during the nights per 10,000 night-time entries of the zone.",
            _incidents(wh, p, nightly))
        bar.update()
        step(steps[6])
        _charts(out, sections, nightly, heat)
        bar.update()
        step(steps[7])
        result = ReportResult(index=out / "index.html",
                              nights=int(nightly["night_date"].nunique()) if len(nightly) else 0)
        if not result.nights:
            result.held = _nights_held(wh)
        for key, s in sections.items():
            path = out / f"{key}.csv"
            s.table.to_csv(path, index=key == "hour_weekday_heatmap")
            result.tables[key] = path
            if s.chart:
                result.charts[key] = out / s.chart
        result.index.write_text(_html(start, end, list(sections.values()),
                                      getattr(wh, "url", ""), result.nights, timezone,
                                      result.empty_note),
                              encoding="utf-8")
        bar.update()
    finally:
        bar.close()
    log.info("night_economy_report", out=str(out), nights=result.nights)
    return result

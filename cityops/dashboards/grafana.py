"""Board definitions → Grafana dashboard JSON, through grafana-foundation-sdk.

The SDK has no ClickHouse query type, so ``ClickHouseQuery`` is one: the official plugin's
target (datasource type ``grafana-clickhouse-datasource``, ``editorType: sql``, ``rawSql``,
``format`` 0 time series / 1 table, ``queryType``).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from cityops.dashboards.spec import Board, Format, Panel, Query

PLUGIN_TYPE = "grafana-clickhouse-datasource"
#: the provisioned datasource's uid; every panel, variable and alert query points at it
DATASOURCE_UID = "cityops-clickhouse"
DATASOURCE_NAME = "cityops ClickHouse"
FOLDER_UID = "cityops"
FOLDER_TITLE = "cityops"


def datasource_ref() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=PLUGIN_TYPE, uid=DATASOURCE_UID)


class ClickHouseQueryModel(cogvariants.Dataquery):
    """The plugin's SQL-editor target."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Format) -> None:
        self.ref_id, self.raw_sql, self.fmt = ref_id, raw_sql, fmt

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": {"type": PLUGIN_TYPE, "uid": DATASOURCE_UID},
                "editorType": "sql", "rawSql": self.raw_sql, "format": int(self.fmt),
                "queryType": "timeseries" if self.fmt is Format.TIME_SERIES else "table",
                "pluginVersion": "4.19.0"}


class ClickHouseQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of ``ClickHouseQueryModel`` for the SDK's ``with_target``."""

    def __init__(self, query: Query) -> None:
        self._q = query

    def build(self) -> ClickHouseQueryModel:
        return ClickHouseQueryModel(self._q.ref_id, self._q.sql, self._q.fmt)


def _thresholds(panel: Panel) -> db.ThresholdsConfig | None:
    if not panel.thresholds:
        return None
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=s.value, color=s.color) for s in panel.thresholds]))


def _geomap_options(panel: Panel, center: tuple[float, float]) -> dict[str, Any]:
    """One layer per query: zones by level, car parks by free spaces, stations, incidents."""
    styles = {
        "A": ("zones", "level", "circle", 12),
        "B": ("car parks", "free", "square", 8),
        "C": ("stations", "aqi", "triangle", 8),
        "D": ("incidents", None, "star", 10),
    }
    layers = []
    for q in panel.queries:
        name, field, symbol, size = styles[q.ref_id]
        color = ({"field": field, "fixed": "dark-green"} if field else {"fixed": "red"})
        layers.append({
            "type": "markers", "name": name, "filterData": {"id": "byRefId", "options": q.ref_id},
            "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
            "config": {"style": {"color": color, "size": {"fixed": size},
                                 "symbol": {"mode": "fixed",
                                            "fixed": f"img/icons/marker/{symbol}.svg"}},
                       "showLegend": True},
            "tooltip": True})
    return {"view": {"id": "coords", "lat": round(center[0], 5), "lon": round(center[1], 5),
                     "zoom": 15},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"}, "layers": layers,
            "tooltip": {"mode": "details"}}


def _by_thresholds(steps: list[tuple[float | None, str]]) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue("color", {"mode": "thresholds"}),
            dm.DynamicConfigValue("thresholds", {"mode": "absolute", "steps": [
                {"value": v, "color": c} for v, c in steps]})]


def geomap_overrides(b: db.Panel) -> db.Panel:
    """Marker colours: zone level (0 normal, 1 warning, 2 critical), car-park free spaces,
    station AQI by the HJ 633-2012 category colours."""
    from cityops.dashboards.boards import aqi_steps

    b = b.override_by_name("level", _by_thresholds([(None, "green"), (1, "#FADE2A"),
                                                     (2, "red")]))
    b = b.override_by_name("free", _by_thresholds([(None, "red"), (20, "orange"),
                                                    (100, "green")]))
    return b.override_by_name("aqi", _by_thresholds([(s.value, s.color) for s in aqi_steps()]))


def _options(panel: Panel, center: tuple[float, float]) -> dict[str, Any]:
    if panel.kind == "geomap":
        return _geomap_options(panel, center)
    if panel.kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                **panel.options}
    if panel.kind == "bargauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "values": True, "fields": ""},
                "orientation": "horizontal", "displayMode": "gradient", **panel.options}
    if panel.kind == "heatmap":
        return {"calculate": False, "yAxis": {"axisPlacement": "left"},
                "rowsFrame": {"layout": "auto"}, "color": {"scheme": "Oranges", "mode": "scheme"},
                **panel.options}
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", **panel.options}
    return dict(panel.options)


def panel_builder(panel: Panel, panel_id: int, center: tuple[float, float]) -> db.Panel:
    x, y, w, h = panel.grid
    b = (db.Panel().type(panel.kind).id(panel_id).title(panel.title)
         .datasource(datasource_ref()).grid_pos(dm.GridPos(h=h, w=w, x=x, y=y)))
    if panel.description:
        b = b.description(panel.description)
    for q in panel.queries:
        b = b.with_target(ClickHouseQuery(q))
    if panel.unit:
        b = b.unit(panel.unit)
    if panel.min is not None:
        b = b.min(panel.min)
    if panel.max is not None:
        b = b.max(panel.max)
    th = _thresholds(panel)
    if th is not None:
        b = b.thresholds(th).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    if panel.kind == "timeseries" and panel.options.get("thresholdsStyle"):
        b = b.custom({"thresholdsStyle": {"mode": panel.options["thresholdsStyle"]}})
    if panel.kind == "geomap":
        b = geomap_overrides(b)
    opts = {k: v for k, v in _options(panel, center).items() if k != "thresholdsStyle"}
    if opts:
        b = b.options(opts)
    return b


def dashboard_json(board: Board, timezone: str, center: tuple[float, float]) -> dict[str, Any]:
    """The board as Grafana's dashboard JSON (schema of Grafana 11); ``center``: map view."""
    d = (db.Dashboard(board.title).uid(board.uid).tags(list(board.tags)).timezone(timezone)
         .time(board.time_from, "now").editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .description(f"{board.title_zh} — {board.title_en}. Generated by `cityops dashboards "
                      "build`; edit the Python definition, not this file."))
    if board.refresh:
        d = d.refresh(board.refresh).timepicker(
            db.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m"]))
    for v in board.variables:
        d = d.with_variable(
            db.QueryVariable(v.name).label(v.label).query(v.sql).datasource(datasource_ref())
            .multi(True).include_all(True).refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))
    for i, p in enumerate(board.panels, start=1):
        d = d.with_panel(panel_builder(p, i, center))
    return json.loads(json.dumps(d.build(), cls=JSONEncoder))

"""The six boards of the command centre, defined once.

Time ranges: ``RAW_MAX_RANGE_S`` decides which table a long-range panel reads. Each such query is
a ``UNION ALL`` of a raw branch guarded by ``range <= RAW_MAX_RANGE_S`` and a rollup branch
guarded by the opposite; the guard is a constant after macro expansion, so ClickHouse drops the
other branch before reading a granule (``check`` proves it with ``EXPLAIN indexes = 1``).
Thresholds come from the alert rules file and the site registry, the same ones the stream alert
engine reads, so a changed threshold changes the boards too. Footfall is counted where its
interval lies (``event_time - interval_s``), not at the report's end.
"""

from __future__ import annotations

import itertools

from cityops.core.registry import CarPark, Counter, Registry, Station
from cityops.dashboards.spec import Board, Format, Panel, Query, Step, Variable
from cityops.streams.alerts.rules import RuleSet, levels_for
from cityops.streams.aqi import CATEGORIES

#: ranges up to this read the raw tables; longer ones the hourly rollups
RAW_MAX_RANGE_S = 6 * 3600
#: how far back "current state" panels look for the newest record of each subject
LOOKBACK = "INTERVAL 1 HOUR"
#: how far back open incidents and active alerts are searched
OPEN_LOOKBACK = "INTERVAL 30 DAY"
OPEN_LOOKBACK_S = 30 * 86_400

SHORT = f"dateDiff('second', $__fromTime, $__toTime) <= {RAW_MAX_RANGE_S}"
LONG = f"dateDiff('second', $__fromTime, $__toTime) > {RAW_MAX_RANGE_S}"


def long_only(col: str) -> str:
    """The rollup branch's filter. Rollup branches read the ``agg_*`` tables themselves (sums
    of partial sums are exact), not the analyst views: a constant-false guard then sits right
    above the table read and nothing is read, where above a view's GROUP BY it would not."""
    return f"{LONG} AND $__timeFilter({col})"


ZONE = "$__conditionalAll(zone_id IN (${zone:singlequote}), $zone)"
CARPARK = "$__conditionalAll(carpark_id IN (${carpark:singlequote}), $carpark)"
STATION = "$__conditionalAll(station_id IN (${station:singlequote}), $station)"
#: rollup buckets: the panel interval, at least an hour
HOUR_BUCKET = "toStartOfInterval({col}, INTERVAL greatest($__interval_s, 3600) second)"

GREEN, YELLOW, ORANGE, RED, PURPLE = "green", "#FADE2A", "orange", "red", "purple"
SEVERITY_COLOURS = {"info": "blue", "warning": YELLOW, "major": ORANGE, "critical": RED}

VARIABLES = (
    Variable("zone", "区域 Zone", "SELECT zone_id FROM dim_zones ORDER BY zone_id"),
    Variable("carpark", "停车场 Car park",
             "SELECT carpark_id FROM dim_carparks ORDER BY carpark_id"),
    Variable("station", "监测站 Station",
             "SELECT station_id FROM dim_stations ORDER BY station_id"),
)


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


def _num_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def zone_threshold_sql(rules: RuleSet, registry: Registry, severity: str, which: str,
                       col: str = "zone_id") -> str:
    """Per-zone fire/clear threshold of the crowd-density rule as a ClickHouse expression."""
    rule = rules.by_kind("crowd_density")[0]
    zones = sorted(registry.zones)
    vals = []
    for z in zones:
        lv = {str(x.severity): x for x in levels_for(rule, z, registry)}.get(severity)
        vals.append(getattr(lv, which) if lv is not None else float("inf"))
    default = {str(x.severity): x for x in rule.levels}[severity]
    return (f"transform(toString({col}), {_sql_list(zones)}, {_num_list(vals)}, "
            f"{getattr(default, which):g})")


def _steps_for(rules: RuleSet, kind: str) -> tuple[Step, ...]:
    rule = rules.by_kind(kind)[0]
    return (Step(None, GREEN), *(Step(lv.fire, SEVERITY_COLOURS[lv.severity])
                                 for lv in rule.levels))


def aqi_steps() -> tuple[Step, ...]:
    """HJ 633-2012 category bands with the standard's colours (Table 2, Appendix A)."""
    steps = [Step(None, CATEGORIES[0][4])]
    for (upper, *_), nxt in itertools.pairwise(CATEGORIES):
        steps.append(Step(upper + 1, nxt[4]))
    return tuple(steps)


# --- overview ----------------------------------------------------------------------------------

def _density_sql(rules: RuleSet, registry: Registry) -> str:
    warn = zone_threshold_sql(rules, registry, "warning", "fire", "w.zone_id")
    crit = zone_threshold_sql(rules, registry, "critical", "fire", "w.zone_id")
    return f"""SELECT z.name_zh AS zone_zh, z.name_en AS zone, w.density AS density_ppm2,
       {warn} AS warning_ppm2, {crit} AS critical_ppm2,
       multiIf(w.density >= critical_ppm2, 'critical', w.density >= warning_ppm2, 'warning',
               'normal') AS level
FROM
(
    SELECT zone_id, argMax(density_ppm2, (window_end, revision)) AS density
    FROM footfall_windows
    WHERE window = 'tumbling_1m' AND window_end >= $__toTime - {LOOKBACK}
      AND window_end <= $__toTime AND {ZONE}
    GROUP BY zone_id
) AS w
INNER JOIN dim_zones AS z ON z.zone_id = w.zone_id
ORDER BY density_ppm2 DESC"""


def _map_zone_sql(rules: RuleSet, registry: Registry) -> str:
    warn = zone_threshold_sql(rules, registry, "warning", "fire", "z.zone_id")
    crit = zone_threshold_sql(rules, registry, "critical", "fire", "z.zone_id")
    return f"""SELECT z.name_en AS name, z.lat AS latitude, z.lon AS longitude,
       ifNull(w.density, 0) AS density_ppm2,
       multiIf(density_ppm2 >= {crit}, 2, density_ppm2 >= {warn}, 1, 0) AS level
FROM dim_zones AS z
LEFT JOIN
(
    SELECT zone_id, argMax(density_ppm2, (window_end, revision)) AS density
    FROM footfall_windows
    WHERE window = 'tumbling_1m' AND window_end >= $__toTime - {LOOKBACK}
      AND window_end <= $__toTime
    GROUP BY zone_id
) AS w ON w.zone_id = z.zone_id
WHERE {ZONE.replace('zone_id IN', 'z.zone_id IN')}"""


CARPARKS_NOW = f"""SELECT c.name_zh AS carpark_zh, c.name_en AS carpark, c.ring_road AS ring_road,
       s.capacity AS capacity, s.capacity - s.occupied AS free,
       round(s.occupancy_rate, 3) AS occupancy, round(s.minutes_to_full, 1) AS minutes_to_full,
       c.lat AS latitude, c.lon AS longitude
FROM
(
    SELECT carpark_id, argMax(capacity, event_time) AS capacity,
           argMax(occupied, event_time) AS occupied,
           argMax(occupancy_rate, event_time) AS occupancy_rate,
           argMax(minutes_to_full, event_time) AS minutes_to_full
    FROM parking_states
    WHERE event_time >= $__toTime - {LOOKBACK} AND event_time <= $__toTime AND {CARPARK}
    GROUP BY carpark_id
) AS s
INNER JOIN dim_carparks AS c ON c.carpark_id = s.carpark_id
ORDER BY free ASC"""

STATIONS_NOW = f"""SELECT st.name_zh AS station_zh, st.name_en AS station, a.aqi AS aqi,
       a.category AS category, arrayStringConcat(a.primary_pollutants, ',') AS primary_pollutant,
       a.newest_hour AS hour, st.lat AS latitude, st.lon AS longitude
FROM
(
    SELECT station_id, argMax(aqi, (hour_start, revision)) AS aqi,
           argMax(category, (hour_start, revision)) AS category,
           argMax(primary_pollutants, (hour_start, revision)) AS primary_pollutants,
           max(hour_start) AS newest_hour
    FROM air_quality_index
    WHERE averaging = '1h' AND hour_start >= $__toTime - INTERVAL 3 HOUR
      AND hour_start <= $__toTime AND {STATION}
    GROUP BY station_id
) AS a
INNER JOIN dim_stations AS st ON st.station_id = a.station_id
ORDER BY aqi DESC"""

AQI_NOW = f"""SELECT aqi, category, primary_pollutant, station
FROM ({STATIONS_NOW})
ORDER BY aqi DESC
LIMIT 1"""


def incident_fresh_clause(expire_after_s: float) -> str:
    """The ``HAVING`` condition that an incident's latest update (``max(event_time)``) is
    younger than ``CITYOPS_INCIDENT_EXPIRE_AFTER_S`` at ``$__toTime``; nothing when incidents
    never expire. The open-incidents board and the incident alert rule share it, so both
    drop an incident when the stream closes it as ``expired``."""
    if expire_after_s <= 0:
        return ""
    return f" AND max(event_time) > $__toTime - INTERVAL {int(expire_after_s)} SECOND"


def open_incidents_sql(expire_after_s: float) -> str:
    """Incidents open at ``$__toTime``: their latest status is not closed and, while incidents
    expire (``CITYOPS_INCIDENT_EXPIRE_AFTER_S`` > 0), their latest update is younger than
    that. The stream closes an incident silent that long as ``expired`` and its alert clears,
    so the board shows what the alerts and ``incident_stats`` hold. An expiry longer than
    the usual lookback widens it."""
    fresh = incident_fresh_clause(expire_after_s)
    lookback = (OPEN_LOOKBACK if expire_after_s <= OPEN_LOOKBACK_S
                else f"INTERVAL {int(expire_after_s)} SECOND")
    return f"""SELECT i.incident_id AS incident_id, i.incident_type AS type,
       i.severity AS severity, i.zone_id AS zone_id, i.status AS status,
       i.reported_at AS reported_at,
       dateDiff('minute', i.reported_at, $__toTime) AS open_min,
       ifNull(i.lat, z.lat) AS latitude, ifNull(i.lon, z.lon) AS longitude
FROM
(
    SELECT incident_id, argMax(incident_type, event_time) AS incident_type,
           argMax(severity, event_time) AS severity, argMax(zone_id, event_time) AS zone_id,
           argMax(status, event_time) AS status, min(event_time) AS reported_at,
           argMax(lat, event_time) AS lat, argMax(lon, event_time) AS lon
    FROM incidents_reported
    WHERE event_time >= $__toTime - {lookback} AND event_time <= $__toTime
    GROUP BY incident_id
    HAVING status NOT IN ('resolved', 'cancelled') AND {ZONE}{fresh}
) AS i
LEFT JOIN dim_zones AS z ON z.zone_id = i.zone_id
ORDER BY indexOf(['critical', 'high', 'medium', 'low'], severity), reported_at"""


ACTIVE_ALERTS = f"""SELECT alert_id, argMax(rule_id, seq) AS rule, argMax(subject, seq) AS subject,
       argMax(severity, seq) AS severity, argMax(state, seq) AS state,
       argMax(value, seq) AS value, argMax(threshold, seq) AS threshold,
       minIf(event_time, kind = 'fired') AS fired_at, max(escalation_level) AS escalation,
       argMaxIf(actor, seq, kind = 'acknowledged') AS acknowledged_by
FROM alerts
WHERE event_time >= $__toTime - {OPEN_LOOKBACK} AND event_time <= $__toTime
GROUP BY alert_id
HAVING state IN ('active_unack', 'active_ack', 'cleared_unack')
ORDER BY startsWith(state, 'cleared'), indexOf(['critical', 'major', 'warning', 'info'], severity),
         fired_at"""

FEEDS = (("footfall", "footfall_observed"), ("parking", "parking_observed"),
         ("air", "air_quality_observed"), ("incidents", "incidents_reported"))


def _per_feed(select: str) -> str:
    return "\nUNION ALL\n".join(select.format(feed=f, table=t) for f, t in FEEDS)


PIPELINE_LINE = f"""SELECT
    (SELECT count() FROM ({_per_feed(
        "SELECT 1 FROM {table} WHERE event_time >= $__toTime - INTERVAL 5 MINUTE "
        "AND event_time <= $__toTime")})) AS events_5m,
    (SELECT count() FROM dead_letters WHERE received_at >= $__toTime - INTERVAL 5 MINUTE
        AND received_at <= $__toTime) AS dead_letters_5m,
    (SELECT count() FROM late_events WHERE event_time >= $__toTime - INTERVAL 1 HOUR
        AND event_time <= $__toTime) AS late_1h,
    (SELECT dateDiff('second', max(event_time), $__toTime) FROM footfall_observed
        WHERE event_time >= $__toTime - INTERVAL 1 DAY AND event_time <= $__toTime)
        AS footfall_lag_s,
    (SELECT count() FROM ({ACTIVE_ALERTS})) AS active_alerts"""

PIPELINE_FEEDS = f"""SELECT feed, count() AS events, max(event_time) AS newest,
       dateDiff('second', newest, $__toTime) AS lag_s,
       round(quantile(0.95)(dateDiff('millisecond', event_time, ingested_at)) / 1000, 1)
           AS sink_p95_s
FROM
(
{_per_feed("    SELECT '{feed}' AS feed, event_time, ingested_at FROM {table} "
           "WHERE event_time >= $__toTime - INTERVAL 5 MINUTE AND event_time <= $__toTime")}
)
GROUP BY feed
ORDER BY feed"""


def overview(rules: RuleSet, registry: Registry, refresh: str,
             incident_expire_after_s: float) -> Board:
    open_incidents = open_incidents_sql(incident_expire_after_s)
    dens = _steps_for(rules, "crowd_density")
    return Board(
        uid="cityops-overview", title_zh="指挥中心总览", title_en="Command centre overview",
        time_from="now-1h", refresh=refresh, variables=VARIABLES, panels=(
            Panel("density", "区域人群密度", "Crowd density per zone", "bargauge",
                  (Query(_density_sql(rules, registry)),), (0, 0, 8, 9), unit="persons/m²",
                  thresholds=dens, description="Newest 1-minute density per zone; level uses "
                  "each zone's own thresholds from the alert rules and the registry."),
            Panel("map", "态势地图", "District map", "geomap", (
                Query(_map_zone_sql(rules, registry), ref_id="A"),
                Query(CARPARKS_NOW, ref_id="B"),
                Query(STATIONS_NOW, ref_id="C"),
                Query(open_incidents, ref_id="D"),
            ), (8, 0, 10, 14), description="WGS-84. Zones by level, car parks by free "
                  "spaces, stations by AQI category, open incidents."),
            Panel("aqi_now", "空气质量指数", "AQI now", "stat", (Query(AQI_NOW),),
                  (18, 0, 6, 5), unit="AQI", thresholds=aqi_steps(),
                  description="Worst station's latest hourly AQI (HJ 633-2012), its category "
                  "and primary pollutant."),
            Panel("pipeline", "数据管道", "Pipeline health", "stat", (Query(PIPELINE_LINE),),
                  (18, 5, 6, 4)),
            Panel("alerts", "活动告警", "Active alerts", "table", (Query(ACTIVE_ALERTS),),
                  (18, 9, 6, 9)),
            Panel("carparks", "停车场空位", "Free spaces and minutes to full", "table",
                  (Query(CARPARKS_NOW),), (0, 9, 8, 11), unit="none"),
            Panel("stations", "各站空气质量", "AQI per station", "table", (Query(STATIONS_NOW),),
                  (8, 14, 10, 6), thresholds=aqi_steps()),
            Panel("incidents", "未结事件", "Open incidents", "table", (Query(open_incidents),),
                  (0, 20, 18, 7)),
            Panel("feeds", "各数据源吞吐与延迟", "Throughput and lag per feed", "table",
                  (Query(PIPELINE_FEEDS),), (18, 18, 6, 9)),
        ))


# --- footfall and night economy ----------------------------------------------------------------

FOOTFALL_SERIES = f"""SELECT t AS time, zone_id, entries FROM
(
    SELECT $__timeInterval(event_time - toIntervalSecond(interval_s)) AS t, zone_id,
           sum(entries) AS entries
    FROM footfall_observed
    WHERE {SHORT} AND $__timeFilter(event_time) AND {ZONE}
    GROUP BY t, zone_id
    UNION ALL
    SELECT {HOUR_BUCKET.format(col='hour')} AS t, zone_id, sum(entries) AS entries
    FROM agg_footfall_zone_1h
    WHERE {long_only('hour')} AND {ZONE}
    GROUP BY t, zone_id
)
ORDER BY time"""

HOUR_WEEKDAY = f"""SELECT toHour(hour) AS hour_of_day, toDayOfWeek(hour) AS weekday,
       sum(entries) AS entries
FROM footfall_zone_1h
WHERE $__timeFilter(hour) AND {ZONE}
GROUP BY hour_of_day, weekday
ORDER BY weekday, hour_of_day"""

NIGHT_DAY = f"""SELECT toStartOfDay(hour - INTERVAL 2 HOUR) AS time,
       sumIf(entries, toHour(hour) >= 8 AND toHour(hour) < 18) AS day_08_18,
       sumIf(entries, toHour(hour) >= 18 OR toHour(hour) < 2) AS night_18_02
FROM footfall_zone_1h
WHERE $__timeFilter(hour) AND {ZONE}
GROUP BY time
ORDER BY time"""

#: the district's date of a range's edge: the rollups' hours carry the district's time zone,
#: the server's own is often UTC (``toDate`` of 00:00–08:00 in Chongqing gave the day before)
NIGHT_OF = "(SELECT toDate({edge}, timeZoneOf(hour)) FROM footfall_zone_1h LIMIT 1)"

HOLIDAY_NIGHTS = f"""SELECT multiIf(is_holiday, 'holiday 节假日', is_weekend_night,
                'weekend 周末', 'ordinary 平日') AS night_kind,
       round(avg(entries)) AS avg_entries_per_zone_night, count() AS zone_nights
FROM night_footfall
WHERE night_date >= {NIGHT_OF.format(edge="$__fromTime")}
  AND night_date <= {NIGHT_OF.format(edge="$__toTime")} AND {ZONE}
GROUP BY night_kind
ORDER BY night_kind"""


def footfall(refresh: str) -> Board:
    return Board(
        uid="cityops-footfall", title_zh="客流与夜间经济", title_en="Footfall and night economy",
        time_from="now-7d", refresh=refresh, variables=VARIABLES, panels=(
            Panel("series", "各区域客流", "Entries per zone", "timeseries",
                  (Query(FOOTFALL_SERIES, Format.TIME_SERIES, long_range=True),),
                  (0, 0, 24, 9), unit="short"),
            Panel("heatmap", "时段 × 星期", "Hour × weekday", "heatmap",
                  (Query(HOUR_WEEKDAY, long_range=True),), (0, 9, 12, 9)),
            Panel("night_day", "夜间与白天", "Night against day", "barchart",
                  (Query(NIGHT_DAY, long_range=True),), (12, 9, 12, 9), unit="short"),
            Panel("holiday", "节假日与平常夜晚", "Holiday against ordinary nights", "barchart",
                  (Query(HOLIDAY_NIGHTS, long_range=True),), (0, 18, 24, 7), unit="short"),
        ))


# --- parking -------------------------------------------------------------------------------------

OCCUPANCY_SERIES = f"""SELECT t AS time, carpark_id, occupancy FROM
(
    SELECT $__timeInterval(event_time) AS t, carpark_id, avg(occupied / capacity) AS occupancy
    FROM parking_observed
    WHERE {SHORT} AND $__timeFilter(event_time) AND {CARPARK}
    GROUP BY t, carpark_id
    UNION ALL
    SELECT {HOUR_BUCKET.format(col='hour')} AS t, carpark_id,
           sum(occupied_sum) / sum(samples) / max(capacity_max) AS occupancy
    FROM agg_parking_1h
    WHERE {long_only('hour')} AND {CARPARK}
    GROUP BY t, carpark_id
)
ORDER BY time"""

RING_ROAD = f"""SELECT t AS time, group, occupancy FROM
(
    SELECT $__timeInterval(p.event_time) AS t,
           if(c.ring_road, 'ring road 地下环道', 'others 其他') AS group,
           sum(p.occupied) / sum(p.capacity) AS occupancy
    FROM parking_observed AS p INNER JOIN dim_carparks AS c ON c.carpark_id = p.carpark_id
    WHERE {SHORT} AND $__timeFilter(p.event_time)
    GROUP BY t, group
    UNION ALL
    SELECT {HOUR_BUCKET.format(col='p.hour')} AS t,
           if(c.ring_road, 'ring road 地下环道', 'others 其他') AS group,
           sum(p.occupied_sum) / sum(p.samples * p.capacity_max) AS occupancy
    FROM agg_parking_1h AS p INNER JOIN dim_carparks AS c ON c.carpark_id = p.carpark_id
    WHERE {long_only('p.hour')}
    GROUP BY t, group
)
ORDER BY time"""

EVENING_PRESSURE = f"""SELECT carpark_id, round(avg(occupancy_avg), 3) AS evening_occupancy,
       sum(full_samples) AS full_samples
FROM parking_1h
WHERE $__timeFilter(hour) AND toHour(hour) >= 18 AND toHour(hour) < 23 AND {CARPARK}
GROUP BY carpark_id
ORDER BY evening_occupancy DESC"""


def parking(rules: RuleSet, refresh: str) -> Board:
    return Board(
        uid="cityops-parking", title_zh="停车", title_en="Parking", time_from="now-24h",
        refresh=refresh, variables=VARIABLES, panels=(
            Panel("occupancy", "各停车场占用率", "Occupancy per car park", "timeseries",
                  (Query(OCCUPANCY_SERIES, Format.TIME_SERIES, long_range=True),),
                  (0, 0, 24, 9), unit="percentunit", min=0, max=1,
                  thresholds=_steps_for(rules, "carpark_occupancy")),
            Panel("to_full", "预计满位时间", "Minutes to full", "table",
                  (Query(CARPARKS_NOW),), (0, 9, 12, 9)),
            Panel("ring_road", "地下环道与其他", "Ring-road car parks against the others",
                  "timeseries", (Query(RING_ROAD, Format.TIME_SERIES, long_range=True),),
                  (12, 9, 12, 9), unit="percentunit", min=0, max=1),
            Panel("evening", "晚间停车压力", "Evening pressure (18:00–23:00)", "bargauge",
                  (Query(EVENING_PRESSURE, long_range=True),), (0, 18, 24, 8),
                  unit="percentunit", min=0, max=1,
                  thresholds=_steps_for(rules, "carpark_occupancy")),
        ))


# --- air quality ---------------------------------------------------------------------------------

#: raw column → prefix of its decimal sum and count in agg_air_1h
AGG_AIR = {"pm25_ugm3": "pm25", "pm10_ugm3": "pm10", "o3_ugm3": "o3", "no2_ugm3": "no2",
           "so2_ugm3": "so2", "co_mgm3": "co"}
POLLUTANTS = (("pm25_ugm3", "PM2.5", "µg/m³"), ("pm10_ugm3", "PM10", "µg/m³"),
              ("o3_ugm3", "O₃", "µg/m³"), ("no2_ugm3", "NO₂", "µg/m³"),
              ("so2_ugm3", "SO₂", "µg/m³"), ("co_mgm3", "CO", "mg/m³"))


def _air_series(col: str) -> str:
    return f"""SELECT t AS time, station_id, value FROM
(
    SELECT $__timeInterval(event_time) AS t, station_id, avg({col}) AS value
    FROM air_quality_observed
    WHERE {SHORT} AND $__timeFilter(event_time) AND {STATION}
    GROUP BY t, station_id
    UNION ALL
    SELECT {HOUR_BUCKET.format(col='hour')} AS t, station_id,
           toFloat64(sum({AGG_AIR[col]}_sum)) / nullIf(sum({AGG_AIR[col]}_n), 0) AS value
    FROM agg_air_1h
    WHERE {long_only('hour')} AND {STATION}
    GROUP BY t, station_id
)
ORDER BY time"""


AQI_SERIES = f"""SELECT toStartOfInterval(hour_start, INTERVAL greatest($__interval_s, 3600) second)
           AS time, station_id, max(aqi) AS aqi
FROM
(
    SELECT station_id, hour_start, argMax(aqi, revision) AS aqi
    FROM air_quality_index
    WHERE averaging = '1h' AND $__timeFilter(hour_start) AND {STATION}
    GROUP BY station_id, hour_start
)
GROUP BY time, station_id
ORDER BY time"""


def air(refresh: str) -> Board:
    # the stream's hourly AQI (one row per station-hour, the value the AQI alert watches)
    # serves every range: it is already an hourly table, no raw/rollup choice to make
    panels = [Panel("aqi", "各站 AQI", "AQI per station (hourly, HJ 633-2012)", "timeseries",
                    (Query(AQI_SERIES, Format.TIME_SERIES, long_range=True),), (0, 0, 24, 9),
                    unit="none", thresholds=aqi_steps(),
                    options={"thresholdsStyle": "area"})]
    for i, (col, label, unit) in enumerate(POLLUTANTS):
        panels.append(Panel(
            col, f"{label} 浓度", f"{label} per station", "timeseries",
            (Query(_air_series(col), Format.TIME_SERIES, long_range=True),),
            ((i % 3) * 8, 9 + (i // 3) * 8, 8, 8), unit=unit))
    return Board(uid="cityops-air", title_zh="空气质量", title_en="Air quality",
                 time_from="now-24h", refresh=refresh, variables=VARIABLES,
                 panels=tuple(panels))


# --- safety incidents --------------------------------------------------------------------------

def incidents_by_sql(expire_after_s: float) -> str:
    return f"""SELECT type, severity, zone_id, count() AS open_incidents
FROM ({open_incidents_sql(expire_after_s)})
GROUP BY type, severity, zone_id
ORDER BY open_incidents DESC"""

RESPONSE_TIMES = f"""SELECT dateDiff('second', minIf(event_time, status = 'reported'),
                minIf(event_time, status = 'on_scene')) / 60 AS response_min
FROM incidents_reported
WHERE $__timeFilter(event_time) AND {ZONE}
GROUP BY incident_id
HAVING countIf(status = 'reported') > 0 AND countIf(status = 'on_scene') > 0"""

LIFECYCLE = f"""SELECT t AS time, reported, dispatched, on_scene, resolved FROM
(
    SELECT $__timeInterval(event_time) AS t, countIf(status = 'reported') AS reported,
           countIf(status = 'dispatched') AS dispatched, countIf(status = 'on_scene') AS on_scene,
           countIf(status = 'resolved') AS resolved
    FROM incidents_reported
    WHERE {SHORT} AND $__timeFilter(event_time) AND {ZONE}
    GROUP BY t
    UNION ALL
    SELECT {HOUR_BUCKET.format(col='hour')} AS t, sum(reported) AS reported,
           sum(dispatched) AS dispatched, sum(on_scene) AS on_scene, sum(resolved) AS resolved
    FROM agg_incidents_1h
    WHERE {long_only('hour')} AND {ZONE}
    GROUP BY t
)
ORDER BY time"""


def safety(refresh: str, incident_expire_after_s: float) -> Board:
    return Board(
        uid="cityops-safety", title_zh="安全事件", title_en="Safety incidents",
        time_from="now-24h", refresh=refresh, variables=VARIABLES, panels=(
            Panel("open", "未结事件（类型/等级/区域）", "Open incidents by type, severity, zone",
                  "table", (Query(incidents_by_sql(incident_expire_after_s)),), (0, 0, 12, 9)),
            Panel("response", "响应时间分布", "Response time (reported → on scene)",
                  "histogram", (Query(RESPONSE_TIMES, long_range=True),), (12, 0, 12, 9),
                  unit="m"),
            Panel("lifecycle", "事件生命周期", "Lifecycle: status updates", "timeseries",
                  (Query(LIFECYCLE, Format.TIME_SERIES, long_range=True),), (0, 9, 24, 9)),
            Panel("list", "未结事件列表", "Open incidents", "table",
                  (Query(open_incidents_sql(incident_expire_after_s)),), (0, 18, 24, 8)),
        ))


# --- pipeline health ---------------------------------------------------------------------------

EVENTS_IN = f"""SELECT t AS time, feed, events FROM
(
{_per_feed("    SELECT $__timeInterval(event_time) AS t, '{feed}' AS feed, count() AS events "
           "FROM {table} WHERE $__timeFilter(event_time) GROUP BY t")}
)
ORDER BY time"""

EVENTS_OUT = """SELECT t AS time, record, records FROM
(
    SELECT $__timeInterval(window_end) AS t, 'footfall_windows' AS record, count() AS records
    FROM footfall_windows WHERE $__timeFilter(window_end) GROUP BY t
    UNION ALL
    SELECT $__timeInterval(event_time) AS t, 'parking_states' AS record, count() AS records
    FROM parking_states WHERE $__timeFilter(event_time) GROUP BY t
    UNION ALL
    SELECT $__timeInterval(hour_start) AS t, 'air_quality_index' AS record, count() AS records
    FROM air_quality_index WHERE $__timeFilter(hour_start) GROUP BY t
    UNION ALL
    SELECT $__timeInterval(event_time) AS t, 'incident_stats' AS record, count() AS records
    FROM incident_stats WHERE $__timeFilter(event_time) GROUP BY t
    UNION ALL
    SELECT $__timeInterval(event_time) AS t, 'alerts' AS record, count() AS records
    FROM alerts WHERE $__timeFilter(event_time) GROUP BY t
)
ORDER BY time"""

DEAD_LETTERS = """SELECT $__timeInterval(received_at) AS time, reason, count() AS dead_letters
FROM dead_letters
WHERE $__timeFilter(received_at)
GROUP BY time, reason
ORDER BY time"""

LATE_EVENTS = """SELECT $__timeInterval(event_time) AS time, feed, count() AS late_events
FROM late_events
WHERE $__timeFilter(event_time)
GROUP BY time, feed
ORDER BY time"""

SINK_LATENCY = f"""SELECT t AS time, feed, p95_s FROM
(
{_per_feed("    SELECT $__timeInterval(event_time) AS t, '{feed}' AS feed, "
           "quantile(0.95)(dateDiff('millisecond', event_time, ingested_at)) / 1000 AS p95_s "
           "FROM {table} WHERE $__timeFilter(event_time) GROUP BY t")}
)
ORDER BY time"""


def _silent_union(registry: Registry) -> str:
    """Newest report per source, each feed looked back 60 × its slowest cadence (the dead-sensor
    rule's major level) rather than days of raw rows."""
    cadences = {"footfall": [c.cadence_s for c in registry.counters.values()],
                "parking": [c.cadence_s for c in registry.carparks.values()],
                "air": [s.cadence_s for s in registry.stations.values()],
                "incidents": [3600]}
    parts = []
    for feed, table in FEEDS:
        back = 61 * max(cadences[feed] or [3600])
        parts.append(f"    SELECT toString(source) AS source, max(event_time) AS last_seen "
                     f"FROM {table} WHERE event_time >= $__toTime - INTERVAL {back} SECOND "
                     "AND event_time <= $__toTime GROUP BY source")
    return "\nUNION ALL\n".join(parts)


def silent_sensors_sql(registry: Registry, min_ratio: float) -> str:
    """Sources silent for at least ``min_ratio`` × their registry cadence at ``$__toTime``."""
    sources: list[Counter | CarPark | Station] = [
            *registry.counters.values(), *registry.carparks.values(),
               *registry.stations.values()]
    ids = [s.id for s in sources]
    cad = [float(s.cadence_s) for s in sources]
    return f"""SELECT source, max(last_seen) AS last_seen,
       dateDiff('second', last_seen, $__toTime) AS silent_s,
       transform(source, {_sql_list(ids)}, {_num_list(cad)}, 0.) AS cadence_s,
       round(silent_s / cadence_s, 1) AS cadences
FROM
(
{_silent_union(registry)}
)
WHERE has({_sql_list(ids)}, source)
GROUP BY source
HAVING cadences >= {min_ratio:g}
ORDER BY cadences DESC"""


def pipeline(rules: RuleSet, registry: Registry, refresh: str) -> Board:
    first = rules.by_kind("dead_sensor")[0].levels[0].fire if rules.by_kind("dead_sensor") else 5
    return Board(
        uid="cityops-pipeline", title_zh="数据管道健康", title_en="Pipeline health",
        time_from="now-1h", refresh=refresh, variables=VARIABLES, panels=(
            Panel("in", "各数据源事件", "Events in per feed", "timeseries",
                  (Query(EVENTS_IN, Format.TIME_SERIES),), (0, 0, 12, 8)),
            Panel("out", "派生记录", "Records out per kind", "timeseries",
                  (Query(EVENTS_OUT, Format.TIME_SERIES),), (12, 0, 12, 8)),
            Panel("lag", "延迟（数据新鲜度）", "Lag behind now and sink p95 per feed", "table",
                  (Query(PIPELINE_FEEDS),), (0, 8, 8, 8), unit="s"),
            Panel("dead", "死信（按原因）", "Dead letters by reason", "timeseries",
                  (Query(DEAD_LETTERS, Format.TIME_SERIES),), (8, 8, 8, 8)),
            Panel("late", "迟到事件", "Late events", "timeseries",
                  (Query(LATE_EVENTS, Format.TIME_SERIES),), (16, 8, 8, 8)),
            Panel("silent", "静默传感器", "Silent sensors", "table",
                  (Query(silent_sensors_sql(registry, first)),), (0, 16, 12, 8)),
            Panel("sink", "入库延迟 p95", "Sink latency p95 (event → warehouse)", "timeseries",
                  (Query(SINK_LATENCY, Format.TIME_SERIES),), (12, 16, 12, 8), unit="s"),
        ))


def all_boards(rules: RuleSet, registry: Registry, refresh_s: int,
               incident_expire_after_s: float) -> tuple[Board, ...]:
    live = f"{refresh_s}s"
    slow = "1m"
    return (overview(rules, registry, live, incident_expire_after_s), footfall(slow),
            parking(rules, live), air(slow), safety(live, incident_expire_after_s),
            pipeline(rules, registry, live))

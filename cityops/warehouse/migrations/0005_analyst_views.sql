-- Analyst views: stable, documented names (docs/warehouse.md). Rollup views merge the partial
-- aggregates with GROUP BY, so they are exact at any moment, before or after merges.

CREATE VIEW IF NOT EXISTS footfall_zone_1m AS
SELECT zone_id, minute, sum(entries) AS entries, sum(exits) AS exits, sum(reports) AS reports,
       max(max_density_ppm2) AS max_density_ppm2
FROM agg_footfall_zone_1m
GROUP BY zone_id, minute
COMMENT 'Footfall per zone and minute: entries, exits, counter reports, peak reported density';

CREATE VIEW IF NOT EXISTS footfall_zone_1h AS
SELECT zone_id, hour, sum(entries) AS entries, sum(exits) AS exits, sum(reports) AS reports,
       max(max_density_ppm2) AS max_density_ppm2
FROM agg_footfall_zone_1h
GROUP BY zone_id, hour
COMMENT 'Footfall per zone and hour: entries, exits, counter reports, peak reported density';

CREATE VIEW IF NOT EXISTS parking_1h AS
SELECT carpark_id, hour, n AS samples, occ_sum / n AS occupied_avg, occ_min AS occupied_min,
       occ_max AS occupied_max, cap AS capacity, occ_sum / n / cap AS occupancy_avg,
       occ_max / cap AS occupancy_max, occ_last AS occupied_last, nfull AS full_samples
FROM
(
    SELECT carpark_id, hour, sum(samples) AS n, sum(occupied_sum) AS occ_sum,
           min(occupied_min) AS occ_min, max(occupied_max) AS occ_max, max(capacity_max) AS cap,
           sum(full_samples) AS nfull, argMaxMerge(last_occupied) AS occ_last
    FROM agg_parking_1h
    GROUP BY carpark_id, hour
)
COMMENT 'Occupancy per car park and hour: mean / min / max / last occupied, occupancy rates, samples reported full';

CREATE VIEW IF NOT EXISTS air_quality_1h AS
SELECT station_id, hour, samples, pm25_ugm3, pm10_ugm3, o3_ugm3, no2_ugm3, so2_ugm3, co_mgm3,
       temperature_c, humidity_pct, humidity_max,
       ${iaqi_pm25} AS iaqi_pm25, ${iaqi_pm10} AS iaqi_pm10, ${iaqi_o3} AS iaqi_o3,
       ${iaqi_no2} AS iaqi_no2, ${iaqi_so2} AS iaqi_so2, ${iaqi_co} AS iaqi_co,
       ${aqi} AS aqi, ${primary} AS primary_pollutants, ${category} AS category
FROM
(
    SELECT station_id, hour, sum(samples) AS samples,
           if(sum(pm25_n) > 0, toFloat64(sum(pm25_sum)) / sum(pm25_n), NULL) AS pm25_ugm3,
           if(sum(pm10_n) > 0, toFloat64(sum(pm10_sum)) / sum(pm10_n), NULL) AS pm10_ugm3,
           if(sum(o3_n) > 0, toFloat64(sum(o3_sum)) / sum(o3_n), NULL) AS o3_ugm3,
           if(sum(no2_n) > 0, toFloat64(sum(no2_sum)) / sum(no2_n), NULL) AS no2_ugm3,
           if(sum(so2_n) > 0, toFloat64(sum(so2_sum)) / sum(so2_n), NULL) AS so2_ugm3,
           if(sum(co_n) > 0, toFloat64(sum(co_sum)) / sum(co_n), NULL) AS co_mgm3,
           if(sum(temperature_n) > 0, toFloat64(sum(temperature_sum)) / sum(temperature_n), NULL)
               AS temperature_c,
           if(sum(humidity_n) > 0, toFloat64(sum(humidity_sum)) / sum(humidity_n), NULL)
               AS humidity_pct,
           max(agg_air_1h.humidity_max) AS humidity_max
    FROM agg_air_1h
    GROUP BY station_id, hour
)
COMMENT 'Air quality per station and hour: pollutant means, IAQI per pollutant, hourly AQI, primary pollutants and category (HJ 633-2012)';

CREATE VIEW IF NOT EXISTS incidents_1h AS
SELECT zone_id, incident_type, hour, sum(updates) AS updates, sum(reported) AS reported,
       sum(dispatched) AS dispatched, sum(on_scene) AS on_scene, sum(resolved) AS resolved,
       sum(cancelled) AS cancelled, sum(severe_reported) AS severe_reported,
       uniqExactMerge(incidents) AS incidents
FROM agg_incidents_1h
GROUP BY zone_id, incident_type, hour
COMMENT 'Incident status updates per zone, type and hour; incidents = distinct incident ids touched';

CREATE VIEW IF NOT EXISTS night_footfall AS
SELECT n.night_date AS night_date, n.zone_id AS zone_id, z.name_en AS zone_name_en,
       z.name_zh AS zone_name_zh, n.entries AS entries, n.exits AS exits,
       n.reports AS reports, n.hours AS hours, toDayOfWeek(n.night_date) AS weekday,
       toDayOfWeek(n.night_date) IN (5, 6) AS is_weekend_night,
       c.is_holiday AS is_holiday, c.holiday_name AS holiday_name, c.is_workday AS is_workday
FROM
(
    SELECT toDate(hour - INTERVAL 2 HOUR) AS night_date, zone_id, sum(entries) AS entries,
           sum(exits) AS exits, sum(reports) AS reports, uniqExact(hour) AS hours
    FROM agg_footfall_zone_1h
    WHERE toHour(hour) >= 18 OR toHour(hour) < 2
    GROUP BY night_date, zone_id
) AS n
LEFT JOIN dim_calendar AS c ON c.date = n.night_date
LEFT JOIN dim_zones AS z ON z.zone_id = n.zone_id
COMMENT 'Night-economy footfall per zone and night: a night runs 18:00–02:00 local time and belongs to the evening''s date (night_date); weekday 1 = Monday; holiday flags from dim_calendar';

CREATE VIEW IF NOT EXISTS daily_footfall AS
SELECT d.date AS date, d.zone_id AS zone_id, d.entries_total AS entries_total,
       d.entries_day AS entries_day, d.entries_evening AS entries_evening,
       toDayOfWeek(d.date) AS weekday, c.is_holiday AS is_holiday,
       c.holiday_name AS holiday_name, c.is_workday AS is_workday
FROM
(
    SELECT toDate(hour) AS date, zone_id, sum(entries) AS entries_total,
           sumIf(entries, toHour(hour) >= 8 AND toHour(hour) < 18) AS entries_day,
           sumIf(entries, toHour(hour) >= 18) AS entries_evening
    FROM agg_footfall_zone_1h
    GROUP BY date, zone_id
) AS d
LEFT JOIN dim_calendar AS c ON c.date = d.date
COMMENT 'Footfall per zone and calendar date: whole day, daytime (08:00–18:00) and evening (18:00–24:00) entries, with calendar flags';

CREATE VIEW IF NOT EXISTS incident_lifecycle AS
SELECT incident_id, any(zone_id) AS zone_id, argMin(incident_type, event_time) AS incident_type,
       argMin(severity, event_time) AS severity_reported,
       argMax(severity, event_time) AS severity_last,
       argMax(status, event_time) AS status_last,
       min(event_time) AS first_seen_at,
       minIfOrNull(event_time, status = 'reported') AS reported_at,
       minIfOrNull(event_time, status = 'dispatched') AS dispatched_at,
       minIfOrNull(event_time, status = 'on_scene') AS on_scene_at,
       minIfOrNull(event_time, status = 'resolved') AS resolved_at,
       minIfOrNull(event_time, status = 'cancelled') AS cancelled_at,
       dateDiff('millisecond', ifNull(reported_at, first_seen_at), dispatched_at) / 1000
           AS dispatch_s,
       dateDiff('millisecond', ifNull(reported_at, first_seen_at), on_scene_at) / 1000
           AS response_s,
       dateDiff('millisecond', ifNull(reported_at, first_seen_at), resolved_at) / 1000
           AS resolution_s
FROM incidents_reported
GROUP BY incident_id
COMMENT 'One row per incident: type, severity, status timestamps, dispatch / response (reported → on scene) / resolution seconds';

CREATE VIEW IF NOT EXISTS alert_lifecycle AS
SELECT alert_id, any(rule_id) AS rule_id, any(subject) AS subject,
       minIfOrNull(event_time, kind = 'fired') AS fired_at,
       minIfOrNull(event_time, kind = 'acknowledged') AS acknowledged_at,
       minIfOrNull(event_time, kind = 'escalated') AS first_escalated_at,
       minIfOrNull(event_time, kind = 'cleared') AS cleared_at,
       max(escalation_level) AS max_escalation_level,
       ['info', 'warning', 'major', 'critical'][max(indexOf(['info', 'warning', 'major', 'critical'], severity))] AS peak_severity,
       argMax(state, seq) AS state_now,
       argMaxIf(actor, seq, kind = 'acknowledged') AS acknowledged_by,
       uniqExact(seq) AS events,
       dateDiff('millisecond', fired_at, acknowledged_at) / 1000 AS time_to_ack_s,
       dateDiff('millisecond', fired_at, cleared_at) / 1000 AS duration_s,
       isNull(cleared_at) AS is_active
FROM alerts
GROUP BY alert_id
COMMENT 'One row per alert: fired, acknowledged, first escalated and cleared times, peak severity, current state, time to acknowledge, duration';

CREATE VIEW IF NOT EXISTS parking_latest AS
SELECT carpark_id, max(event_time) AS observed_at, argMax(occupied, event_time) AS occupied_now,
       argMax(capacity, event_time) AS capacity_now, argMax(status, event_time) AS status_now,
       occupied_now / capacity_now AS occupancy_now
FROM parking_observed
GROUP BY carpark_id
COMMENT 'Latest observation per car park: occupied, capacity, status, occupancy';

CREATE VIEW IF NOT EXISTS footfall_windows_latest AS
SELECT * FROM footfall_windows FINAL
COMMENT 'Stream footfall windows, newest revision of each window only';

CREATE VIEW IF NOT EXISTS air_quality_index_latest AS
SELECT * FROM air_quality_index FINAL
COMMENT 'Stream AQI records, newest revision of each station-hour only';

CREATE VIEW IF NOT EXISTS dead_letters_daily AS
SELECT toDate(received_at) AS day, feed, reason, stage, uniqExact(record_id) AS records
FROM dead_letters
GROUP BY day, feed, reason, stage
COMMENT 'Dead letters per day, feed, reason code and stage';

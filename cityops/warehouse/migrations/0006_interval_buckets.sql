-- Footfall counted where its interval lies (docs/warehouse.md, "Counting intervals").
-- A report covers [event_time - interval_s, event_time). Its counts are spread over the
-- buckets that interval overlaps, in proportion to the overlap, as whole numbers: the part of
-- bucket k is floor(n·c_k / L) - floor(n·c_(k-1) / L), where L is the interval and c_k the
-- milliseconds of it up to the end of bucket k. The parts of one report sum to its count
-- exactly, an interval that fits in one bucket lands whole in it (an hourly counter's
-- 17:00-18:00 report is all in the 17:00 hour), and the minute parts of an hour add up to the
-- hour's part, so footfall_zone_1m and footfall_zone_1h always agree. The stream windows
-- (cityops/streams/spread.py) use the same arithmetic.
-- `reports` counts a report in the bucket where its interval starts; `max_density_ppm2` applies
-- to every bucket the interval overlaps.
-- Hour buckets start at local hours of the district zone (whole-hour DST changes included).
--
-- Existing rollups are rebuilt from the raw rows still held (FINAL: one row per event_id),
-- from the hour in which the oldest raw report's interval starts. Older rollup rows, whose raw rows the TTL has
-- already removed, cannot be rebuilt and keep the end-of-interval bucketing they were written
-- with. Run it with the sink stopped (`cityops warehouse migrate` / the worker's start-up),
-- or rows inserted during the rebuild count twice.

DROP VIEW IF EXISTS mv_footfall_zone_1m;

DROP VIEW IF EXISTS mv_footfall_zone_1h;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_footfall_zone_1m TO agg_footfall_zone_1m AS
SELECT zone_id, toDateTime(intDiv(b, 1000), '${tz}') AS minute,
       sum(intDiv(toUInt64(en) * toUInt64(least(e, b + 60000) - s), toUInt64(e - s))
           - intDiv(toUInt64(en) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS entries,
       sum(intDiv(toUInt64(ex) * toUInt64(least(e, b + 60000) - s), toUInt64(e - s))
           - intDiv(toUInt64(ex) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS exits,
       toUInt64(countIf(b <= s)) AS reports, max(dens) AS max_density_ppm2
FROM
(
    SELECT zone_id, entries AS en, exits AS ex, density_ppm2 AS dens,
           toUnixTimestamp64Milli(event_time) AS e,
           e - toInt64(greatest(interval_s, 1)) * 1000 AS s,
           intDiv(s, 60000) * 60000 AS b0
    FROM footfall_observed
)
ARRAY JOIN arrayMap(i -> b0 + toInt64(i) * 60000,
                    range(toUInt64(intDiv(e - b0 + 59999, 60000)))) AS b
GROUP BY zone_id, minute
COMMENT 'footfall_observed → agg_footfall_zone_1m, each report spread over the minutes of its interval';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_footfall_zone_1h TO agg_footfall_zone_1h AS
SELECT zone_id, toDateTime(intDiv(b, 1000), '${tz}') AS hour,
       sum(intDiv(toUInt64(en) * toUInt64(least(e, b + 3600000) - s), toUInt64(e - s))
           - intDiv(toUInt64(en) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS entries,
       sum(intDiv(toUInt64(ex) * toUInt64(least(e, b + 3600000) - s), toUInt64(e - s))
           - intDiv(toUInt64(ex) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS exits,
       toUInt64(countIf(b <= s)) AS reports, max(dens) AS max_density_ppm2
FROM
(
    SELECT zone_id, entries AS en, exits AS ex, density_ppm2 AS dens,
           toUnixTimestamp64Milli(event_time) AS e,
           e - toInt64(greatest(interval_s, 1)) * 1000 AS s,
           toInt64(toUnixTimestamp(toStartOfHour(toDateTime(intDiv(s, 1000), '${tz}')))) * 1000
               AS b0
    FROM footfall_observed
)
ARRAY JOIN arrayMap(i -> b0 + toInt64(i) * 3600000,
                    range(toUInt64(intDiv(e - b0 + 3599999, 3600000)))) AS b
GROUP BY zone_id, hour
COMMENT 'footfall_observed → agg_footfall_zone_1h, each report spread over the hours of its interval';

DELETE FROM agg_footfall_zone_1m
WHERE minute >= (SELECT ifNull(toStartOfHour(minOrNull(event_time - toIntervalSecond(interval_s))), toDateTime(4294967295, '${tz}'))
                 FROM footfall_observed);

DELETE FROM agg_footfall_zone_1h
WHERE hour >= (SELECT ifNull(toStartOfHour(minOrNull(event_time - toIntervalSecond(interval_s))), toDateTime(4294967295, '${tz}'))
               FROM footfall_observed);

INSERT INTO agg_footfall_zone_1m (zone_id, minute, entries, exits, reports, max_density_ppm2)
SETTINGS insert_deduplicate = 0
SELECT zone_id, toDateTime(intDiv(b, 1000), '${tz}') AS minute,
       sum(intDiv(toUInt64(en) * toUInt64(least(e, b + 60000) - s), toUInt64(e - s))
           - intDiv(toUInt64(en) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS entries,
       sum(intDiv(toUInt64(ex) * toUInt64(least(e, b + 60000) - s), toUInt64(e - s))
           - intDiv(toUInt64(ex) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS exits,
       toUInt64(countIf(b <= s)) AS reports, max(dens) AS max_density_ppm2
FROM
(
    SELECT zone_id, entries AS en, exits AS ex, density_ppm2 AS dens,
           toUnixTimestamp64Milli(event_time) AS e,
           e - toInt64(greatest(interval_s, 1)) * 1000 AS s,
           intDiv(s, 60000) * 60000 AS b0
    FROM footfall_observed FINAL
)
ARRAY JOIN arrayMap(i -> b0 + toInt64(i) * 60000,
                    range(toUInt64(intDiv(e - b0 + 59999, 60000)))) AS b
WHERE minute >= (SELECT toStartOfHour(min(event_time - toIntervalSecond(interval_s))) FROM footfall_observed)
GROUP BY zone_id, minute;

INSERT INTO agg_footfall_zone_1h (zone_id, hour, entries, exits, reports, max_density_ppm2)
SETTINGS insert_deduplicate = 0
SELECT zone_id, toDateTime(intDiv(b, 1000), '${tz}') AS hour,
       sum(intDiv(toUInt64(en) * toUInt64(least(e, b + 3600000) - s), toUInt64(e - s))
           - intDiv(toUInt64(en) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS entries,
       sum(intDiv(toUInt64(ex) * toUInt64(least(e, b + 3600000) - s), toUInt64(e - s))
           - intDiv(toUInt64(ex) * toUInt64(greatest(b, s) - s), toUInt64(e - s))) AS exits,
       toUInt64(countIf(b <= s)) AS reports, max(dens) AS max_density_ppm2
FROM
(
    SELECT zone_id, entries AS en, exits AS ex, density_ppm2 AS dens,
           toUnixTimestamp64Milli(event_time) AS e,
           e - toInt64(greatest(interval_s, 1)) * 1000 AS s,
           toInt64(toUnixTimestamp(toStartOfHour(toDateTime(intDiv(s, 1000), '${tz}')))) * 1000
               AS b0
    FROM footfall_observed FINAL
)
ARRAY JOIN arrayMap(i -> b0 + toInt64(i) * 3600000,
                    range(toUInt64(intDiv(e - b0 + 3599999, 3600000)))) AS b
WHERE hour >= (SELECT toStartOfHour(min(event_time - toIntervalSecond(interval_s))) FROM footfall_observed)
GROUP BY zone_id, hour;

-- A night runs 18:00-02:00 local and belongs to the evening's date, read from the local wall
-- clock (hour - 2 h is wrong on a night whose clocks change: 01:00 after a fall-back would
-- land on the next date). Buckets are interval starts, so 17:00-18:00 is outside and
-- 01:00-02:00 inside.
CREATE OR REPLACE VIEW night_footfall AS
SELECT n.night_date AS night_date, n.zone_id AS zone_id, z.name_en AS zone_name_en,
       z.name_zh AS zone_name_zh, n.entries AS entries, n.exits AS exits,
       n.reports AS reports, n.hours AS hours, toDayOfWeek(n.night_date) AS weekday,
       toDayOfWeek(n.night_date) IN (5, 6) AS is_weekend_night,
       c.is_holiday AS is_holiday, c.holiday_name AS holiday_name, c.is_workday AS is_workday
FROM
(
    SELECT if(toHour(hour) < 2, toDate(hour) - 1, toDate(hour)) AS night_date, zone_id,
           sum(entries) AS entries, sum(exits) AS exits, sum(reports) AS reports,
           uniqExact(hour) AS hours
    FROM agg_footfall_zone_1h
    WHERE toHour(hour) >= 18 OR toHour(hour) < 2
    GROUP BY night_date, zone_id
) AS n
LEFT JOIN dim_calendar AS c ON c.date = n.night_date
LEFT JOIN dim_zones AS z ON z.zone_id = n.zone_id
COMMENT 'Night-economy footfall per zone and night: a night runs 18:00–02:00 local time and belongs to the evening''s date (night_date); counts lie where their interval lies; weekday 1 = Monday; holiday flags from dim_calendar';

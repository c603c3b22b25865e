-- An air sample is counted in the hour of its midpoint, as the stream's hourly AQI counts it
-- (air_quality_index; docs/aqi.md). A sample covers [event_time - averaging_s, event_time):
-- a national station's 14:00 value (13:00-14:00, 时间点 14:00) belongs to the 13:00 hour, and
-- a micro station's minute ending at 14:00:00 too. agg_air_1h bucketed by the hour of
-- event_time, so the hourly station's means and AQI in air_quality_1h stood one hour later
-- than air_quality_index's and than footfall_zone_1h's interval-start hours, and one minute
-- sample per hour of the micro stations fell in the next hour.
--
-- Existing rollups are rebuilt from the raw rows still held (FINAL: one row per event_id),
-- from the hour of the oldest raw sample's midpoint. Older rollup rows, whose raw rows the
-- TTL has already removed, cannot be rebuilt and keep the bucketing they were written with.
-- Run it with the sink stopped (`cityops warehouse migrate` / the worker's start-up), or rows
-- inserted during the rebuild count twice.

DROP VIEW IF EXISTS mv_air_1h;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_air_1h TO agg_air_1h AS
SELECT station_id, toStartOfHour(event_time - toIntervalMillisecond(toUInt64(averaging_s) * 500)) AS hour, count() AS samples,
       sum(toDecimal128(ifNull(pm25_ugm3, 0) + if(ifNull(pm25_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS pm25_sum, count(pm25_ugm3) AS pm25_n,
       sum(toDecimal128(ifNull(pm10_ugm3, 0) + if(ifNull(pm10_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS pm10_sum, count(pm10_ugm3) AS pm10_n,
       sum(toDecimal128(ifNull(o3_ugm3, 0) + if(ifNull(o3_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS o3_sum, count(o3_ugm3) AS o3_n,
       sum(toDecimal128(ifNull(no2_ugm3, 0) + if(ifNull(no2_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS no2_sum, count(no2_ugm3) AS no2_n,
       sum(toDecimal128(ifNull(so2_ugm3, 0) + if(ifNull(so2_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS so2_sum, count(so2_ugm3) AS so2_n,
       sum(toDecimal128(ifNull(co_mgm3, 0) + if(ifNull(co_mgm3, 0) >= 0, 0.0005, -0.0005), 3)) AS co_sum, count(co_mgm3) AS co_n,
       sum(toDecimal128(ifNull(temperature_c, 0) + if(ifNull(temperature_c, 0) >= 0, 0.0005, -0.0005), 3)) AS temperature_sum,
       count(temperature_c) AS temperature_n,
       sum(toDecimal128(ifNull(humidity_pct, 0) + if(ifNull(humidity_pct, 0) >= 0, 0.0005, -0.0005), 3)) AS humidity_sum,
       count(humidity_pct) AS humidity_n, max(humidity_pct) AS humidity_max
FROM air_quality_observed
GROUP BY station_id, hour
COMMENT 'air_quality_observed → agg_air_1h, each sample in the hour of its midpoint';

DELETE FROM agg_air_1h
WHERE hour >= (SELECT ifNull(toStartOfHour(minOrNull(event_time - toIntervalMillisecond(toUInt64(averaging_s) * 500))), toDateTime(4294967295, '${tz}'))
               FROM air_quality_observed);

INSERT INTO agg_air_1h (station_id, hour, samples, pm25_sum, pm25_n, pm10_sum, pm10_n, o3_sum, o3_n, no2_sum, no2_n, so2_sum, so2_n, co_sum, co_n, temperature_sum, temperature_n, humidity_sum, humidity_n, humidity_max)
SETTINGS insert_deduplicate = 0
SELECT station_id, toStartOfHour(event_time - toIntervalMillisecond(toUInt64(averaging_s) * 500)) AS hour, count() AS samples,
       sum(toDecimal128(ifNull(pm25_ugm3, 0) + if(ifNull(pm25_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS pm25_sum, count(pm25_ugm3) AS pm25_n,
       sum(toDecimal128(ifNull(pm10_ugm3, 0) + if(ifNull(pm10_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS pm10_sum, count(pm10_ugm3) AS pm10_n,
       sum(toDecimal128(ifNull(o3_ugm3, 0) + if(ifNull(o3_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS o3_sum, count(o3_ugm3) AS o3_n,
       sum(toDecimal128(ifNull(no2_ugm3, 0) + if(ifNull(no2_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS no2_sum, count(no2_ugm3) AS no2_n,
       sum(toDecimal128(ifNull(so2_ugm3, 0) + if(ifNull(so2_ugm3, 0) >= 0, 0.0005, -0.0005), 3)) AS so2_sum, count(so2_ugm3) AS so2_n,
       sum(toDecimal128(ifNull(co_mgm3, 0) + if(ifNull(co_mgm3, 0) >= 0, 0.0005, -0.0005), 3)) AS co_sum, count(co_mgm3) AS co_n,
       sum(toDecimal128(ifNull(temperature_c, 0) + if(ifNull(temperature_c, 0) >= 0, 0.0005, -0.0005), 3)) AS temperature_sum,
       count(temperature_c) AS temperature_n,
       sum(toDecimal128(ifNull(humidity_pct, 0) + if(ifNull(humidity_pct, 0) >= 0, 0.0005, -0.0005), 3)) AS humidity_sum,
       count(humidity_pct) AS humidity_n, max(humidity_pct) AS humidity_max
FROM air_quality_observed FINAL
WHERE hour >= (SELECT toStartOfHour(min(event_time - toIntervalMillisecond(toUInt64(averaging_s) * 500)))
               FROM air_quality_observed)
GROUP BY station_id, hour;

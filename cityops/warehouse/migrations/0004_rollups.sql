-- Rollups kept long (no TTL): AggregatingMergeTree tables fed by materialized views from the
-- raw tables. Each inserted block adds partial aggregates; the analyst views (0005) merge
-- them with GROUP BY, so a rollup read equals the same aggregation over the raw rows.
-- Rollup targets carry their own non_replicated_deduplication_window: a retried insert
-- (same deduplication token) into a raw table is then skipped by the views as well.
-- Float readings become Decimal(3) rounded half away from zero (toDecimal128 alone truncates:
-- 32.3 would be stored as 32.299), so sums and means equal the raw values to the 0.001.
-- Time buckets are in the district's zone: toStartOfHour etc. use the column's time zone.

CREATE TABLE IF NOT EXISTS agg_footfall_zone_1m
(
    zone_id         LowCardinality(String),
    minute          DateTime('${tz}') CODEC(DoubleDelta, ZSTD(1)),
    entries         SimpleAggregateFunction(sum, UInt64),
    exits           SimpleAggregateFunction(sum, UInt64),
    reports         SimpleAggregateFunction(sum, UInt64),
    max_density_ppm2 SimpleAggregateFunction(max, Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (zone_id, minute)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Rollup storage: footfall per zone and minute (read it through footfall_zone_1m)';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_footfall_zone_1m TO agg_footfall_zone_1m AS
SELECT zone_id, toStartOfMinute(event_time) AS minute,
       sum(entries) AS entries, sum(exits) AS exits, count() AS reports,
       max(density_ppm2) AS max_density_ppm2
FROM footfall_observed
GROUP BY zone_id, minute
COMMENT 'footfall_observed → agg_footfall_zone_1m';

CREATE TABLE IF NOT EXISTS agg_footfall_zone_1h
(
    zone_id         LowCardinality(String),
    hour            DateTime('${tz}') CODEC(DoubleDelta, ZSTD(1)),
    entries         SimpleAggregateFunction(sum, UInt64),
    exits           SimpleAggregateFunction(sum, UInt64),
    reports         SimpleAggregateFunction(sum, UInt64),
    max_density_ppm2 SimpleAggregateFunction(max, Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (zone_id, hour)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Rollup storage: footfall per zone and hour (read it through footfall_zone_1h)';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_footfall_zone_1h TO agg_footfall_zone_1h AS
SELECT zone_id, toStartOfHour(event_time) AS hour,
       sum(entries) AS entries, sum(exits) AS exits, count() AS reports,
       max(density_ppm2) AS max_density_ppm2
FROM footfall_observed
GROUP BY zone_id, hour
COMMENT 'footfall_observed → agg_footfall_zone_1h';

CREATE TABLE IF NOT EXISTS agg_parking_1h
(
    carpark_id      LowCardinality(String),
    hour            DateTime('${tz}') CODEC(DoubleDelta, ZSTD(1)),
    samples         SimpleAggregateFunction(sum, UInt64),
    occupied_sum    SimpleAggregateFunction(sum, UInt64),
    occupied_min    SimpleAggregateFunction(min, UInt32),
    occupied_max    SimpleAggregateFunction(max, UInt32),
    capacity_max    SimpleAggregateFunction(max, UInt32),
    full_samples    SimpleAggregateFunction(sum, UInt64),
    last_occupied   AggregateFunction(argMax, UInt32, DateTime64(3, '${tz}'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (carpark_id, hour)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Rollup storage: car-park occupancy per hour (read it through parking_1h)';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_parking_1h TO agg_parking_1h AS
SELECT carpark_id, toStartOfHour(event_time) AS hour,
       count() AS samples, sum(occupied) AS occupied_sum,
       min(occupied) AS occupied_min, max(occupied) AS occupied_max, max(capacity) AS capacity_max,
       countIf(status = 'full' OR occupied >= capacity) AS full_samples,
       argMaxState(occupied, event_time) AS last_occupied
FROM parking_observed
GROUP BY carpark_id, hour
COMMENT 'parking_observed → agg_parking_1h';

CREATE TABLE IF NOT EXISTS agg_air_1h
(
    station_id      LowCardinality(String),
    hour            DateTime('${tz}') CODEC(DoubleDelta, ZSTD(1)),
    samples         SimpleAggregateFunction(sum, UInt64),
    pm25_sum        SimpleAggregateFunction(sum, Decimal128(3)),
    pm25_n          SimpleAggregateFunction(sum, UInt64),
    pm10_sum        SimpleAggregateFunction(sum, Decimal128(3)),
    pm10_n          SimpleAggregateFunction(sum, UInt64),
    o3_sum          SimpleAggregateFunction(sum, Decimal128(3)),
    o3_n            SimpleAggregateFunction(sum, UInt64),
    no2_sum         SimpleAggregateFunction(sum, Decimal128(3)),
    no2_n           SimpleAggregateFunction(sum, UInt64),
    so2_sum         SimpleAggregateFunction(sum, Decimal128(3)),
    so2_n           SimpleAggregateFunction(sum, UInt64),
    co_sum          SimpleAggregateFunction(sum, Decimal128(3)),
    co_n            SimpleAggregateFunction(sum, UInt64),
    temperature_sum SimpleAggregateFunction(sum, Decimal128(3)),
    temperature_n   SimpleAggregateFunction(sum, UInt64),
    humidity_sum    SimpleAggregateFunction(sum, Decimal128(3)),
    humidity_n      SimpleAggregateFunction(sum, UInt64),
    humidity_max    SimpleAggregateFunction(max, Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (station_id, hour)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Rollup storage: air quality per station and hour, exact decimal sums (read it through air_quality_1h)';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_air_1h TO agg_air_1h AS
SELECT station_id, toStartOfHour(event_time) AS hour, count() AS samples,
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
COMMENT 'air_quality_observed → agg_air_1h';

CREATE TABLE IF NOT EXISTS agg_incidents_1h
(
    zone_id         LowCardinality(String),
    incident_type   LowCardinality(String),
    hour            DateTime('${tz}') CODEC(DoubleDelta, ZSTD(1)),
    updates         SimpleAggregateFunction(sum, UInt64),
    reported        SimpleAggregateFunction(sum, UInt64),
    dispatched      SimpleAggregateFunction(sum, UInt64),
    on_scene        SimpleAggregateFunction(sum, UInt64),
    resolved        SimpleAggregateFunction(sum, UInt64),
    cancelled       SimpleAggregateFunction(sum, UInt64),
    severe_reported SimpleAggregateFunction(sum, UInt64),
    incidents       AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (zone_id, incident_type, hour)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Rollup storage: incident updates per zone, type and hour (read it through incidents_1h)';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_incidents_1h TO agg_incidents_1h AS
SELECT zone_id, incident_type, toStartOfHour(event_time) AS hour, count() AS updates,
       countIf(status = 'reported') AS reported, countIf(status = 'dispatched') AS dispatched,
       countIf(status = 'on_scene') AS on_scene, countIf(status = 'resolved') AS resolved,
       countIf(status = 'cancelled') AS cancelled,
       countIf(status = 'reported' AND severity IN ('high', 'critical')) AS severe_reported,
       uniqExactState(incident_id) AS incidents
FROM incidents_reported
GROUP BY zone_id, incident_type, hour
COMMENT 'incidents_reported → agg_incidents_1h';

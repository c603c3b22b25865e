-- Raw feed tables: one row per validated event, the feed models of cityops/core/feeds.py
-- flattened (position → lat / lon). Column names follow the wire contract; ALIAS columns give
-- the FIWARE Smart Data Model names (snake_case) where a counterpart exists.
-- Duplicates: ReplacingMergeTree keyed by the event's identity (ORDER BY ends in event_id) for
-- re-sent events, plus insert deduplication (non_replicated_deduplication_window) so a
-- retried batch is skipped as a whole, including by the rollup materialized views.
-- Raw TTL (CITYOPS_RAW_TTL_DAYS) is applied by `cityops warehouse migrate` after the versions.

CREATE TABLE IF NOT EXISTS footfall_observed
(
    event_id        String CODEC(ZSTD(1)),
    schema_version  UInt8 DEFAULT 1,
    source          LowCardinality(String) COMMENT 'counter id',
    zone_id         LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'end of the counting interval',
    lat             Nullable(Float64),
    lon             Nullable(Float64),
    entries         UInt32 CODEC(T64, ZSTD(1)),
    exits           UInt32 CODEC(T64, ZSTD(1)),
    interval_s      UInt16 CODEC(T64, ZSTD(1)),
    dwell_s         Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    density_ppm2    Nullable(Float32) CODEC(Gorilla, ZSTD(1)) COMMENT 'persons per m²',
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    date_observed   DateTime64(3, '${tz}') ALIAS event_time COMMENT 'FIWARE CrowdFlowObserved.dateObserved',
    ref_device      String ALIAS source COMMENT 'FIWARE refDevice',
    people_count    UInt32 ALIAS entries COMMENT 'FIWARE CrowdFlowObserved.peopleCount (entries)',
    occupancy       Nullable(Float32) ALIAS density_ppm2 COMMENT 'FIWARE CrowdFlowObserved.occupancy as density'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (zone_id, event_time, source, event_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Raw footfall counter reports (FootfallObserved); one row per event_id';

CREATE TABLE IF NOT EXISTS parking_observed
(
    event_id        String CODEC(ZSTD(1)),
    schema_version  UInt8 DEFAULT 1,
    source          LowCardinality(String) COMMENT 'sensor id',
    carpark_id      LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    lat             Nullable(Float64),
    lon             Nullable(Float64),
    capacity        UInt32 CODEC(T64, ZSTD(1)),
    occupied        UInt32 CODEC(T64, ZSTD(1)),
    free            Nullable(UInt32) CODEC(T64, ZSTD(1)),
    status          LowCardinality(String) COMMENT 'open | almost_full | full | closed | unknown',
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    date_observed   DateTime64(3, '${tz}') ALIAS event_time COMMENT 'FIWARE OffStreetParking.dateObserved',
    total_spot_number     UInt32 ALIAS capacity COMMENT 'FIWARE OffStreetParking.totalSpotNumber',
    occupied_spot_number  UInt32 ALIAS occupied COMMENT 'FIWARE OffStreetParking.occupiedSpotNumber',
    available_spot_number Int64 ALIAS ifNull(toInt64(free), toInt64(capacity) - toInt64(occupied)) COMMENT 'FIWARE OffStreetParking.availableSpotNumber',
    occupancy_rate  Float64 ALIAS occupied / capacity COMMENT 'FIWARE OffStreetParking.occupancy (0..1)'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (carpark_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Raw car-park occupancy observations (ParkingObserved); one row per event_id';

CREATE TABLE IF NOT EXISTS air_quality_observed
(
    event_id        String CODEC(ZSTD(1)),
    schema_version  UInt8 DEFAULT 1,
    source          LowCardinality(String),
    station_id      LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'end of the averaging period',
    lat             Nullable(Float64),
    lon             Nullable(Float64),
    averaging_s     UInt32 CODEC(T64, ZSTD(1)),
    pm25_ugm3       Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'µg/m³',
    pm10_ugm3       Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'µg/m³',
    o3_ugm3         Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'µg/m³',
    no2_ugm3        Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'µg/m³',
    so2_ugm3        Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'µg/m³',
    co_mgm3         Nullable(Float64) CODEC(Gorilla, ZSTD(1)) COMMENT 'mg/m³',
    temperature_c   Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    humidity_pct    Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    date_observed   DateTime64(3, '${tz}') ALIAS event_time COMMENT 'FIWARE AirQualityObserved.dateObserved',
    pm25            Nullable(Float64) ALIAS pm25_ugm3 COMMENT 'FIWARE AirQualityObserved.pm25',
    pm10            Nullable(Float64) ALIAS pm10_ugm3 COMMENT 'FIWARE AirQualityObserved.pm10',
    o3              Nullable(Float64) ALIAS o3_ugm3 COMMENT 'FIWARE AirQualityObserved.o3',
    no2             Nullable(Float64) ALIAS no2_ugm3 COMMENT 'FIWARE AirQualityObserved.no2',
    so2             Nullable(Float64) ALIAS so2_ugm3 COMMENT 'FIWARE AirQualityObserved.so2',
    co              Nullable(Float64) ALIAS co_mgm3 COMMENT 'FIWARE AirQualityObserved.co',
    temperature     Nullable(Float32) ALIAS temperature_c COMMENT 'FIWARE AirQualityObserved.temperature',
    relative_humidity Nullable(Float64) ALIAS humidity_pct / 100 COMMENT 'FIWARE AirQualityObserved.relativeHumidity (0..1)'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (station_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Raw air-quality observations (AirQualityObserved); one row per event_id';

CREATE TABLE IF NOT EXISTS incidents_reported
(
    event_id        String CODEC(ZSTD(1)),
    schema_version  UInt8 DEFAULT 1,
    source          LowCardinality(String),
    incident_id     String CODEC(ZSTD(1)),
    incident_type   LowCardinality(String),
    severity        LowCardinality(String) COMMENT 'low | medium | high | critical',
    zone_id         LowCardinality(String),
    status          LowCardinality(String) COMMENT 'reported | dispatched | on_scene | resolved | cancelled',
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    lat             Nullable(Float64),
    lon             Nullable(Float64),
    description     Nullable(String) CODEC(ZSTD(3)),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    date_observed   DateTime64(3, '${tz}') ALIAS event_time COMMENT 'FIWARE Alert.dateIssued',
    category        String ALIAS incident_type COMMENT 'FIWARE Alert.subCategory'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (zone_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Raw incident status updates (IncidentReported); several rows per incident_id, one per event_id';

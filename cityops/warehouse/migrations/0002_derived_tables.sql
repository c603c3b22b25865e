-- Derived records of cityops/streams/records.py, one table each (the record's `table`).
-- ReplacingMergeTree keyed by the record's identity (the parts of record_id()), so re-inserting
-- a record with the same record_id and a higher revision / emitted_at replaces it: windows
-- updated by late events keep only their newest revision. Read with FINAL (or the *_latest
-- views) for exact current values.

CREATE TABLE IF NOT EXISTS footfall_windows
(
    record_id       String CODEC(ZSTD(1)),
    zone_id         LowCardinality(String),
    window          LowCardinality(String) COMMENT 'tumbling_1m | hopping_5m',
    window_start    DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    window_end      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    entries         UInt32 CODEC(T64, ZSTD(1)),
    exits           UInt32 CODEC(T64, ZSTD(1)),
    events          UInt32 CODEC(T64, ZSTD(1)),
    net_presence    Float64 CODEC(Gorilla, ZSTD(1)),
    density_ppm2    Float64 CODEC(Gorilla, ZSTD(1)),
    revision        UInt32,
    emitted_at      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3),
    _version        UInt64 MATERIALIZED toUInt64(revision) * 10000000000000 + toUInt64(toUnixTimestamp64Milli(emitted_at))
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (zone_id, window, window_start)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Stream footfall windows per zone (FootfallWindow); newest revision wins';

CREATE TABLE IF NOT EXISTS parking_states
(
    record_id       String CODEC(ZSTD(1)),
    carpark_id      LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    capacity        UInt32,
    occupied        UInt32 CODEC(T64, ZSTD(1)),
    occupancy_rate  Float64 CODEC(Gorilla, ZSTD(1)),
    trend_per_min   Float64 CODEC(Gorilla, ZSTD(1)),
    minutes_to_full Nullable(Float64),
    emitted_at      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(emitted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (carpark_id, event_time)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Stream car-park states with trend and minutes to full (ParkingState)';

CREATE TABLE IF NOT EXISTS air_quality_index
(
    record_id       String CODEC(ZSTD(1)),
    station_id      LowCardinality(String),
    hour_start      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    averaging       LowCardinality(String) COMMENT '1h | 24h',
    pm25_ugm3       Nullable(Float64),
    pm10_ugm3       Nullable(Float64),
    o3_1h_ugm3      Nullable(Float64),
    o3_8h_ugm3      Nullable(Float64),
    no2_ugm3        Nullable(Float64),
    so2_ugm3        Nullable(Float64),
    co_mgm3         Nullable(Float64),
    iaqi            Map(LowCardinality(String), UInt16),
    aqi             Nullable(UInt16),
    primary_pollutants Array(LowCardinality(String)),
    category        LowCardinality(String) COMMENT '优 | 良 | 轻度污染 | 中度污染 | 重度污染 | 严重污染',
    samples         UInt32,
    revision        UInt32,
    emitted_at      DateTime64(3, '${tz}'),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3),
    _version        UInt64 MATERIALIZED toUInt64(revision) * 10000000000000 + toUInt64(toUnixTimestamp64Milli(emitted_at)),
    air_quality_index UInt16 ALIAS ifNull(aqi, 0) COMMENT 'FIWARE AirQualityObserved.airQualityIndex',
    air_quality_level String ALIAS category COMMENT 'FIWARE AirQualityObserved.airQualityLevel'
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (station_id, averaging, hour_start)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Stream AQI per station and hour, HJ 633-2012 (AirQualityIndex); newest revision wins';

CREATE TABLE IF NOT EXISTS incident_stats
(
    record_id       String CODEC(ZSTD(1)),
    zone_id         LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    incident_id     String,
    status          LowCardinality(String),
    open_count      UInt32,
    response_s      Nullable(Float64) COMMENT 'reported → on scene, seconds',
    emitted_at      DateTime64(3, '${tz}'),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(emitted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (zone_id, incident_id, status)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Stream incident statistics per zone after each status update (IncidentStats)';

CREATE TABLE IF NOT EXISTS alerts
(
    record_id       String CODEC(ZSTD(1)),
    alert_id        String,
    rule_id         LowCardinality(String),
    rule_version    LowCardinality(String),
    subject         LowCardinality(String) COMMENT 'zone / car park / station / sensor id',
    kind            LowCardinality(String) COMMENT 'fired | severity_changed | acknowledged | escalated | cleared',
    state           LowCardinality(String) COMMENT 'active_unack | active_ack | cleared_unack | cleared_ack',
    severity        LowCardinality(String) COMMENT 'info | warning | major | critical',
    value           Nullable(Float64),
    threshold       Nullable(Float64),
    message         String CODEC(ZSTD(3)),
    escalation_level UInt8,
    actor           Nullable(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    emitted_at      DateTime64(3, '${tz}'),
    seq             UInt32,
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3),
    date_issued     DateTime64(3, '${tz}') ALIAS event_time COMMENT 'FIWARE Alert.dateIssued',
    alert_source    String ALIAS subject COMMENT 'FIWARE Alert.alertSource',
    sub_category    String ALIAS rule_id COMMENT 'FIWARE Alert.subCategory'
)
ENGINE = ReplacingMergeTree(emitted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (rule_id, subject, alert_id, seq)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Alert lifecycle events (AlertEvent): fired, severity_changed, acknowledged, escalated, cleared';

CREATE TABLE IF NOT EXISTS dead_letters
(
    record_id       String,
    feed            LowCardinality(String),
    reason          LowCardinality(String) COMMENT 'reason code, see docs/feeds.md',
    detail          String CODEC(ZSTD(3)),
    field           String,
    source_topic    LowCardinality(String),
    source_partition Int32,
    source_offset   Int64,
    key_text        Nullable(String),
    raw_b64         String CODEC(ZSTD(3)) COMMENT 'the original bytes, base64',
    received_at     DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    stage           LowCardinality(String) COMMENT 'ingest | replay | intake | stream',
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (feed, record_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Records that failed validation, with reason, raw bytes and source offset (DeadLetter)';

CREATE TABLE IF NOT EXISTS late_events
(
    record_id       String,
    feed            LowCardinality(String),
    event_id        String,
    source          LowCardinality(String),
    event_time      DateTime64(3, '${tz}') CODEC(DoubleDelta, ZSTD(1)),
    watermark       DateTime64(3, '${tz}'),
    lateness_s      Float64,
    payload_json    String CODEC(ZSTD(3)),
    received_at     DateTime64(3, '${tz}'),
    ingested_at     DateTime64(3, '${tz}') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (feed, event_id)
SETTINGS non_replicated_deduplication_window = 10000
COMMENT 'Valid events that arrived after their window''s allowed lateness (LateEvent)';

-- Dimension tables, loaded from the site registry (CITYOPS_REGISTRY_DIR) and the holiday
-- calendar (cityops/warehouse/calendar_cn.yaml) by `cityops warehouse migrate`, which reloads
-- them only when their content hash changes.

CREATE TABLE IF NOT EXISTS dim_zones
(
    zone_id         LowCardinality(String),
    name_zh         String,
    name_en         String,
    kind            LowCardinality(String),
    area_m2         Float64 COMMENT 'walkable area',
    lat             Float64,
    lon             Float64,
    density_warning_ppm2  Nullable(Float64),
    density_critical_ppm2 Nullable(Float64),
    approximate     Bool,
    registry_version LowCardinality(String)
)
ENGINE = MergeTree ORDER BY zone_id
COMMENT 'Pedestrian zones of the site registry';

CREATE TABLE IF NOT EXISTS dim_counters
(
    counter_id      LowCardinality(String),
    zone_id         LowCardinality(String),
    technology      LowCardinality(String),
    cadence_s       UInt32,
    registry_version LowCardinality(String)
)
ENGINE = MergeTree ORDER BY counter_id
COMMENT 'Footfall counters of the site registry';

CREATE TABLE IF NOT EXISTS dim_carparks
(
    carpark_id      LowCardinality(String),
    name_zh         String,
    name_en         String,
    capacity        UInt32,
    ring_road       Bool COMMENT 'reached from the Jiefangbei underground ring road',
    cadence_s       UInt32,
    neighbours      Array(String),
    lat             Float64,
    lon             Float64,
    approximate     Bool,
    registry_version LowCardinality(String)
)
ENGINE = MergeTree ORDER BY carpark_id
COMMENT 'Car parks of the site registry';

CREATE TABLE IF NOT EXISTS dim_stations
(
    station_id      LowCardinality(String),
    name_zh         String,
    name_en         String,
    kind            LowCardinality(String) COMMENT 'national | micro',
    cadence_s       UInt32,
    zone_id         Nullable(String),
    lat             Float64,
    lon             Float64,
    approximate     Bool,
    registry_version LowCardinality(String)
)
ENGINE = MergeTree ORDER BY station_id
COMMENT 'Air-quality stations of the site registry';

CREATE TABLE IF NOT EXISTS dim_calendar
(
    date            Date,
    weekday         UInt8 COMMENT '1 = Monday … 7 = Sunday',
    is_weekend      Bool,
    is_holiday      Bool COMMENT 'official public holiday (法定节假日, incl. bridging days off)',
    holiday_name    LowCardinality(String),
    is_workday      Bool COMMENT 'a working day, incl. weekend make-up days (调休上班)'
)
ENGINE = MergeTree ORDER BY date
COMMENT 'Calendar of mainland-China public holidays and make-up working days';

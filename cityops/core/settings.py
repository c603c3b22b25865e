"""Settings: one frozen pydantic-settings model read from ``CITYOPS_*`` variables and ``.env``.

Every field names the environment variable it reads. Defaults are safe for a laptop: a local
broker on loopback, the embedded chdb warehouse under ``./.cityops-data``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from cityops.core import topics
from cityops.core.exceptions import SettingsError
from cityops.core.secrets import MASK, read_secret_file, redact_url, split_url_password
from cityops.core.topics import FEEDS as FEEDS  # re-exported: callers import it from here

ENV_PREFIX = "CITYOPS_"
PACKAGED_REGISTRY = Path(__file__).resolve().parent.parent / "registry_data" / "yuzhong"
WAREHOUSE_SCHEMES = ("chdb", "clickhouse")
#: what one streams worker runs (``CITYOPS_WORKER_STAGES``)
WorkerStages = Literal["all", "validation", "aggregation"]


#: the district's zone unless CITYOPS_TIMEZONE says otherwise; pure code that needs a default
#: zone (the aggregators, built by the worker with ``Settings.tz``) takes this one
DEFAULT_TIMEZONE = "Asia/Shanghai"


class Settings(BaseSettings):
    """All runtime configuration. Field ``x`` reads ``CITYOPS_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", frozen=True,
        extra="ignore",
    )

    # --- local state ---------------------------------------------------------------------
    data_dir: Path = Field(Path(".cityops-data"), description="CITYOPS_DATA_DIR: local data")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "cityops",
        description="CITYOPS_CACHE_DIR: downloads reused across clones (Kafka jars)",
    )
    registry_dir: Path = Field(
        PACKAGED_REGISTRY, description="CITYOPS_REGISTRY_DIR: site registry folder"
    )
    timezone: str = Field(DEFAULT_TIMEZONE, description="CITYOPS_TIMEZONE: district time zone")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="CITYOPS_LOG_LEVEL"
    )
    log_format: Literal["json", "console"] = Field("console", description="CITYOPS_LOG_FORMAT")

    # --- Kafka -----------------------------------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="CITYOPS_KAFKA_SECURITY_PROTOCOL: SASL_SSL on shared networks"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="CITYOPS_KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str = Field("cityops", description="CITYOPS_KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="CITYOPS_KAFKA_SASL_PASSWORD (or _FILE)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="CITYOPS_KAFKA_SSL_CAFILE: PEM of the CA (or self-signed broker "
        "certificate) clients trust; empty means the system store"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="CITYOPS_KAFKA_SSL_CHECK_HOSTNAME: verify the broker's name"
    )
    kafka_bootstrap_servers: str = Field(
        "", description="CITYOPS_KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port]; "
        "empty means the local broker on kafka_port"
    )
    kafka_port: int = Field(19092, ge=1024, le=65534, description="CITYOPS_KAFKA_PORT")
    kafka_version: str = Field("3.9.1", description="CITYOPS_KAFKA_VERSION (Maven Central)")
    kafka_heap_mb: int = Field(512, ge=128, le=8192, description="CITYOPS_KAFKA_HEAP_MB")
    kafka_start_timeout_s: float = Field(120.0, gt=0, description="CITYOPS_KAFKA_START_TIMEOUT_S")
    topic_partitions: int = Field(3, ge=1, le=256, description="CITYOPS_TOPIC_PARTITIONS")
    kafka_local_brokers: int = Field(
        1, ge=1, le=5, description="CITYOPS_KAFKA_LOCAL_BROKERS: brokers `cityops kafka up` "
        "runs as one cluster (3: replication factor 3, min.insync.replicas 2)")
    topic_replication: int = Field(1, ge=1, le=5, description="CITYOPS_TOPIC_REPLICATION")
    topic_min_insync_replicas: int = Field(
        1, ge=1, le=5, description="CITYOPS_TOPIC_MIN_INSYNC_REPLICAS: replicas that must "
        "hold a write before acks=all succeeds")
    topic_prefix: str = Field(
        "cityops", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="CITYOPS_TOPIC_PREFIX"
    )
    max_message_bytes: int = Field(
        1_000_000, ge=1024, le=10_000_000, description="CITYOPS_MAX_MESSAGE_BYTES"
    )

    # --- feed contracts ----------------------------------------------------------------------
    max_clock_skew_s: float = Field(
        300.0, ge=0, le=86_400, description="CITYOPS_MAX_CLOCK_SKEW_S: future tolerance"
    )
    occupancy_tolerance: float = Field(
        0.02, ge=0, le=0.5, description="CITYOPS_OCCUPANCY_TOLERANCE: occupied ≤ capacity×(1+t)"
    )

    # --- ingest (simulators, producers, replay, HTTP intake) -----------------------------------
    ingest_acks: Literal["all", "1", "0"] = Field(
        "all", description="CITYOPS_INGEST_ACKS: producer acknowledgements (all = every ISR)"
    )
    ingest_compression: Literal["lz4", "gzip", "none"] = Field(
        "lz4", description="CITYOPS_INGEST_COMPRESSION: producer batch compression"
    )
    ingest_linger_ms: int = Field(
        20, ge=0, le=10_000, description="CITYOPS_INGEST_LINGER_MS: wait to fill a batch"
    )
    ingest_batch_bytes: int = Field(
        262_144, ge=1024, le=16_777_216,
        description="CITYOPS_INGEST_BATCH_BYTES: producer batch size per partition",
    )
    ingest_max_in_flight: int = Field(
        50_000, ge=1, le=10_000_000,
        description="CITYOPS_INGEST_MAX_IN_FLIGHT: records sent but not yet acknowledged; "
        "send() blocks (backpressure) when reached",
    )
    ingest_delivery_timeout_ms: int = Field(
        120_000, ge=1000, le=3_600_000,
        description="CITYOPS_INGEST_DELIVERY_TIMEOUT_MS: a record not acknowledged by then "
        "is counted as a delivery failure",
    )
    ingest_max_block_ms: int = Field(
        60_000, ge=100, le=3_600_000,
        description="CITYOPS_INGEST_MAX_BLOCK_MS: longest send() waits for metadata or room",
    )
    ingest_rate: float = Field(
        0.0, ge=0, description="CITYOPS_INGEST_RATE: target events/s per producer; 0 = unlimited"
    )
    ingest_seed: int = Field(20_261_001, description="CITYOPS_INGEST_SEED: simulator seed")
    intake_host: str = Field("127.0.0.1", description="CITYOPS_INTAKE_HOST: HTTP intake bind")
    intake_port: int = Field(8088, ge=1, le=65535, description="CITYOPS_INTAKE_PORT")
    intake_max_batch: int = Field(
        5000, ge=1, le=100_000, description="CITYOPS_INTAKE_MAX_BATCH: records per request"
    )
    intake_max_body_bytes: int = Field(
        16_000_000, ge=1024, le=1_000_000_000,
        description="CITYOPS_INTAKE_MAX_BODY_BYTES: larger request bodies get 413",
    )
    intake_max_pending: int = Field(
        20_000, ge=1, le=10_000_000,
        description="CITYOPS_INTAKE_MAX_PENDING: records awaiting Kafka acks across requests; "
        "beyond it requests get 503 + Retry-After",
    )
    intake_ack_timeout_s: float = Field(
        30.0, gt=0, le=600, description="CITYOPS_INTAKE_ACK_TIMEOUT_S: wait for Kafka acks"
    )

    # --- warehouse ---------------------------------------------------------------------------
    warehouse_url: str = Field(
        "", description="CITYOPS_WAREHOUSE_URL: chdb:///path or clickhouse://user@host:9000/db"
        "; empty means chdb under data_dir. A password written in the URL is moved to "
        "warehouse_password, so the URL itself is never secret"
    )
    warehouse_password: SecretStr = Field(
        SecretStr(""), description="CITYOPS_WAREHOUSE_PASSWORD (or _FILE): ClickHouse password"
    )
    raw_ttl_days: int = Field(
        400, ge=0, le=36_500, description="CITYOPS_RAW_TTL_DAYS: days raw feed rows are kept "
        "(0 keeps them forever); rollups are kept without TTL"
    )
    warehouse_insert_retries: int = Field(
        5, ge=0, le=50, description="CITYOPS_WAREHOUSE_INSERT_RETRIES: retries on transient errors"
    )
    warehouse_retry_backoff_s: float = Field(
        0.2, ge=0, le=60, description="CITYOPS_WAREHOUSE_RETRY_BACKOFF_S: first backoff, doubled"
    )
    clickhouse_server_compression: Literal["lz4", "zstd", "none"] = Field(
        "lz4", description="CITYOPS_CLICKHOUSE_SERVER_COMPRESSION: native-protocol compression"
    )
    clickhouse_server_timeout_s: float = Field(
        10.0, gt=0, le=600, description="CITYOPS_CLICKHOUSE_SERVER_TIMEOUT_S: connect timeout"
    )
    sql_max_result_rows: int = Field(
        1_000_000, ge=1, description="CITYOPS_SQL_MAX_RESULT_ROWS: `cityops sql` row limit"
    )
    sql_max_execution_s: float = Field(
        120.0, gt=0, description="CITYOPS_SQL_MAX_EXECUTION_S: `cityops sql` time limit"
    )
    worker_sql_url: str = Field(
        "", description="CITYOPS_WORKER_SQL_URL: read-only SQL endpoint of a running worker that "
        "holds the embedded warehouse; empty means look for its pid file"
    )

    # --- doors and keys ------------------------------------------------------------------------
    keys_file: Path | None = Field(
        None, description="CITYOPS_KEYS_FILE: hashed intake keys and worker tokens "
        "(`cityops keys`); empty means <data_dir>/keys.json"
    )
    worker_token: SecretStr = Field(
        SecretStr(""), description="CITYOPS_WORKER_TOKEN (or _FILE): bearer token the CLI and "
        "terminal views send to the worker's web endpoints"
    )
    worker_web_open_probes: bool = Field(
        False, description="CITYOPS_WORKER_WEB_OPEN_PROBES: leave /health and /metrics open "
        "(no token) for load-balancer and Prometheus probes"
    )

    # --- streams worker (Faust pipeline + warehouse sink) -----------------------------------
    worker_app_id: str = Field(
        "streams", pattern=r"^[A-Za-z0-9._-]{1,60}$",
        description="CITYOPS_WORKER_APP_ID: Faust app id; consumer groups and changelog topics "
        "are named <topic_prefix>.<app id>",
    )
    worker_web_host: str = Field("127.0.0.1", description="CITYOPS_WORKER_WEB_HOST: web bind")
    worker_web_port: int = Field(
        6066, ge=1024, le=65535, description="CITYOPS_WORKER_WEB_PORT: health/metrics/sql/alerts"
    )
    worker_sink: bool = Field(
        True, description="CITYOPS_WORKER_SINK: run the warehouse sink inside the worker; off "
        "when a separate `cityops sink` writes the warehouse (several workers)",
    )
    worker_stages: WorkerStages = Field(
        "all",
        description="CITYOPS_WORKER_STAGES: which steps this worker runs. all: validation, "
        "aggregation and the alert engine in one process. validation: raw → clean, dead "
        "letters and dedup only; aggregation: clean → windows, rollups and the alert engine. "
        "Run one of each (or several) to put the two steps on different CPUs; each kind is "
        "its own consumer group (<topic_prefix>.<app id>.<stages>), the state logs are shared",
    )
    worker_batch_max: int = Field(
        2000, ge=1, le=100_000,
        description="CITYOPS_WORKER_BATCH_MAX: most records per agent step (live, a step holds "
        "what arrived; behind a backlog, this many). A step's outputs, dedup deltas and "
        "state go in one wait, so fewer, fuller steps cost the worker, the broker and the "
        "sink less CPU per event",
    )
    worker_batch_s: float = Field(
        0.2, gt=0, le=60, description="CITYOPS_WORKER_BATCH_S: max wait to fill a step"
    )
    worker_commit_interval_s: float = Field(
        1.0, gt=0, le=60, description="CITYOPS_WORKER_COMMIT_INTERVAL_S: Faust offset commits"
    )
    worker_step_timeout_s: float = Field(
        600.0, ge=1, le=3600,
        description="CITYOPS_WORKER_STEP_TIMEOUT_S: longest an agent step may take to deliver "
        "its outputs and state; past it the worker exits uncommitted and its supervisor "
        "restarts it (a replay), as when a delivery fails. A bound for a hang, far above a "
        "slow step (a big replay on a loaded host took over 60 s)",
    )
    worker_recovery_stall_s: float = Field(
        120.0, ge=10, le=3600,
        description="CITYOPS_WORKER_RECOVERY_STALL_S: a read of stage state (dedup, "
        "aggregation, alert engine) that receives nothing from the broker for this long "
        "while records are due fails its step, and the worker exits for a supervised restart",
    )
    worker_session_timeout_s: float = Field(
        10.0, ge=6, le=300,
        description="CITYOPS_WORKER_SESSION_TIMEOUT_S: consumer-group session timeout; a "
        "killed worker's partitions move (or return to it) after this long",
    )
    worker_fetch_max_wait_ms: int = Field(
        100, ge=10, le=5000,
        description="CITYOPS_WORKER_FETCH_MAX_WAIT_MS: longest a worker fetch waits for data "
        "(latency per hop; Faust's own default is 1500)",
    )
    worker_direct_dispatch: bool = Field(
        True,
        description="CITYOPS_WORKER_DIRECT_DISPATCH: fetched batches go straight to the "
        "stages' steps (streams.dispatch) instead of through Faust's per-message conductor, "
        "channels and streams; off restores Faust's own delivery",
    )
    worker_align_ms: int = Field(
        50, ge=0, le=3_600_000,
        description="CITYOPS_WORKER_ALIGN_MS: how far (broker record time) a raw partition "
        "may run ahead of the oldest raw partition of its feed still behind before it is "
        "paused, so a backlog is read in about the order it was written and the zones' "
        "windows wait for no far-behind counter; 0: off",
    )
    worker_align_live_ms: int = Field(
        5_000, ge=0, le=3_600_000,
        description="CITYOPS_WORKER_ALIGN_LIVE_MS: a raw partition whose last record handed "
        "over was written less than this long ago (wall clock) is live, never held back for "
        "alignment: only a backlog is read in write order; 0: every partition far from its "
        "end counts as behind",
    )
    worker_reuse_events: int = Field(
        20_000, ge=0, le=1_000_000,
        description="CITYOPS_WORKER_REUSE_EVENTS: clean events per feed a worker keeps, from its "
        "validation step's write to its aggregation step's read of the same record, so "
        "that step takes them instead of decoding the record again (streams.written); 0 "
        "decodes every record",
    )
    worker_poll_records: int = Field(
        8000, ge=100, le=1_000_000,
        description="CITYOPS_WORKER_POLL_RECORDS: most records one fetch hands over (the "
        "rest stay buffered for the next); bounds how far one partition can run ahead "
        "between alignments",
    )
    worker_producer_linger_ms: float = Field(
        5.0, ge=0, le=1000,
        description="CITYOPS_WORKER_PRODUCER_LINGER_MS: how long the worker's producer gathers "
        "records into one produce request; 0 sent a request per record at a few hundred "
        "events/s, which cost more CPU than everything else in the worker. A step's own "
        "outputs and state go in closed batches, sent at once",
    )
    worker_producer_batch_bytes: int = Field(
        1_048_576, ge=16_384, le=16_777_216,
        description="CITYOPS_WORKER_PRODUCER_BATCH_BYTES: largest batch per partition in one "
        "produce request",
    )
    gc_gen0_threshold: int = Field(
        50_000, ge=0, le=10_000_000,
        description="CITYOPS_GC_GEN0_THRESHOLD: allocations between the worker's and the "
        "sink's young-generation garbage collections (start-up objects are frozen); 0 keeps "
        "Python's own 700, which cost the worker about 10 % more CPU per event",
    )
    kafka_fast_records: bool = Field(
        True, description="CITYOPS_KAFKA_FAST_RECORDS: kafka-python consumers (the warehouse "
        "sink, state-log reads) read fetched record batches with aiokafka's C reader instead "
        "of kafka-python's Python parser (about 3 µs of CPU per record instead of 7.5); false "
        "keeps kafka-python's own",
    )
    sink_fetch_min_bytes: int = Field(
        262_144, ge=1, le=52_428_800,
        description="CITYOPS_SINK_FETCH_MIN_BYTES: the broker holds a sink fetch until this "
        "much is there or CITYOPS_WORKER_FETCH_MAX_WAIT_MS has passed. A sink that keeps up "
        "with a fast stream otherwise fetches a few records at a time, each fetch and poll "
        "costing it and the broker CPU: in 1 M-event drains 256 KiB took the sink 43-44 µs "
        "of CPU per event instead of 47-48 and the broker 15-16 instead of 18-20; 1 fetches "
        "whatever is there at once",
    )
    sink_batch_rows: int = Field(
        20_000, ge=1, le=1_000_000,
        description="CITYOPS_SINK_BATCH_ROWS: most rows of a live warehouse batch. High enough "
        "that a fast stream's batches are bounded by CITYOPS_SINK_BATCH_S, not by rows: each "
        "embedded insert and stored-ids query costs 10-60 ms whatever its size, and with 5,000 "
        "the sink behind a validation worker's 16,000 events/s wrote three batches a second "
        "(48-50 µs of CPU per event in 1 M-event drains, 38-41 with 20,000)",
    )
    sink_batch_s: float = Field(
        0.5, gt=0, le=300,
        description="CITYOPS_SINK_BATCH_S: max age of a live warehouse batch; the sink writes "
        "every max(this, one flush), so a row waits about half of it plus a flush (1.0 gave a "
        "median of 0.7 s produced → visible at 1,000 events/s, 0.5 gives 0.36–0.39 s)",
    )
    sink_backlog_batch_s: float = Field(
        2.0, ge=0, le=300,
        description="CITYOPS_SINK_BACKLOG_BATCH_S: a record that had waited this long when "
        "the sink read it starts a backlog batch, which gathers this long and up to "
        "CITYOPS_SINK_BACKLOG_BATCH_ROWS (fewer, larger inserts catch up sooner: 59–60 "
        "instead of 65–72 µs of sink CPU per event in 1 M-event drains); not above "
        "CITYOPS_SINK_BATCH_S: off",
    )
    sink_backlog_batch_rows: int = Field(
        20_000, ge=1, le=1_000_000,
        description="CITYOPS_SINK_BACKLOG_BATCH_ROWS: rows per backlog batch (at least "
        "CITYOPS_SINK_BATCH_ROWS)",
    )
    sink_derived_batch_s: float = Field(
        2.0, ge=0, le=300,
        description="CITYOPS_SINK_DERIVED_BATCH_S: max age of a live batch of derived records "
        "(windows, states, indexes, alerts, dead letters, late events); they are written "
        "after the events' batch that finds them due, so most event batches write only the "
        "raw tables. 0 writes them with every events' batch",
    )
    stream_dedup_horizon_s: float = Field(
        3_600.0, gt=0, le=30 * 86_400,
        description="CITYOPS_STREAM_DEDUP_HORIZON_S: how far behind a partition's newest event "
        "time (event time) a repeated event_id is still caught as a duplicate; at least the "
        "allowed lateness. Older copies are routed by the windows as late, and the warehouse "
        "keeps one row per event_id whatever the horizon",
    )
    stream_dedup_bucket_s: float = Field(
        60.0, gt=0, le=3_600,
        description="CITYOPS_STREAM_DEDUP_BUCKET_S: event-time bucket of the dedup memory; ids "
        "are forgotten a bucket at a time",
    )
    stream_allowed_lateness_s: float = Field(
        120.0, ge=0, le=86_400,
        description="CITYOPS_STREAM_ALLOWED_LATENESS_S: late events within this update windows",
    )
    incident_expire_after_s: float = Field(
        86_400.0, ge=0, le=90 * 86_400,
        description="CITYOPS_INCIDENT_EXPIRE_AFTER_S: an incident still open with no update "
        "for this long of event time is closed without word (an agg.incidents record with "
        "status expired; its alert clears): a feed that never sends the closing update would "
        "keep it open for good, and every step would snapshot it again. 0: never",
    )
    stream_idle_close_s: float = Field(
        60.0, ge=0, le=86_400,
        description="CITYOPS_STREAM_IDLE_CLOSE_S: a timer closes windows of idle "
        "zones once the feed's event time is this far past their lateness; 0 disables",
    )
    stream_source_idle_intervals: float = Field(
        4.0, gt=0, le=1000,
        description="CITYOPS_STREAM_SOURCE_IDLE_INTERVALS: a counter silent (wall clock) for "
        "this many of its own reporting intervals stops holding its zone's watermark back",
    )
    alert_tick_s: float = Field(
        5.0, gt=0, le=3600, description="CITYOPS_ALERT_TICK_S: alert engine timer period"
    )
    alert_clock: Literal["wall", "event"] = Field(
        "wall", description="CITYOPS_ALERT_CLOCK: tick() time: wall clock, or the latest event "
        "time seen (deterministic replays and tests)",
    )
    heartbeat_every_s: float = Field(
        30.0, ge=0, le=3600,
        description="CITYOPS_HEARTBEAT_EVERY_S: per-source heartbeat to the alert engine "
        "(event time)",
    )

    # --- streams: domain logic (AQI, footfall presence, alert rules, webhooks) --------------
    alert_rules: Path | None = Field(
        None, description="CITYOPS_ALERT_RULES: alert rules YAML; empty means the packaged "
        "cityops/streams/alerts/rules.yaml",
    )
    alert_webhook_urls: list[SecretStr] = Field(
        default_factory=list,
        description="CITYOPS_ALERT_WEBHOOK_URLS (or _FILE): JSON list of webhook URLs (secret: "
        "they carry the bot's access key); WeCom / DingTalk style chosen by host, or by a "
        "'wecom+' / 'dingtalk+' / 'json+' prefix",
    )
    alert_webhook_timeout_s: float = Field(
        5.0, gt=0, le=120, description="CITYOPS_ALERT_WEBHOOK_TIMEOUT_S: per HTTP attempt"
    )
    alert_webhook_attempts: int = Field(
        4, ge=1, le=20, description="CITYOPS_ALERT_WEBHOOK_ATTEMPTS: tries per event"
    )
    alert_webhook_queue_size: int = Field(
        1000, ge=1, le=1_000_000,
        description="CITYOPS_ALERT_WEBHOOK_QUEUE_SIZE: events buffered per webhook; beyond "
        "it new events are dropped and counted, never blocking the stream",
    )
    alert_webhook_max_age_s: float = Field(
        3600.0, ge=0, le=30 * 86_400,
        description="CITYOPS_ALERT_WEBHOOK_MAX_AGE_S: alert events whose event time is older "
        "than this by the wall clock are stored but not sent to the webhooks (a backfill or a "
        "long catch-up replays history), and the engine escalates no alert none of whose "
        "events was sent; 0 sends every event",
    )
    alert_review_max_age_s: float = Field(
        86_400.0, ge=0, le=366 * 86_400,
        description="CITYOPS_ALERT_REVIEW_MAX_AGE_S: an alert none of whose events was sent "
        "(all older than CITYOPS_ALERT_WEBHOOK_MAX_AGE_S) that fired longer ago than this "
        "closes when it clears, with no acknowledgement awaited: a backfill's history needs "
        "no review, while the alerts of a catch-up after a shorter outage wait for one; 0: "
        "every cleared alert waits for acknowledgement",
    )
    footfall_presence_half_life_s: float = Field(
        6 * 3600.0, ge=0, description="CITYOPS_FOOTFALL_PRESENCE_HALF_LIFE_S: decay of the "
        "net presence estimate (bounds counter drift); 0 disables",
    )
    footfall_presence_reset_hour: int | None = Field(
        5, ge=0, le=23, description="CITYOPS_FOOTFALL_PRESENCE_RESET_HOUR: local hour the "
        "presence estimate resets to 0 daily; empty disables",
    )

    # --- Grafana -----------------------------------------------------------------------------
    grafana_url: str = Field("http://127.0.0.1:3000", description="CITYOPS_GRAFANA_URL")
    grafana_token: SecretStr = Field(
        SecretStr(""), description="CITYOPS_GRAFANA_TOKEN (or _FILE)"
    )
    grafana_clickhouse_user: str = Field(
        "cityops_reader", description="CITYOPS_GRAFANA_CLICKHOUSE_USER: read-only ClickHouse "
        "user of the Grafana datasource")
    grafana_clickhouse_password: SecretStr = Field(
        SecretStr(""), description="CITYOPS_GRAFANA_CLICKHOUSE_PASSWORD: its password (secret)")
    board_refresh_s: int = Field(
        5, ge=5, le=10, description="CITYOPS_BOARD_REFRESH_S: refresh of the live boards "
        "(Grafana and the terminal board), 5-10 s")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files_and_urls(cls, data: object) -> object:
        """Read ``CITYOPS_<SECRET>_FILE`` and move a password out of the warehouse URL."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in secret_fields():
            var = f"{ENV_PREFIX}{name.upper()}_FILE"
            path = os.environ.get(var)
            if not path:
                continue
            if data.get(name) not in (None, "", []):
                raise ValueError(f"set {ENV_PREFIX}{name.upper()} or {var}, not both")
            try:
                text = read_secret_file(path)
            except OSError as exc:
                raise ValueError(f"{var}: cannot read {path} ({exc.strerror})") from None
            data[name] = _parse_list(text, var) if _is_list(name) else text
        url = data.get("warehouse_url")
        if isinstance(url, str) and url:
            try:
                bare, password = split_url_password(url)
            except ValueError:
                raise ValueError("CITYOPS_WAREHOUSE_URL is not a URL") from None
            if password is not None:
                given = data.get("warehouse_password")
                if given not in (None, ""):
                    raise ValueError("a password in CITYOPS_WAREHOUSE_URL and "
                                     "CITYOPS_WAREHOUSE_PASSWORD: give it once")
                data["warehouse_url"] = bare
                data["warehouse_password"] = unquote(password)
        return data

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai)") from exc
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_scheme(cls, value: str) -> str:
        if value and urlparse(value).scheme not in WAREHOUSE_SCHEMES:
            raise ValueError(
                f"scheme must be one of {', '.join(s + '://' for s in WAREHOUSE_SCHEMES)}"
            )
        try:  # read when connecting: a bad port was a traceback there
            _ = urlparse(value).port
        except ValueError:
            raise ValueError("the port must be a number from 0 to 65535") from None
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_format(cls, value: str) -> str:
        for part in filter(None, value.split(",")):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _registry_exists(self) -> Settings:
        if not self.registry_dir.is_dir():
            raise ValueError(f"registry_dir {self.registry_dir} is not a folder")
        return self

    @model_validator(mode="after")
    def _dedup_covers_lateness(self) -> Settings:
        if self.stream_dedup_horizon_s < self.stream_allowed_lateness_s:
            raise ValueError(
                f"stream_dedup_horizon_s ({self.stream_dedup_horizon_s:g}) must be at least "
                f"stream_allowed_lateness_s ({self.stream_allowed_lateness_s:g}): a duplicate "
                "that is not late would otherwise be counted twice")
        return self

    # --- derived values ------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """Broker list clients use; the local broker(s) when none is configured (node ``i`` of
        a local cluster listens on ``kafka_port + 2i``)."""
        return self.kafka_bootstrap_servers or ",".join(
            f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.kafka_local_brokers))

    @property
    def kafka_max_batch_bytes(self) -> int:
        """Largest record batch the broker and topics accept and the worker's producer sends:
        room for a dead letter that wraps a message at the limit (twice the limit), and never
        below Kafka's own default (1 MiB + record overhead)."""
        return max(self.max_message_bytes * 2, 1_048_588)

    @property
    def effective_warehouse_url(self) -> str:
        """Warehouse URL; the embedded chdb database under ``data_dir`` when none is set."""
        return self.warehouse_url or f"chdb://{(self.data_dir / 'warehouse').resolve()}"

    @property
    def keys_path(self) -> Path:
        """Where the hashed intake keys and worker tokens live."""
        return self.keys_file or self.data_dir / "keys.json"

    @property
    def worker_id(self) -> str:
        """Faust app id / consumer group of the streams worker (unique per topic prefix)."""
        return f"{self.topic_prefix}.{self.worker_app_id}"

    @property
    def worker_group(self) -> str:
        """The worker's Faust app id and consumer group: ``worker_id`` when it runs every
        step, else one group per kind of step (a validation worker reads only raw topics,
        an aggregation worker only clean ones, and one group's members must read alike).
        State logs and the alert input keep ``worker_id``'s names, so either layout reads
        the same state."""
        if self.worker_stages == "all":
            return self.worker_id
        return f"{self.worker_id}.{self.worker_stages}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def topic(self, name: str) -> str:
        """Full topic name of a suffix from ``core.topics`` (``raw.<feed>``, ``dlq``, …)."""
        return f"{self.topic_prefix}.{name}"

    def raw_topic(self, feed: str) -> str:
        return self.topic(topics.raw(feed))

    @property
    def all_topics(self) -> list[str]:
        """Every topic the platform uses: raw feeds, derived streams, dead letters, late events."""
        return [self.topic(name) for name in topics.ALL]


def secret_fields() -> list[str]:
    """Names of the settings that hold secrets (``SecretStr`` or a list of them)."""
    return [name for name, f in Settings.model_fields.items()
            if "SecretStr" in str(f.annotation)]


def _is_list(name: str) -> bool:
    return str(Settings.model_fields[name].annotation).startswith("list")


def _parse_list(text: str, var: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"{var}: the file is not a JSON list") from None
    if not isinstance(value, list):
        raise ValueError(f"{var}: the file is not a JSON list")
    return value


def shown_value(var: str) -> str:
    """An environment value as an error message may show it: secrets masked, URLs redacted."""
    raw = os.environ.get(var)
    if raw is None:
        return "<unset>"
    name = var.removeprefix(ENV_PREFIX).lower()
    if name.endswith("_file") or name.endswith("_url"):
        return repr(redact_url(raw)) if name.endswith("_url") else repr(raw)
    if name in secret_fields():
        return MASK
    return repr(raw)


def _describe_error(err: Mapping[str, Any]) -> str:
    field = str(err["loc"][0]) if err.get("loc") else ""
    var = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
    msg = err.get("msg", "invalid")
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        msg = f"{msg} (allowed: {ctx['expected']})"
    if not field:
        return f"{var}: {msg}"
    return f"{var}={shown_value(var)}: {msg}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value raises ``SettingsError`` naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors()]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    except PydanticSettingsError as exc:  # a JSON-valued variable that is not JSON
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        var = f"{ENV_PREFIX}{field.upper()}" if field else "a JSON-valued setting"
        raise SettingsError(f"invalid configuration:\n  {var}: not valid JSON") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()

"""Prometheus metrics of the streams worker and its warehouse sink (one registry per process).

Served by the worker's web server at ``/metrics`` in the text exposition format. Counters are
process-local: a restarted worker starts them at zero (Prometheus handles counter resets).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("cityops_events_in_total", "raw events consumed", ["feed"],
                    registry=REGISTRY)
EVENTS_OUT = Counter("cityops_events_out_total", "validated events published to clean.<feed>",
                     ["feed"], registry=REGISTRY)
DEAD_LETTERS = Counter("cityops_dead_letters_total", "records sent to the dead-letter topic",
                       ["feed", "reason"], registry=REGISTRY)
DUPLICATES = Counter("cityops_duplicates_total", "events dropped as duplicates of an event_id",
                     ["feed"], registry=REGISTRY)
REPLAYED = Counter("cityops_replayed_total",
                   "records re-processed after a restart (already applied; skipped or re-sent)",
                   ["stage", "feed"], registry=REGISTRY)
LATE_EVENTS = Counter("cityops_late_events_total", "events older than the allowed lateness",
                      ["feed"], registry=REGISTRY)
AGGREGATES_OUT = Counter("cityops_aggregates_out_total", "derived records published",
                         ["topic"], registry=REGISTRY)
ALERT_EVENTS = Counter("cityops_alert_events_total", "alert lifecycle events published",
                       ["kind", "severity"], registry=REGISTRY)
AGENT_ERRORS = Counter("cityops_agent_errors_total",
                       "unexpected errors caught inside an agent (record dead-lettered)",
                       ["agent"], registry=REGISTRY)
SINK_ROWS = Counter("cityops_sink_rows_total", "rows written to the warehouse", ["table"],
                    registry=REGISTRY)
SINK_BATCHES = Counter("cityops_sink_batches_total", "warehouse batches committed",
                       registry=REGISTRY)
SINK_ERRORS = Counter("cityops_sink_errors_total", "warehouse insert failures (retried)",
                      ["code"], registry=REGISTRY)
SINK_BATCH_SECONDS = Histogram(
    "cityops_sink_batch_seconds", "time to write one batch and commit its offsets",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
SINK_LAG = Gauge("cityops_sink_lag_messages", "messages behind the end of each sink topic",
                 ["topic"], registry=REGISTRY)
SINK_PENDING = Gauge("cityops_sink_pending_rows", "rows buffered, not yet in the warehouse",
                     registry=REGISTRY)
ALIGN_HELD = Gauge("cityops_align_held_records",
                   "raw records held back so a backlog is read in write order", ["topic"],
                   registry=REGISTRY)
ALIGN_PAUSED = Gauge("cityops_align_paused_partitions",
                     "raw partitions paused while they run ahead of their feed's oldest",
                     ["topic"], registry=REGISTRY)
STEP_RECORDS = Histogram(
    "cityops_step_records",
    "records per stage step: a step's fixed costs (its outputs, state and dedup records "
    "sent and awaited, the commit) are shared by them", ["agent"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=REGISTRY)
WEBHOOK_DELIVERIES = Gauge("cityops_webhook_deliveries", "alert webhook outcomes so far",
                           ["webhook", "outcome"], registry=REGISTRY)
ACTIVE_ALERTS = Gauge("cityops_active_alerts", "alerts currently firing", registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

"""The warehouse sink: validated events and derived records from Kafka into ClickHouse.

A kafka-python consumer in its own consumer group (``<worker id>.sink``), auto-commit off,
reads ``clean.*``, ``agg.*``, ``alerts``, ``dlq`` and ``late``; converts each message to a
row (``warehouse.rows.event_row`` / ``record_row``); and writes batches bounded by
``CITYOPS_SINK_BATCH_ROWS`` and ``CITYOPS_SINK_BATCH_S`` through ``Warehouse.insert`` (while
it is behind, by ``CITYOPS_SINK_BACKLOG_BATCH_ROWS`` and ``CITYOPS_SINK_BACKLOG_BATCH_S``).

Guarantees:

* **offsets are committed only after the warehouse has the batch** (every table's insert
  returned); a crash in between replays the batch;
* **idempotent writes**: each insert carries a deduplication token derived from the Kafka
  ranges of the batch (topic, partition, first offset, last offset) and the table, and the
  tables are ReplacingMergeTree on the event / record id, so a replayed batch — even one cut
  at different boundaries — leaves no duplicate after merge (queries use ``FINAL``);
* **backpressure**: the loop does not poll while a batch is being written, so a slow
  warehouse slows consumption and Kafka holds the backlog; memory stays bounded by two batches
  (the events' and the derived records' below);
* **derived records in their own batches**: windows, states, indexes, alerts, dead letters and
  late events gather for ``CITYOPS_SINK_DERIVED_BATCH_S`` (2 s) beside the events' batches
  (``CITYOPS_SINK_BATCH_S``), each batch committing its own topics' offsets. Each embedded
  insert costs 10-60 ms whatever its size, so an events' batch that writes the four raw
  tables only ends sooner, and the next events wait less;
* **a rebalance gives back what the sink holds**: when partitions are revoked, the batches
  in hand are dropped unwritten and each partition the sink keeps is read again from its
  batch's first offset (``sink_rebalance``), so two sinks never write the same partition's
  records;
* transient warehouse errors are retried (``RetryPolicy``: tenacity, the warehouse retry
  settings) for as long as the sink runs (nothing is skipped); a record it cannot convert to
  a row is counted and logged, never stalling the stream.

Runs as a thread (``start``/``stop``) inside the worker process; all warehouse calls happen
on that thread.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from cityops.core import topics
from cityops.core.deadletter import DerivedRecord
from cityops.core.fast_contract import clean_context, decode_clean
from cityops.core.feeds import FEED_MODELS
from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.streams import kafka_fetch, metrics
from cityops.streams.records import DERIVED_RECORDS
from cityops.warehouse.base import RetryPolicy, Warehouse
from cityops.warehouse.exceptions import SinkInterrupted, TransientWarehouseError, WarehouseError
from cityops.warehouse.rows import FEED_TABLES
from cityops.warehouse.sink_rebalance import RebalanceWatch, Rewind
from cityops.warehouse.sqltext import check_identifier
from cityops.warehouse.stored_marks import StoredMarks

log = structlog.get_logger(__name__)

#: raw event tables: the ones rollup materialized views read on insert
RAW_TABLES = frozenset(FEED_TABLES.values())
#: raw table → the first column of its ORDER BY (then ``event_time``): the check for ids
#: already stored names the batch's sites, so it reads only their granules in the batch's
#: time range, not every row of the month (``tests/integration/warehouse/test_dedup_and_
#: records.py`` compares this with the tables' sorting keys)
SITE_COLUMNS = {"footfall_observed": "zone_id", "parking_observed": "carpark_id",
                "air_quality_observed": "station_id", "incidents_reported": "zone_id"}
#: seconds between attempts at a fresh consumer after a poll failed on a broker gone away
POLL_RETRY_S = 1.0
#: topic suffix → derived record class
RECORD_TOPICS = {cls.topic: cls for cls in DERIVED_RECORDS}

T = TypeVar("T")


class ConsumedRecord(Protocol):
    """One record polled from Kafka (kafka-python's ``ConsumerRecord``)."""

    partition: int
    offset: int
    value: bytes | None

Converter = Callable[[str, bytes], tuple[str, dict[str, Any]] | None]


def sink_group(settings: Settings) -> str:
    """The sink's consumer group (every sink of a deployment shares it)."""
    return f"{settings.worker_id}.sink"


def sink_topics(settings: Settings) -> list[str]:
    """Every topic the sink stores: validated events and all derived records."""
    return [settings.topic(name) for name in topics.STORED]


def _suffix(prefix: str, topic: str) -> str:
    """The topic's name without the deployment's ``<prefix>.``."""
    return topic[len(prefix):] if topic.startswith(prefix) else topic


def is_event_topic(settings: Settings, topic: str) -> bool:
    """Whether the topic holds validated events (``clean.<feed>``), not derived records."""
    return topics.clean_feed(_suffix(settings.topic_prefix + ".", topic)) is not None


def default_converter(settings: Settings) -> Converter:
    """Map (topic, value) to (table, row) with the warehouse's row builders.

    A validated event is read as the aggregation step reads it: as a fast struct
    (``decode_clean``) made into its row directly (``rows.fast_event_row``), or, when the
    record is left to the model, with the model and the configured clock skew
    (``clean_context``): the model's default of 300 s refused events that a larger
    ``CITYOPS_MAX_CLOCK_SKEW_S`` had let through validation, and their raw rows were never
    stored. A derived record is read the same way: as a msgspec struct made from its model
    (``rows.fast_record_row``), or with the model."""
    from cityops.warehouse import rows

    prefix = settings.topic_prefix + "."
    clean_ctx = clean_context(settings.max_clock_skew_s)
    context = clean_ctx.as_dict()

    kinds: dict[str, tuple[str | None, type[DerivedRecord] | None]] = {}  # topic → its kind

    def kind(topic: str) -> tuple[str | None, type[DerivedRecord] | None]:
        suffix = _suffix(prefix, topic)
        found = kinds[topic] = (topics.clean_feed(suffix), RECORD_TOPICS.get(suffix))
        return found

    def convert(topic: str, value: bytes) -> tuple[str, dict[str, Any]] | None:
        feed, cls = kinds.get(topic) or kind(topic)
        if feed is not None:
            fast = decode_clean(feed, value, clean_ctx)
            if fast is not None:
                return rows.fast_event_row(fast)
            event = FEED_MODELS[feed].model_validate_json(value, context=context)
            return rows.event_row(event)
        if cls is None:
            return None
        return rows.fast_record_row(cls, value) or rows.record_row(cls.model_validate_json(value))

    return convert


def stored_ids_query(batches: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     sites: Mapping[str, str] = SITE_COLUMNS
                     ) -> tuple[str, dict[str, Any]] | None:
    """The query for the ids of ``batches`` (table → {event id: row}) that their tables hold
    already, as rows ``(table, event_id)``; None when there is nothing to ask.

    One query for every table (each costs the embedded warehouse 5-10 ms whatever its size),
    bounded by the batch's sites and times: the two columns each raw table sorts by first
    (``sites``), so it reads only their granules. The arrays go in through subqueries
    (``IN (SELECT arrayJoin(...))``): an ``IN`` over the array itself took about 15 ms more
    for 20,000 ids."""
    asks, params = [], {}
    for i, (table, seen) in enumerate(sorted(batches.items())):
        if not seen:
            continue
        times = [r["event_time"] for r in seen.values()]
        site = sites[table]
        check_identifier(table, "table name")
        check_identifier(site, "column name")
        asks.append(
            f"SELECT '{table}' AS t, event_id FROM {table} "
            f"WHERE {site} IN (SELECT arrayJoin({{sites{i}:Array(String)}})) "
            f"AND event_time >= {{lo{i}:DateTime64(3)}} "
            f"AND event_time <= {{hi{i}:DateTime64(3)}} "
            f"AND event_id IN (SELECT arrayJoin({{ids{i}:Array(String)}}))")
        params.update({f"lo{i}": min(times), f"hi{i}": max(times), f"ids{i}": list(seen),
                       f"sites{i}": sorted({r[site] for r in seen.values()})})
    return (" UNION ALL ".join(asks), params) if asks else None


def newest_stored_query(sites: Mapping[str, Collection[str]],
                        columns: Mapping[str, str] = SITE_COLUMNS
                        ) -> tuple[str, dict[str, Any]] | None:
    """The query for the newest event time each raw table holds of each source at each of
    ``sites`` (table → sites), as rows ``(table, site, source, milliseconds since the
    epoch)``; a site the table holds nothing of has no row. None when there is nothing to
    ask. The sink's ``StoredMarks`` start from these (``warehouse.stored_marks``): one query
    when a site or source first appears, not one per batch."""
    asks, params = [], {}
    for i, (table, wanted) in enumerate(sorted(sites.items())):
        if not wanted:
            continue
        site = columns[table]
        check_identifier(table, "table name")
        check_identifier(site, "column name")
        asks.append(
            f"SELECT '{table}' AS t, toString({site}) AS site, toString(source) AS source, "
            f"toUnixTimestamp64Milli(max(event_time)) AS newest FROM {table} "
            f"WHERE {site} IN (SELECT arrayJoin({{sites{i}:Array(String)}})) "
            f"GROUP BY {site}, source")
        params[f"sites{i}"] = sorted(wanted)
    return (" UNION ALL ".join(asks), params) if asks else None


def batch_token(ranges: dict[tuple[str, int], list[int]], table: str) -> str:
    """Insert-dedup token of one table's rows in a batch: the batch's Kafka ranges + table."""
    text = ";".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(ranges.items()))
    return hashlib.sha256(f"{table}|{text}".encode()).hexdigest()[:40]


@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ranges: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    started: float | None = None
    n_rows: int = 0
    n_msgs: int = 0
    #: its first record had waited ``CITYOPS_SINK_BACKLOG_BATCH_S`` already: it gathers for
    #: that long, up to ``CITYOPS_SINK_BACKLOG_BATCH_ROWS``
    backlog: bool = False

    def add_offset(self, topic: str, partition: int, offset: int,
                   since: float | None = None) -> None:
        """Count one consumed record; the first one starts the batch's clock, at ``since``
        (monotonic seconds: when it was written, if earlier than now) or now."""
        r = self.ranges.get((topic, partition))
        if r is None:
            self.ranges[(topic, partition)] = [offset, offset]
        else:
            r[0] = min(r[0], offset)
            r[1] = max(r[1], offset)
        self.n_msgs += 1
        if self.started is None:
            self.started = time.monotonic() if since is None else since

    def add_row(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)
        self.n_rows += 1


@dataclass
class SinkStats:
    batches: int = 0
    rows: int = 0
    messages: int = 0
    errors: int = 0
    skipped: int = 0
    already_stored: int = 0
    #: queries for the ids a batch's tables already hold (only rows that may be stored ask)
    id_checks: int = 0
    #: records dropped unwritten when a rebalance revoked partitions (read again)
    given_back: int = 0
    last_batch_s: float = 0.0
    last_commit_at: float = 0.0


class WarehouseSink:
    """Kafka → warehouse batches with manual commits; run it with ``start()``/``stop()``."""

    def __init__(self, settings: Settings, warehouse: Warehouse, *,
                 convert: Converter | None = None, group_id: str | None = None,
                 topics: list[str] | None = None) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.convert = convert or default_converter(settings)
        self.group_id = group_id or sink_group(settings)
        self.topics = topics or sink_topics(settings)
        self.batch_rows = settings.sink_batch_rows
        self.batch_s = settings.sink_batch_s
        self.derived_batch_s = settings.sink_derived_batch_s
        self.backlog_batch_s = settings.sink_backlog_batch_s
        self.backlog_batch_rows = max(settings.sink_backlog_batch_rows, self.batch_rows)
        #: topics whose records are events (raw rows): the others gather in derived batches
        self._event_topics = frozenset(t for t in self.topics if is_event_topic(settings, t))
        self.retry = RetryPolicy.from_settings(settings)
        self.stats = SinkStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._watch = RebalanceWatch()
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self._flush_started = 0.0  # monotonic; a batch's clock never starts before it
        #: the newest stored event per raw table, site and source: rows newer are not asked about
        self.marks = StoredMarks()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="warehouse-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Flush what is buffered, commit, close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _consumer_factory(self) -> Any:
        from kafka import KafkaConsumer

        kafka_fetch.apply(self.settings.kafka_fast_records)
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers.split(","),
            group_id=self.group_id,
            client_id=f"{self.group_id}-{id(self) & 0xffff:x}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max(1, min(self.batch_rows, 5000)),
            max_poll_interval_ms=30 * 60 * 1000,
            fetch_max_wait_ms=self.settings.worker_fetch_max_wait_ms,
            fetch_min_bytes=self.settings.sink_fetch_min_bytes,
            metadata_max_age_ms=30_000,
            session_timeout_ms=int(self.settings.worker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, self.settings.worker_session_timeout_s / 4)
                                      * 1000),
            **kafka_python_security(self.settings),
        )
        self._watch = RebalanceWatch()
        consumer.subscribe(self.topics, listener=self._watch)
        return consumer

    def _run(self) -> None:
        try:
            self._consumer = self._consumer_factory()
            self.ready.set()
            self._loop()
        except BaseException as exc:  # surfaced through /health
            self.error = exc
            log.exception("sink.crashed")
        finally:
            self.ready.set()
            if self._consumer is not None:
                try:
                    self._consumer.close(autocommit=False)
                except Exception:
                    log.warning("sink.close_failed")

    # --- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        batch = Batch()
        derived = Batch()  # derived records, with their own clock (``derived_batch_s``)
        #: from a revocation until the group settles: what the sink gave back
        rewind: Rewind | None = None
        last_lag = 0.0
        assigned_at = time.monotonic()
        while not self._stop.is_set():
            if self._consumer.assignment():
                assigned_at = time.monotonic()
            elif (batch.n_msgs == 0 and derived.n_msgs == 0 and time.monotonic() - assigned_at
                  > 3 * self.settings.worker_session_timeout_s + 5):
                # a consumer that lost its group membership for good (seen with kafka-python
                # 3.0 after a member of the group was killed): start a fresh one
                log.warning("sink.no_assignment_reconnect")
                metrics.SINK_ERRORS.labels(code="no_assignment").inc()
                self._reconnect()
                rewind = None  # the fresh consumer reads from the committed offsets
                assigned_at = time.monotonic()
                continue
            wait_ms = min(self._ms_left(batch, self.batch_s),
                          self._ms_left(derived, self.derived_batch_s))
            rows_left = min(self._limits(batch, self.batch_s)[0] - batch.n_rows,
                            self._limits(derived, self.derived_batch_s)[0] - derived.n_rows)
            try:
                polled = self._consumer.poll(timeout_ms=wait_ms, max_records=max(1, rows_left))
            except Exception as exc:
                if not getattr(exc, "retriable", False):
                    raise
                # the broker went away under the poll (kafka-python 3 raised ECONNREFUSED
                # from its coordinator lookup, and the sink stopped storing for good): start
                # again from the committed offsets. The batches in hand were neither written nor
                # committed, so they are read again: nothing lost, nothing written twice
                log.warning("sink.poll_failed", error=f"{type(exc).__name__}: {exc}"[:300],
                            dropped_rows=batch.n_rows + derived.n_rows)
                metrics.SINK_ERRORS.labels(code="poll").inc()
                batch, derived, rewind = Batch(), Batch(), None
                self._reconnect_when_up()
                assigned_at = time.monotonic()
                continue
            if self._watch.take_revocation():
                self.marks.forget()  # another sink may write the sites' events meanwhile
                rewind = rewind or Rewind()
                for held in (batch, derived):
                    rewind.give_back_batch(held.ranges, held.n_msgs)
                batch, derived = Batch(), Batch()
            if rewind is not None:  # nothing polled is kept until the group has settled
                rewind.give_back_polled(polled)
                polled = {}
                if self._watch.settled:
                    self._rewind(rewind)
                    rewind = None
            for tp, msgs in polled.items():
                into = batch if tp.topic in self._event_topics or not self.derived_batch_s \
                    else derived
                for msg in msgs:
                    since = None
                    if into.started is None:
                        since = self._waiting_since(msg)
                        into.backlog = into is batch and self._backlogged(msg)
                    into.add_offset(tp.topic, tp.partition, msg.offset, since)
                    self._add(into, tp.topic, msg)
            metrics.SINK_PENDING.set(batch.n_rows + derived.n_rows)
            if self._due(batch, self.batch_s):
                self._flush(batch)
                batch = Batch()
            if self._due(derived, self.derived_batch_s):
                self._flush(derived)
                derived = Batch()
            if time.monotonic() - last_lag > 5:
                self._update_lag()
                last_lag = time.monotonic()
        for left in (batch, derived):
            if left.n_msgs:
                self._flush(left)

    def _rewind(self, rewind: Rewind) -> None:
        """The group has settled: read again what the sink gave back and still owns."""
        moved = rewind.targets(self._consumer.assignment())
        for tp, offset in moved.items():
            self._consumer.seek(tp, offset)
        self.stats.given_back += rewind.records
        log.info("sink.rebalance_gave_back", records=rewind.records,
                 partitions=len(rewind.offsets), read_again=len(moved))

    def _limits(self, batch: Batch, max_age_s: float) -> tuple[int, float]:
        """(most rows, oldest age in s) of the batch: a backlog batch's, or the ones given."""
        if batch.backlog:
            return self.backlog_batch_rows, self.backlog_batch_s
        return self.batch_rows, max_age_s

    def _due(self, batch: Batch, max_age_s: float) -> bool:
        rows, age_s = self._limits(batch, max_age_s)
        return batch.started is not None and (
            batch.n_rows >= rows or time.monotonic() - batch.started >= age_s)

    def _ms_left(self, batch: Batch, max_age_s: float) -> int:
        """How long a poll may wait for the batch (ms, at most 100): until it is due."""
        if batch.started is None:
            return 100
        age_s = self._limits(batch, max_age_s)[1]
        return max(0, min(100, int((age_s - (time.monotonic() - batch.started)) * 1000)))

    def _backlogged(self, msg: Any) -> bool:
        """Whether a record had waited ``CITYOPS_SINK_BACKLOG_BATCH_S`` when read (its
        broker timestamp): the sink is behind, and the events' batch it starts gathers for
        that long and up to ``CITYOPS_SINK_BACKLOG_BATCH_ROWS``. Each insert costs the
        embedded warehouse about 20 ms and 4 µs a row (and each batch then also a query for
        the ids already stored), so larger batches catch up sooner: in 1 M-event drains the
        sink took 59–60 µs of CPU per event instead of 65–72. A live record never waits this
        long, so live batches keep ``CITYOPS_SINK_BATCH_S``."""
        if self.backlog_batch_s <= self.batch_s:
            return False
        ts = getattr(msg, "timestamp", None)
        return isinstance(ts, int) and ts > 0 and (
            time.time() - ts / 1000 >= self.backlog_batch_s)

    def _waiting_since(self, msg: Any) -> float:
        """When a batch's first record began to wait (monotonic seconds): when it was
        written to Kafka (its broker timestamp, the writer's wall clock), but not before the
        last flush began. Records written during a flush have waited for it already, so the
        batch they start is due ``batch_s`` after that flush began, not after it ended: the
        sink then writes every ``max(batch_s, flush time)`` instead of every ``batch_s +
        flush time`` (at 1,000 events/s 1.0 s instead of about 1.4 s), and the median row
        waits about half a flush less. A record older than ``batch_s`` is a backlog: its
        batch gathers for the whole ``batch_s`` (larger batches drain faster)."""
        now = time.monotonic()
        ts = getattr(msg, "timestamp", None)
        if not isinstance(ts, int) or ts <= 0:
            return now
        age = max(0.0, time.time() - ts / 1000)
        if age >= self.batch_s:
            return now
        return max(now - age, self._flush_started)

    def _reconnect(self) -> None:
        self.marks.forget()  # the fresh consumer's partitions: learned again from the tables
        try:
            self._consumer.close(autocommit=False)
        except Exception:
            log.warning("sink.close_failed")
        self._consumer = self._consumer_factory()

    def _reconnect_when_up(self) -> None:
        """A fresh consumer, retried every ``POLL_RETRY_S`` while the broker is away (a new
        consumer can fail to bootstrap) until it starts or the sink is stopped."""
        while not self._stop.wait(POLL_RETRY_S):
            try:
                self._reconnect()
                return
            except Exception as exc:
                if not getattr(exc, "retriable", False):  # e.g. bootstrap timed out: retriable
                    raise
                log.warning("sink.reconnect_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _add(self, batch: Batch, topic: str, msg: ConsumedRecord) -> None:
        value = msg.value
        if value is None:
            return
        try:
            converted = self.convert(topic, value)
        except Exception as exc:  # a record the warehouse cannot hold: count, never stall
            self.stats.skipped += 1
            metrics.SINK_ERRORS.labels(code="convert").inc()
            log.warning("sink.unconvertible", topic=topic, partition=msg.partition,
                        offset=msg.offset, error=f"{type(exc).__name__}: {exc}"[:300])
            return
        if converted is not None:
            table, row = converted
            batch.add_row(table, row)

    def _flush(self, batch: Batch) -> None:
        started = self._flush_started = time.monotonic()
        # the events first: a duty officer's boards read them (and their rollups), and each
        # insert costs the embedded warehouse 15-60 ms whatever its size, so the derived
        # tables' inserts after them no longer delay the events' rows
        fresh = self._without_stored({t: r for t, r in batch.rows.items() if t in RAW_TABLES})
        for table, rows in sorted(batch.rows.items(), key=lambda kv: kv[0] not in RAW_TABLES):
            if table in RAW_TABLES:
                rows = fresh[table]
                if not rows:
                    continue
            self._insert(table, rows, batch_token(batch.ranges, table))
            if table in RAW_TABLES:
                self.marks.stored(table, SITE_COLUMNS[table], rows)
        self._commit(batch)
        took = time.monotonic() - started
        self.stats.batches += 1
        self.stats.rows += batch.n_rows
        self.stats.messages += batch.n_msgs
        self.stats.last_batch_s = took
        self.stats.last_commit_at = time.time()
        metrics.SINK_BATCHES.inc()
        metrics.SINK_BATCH_SECONDS.observe(took)
        metrics.SINK_PENDING.set(0)
        for table, rows in batch.rows.items():
            metrics.SINK_ROWS.labels(table=table).inc(len(rows))
        log.debug("sink.batch", rows=batch.n_rows, messages=batch.n_msgs,
                  seconds=round(took, 3))

    def _without_stored(self, raw: dict[str, list[dict[str, Any]]]
                        ) -> dict[str, list[dict[str, Any]]]:
        """Drop events already stored, or repeated in the batch, before the raw-table inserts.

        Raw tables feed the rollup materialized views on insert. ReplacingMergeTree removes a
        re-delivered event from the raw table at merge time, and the insert token skips a batch
        replayed with the same boundaries; but after a crash a batch can be re-cut differently,
        or the worker can re-publish an event it published just before dying. The views would
        count such an event twice, so the sink (the only writer of a partition's events) asks
        the tables which ids of the batch they already hold: one bounded query for all of them
        (``stored_ids_query``), for the rows that may be stored. A row newer than the newest
        event the table holds of its site and source cannot be (``warehouse.stored_marks``):
        read in order, most batches ask nothing.
        """
        unique: dict[str, dict[str, dict[str, Any]]] = {}
        for table, rows in raw.items():
            seen = unique[table] = {}
            for row in rows:
                seen.setdefault(row["event_id"], row)
        self._learn_marks(unique)
        ask = stored_ids_query({table: self.marks.to_ask(table, SITE_COLUMNS[table], seen)
                                for table, seen in unique.items()})
        if ask is not None:
            sql, params = ask
            self.stats.id_checks += 1
            stored = self._call_with_retry(
                "stored ids in " + ", ".join(sorted(raw)),
                lambda: self.warehouse.query(sql, params))
            for table, event_id in stored:
                unique[table].pop(event_id, None)
        for table, rows in raw.items():
            dropped = len(rows) - len(unique[table])
            if dropped:
                self.stats.already_stored += dropped
                metrics.SINK_ERRORS.labels(code="already_stored").inc(dropped)
                log.info("sink.already_stored", table=table, dropped=dropped)
        return {table: list(seen.values()) for table, seen in unique.items()}

    def _learn_marks(self, unique: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Read from the tables the newest stored time of the batch's sites and sources
        without a mark (every source of those sites: one query)."""
        wanted = {table: self.marks.unknown(table, SITE_COLUMNS[table], seen.values())
                  for table, seen in unique.items()}
        ask = newest_stored_query({table: {site for site, _ in units}
                                   for table, units in wanted.items()})
        if ask is None:
            return
        sql, params = ask
        found = self._call_with_retry("newest stored times in " + ", ".join(sorted(wanted)),
                                      lambda: self.warehouse.query(sql, params))
        newest: dict[str, dict[tuple[str, str], int | None]] = {
            table: dict.fromkeys(units) for table, units in wanted.items()}
        for table, site, source, ms in found:
            newest[table][(site, source)] = int(ms)
        for table, marks in newest.items():
            self.marks.learn(table, marks)

    def _call_with_retry(self, what: str, call: Callable[[], T]) -> T:
        """Run a warehouse call, retrying transient errors until it succeeds or the sink stops.

        A permanent error (schema) is raised at once: retrying cannot help and skipping would
        lose data, so the sink stops loudly (health turns red) without committing.
        """

        def counted() -> T:
            try:
                return call()
            except WarehouseError as exc:
                self.stats.errors += 1
                metrics.SINK_ERRORS.labels(code=exc.code).inc()
                if not exc.transient:
                    log.error("sink.permanent_error", what=what, error=str(exc)[:500])
                raise

        try:
            return self.retry.run(what, counted, until=self._stop)
        except TransientWarehouseError as exc:
            # stopping while the warehouse is down: leave offsets uncommitted
            raise SinkInterrupted(f"sink stopped during {what} (will replay): {exc}") from exc

    def _insert(self, table: str, rows: list[dict[str, Any]], token: str) -> None:
        """Insert one table's rows, retrying transient errors until stopped; never skip."""
        self._call_with_retry(
            f"insert {table} ({len(rows)} rows)",
            lambda: self.warehouse.insert(table, rows, dedup_token=token))

    def _commit(self, batch: Batch) -> None:
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets = {TopicPartition(t, p): OffsetAndMetadata(last + 1, "", -1)
                   for (t, p), (_first, last) in batch.ranges.items()}
        try:
            self._consumer.commit(offsets=offsets)
        except CommitFailedError:
            # the group rebalanced: the batch is written; the new owner may replay it, and
            # the warehouse absorbs the duplicate (tokens, ReplacingMergeTree)
            log.warning("sink.commit_failed_rebalance")
        except KafkaError as exc:
            log.warning("sink.commit_failed", error=str(exc))

    def _update_lag(self) -> None:
        lag: dict[str, int] = {}
        try:
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                pos = self._consumer.position(tp)
                if high is not None and pos is not None:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - pos)
        except Exception:
            return
        for topic, n in lag.items():
            metrics.SINK_LAG.labels(topic=topic).set(n)

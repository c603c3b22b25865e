"""Stage state on compacted topics this worker writes and reads itself, outside Faust.

Three kinds of state survive a restart or a move to another worker: each feed's dedup deltas
(``seen-<feed>``, one per validation step and raw partition), each feed's aggregation
snapshots (``state-<feed>``, one per unit, on the unit's clean partition) and the alert
engine's snapshot (``alert-engine``, one partition). They used to be Faust tables, and two
things about Faust's table recovery stood in the way:

- **Speed.** It costs about half a millisecond of Python per changelog record whatever its
  size: with one hour of ids at 20,000 events/s in 500-id deltas the worker was ready after
  86 s (``bench/bench_recovery.py``).
- **Stalls.** With several workers, a recovery after a rebalance sometimes received nothing
  at all ("No event received for active tp ... since recovery start") for as long as anyone
  watched, and every partition of the worker stood still; the cause inside Faust was never
  found.

Here a partition's log is read with a plain consumer in a thread, from the moment the
partition is assigned here (at start, or when a rebalance brings it here); the partition's
first step reads what was written since and waits for the whole read, other partitions and
stages do not. A read that receives nothing for ``CITYOPS_WORKER_RECOVERY_STALL_S`` while
records are due fails (``StateReadStalled``): the step fails and the worker leaves,
uncommitted, for a supervised restart.

The topics keep the names and record format of the tables' changelogs
(``<worker id>-<name>-changelog``: JSON key, JSON value, a tombstone deletes), so a
deployment's state carries over. Writes are awaited like every other output of a step
(``drain``) before its offsets are acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.streams import kafka_fetch
from cityops.streams.producer_metadata import send_now, track_topic

log = structlog.get_logger(__name__)

#: bytes one fetch may return per partition / in all (deltas are a few kB each)
FETCH_PARTITION_BYTES = 16 << 20
FETCH_BYTES = 64 << 20

#: largest state record (one unit's snapshot): a zone whose counters arrive hours apart while
#: a backlog is read keeps those hours of windows open, and its snapshot grew past the
#: broker's 2 MB message limit in a drain of 1 M events (11 days): the step failed, and the
#: restarted worker failed on the same step again and again
STATE_RECORD_MAX_BYTES = 64 << 20
#: a snapshot this large is logged (with its size): the windows it holds say a source lags
STATE_RECORD_WARN_BYTES = 1 << 20
LOG_CONFIG = {"max.message.bytes": str(STATE_RECORD_MAX_BYTES)}

#: topic settings of a log written often (the dedup deltas): the broker compacts only closed
#: segments, and a restart reads the open one whole, so segments close at 16 MiB (the
#: default 1 GiB held hours of deltas at 20,000 events/s); compaction starts at 10 % of the
#: log replaceable, and tombstones (groups of deltas behind the horizon) leave the
#: log 5 minutes after compaction, not the default day, since a restart reads them too
BUSY_LOG_CONFIG = {**LOG_CONFIG, "segment.bytes": str(16 << 20), "segment.ms": "3600000",
                   "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": "300000"}

#: as Faust's JSON codec wrote the tables' changelogs (orjson, these options)
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z

#: turns a stored JSON object into what the stage keeps (e.g. ``Delta.from_state``)
Decode = Callable[[dict[str, Any]], Any]
#: what a read found per partition: the live value per raw key, and the end offset read to
Found = dict[int, tuple[dict[bytes, Any], int]]


class StateReadStalled(RuntimeError):
    """A state read received nothing from the broker for too long while records were due."""


def _keep(value: dict[str, Any]) -> dict[str, Any]:
    return value


def read_partitions(settings: Settings, topic: str, partitions: list[int],
                    since: Found | None = None, decode: Decode = _keep,
                    stats: dict[str, int] | None = None) -> Found:
    """The live value per key of each partition (the latest value; a tombstone deletes),
    read by one consumer up to the end offsets at the time of the call: from the start, or on
    from an earlier read (``since``, left as it was). Decoded here, in the caller's thread.
    Raises ``StateReadStalled`` after ``CITYOPS_WORKER_RECOVERY_STALL_S`` without a record."""
    from kafka import KafkaConsumer, TopicPartition

    kafka_fetch.apply(settings.kafka_fast_records)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest",  # never skip to the end
        max_partition_fetch_bytes=FETCH_PARTITION_BYTES, fetch_max_bytes=FETCH_BYTES,
        **kafka_python_security(settings))
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        found: Found = {}
        for tp in tps:
            live, start = (since or {}).get(tp.partition, ({}, 0))
            found[tp.partition] = (dict(live), start)
            consumer.seek(tp, start)
        ends = consumer.end_offsets(tps)
        heard = time.monotonic()
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            polled = consumer.poll(timeout_ms=1000, max_records=100_000)
            now = time.monotonic()
            if polled:
                heard = now
            elif now - heard > settings.worker_recovery_stall_s:
                raise StateReadStalled(
                    f"{topic}: nothing received for {now - heard:.0f} s while reading "
                    f"partitions {partitions}")
            for tp, records in polled.items():
                if stats is not None:
                    stats["read"] = stats.get("read", 0) + len(records)
                end, live = ends[tp], found[tp.partition][0]
                for r in records:
                    if r.offset >= end:
                        continue
                    value = None if r.value is None else orjson.loads(r.value)
                    if isinstance(value, dict):
                        live[r.key] = decode(value)
                    else:  # a tombstone (or a value that is no object)
                        live.pop(r.key, None)
        return {p: (live, ends[TopicPartition(topic, p)]) for p, (live, _) in found.items()}
    finally:
        consumer.close()


def set_topic_config(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """Set these settings of an existing topic (incrementally: the others stay)."""
    from kafka.admin import ConfigResource, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             **kafka_python_security(settings))
    try:
        result = admin.alter_configs([ConfigResource("TOPIC", topic, configs=config)])
        outcome = (result.get("topic") or {}).get(topic)
        if outcome != "OK":
            raise RuntimeError(f"{topic}: settings not changed ({outcome})")
    finally:
        admin.close()


def by_key(live: dict[bytes, Any]) -> dict[str, Any]:
    """A read's values by their decoded (JSON string) keys."""
    return {str(orjson.loads(k)): v for k, v in live.items()}


class StateLog:
    """Writes and reads one kind of stage state, a compacted topic of ``partitions``."""

    def __init__(self, app: Any, settings: Settings, name: str, *, partitions: int,
                 decode: Decode = _keep, config: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.label = name
        self.decode = decode
        self.name = f"{settings.worker_id}-{name}-changelog"
        self.topic = app.topic(self.name, partitions=partitions, internal=True,
                               compacting=True, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw",
                               config=config or LOG_CONFIG)
        self.config = dict(config or LOG_CONFIG)
        self.pending: list[Any] = []
        self._declared = False
        self._prefetched: dict[int, asyncio.Future[Found]] = {}

    async def declare(self) -> None:
        """Create the topic if it does not exist yet (a fresh deployment), and give a topic
        created before its settings (``config``) those settings."""
        if not self._declared:
            await self.topic.maybe_declare()
            if self.config:
                try:
                    await asyncio.to_thread(set_topic_config, self.settings, self.name,
                                            self.config)
                except Exception as exc:  # e.g. no ALTER_CONFIGS right: it still works
                    log.warning("stream.state_log_config_not_set", topic=self.name,
                                config=self.config, error=f"{type(exc).__name__}: {exc}")
            self._declared = True

    @staticmethod
    def encode(value: dict[str, Any]) -> bytes:
        """A value as the log holds it (JSON, as Faust's codec wrote the tables)."""
        return orjson.dumps(value, option=JSON_OPTIONS)

    async def write(self, partition: int, key: str, value: dict[str, Any] | bytes | None
                    ) -> None:
        """One value (encoded already, or None: a tombstone); delivered by ``drain``."""
        await self.declare()
        body = self.encode(value) if isinstance(value, dict) else value
        if body is not None and len(body) > STATE_RECORD_WARN_BYTES:
            log.warning("stream.state_record_large", state=self.label, key=key,
                        bytes=len(body), limit=STATE_RECORD_MAX_BYTES)
        track_topic(self.topic.app.producer._ensure_producer(), self.name)
        self.pending.append(await self.topic.app.producer.send(
            self.name, orjson.dumps(key), body, partition, None, None))

    def send(self) -> None:
        """Send the writes so far now, not after the producer's linger (``drain`` waits)."""
        if self.pending:
            send_now(self.topic.app.producer._ensure_producer(), self.name)

    async def drain(self) -> None:
        """Wait until every write so far is acknowledged (raises on a send failure)."""
        self.send()
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)

    def prefetch(self, partitions: list[int]) -> None:
        """Start reading partitions just assigned here, before their first records arrive."""
        for p in partitions:  # one read each: one's network waits overlap another's decoding
            task = asyncio.ensure_future(self._read([p], None))
            # a failure is reported by ``read`` (which then reads it all), never left unseen
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._prefetched[p] = task

    def retain(self, partitions: set[int]) -> None:
        """Drop early reads of partitions no longer assigned here (a later read starts over)."""
        for p in [p for p in self._prefetched if p not in partitions]:
            self._prefetched.pop(p).cancel()

    async def read(self, partitions: list[int]) -> dict[int, dict[bytes, Any]]:
        """The partitions' live values up to now: what a prefetch found, plus what was written
        after it (a tail read), or a whole read. In a thread: the event loop goes on."""
        early: Found = {}
        for task in {id(t): t for p in partitions
                     if (t := self._prefetched.pop(p, None)) is not None}.values():
            try:
                early.update(await task)
            except Exception as exc:  # e.g. a broker away at assignment: read it all now
                log.warning("stream.state_prefetch_failed", state=self.label,
                            error=f"{type(exc).__name__}: {exc}")
        found = await self._read(partitions, {p: early[p] for p in partitions if p in early})
        return {p: live for p, (live, _end) in found.items()}

    async def _read(self, partitions: list[int], since: Found | None) -> Found:
        await self.declare()
        started = time.monotonic()
        stats: dict[str, int] = {}
        found = await asyncio.to_thread(read_partitions, self.settings, self.name, partitions,
                                        since, self.decode, stats)
        log.info("stream.state_read", state=self.label, partitions=partitions,
                 read=stats.get("read", 0), live=sum(len(live) for live, _ in found.values()),
                 tail=bool(since), seconds=round(time.monotonic() - started, 3))
        return found

"""The dedup deltas of one feed, on a compacted topic this worker writes and reads itself.

Each validation step writes one delta per raw partition (``streams.partition_dedup``), so a
busy hour leaves hundreds of thousands of records. Kept in a Faust table, every one of
them went through Faust's recovery at each start, about half a millisecond of Python per
record: with one hour of ids at 20,000 events/s in 500-id deltas the worker was ready after
86 s (``bench/bench_recovery.py``). Here the worker reads a raw partition's deltas itself,
with a plain consumer in a thread, from the moment the partition is assigned here (at start,
or when a rebalance brings it here); the partition's first step reads what was written since
and waits for the whole read, other stages do not.

The topic keeps the name and record format of the table's changelog
(``<worker id>-seen-<feed>-changelog``: JSON key ``"<partition>/<lo>"``, JSON value, a
tombstone for a delta behind the horizon), so a deployment's dedup memory carries over.
Writes are awaited like every other output of a step (``drain``) before its offsets are
acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
import structlog

from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.streams.partition_dedup import Delta

log = structlog.get_logger(__name__)

#: bytes one fetch may return per partition / in all (deltas are a few kB each)
FETCH_PARTITION_BYTES = 16 << 20
FETCH_BYTES = 64 << 20


#: what a read found per partition: the live delta per key, and the end offset it read up to
Found = dict[int, tuple[dict[bytes, Delta], int]]


def read_partitions(settings: Settings, topic: str, partitions: list[int],
                    since: Found | None = None) -> Found:
    """The live delta per key of each partition (the latest value; a tombstone deletes),
    read by one consumer up to the end offsets at the time of the call: from the start, or on
    from an earlier read (``since``, left as it was). Decoded here, in the caller's thread."""
    from kafka import KafkaConsumer, TopicPartition

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
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000, max_records=100_000).items():
                end, live = ends[tp], found[tp.partition][0]
                for r in records:
                    if r.offset >= end:
                        continue
                    value = None if r.value is None else orjson.loads(r.value)
                    if isinstance(value, dict):
                        live[r.key] = Delta.from_state(value)
                    else:  # a tombstone (or a value that is no delta)
                        live.pop(r.key, None)
        return {p: (live, ends[TopicPartition(topic, p)]) for p, (live, _) in found.items()}
    finally:
        consumer.close()


def live_deltas(live: dict[bytes, Delta]) -> list[Delta]:
    return list(live.values())


class DedupLog:
    """Writes and reads the dedup deltas of one feed's raw partitions."""

    def __init__(self, app: Any, settings: Settings, feed: str) -> None:
        self.settings = settings
        self.feed = feed
        self.name = f"{settings.worker_id}-seen-{feed}-changelog"
        self.topic = app.topic(self.name, partitions=settings.topic_partitions, internal=True,
                               compacting=True, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw")
        self.pending: list[Any] = []
        self._declared = False
        self._prefetched: dict[int, asyncio.Future[Found]] = {}

    async def declare(self) -> None:
        """Create the topic if it does not exist yet (a fresh deployment)."""
        if not self._declared:
            await self.topic.maybe_declare()
            self._declared = True

    async def write(self, partition: int, key: str, state: dict[str, Any] | None) -> None:
        """One delta (None: its tombstone); delivered by ``drain``."""
        await self.declare()
        value = None if state is None else json.dumps(state, separators=(",", ":")).encode()
        self.pending.append(await self.topic.app.producer.send(
            self.name, json.dumps(key).encode(), value, partition, None, None))

    async def drain(self) -> None:
        """Wait until every write so far is acknowledged (raises on a send failure)."""
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

    async def read(self, partitions: list[int]) -> dict[int, list[Delta]]:
        """The partitions' live deltas up to now: what a prefetch found, plus what was written
        after it (a tail read), or a whole read. In a thread: the event loop goes on."""
        early: Found = {}
        for task in {id(t): t for p in partitions
                     if (t := self._prefetched.pop(p, None)) is not None}.values():
            try:
                early.update(await task)
            except Exception as exc:  # e.g. a broker away at assignment: read it all now
                log.warning("stream.dedup_prefetch_failed", feed=self.feed,
                            error=f"{type(exc).__name__}: {exc}")
        found = await self._read(partitions, {p: early[p] for p in partitions if p in early})
        return {p: live_deltas(live) for p, (live, _end) in found.items()}

    async def _read(self, partitions: list[int], since: Found | None) -> Found:
        await self.declare()
        started = time.monotonic()
        found = await asyncio.to_thread(read_partitions, self.settings, self.name, partitions,
                                        since)
        log.info("stream.dedup_read", feed=self.feed, partitions=partitions,
                 records=sum(len(live) for live, _ in found.values()), tail=bool(since),
                 seconds=round(time.monotonic() - started, 3))
        return found

"""The validation stage of one feed: ``raw.<feed>`` → ``clean.<feed>`` / ``dlq``.

Decode + validate (``core.contract.decode_event`` through ``pipeline.judge``) → dead letters
to ``dlq`` (reason, raw bytes, topic, partition, offset) → dedup by ``event_id`` in the
changelog-backed table ``dedup-<feed>`` → enrich from the registry → ``clean.<feed>``, keyed by
the aggregation key (zone / car park / station), with the raw origin and the enrichment in
headers. Every output and dedup-table write of a step is delivered before the step's offsets
are acknowledged (``streams.batches``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import faust
import structlog

from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams import metrics
from cityops.streams.alerting import AlertWiring, stop_after_failed_step
from cityops.streams.app import Topics, now_utc, send_record
from cityops.streams.batches import run_steps
from cityops.streams.dedup import Deduplicator
from cityops.streams.durable import DurableTable, OffsetGapGuard, stop_for_replay
from cityops.streams.pipeline import (
    ENRICH_HEADER,
    ORIGIN_HEADER,
    Origin,
    OriginStore,
    aggregation_key,
    dead_letter,
    enrich_header,
    enrichment,
    judge,
)

log = structlog.get_logger(__name__)


class ValidationStage:
    """The ``validate-<feed>`` agent: validate, dedup, enrich, publish clean records."""

    def __init__(self, feed: str, settings: Settings, registry: Registry, app: faust.App,
                 topics: Topics, alerting: AlertWiring | None = None) -> None:
        self.feed = feed
        self.name = f"validate-{feed}"
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self.alerting = alerting
        self.table = app.Table(f"dedup-{feed}", default=None,
                               partitions=settings.topic_partitions)
        self.durable = DurableTable(self.table)
        self.store = OriginStore(self.durable, on_delete=self._delete_partition)
        self.dedup = Deduplicator(settings.stream_dedup_horizon_s, self.store)
        self.counts = {"in": 0, "clean": 0, "dead": 0, "duplicate": 0, "replayed": 0}
        self.gaps = OffsetGapGuard(self.name, stop_for_replay)
        self.on_failure: Callable[[str, list[Any]], None] = stop_after_failed_step
        app.agent(topics.raw[feed], name=self.name)(self.agent)

    def _delete_partition(self, key: str, partition: int) -> None:
        # an evicted id's tombstone goes to the partition its entry was written to
        self.durable.partition = partition

    def ctx(self) -> ValidationContext:
        return ValidationContext.from_settings(self.settings, self.registry)

    async def agent(self, stream: Any) -> None:
        ctx = self.ctx()

        async def step(events: list[Any]) -> None:
            await self.step(events, ctx)

        await run_steps(stream, name=self.name, size=self.settings.worker_batch_max,
                        within_s=self.settings.worker_batch_s, step=step,
                        on_failure=lambda: self.on_failure,
                        timeout_s=self.settings.worker_step_timeout_s)

    async def step(self, events: list[Any], ctx: ValidationContext) -> None:
        """Handle a batch; outputs and dedup entries delivered before the offsets may be
        committed (if not, the worker exits uncommitted and the restart replays)."""
        futures: list[Any] = []
        for event in events:
            msg = event.message
            self.gaps.check(msg.topic, msg.partition, msg.offset)
            origin = Origin(msg.topic, msg.partition, msg.offset)
            raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
            try:
                await self.handle(raw, msg.key, origin, ctx, futures)
            except Exception as exc:  # never let one record end the stream
                metrics.AGENT_ERRORS.labels(agent=self.name).inc()
                log.exception("stream.validate_error", feed=self.feed, origin=str(origin))
                with contextlib.suppress(Exception):
                    futures.append(await send_record(self.topics.dlq, dead_letter(
                        self.feed, raw, msg.key, origin, "invalid",
                        f"internal: {type(exc).__name__}: {exc}", "", now_utc())))
        await asyncio.gather(*futures)
        await self.durable.drain()

    async def handle(self, raw: bytes, key: bytes | None, origin: Origin,
                     ctx: ValidationContext, futures: list[Any]) -> None:
        self.counts["in"] += 1
        metrics.EVENTS_IN.labels(feed=self.feed).inc()
        received = now_utc()
        judged = judge(self.feed, raw, key, origin, ctx,
                       max_bytes=self.settings.max_message_bytes, received_at=received)
        if judged.dead is not None:
            self.counts["dead"] += 1
            metrics.DEAD_LETTERS.labels(feed=self.feed, reason=judged.dead.reason).inc()
            futures.append(await send_record(self.topics.dlq, judged.dead))
            if self.alerting is not None:
                self.alerting.count_intake(self.feed, 0, 1)
            return
        ev = judged.event
        assert ev is not None
        here = (origin.partition, origin.offset)
        self.store.current = here
        self.durable.partition = origin.partition
        if self.store.origin(ev.event_id) == here:
            # the same record again: a replay after a restart, not a duplicate
            self.counts["replayed"] += 1
            metrics.REPLAYED.labels(stage="validate", feed=self.feed).inc()
        elif self.dedup.seen_before(ev.event_id, ev.event_time):
            self.counts["duplicate"] += 1
            metrics.DUPLICATES.labels(feed=self.feed).inc()
            metrics.DEAD_LETTERS.labels(feed=self.feed, reason="duplicate").inc()
            futures.append(await send_record(self.topics.dlq, dead_letter(
                self.feed, raw, key, origin, "duplicate",
                f"event_id {ev.event_id} already seen within "
                f"{self.settings.stream_dedup_horizon_s:.0f} s", "event_id", received)))
            return
        headers = [(ORIGIN_HEADER, origin.header()),
                   (ENRICH_HEADER, enrich_header(enrichment(ev, self.registry)))]
        futures.append(await self.topics.clean[self.feed].send(
            key=aggregation_key(ev).encode(), value=ev.to_json(), headers=headers))
        self.counts["clean"] += 1
        metrics.EVENTS_OUT.labels(feed=self.feed).inc()
        if self.alerting is not None:
            self.alerting.count_intake(self.feed, 1, 0)
            fut = await self.alerting.heartbeat(ev.source, ev.event_time,
                                                f"{origin.topic}/{origin.partition}")
            if fut is not None:
                futures.append(fut)

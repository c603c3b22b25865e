"""The aggregation stage of one feed: ``clean.<feed>`` → ``agg.<feed>`` / ``late`` + alerts.

The feed's ``Aggregator`` (``streams.feed_aggregators``) turns clean events into derived
records to ``agg.<feed>``, late events to ``late`` and observations to the alert engine. The
state of each unit is written, together with its replay high-water marks
(``pipeline.ReplayGuard``), to the log ``state-<feed>`` (``streams.state_log``), on the
unit's clean partition, after the outputs it caused were acknowledged by the broker: whole at
a unit's first step here, then what each step changed (``streams.state_chain``).

A clean partition's snapshots are read when the partition is assigned here and used from
its first step on. When a rebalance moves the partition away, its units are forgotten here
(another worker moves them on, and an idle-window close here would publish and snapshot
stale copies); when it comes back they are read again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import faust
import structlog

from cityops.core import topics as topic_names
from cityops.core.fast_contract import FastEvent, FastIncident, clean_context, decode_clean
from cityops.core.feeds import FEED_MODELS, Envelope, IncidentReported
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams import metrics
from cityops.streams.alerting import (
    incident_observation,
    observations_from,
    stop_after_failed_step,
)
from cityops.streams.app import Outgoing, Topics, now_utc, producer_of, publish_many
from cityops.streams.batches import run_step, run_steps
from cityops.streams.dispatch import register as deliver_to
from cityops.streams.durable import OffsetGapGuard, stop_for_replay
from cityops.streams.feed_aggregators import Aggregator, aggregator_for
from cityops.streams.pipeline import ORIGIN_HEADER, Origin, ReplayGuard, dead_letter, header_value
from cityops.streams.records import DeadLetter, IncidentStats, LateEvent, latest_revisions
from cityops.streams.state_chain import Position, fold, next_record
from cityops.streams.state_log import StateLog, by_key
from cityops.streams.written import WrittenEvents

log = structlog.get_logger(__name__)

#: an observation for the alert engine: (rule kind, subject, value, event time, extra)
Observation = dict[str, Any]
ObservationSink = Callable[[list[Observation]], Awaitable[list[Any]]]


@dataclass
class Applied:
    """What one batch step produced."""

    records: list[Any] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)


class AggregationStage:
    """The ``aggregate-<feed>`` agent: fold clean events, publish, snapshot touched units."""

    def __init__(self, feed: str, settings: Settings, registry: Registry, app: faust.App,
                 topics: Topics, observe: ObservationSink | None = None,
                 written: WrittenEvents | None = None) -> None:
        self.feed = feed
        self.name = f"aggregate-{feed}"
        self.settings = settings
        self.topics = topics
        self.observe = observe
        self.aggregator: Aggregator = aggregator_for(feed, settings, registry)
        self.guards: dict[str, ReplayGuard] = {}
        self.loaded: set[str] = set()
        self.log = StateLog(app, settings, f"state-{feed}", partitions=settings.topic_partitions)
        self.snaps: dict[int, dict[str, dict[str, Any]]] = {}  # clean partition → unit → snapshot
        #: clean partition → unit → where its chain of records stands (``streams.state_chain``)
        self.chains: dict[int, dict[str, Position]] = {}
        self.partitions: dict[str, int] = {}  # unit → its clean partition
        # this worker's own clean events, taken by their bytes instead of decoded again
        self.written = written if written is not None else WrittenEvents(0)
        self.lock = asyncio.Lock()
        self.counts = {"in": 0, "records": 0, "late": 0, "replayed": 0, "ignored": 0,
                       "errors": 0, "reused": 0}
        self.model = FEED_MODELS[feed]
        # re-read with the configured skew: the model's default (300 s) refused clean records
        # that validation, with a larger CITYOPS_MAX_CLOCK_SKEW_S, had accepted
        self.clean_ctx = clean_context(settings.max_clock_skew_s)
        self.gaps = OffsetGapGuard(self.name, stop_for_replay)
        self.on_failure: Callable[[str, list[Any]], None] = stop_after_failed_step
        self.stream_time: datetime | None = None  # newest event time applied (this process)
        self.clean_topic = settings.topic(topic_names.clean(feed))
        app.agent(topics.clean[feed], name=self.name)(self.agent)
        if settings.worker_direct_dispatch:
            deliver_to(app, self.clean_topic, self.handle_batch)

    async def reassigned(self, assigned: set[tuple[str, int]],
                         fresh: set[tuple[str, int]]) -> None:
        """After a rebalance: clean partitions gone elsewhere or newly assigned here have
        their units forgotten (a new one's snapshots are read again, from now on); those
        kept here keep their units, this worker being their only writer meanwhile."""
        mine = {p for topic, p in assigned if topic == self.clean_topic}
        new = {p for topic, p in fresh if topic == self.clean_topic}
        drop = new | {p for p in [*self.snaps, *self.partitions.values()] if p not in mine}
        if drop:
            self.written.clear()  # kept for units that may have moved: decoded from now on
        async with self.lock:
            self.forget_partitions(drop)
            for p in drop:
                self.snaps.pop(p, None)
                self.chains.pop(p, None)
        self.log.retain(mine)
        self.log.prefetch(sorted(new))

    def forget_partitions(self, partitions: set[int]) -> list[str]:
        """Forget every unit last read from one of ``partitions``; returns those units."""
        units = [u for u, p in self.partitions.items() if p in partitions]
        for unit in units:
            self.aggregator.forget(unit)
            self.guards.pop(unit, None)
            self.loaded.discard(unit)
            del self.partitions[unit]
        if units:
            log.info("stream.partitions_forgotten", feed=self.feed,
                     partitions=sorted(partitions), units=len(units))
        return units

    async def agent(self, stream: Any) -> None:
        await run_steps(stream, name=self.name, size=self.settings.worker_batch_max,
                        within_s=self.settings.worker_batch_s, step=self.step,
                        on_failure=lambda: self.on_failure, lock=self.lock,
                        timeout_s=self.settings.worker_step_timeout_s)

    async def handle_batch(self, records: list[Any]) -> bool:
        """One step over records handed over by ``streams.dispatch``."""
        return await run_step(records, name=self.name, step=self.step,
                              on_failure=lambda: self.on_failure, lock=self.lock,
                              timeout_s=self.settings.worker_step_timeout_s)

    # --- units: restore from / snapshot to the state log -----------------------------------
    async def restore(self, partitions: set[int]) -> None:
        """Read the snapshots of partitions not used since they were assigned here."""
        missing = sorted(p for p in partitions if p not in self.snaps)
        if missing:
            for partition, live in (await self.log.read(missing)).items():
                self.snaps[partition], self.chains[partition] = fold(by_key(live))

    def _load(self, unit: str, partition: int) -> None:
        if unit not in self.loaded:
            snap = self.snaps[partition].get(unit) or {}
            self.guards[unit] = ReplayGuard.from_state(snap.get("hw"))
            self.aggregator.from_state(unit, snap.get("state") or {})
            self.loaded.add(unit)
        self.partitions[unit] = partition

    def snapshot(self, unit: str) -> dict[str, Any]:
        part = self.partitions[unit]
        return {"p": part, "hw": self.guards[unit].to_state(),
                "state": self.aggregator.to_state(unit)}

    # --- the step --------------------------------------------------------------------------
    async def step(self, events: list[Any]) -> None:
        out = Applied()
        emitted_at = now_utc()
        await self.restore({event.message.partition for event in events})
        written, reused = self.written, 0
        heard = written.keys.add
        for event in events:
            msg = event.message
            self.gaps.check(msg.topic, msg.partition, msg.offset)
            self.counts["in"] += 1
            ev: Envelope | FastEvent | None = written.take(event.value)
            if ev is not None:
                reused += 1
            else:
                try:
                    ev = decode_clean(self.feed, event.value, self.clean_ctx) or (
                        self.model.model_validate_json(event.value,
                                                       context=self.clean_ctx.as_dict()))
                except Exception as exc:  # validation passed it; a foreign writer may not have
                    metrics.AGENT_ERRORS.labels(agent=self.name).inc()
                    log.warning("stream.clean_undecodable", feed=self.feed, offset=msg.offset)
                    out.dead.append(self._dead(event, "invalid",
                                               f"clean record not decodable: {exc}"[:500]))
                    continue
            key = (msg.key or b"").decode() or ev.source
            heard(key)
            unit = self.aggregator.unit(key, msg.partition)
            self._load(unit, msg.partition)
            guard = self.guards[unit]
            origin = Origin.parse_header(header_value(msg.headers, ORIGIN_HEADER))
            if not guard.is_new(origin):
                self.counts["replayed"] += 1
                metrics.REPLAYED.labels(stage="aggregate", feed=self.feed).inc()
                continue
            try:
                outcome = self.aggregator.add(unit, ev, emitted_at)
            except Exception as exc:  # a domain bug on one event: never stall the stream
                self.counts["errors"] += 1
                metrics.AGENT_ERRORS.labels(agent=self.name).inc()
                log.exception("stream.aggregate_event_error", feed=self.feed,
                              event_id=ev.event_id)
                out.dead.append(self._dead(event, "invalid",
                                           f"internal: {type(exc).__name__}: {exc}"[:500]))
                guard.mark(origin)
                continue
            guard.mark(origin)
            out.dirty.add(unit)
            if self.stream_time is None or ev.event_time > self.stream_time:
                self.stream_time = ev.event_time
            if outcome.records:  # a refused incident update can still close others
                out.records.extend(outcome.records)
                out.observations.extend(observations_from(outcome.records, ev.event_time))
                if isinstance(ev, IncidentReported | FastIncident):
                    out.observations.extend(incident_observation(r, ev.severity.value)
                                            for r in outcome.records
                                            if isinstance(r, IncidentStats))
            if outcome.accepted:
                continue
            if outcome.lateness_s > 0:
                wm = outcome.watermark or (
                    ev.event_time + timedelta(seconds=outcome.lateness_s))
                out.late.append(LateEvent(
                    feed=self.feed, event_id=ev.event_id, source=ev.source,
                    event_time=ev.event_time, watermark=wm,
                    lateness_s=round(outcome.lateness_s, 3),
                    payload_json=ev.to_json().decode(),
                    received_at=emitted_at))
            else:
                self.counts["ignored"] += 1
        self.counts["reused"] += reused
        await self.publish(out)

    def _dead(self, event: Any, reason: str, detail: str) -> DeadLetter:
        """A clean record this stage could not use: dead-lettered with its own coordinates."""
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        return dead_letter(self.feed, raw, msg.key, Origin(msg.topic, msg.partition, msg.offset),
                           reason, detail, "", now_utc())

    async def publish(self, out: Applied) -> None:
        """Send outputs, wait for the broker, then snapshot the touched units."""
        topic = self.topics.agg[self.feed]
        items: list[Outgoing] = []
        for dead in out.dead:
            items.append((self.topics.dlq, dead.key(), dead.to_json(), None))
            metrics.DEAD_LETTERS.labels(feed=self.feed, reason=dead.reason).inc()
        records = latest_revisions(out.records)
        items.extend((topic, rec.key(), rec.to_json(), None) for rec in records)
        items.extend((self.topics.late, late.key(), late.to_json(), None) for late in out.late)
        futures = await publish_many(producer_of(topic), items)
        if out.observations and self.observe is not None:
            # the alert engine's inputs are outputs of the step like the records: handed to
            # the producer with them and awaited in the same wait (one broker round trip)
            futures.extend(await self.observe(out.observations) or ())
        if futures:
            await asyncio.gather(*futures)
        self.counts["records"] += len(records)
        self.counts["late"] += len(out.late)
        if records:
            metrics.AGGREGATES_OUT.labels(topic=self.feed).inc(len(records))
        if out.late:
            metrics.LATE_EVENTS.labels(feed=self.feed).inc(len(out.late))
        for unit in out.dirty:
            # the unit's whole state, or what this step changed in it (``state_chain``)
            partition = self.partitions[unit]
            snaps, chains = self.snaps[partition], self.chains.setdefault(partition, {})
            snap = self.snapshot(unit)
            key, body, position = next_record(unit, chains.get(unit), snaps.get(unit), snap,
                                              self.log.encode)
            await self.log.write(partition, key, body)
            snaps[unit], chains[unit] = snap, position
        await self.log.drain()  # state in the log before the offsets are acked

    async def close_idle(self) -> int:
        """Close windows of units that went quiet (a timer calls this).

        Idleness is event time, not the wall clock: a zone is idle once the feed's newest
        event time has moved more than the allowed lateness plus ``CITYOPS_STREAM_IDLE_CLOSE_S``
        past the zone's own last event (``WindowedAggregator.close_idle``), so a replay of
        the past at any speed closes windows exactly as real time would, and a zone whose
        clock is behind (or a fast sensor elsewhere) never makes another zone late. Only
        units that closed windows are re-snapshotted.
        """
        if not self.aggregator.closes_idle or self.stream_time is None:
            return 0
        async with self.lock:
            for partition, snaps in self.snaps.items():
                for unit in [u for u in snaps if u not in self.loaded]:
                    self._load(unit, partition)
            records, units = self.aggregator.close_idle(
                self.settings.stream_allowed_lateness_s + self.settings.stream_idle_close_s,
                now_utc())
            out = Applied(records=records, observations=observations_from(records),
                          dirty=units)
            await self.publish(out)
            return len(records)

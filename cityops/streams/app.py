"""The Faust app: thin agent chains around the Faust-free domain logic.

Per feed, two agents (names ``validate-<feed>`` and ``aggregate-<feed>``):

1. ``raw.<feed>`` (raw bytes) → decode + validate (``core.contract.decode_event``) →
   dead letters to ``dlq`` (reason, raw bytes, topic, partition, offset) → dedup by
   ``event_id`` in the changelog-backed table ``dedup-<feed>`` → enrich from the registry →
   ``clean.<feed>``, keyed by the aggregation key (zone / car park / station), with the raw
   origin and the enrichment in headers.
2. ``clean.<feed>`` → the feed's aggregator (``streams.aggregators``) → derived records to
   ``agg.<feed>``, late events to ``late``, observations to the alert engine. The aggregator
   state of each key is snapshotted, together with its replay high-water marks, into the
   table ``state-<feed>`` after the outputs it caused were acknowledged by the broker.

The alert engine (``alerts-engine`` agent, see ``streams.alerting``) and the warehouse sink
(a thread, ``cityops.warehouse.sink``) are added by ``cityops.streams.worker``.

No exception escapes an agent: an unexpected one dead-letters the record (reason
``invalid``, detail ``internal: ...``) and is counted in ``cityops_agent_errors_total``.
Faust tables use the in-memory store and are rebuilt from their changelog topics at start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import structlog

from cityops.core import topics as topic_names
from cityops.core.feeds import FEED_MODELS, Envelope, IncidentReported, ValidationContext
from cityops.core.kafka_security import ssl_context, uses_sasl, uses_tls
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.streams import metrics
from cityops.streams.aggregators import (
    AirQualityAggregator,
    FootfallAggregator,
    IncidentAggregator,
    Outcome,
    ParkingAggregator,
)
from cityops.streams.alerting import (
    incident_observation,
    observations_from,
    stop_after_failed_step,
)
from cityops.streams.dedup import Deduplicator
from cityops.streams.durable import DurableTable, OffsetGapGuard, stop_for_replay
from cityops.streams.pipeline import (
    ENRICH_HEADER,
    ORIGIN_HEADER,
    Origin,
    OriginStore,
    ReplayGuard,
    aggregation_key,
    dead_letter,
    enrich_header,
    enrichment,
    header_value,
    judge,
)
from cityops.streams.records import DeadLetter, IncidentStats, LateEvent

log = structlog.get_logger(__name__)

#: an observation for the alert engine: (rule kind, subject, value, event time, extra)
Observation = dict[str, Any]
ObservationSink = Callable[[list[Observation]], Awaitable[list[Any]]]

#: resolved / cancelled incidents are dropped from the state this long (event time) later
INCIDENT_RETENTION = timedelta(hours=24)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _tune_consumer_fetch_wait(wait_ms: int) -> None:
    """Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``; with several topics on
    one fetch request that wait showed up as ~1.4 s median latency per hop at a few hundred
    events/s. Substitute the consumer class the driver instantiates with one using
    ``CITYOPS_WORKER_FETCH_MAX_WAIT_MS`` (only that keyword changes)."""
    import types

    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.aiokafka, "_cityops_wait_ms", None) == wait_ms:
        return

    class Consumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *topics: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = wait_ms
            super().__init__(*topics, **kwargs)

    shim = types.ModuleType("aiokafka")
    shim.__dict__.update(vars(aiokafka))
    shim.AIOKafkaConsumer = Consumer  # type: ignore[attr-defined]
    shim._cityops_wait_ms = wait_ms  # type: ignore[attr-defined]
    driver.aiokafka = shim  # type: ignore[assignment]


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None on PLAINTEXT): SASL/SCRAM and TLS."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(settings) if uses_tls(settings) else None
    if uses_sasl(settings):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism, ssl_context=ctx)
    return faust.SSLCredentials(ctx)


def make_app(settings: Settings) -> faust.App:
    """A Faust app configured from settings (memory store, raw bytes, acks=all)."""
    _tune_consumer_fetch_wait(settings.worker_fetch_max_wait_ms)
    data = (settings.data_dir / "worker" / settings.worker_id).resolve()
    data.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_id,
        broker=[f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(data),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        producer_max_request_size=settings.kafka_max_batch_bytes,
        broker_commit_interval=settings.worker_commit_interval_s,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 4),
        broker_rebalance_timeout=settings.worker_session_timeout_s,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,
        stream_publish_on_commit=False,
        web_enabled=True,
        # Faust's own pages (/router, /table, /graph, stats at /) have no lock: off; only
        # our guarded views (streams.web) and Faust's {"status": "OK"} index are served
        web_router_enabled=False, web_tables_enabled=False, web_stats_enabled=False,
        web_graph_enabled=False, web_metrics_enabled=False,
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        table_standby_replicas=0,
    )


@dataclass
class Topics:
    raw: dict[str, Any]
    clean: dict[str, Any]
    agg: dict[str, Any]
    alerts: Any
    dlq: Any
    late: Any


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def t(name: str) -> Any:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw",
                         partitions=settings.topic_partitions)

    return Topics(
        raw={f: t(topic_names.raw(f)) for f in FEEDS},
        clean={f: t(topic_names.clean(f)) for f in FEEDS},
        agg={f: t(topic_names.agg(f)) for f in FEEDS},
        alerts=t(topic_names.ALERTS), dlq=t(topic_names.DLQ), late=t(topic_names.LATE),
    )


async def send_record(topic: Any, record: Any) -> Any:
    """Publish a derived record (JSON, keyed); returns the delivery future."""
    return await topic.send(key=record.key(), value=record.to_json())


# ============================================================================================
# stage 1: validate · dedup · enrich
# ============================================================================================


class Stage1:
    """``raw.<feed>`` → ``clean.<feed>`` / ``dlq``: the validation agent of one feed.

    Records are handled in steps of up to ``CITYOPS_WORKER_BATCH_MAX``: every output and
    dedup-table write of a step is awaited (delivered) before the step's offsets are
    acknowledged to Faust, so a commit never runs ahead of what it depends on.
    """

    def __init__(self, feed: str, settings: Settings, registry: Registry, app: faust.App,
                 topics: Topics, alerting: Any | None = None) -> None:
        self.feed = feed
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self.alerting = alerting  # streams.alerting.AlertWiring
        self.table = app.Table(f"dedup-{feed}", default=None,
                               partitions=settings.topic_partitions)
        self.durable = DurableTable(self.table)
        self.store = OriginStore(self.durable, on_delete=self._delete_partition)
        self.dedup = Deduplicator(settings.stream_dedup_horizon_s, self.store)
        self.counts = {"in": 0, "clean": 0, "dead": 0, "duplicate": 0, "replayed": 0}
        self.gaps = OffsetGapGuard(f"validate-{feed}", stop_for_replay)
        self.on_failure: Callable[[str, list[Any]], None] = stop_after_failed_step
        app.agent(topics.raw[feed], name=f"validate-{feed}")(self.agent)

    def _delete_partition(self, key: str, partition: int) -> None:
        # an evicted id's tombstone goes to the partition its entry was written to
        self.durable.partition = partition

    def ctx(self) -> ValidationContext:
        return ValidationContext.from_settings(self.settings, self.registry)

    async def agent(self, stream: Any) -> None:
        ctx = self.ctx()
        async for events in stream.take_events(self.settings.worker_batch_max,
                                               within=self.settings.worker_batch_s):
            # outputs and dedup entries delivered before the offsets may be committed;
            # if not, or not within the step timeout (a send that hangs never fails), the
            # worker exits uncommitted (never acknowledged: the restart replays)
            try:
                await asyncio.wait_for(self.step(events, ctx),
                                       self.settings.worker_step_timeout_s)
            except Exception as exc:
                metrics.AGENT_ERRORS.labels(agent=f"validate-{self.feed}").inc()
                log.exception("stream.validate_failed", feed=self.feed, n=len(events),
                              error=f"{type(exc).__name__}: {exc}"[:200])
                self.on_failure(f"validate-{self.feed}", events)

    async def step(self, events: list[Any], ctx: ValidationContext) -> None:
        """Handle one batch and wait until its outputs and dedup entries are delivered."""
        futures: list[Any] = []
        for event in events:
            msg = event.message
            self.gaps.check(msg.topic, msg.partition, msg.offset)
            origin = Origin(msg.topic, msg.partition, msg.offset)
            raw = (event.value if isinstance(event.value, bytes)
                   else bytes(event.value or b""))
            try:
                await self.handle(raw, msg.key, origin, ctx, futures)
            except Exception as exc:  # never let one record end the stream
                metrics.AGENT_ERRORS.labels(agent=f"validate-{self.feed}").inc()
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


# ============================================================================================
# stage 2: aggregate
# ============================================================================================


@dataclass
class Applied:
    """What one batch step produced."""

    records: list[Any] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)


class FeedState:
    """Adapter between one feed's aggregator and the per-unit snapshots in a table.

    A *unit* is what one snapshot holds: a zone / car park / station for keyed aggregators,
    one clean partition for incidents (whose aggregator is not keyed by zone).
    """

    def __init__(self, feed: str, settings: Settings, registry: Registry) -> None:
        self.feed = feed
        self.settings = settings
        self.registry = registry
        lateness = settings.stream_allowed_lateness_s
        tz = settings.tz
        self.footfall = FootfallAggregator(
            registry, lateness, presence_half_life_s=settings.footfall_presence_half_life_s,
            reset_hour_local=settings.footfall_presence_reset_hour, tz=tz,
        ) if feed == "footfall" else None
        self.parking = ParkingAggregator(tz=tz) if feed == "parking" else None
        self.air = AirQualityAggregator(tz=tz) if feed == "air" else None
        self.incidents: dict[int, IncidentAggregator] = {}
        self.guards: dict[str, ReplayGuard] = {}
        self.loaded: set[str] = set()

    def unit(self, key: str, partition: int) -> str:
        return f"@{partition}" if self.feed == "incidents" else key

    def restore(self, unit: str, snapshot: dict[str, Any] | None) -> None:
        snap = snapshot or {}
        state = snap.get("state") or {}
        self.guards[unit] = ReplayGuard.from_state(snap.get("hw"))
        if self.feed == "incidents":
            agg = IncidentAggregator(tz=self.settings.tz)
            agg.from_state(state)
            self.incidents[int(unit[1:])] = agg
        elif state:
            self._keyed().from_state(unit, state)
        self.loaded.add(unit)

    def _keyed(self) -> Any:
        agg = self.footfall or self.parking or self.air
        assert agg is not None
        return agg

    def snapshot(self, unit: str, partition: int) -> dict[str, Any]:
        if self.feed == "incidents":
            state = self.incidents[int(unit[1:])].to_state()
        else:
            state = self._keyed().to_state(unit)
        return {"p": partition, "hw": self.guards[unit].to_state(), "state": state}

    def apply(self, unit: str, ev: Envelope, emitted_at: datetime) -> Outcome:
        if self.feed == "incidents":
            agg = self.incidents[int(unit[1:])]
            outcome = agg.add(ev, emitted_at)  # type: ignore[arg-type]
            # bounded state: forget incidents closed a day (of event time) before this one
            agg.evict_closed_before(ev.event_time - INCIDENT_RETENTION)
            return outcome
        return self._keyed().add(ev, emitted_at)



class Stage2:
    """``clean.<feed>`` → ``agg.<feed>`` / ``late`` (+ observations for alerts)."""

    def __init__(self, feed: str, settings: Settings, registry: Registry, app: faust.App,
                 topics: Topics, observe: ObservationSink | None = None) -> None:
        self.feed = feed
        self.settings = settings
        self.topics = topics
        self.observe = observe
        self.state = FeedState(feed, settings, registry)
        self.table = app.Table(f"state-{feed}", default=None,
                               partitions=settings.topic_partitions)
        self.durable = DurableTable(self.table)
        self.partitions: dict[str, int] = {}  # unit → its clean partition
        self.lock = asyncio.Lock()
        self.counts = {"in": 0, "records": 0, "late": 0, "replayed": 0, "ignored": 0,
                       "errors": 0}
        self.model = FEED_MODELS[feed]
        self.app = app
        self.gaps = OffsetGapGuard(f"aggregate-{feed}", stop_for_replay)
        self.on_failure: Callable[[str, list[Any]], None] = stop_after_failed_step
        self.stream_time: datetime | None = None  # newest event time applied (this process)
        app.agent(topics.clean[feed], name=f"aggregate-{feed}")(self.agent)

    async def agent(self, stream: Any) -> None:
        async for events in stream.take_events(self.settings.worker_batch_max,
                                               within=self.settings.worker_batch_s):
            try:  # outputs or state not delivered (in time): stop uncommitted
                async with self.lock:
                    await asyncio.wait_for(self.step(events),
                                           self.settings.worker_step_timeout_s)
            except Exception as exc:
                metrics.AGENT_ERRORS.labels(agent=f"aggregate-{self.feed}").inc()
                log.exception("stream.aggregate_failed", feed=self.feed, n=len(events),
                              error=f"{type(exc).__name__}: {exc}"[:200])
                self.on_failure(f"aggregate-{self.feed}", events)

    def _load(self, unit: str, partition: int) -> None:
        if unit not in self.state.loaded:
            self.state.restore(unit, self.durable.get(unit))
        self.partitions[unit] = partition

    async def step(self, events: list[Any]) -> None:
        out = Applied()
        emitted_at = now_utc()
        for event in events:
            msg = event.message
            self.gaps.check(msg.topic, msg.partition, msg.offset)
            self.counts["in"] += 1
            try:
                ev = self.model.model_validate_json(event.value)
            except Exception as exc:  # stage 1 validated it; a foreign writer may not have
                metrics.AGENT_ERRORS.labels(agent=f"aggregate-{self.feed}").inc()
                log.warning("stream.clean_undecodable", feed=self.feed, offset=msg.offset)
                out.dead.append(self._dead(event, "invalid",
                                           f"clean record not decodable: {exc}"[:500]))
                continue
            key = (msg.key or b"").decode() or ev.source
            unit = self.state.unit(key, msg.partition)
            self._load(unit, msg.partition)
            guard = self.state.guards[unit]
            origin = Origin.parse_header(header_value(msg.headers, ORIGIN_HEADER))
            if not guard.is_new(origin):
                self.counts["replayed"] += 1
                metrics.REPLAYED.labels(stage="aggregate", feed=self.feed).inc()
                continue
            try:
                outcome = self.state.apply(unit, ev, emitted_at)
            except Exception as exc:  # a domain bug on one event: never stall the stream
                self.counts["errors"] += 1
                metrics.AGENT_ERRORS.labels(agent=f"aggregate-{self.feed}").inc()
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
            if outcome.accepted:
                out.records.extend(outcome.records)
                out.observations.extend(observations_from(outcome.records, ev.event_time))
                if isinstance(ev, IncidentReported):
                    out.observations.extend(incident_observation(r, ev.severity.value)
                                            for r in outcome.records
                                            if isinstance(r, IncidentStats))
            elif outcome.lateness_s > 0:
                wm = outcome.watermark or (
                    ev.event_time + timedelta(seconds=outcome.lateness_s))
                out.late.append(LateEvent(
                    feed=self.feed, event_id=ev.event_id, source=ev.source,
                    event_time=ev.event_time, watermark=wm,
                    lateness_s=round(outcome.lateness_s, 3),
                    payload_json=ev.model_dump_json(exclude_none=True),
                    received_at=emitted_at))
            else:
                self.counts["ignored"] += 1
        await self.publish(out)

    def _dead(self, event: Any, reason: str, detail: str) -> DeadLetter:
        """A clean record this stage could not use: dead-lettered with its own coordinates."""
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        return dead_letter(self.feed, raw, msg.key, Origin(msg.topic, msg.partition, msg.offset),
                           reason, detail, "", now_utc())

    async def publish(self, out: Applied) -> None:
        """Send outputs, wait for the broker, then snapshot the touched units."""
        futures = []
        topic = self.topics.agg[self.feed]
        for dead in out.dead:
            futures.append(await send_record(self.topics.dlq, dead))
            metrics.DEAD_LETTERS.labels(feed=self.feed, reason=dead.reason).inc()
        for rec in out.records:
            futures.append(await send_record(topic, rec))
        for late in out.late:
            futures.append(await send_record(self.topics.late, late))
        if futures:
            await asyncio.gather(*futures)
        self.counts["records"] += len(out.records)
        self.counts["late"] += len(out.late)
        if out.records:
            metrics.AGGREGATES_OUT.labels(topic=self.feed).inc(len(out.records))
        if out.late:
            metrics.LATE_EVENTS.labels(feed=self.feed).inc(len(out.late))
        if out.observations and self.observe is not None:
            obs_futures = await self.observe(out.observations)
            if obs_futures:
                await asyncio.gather(*obs_futures)
        for unit in out.dirty:
            part = self.partitions[unit]
            self.durable.set_at(unit, self.state.snapshot(unit, part), part)
        await self.durable.drain()  # state in the changelog before the offsets are acked

    async def close_idle(self) -> int:
        """Close footfall windows of zones that went quiet (a timer calls this).

        Idleness is event time, not the wall clock: a zone is idle once the feed's newest
        event time has moved more than the allowed lateness plus ``CITYOPS_STREAM_IDLE_CLOSE_S``
        past the zone's own last event (``WindowedAggregator.close_idle``), so a replay of
        the past at any speed closes windows exactly as real time would, and a zone whose
        clock is behind (or a fast sensor elsewhere) never makes another zone late. Only
        zones that closed windows are re-snapshotted.
        """
        agg = self.state.footfall
        if agg is None or self.stream_time is None:
            return 0
        async with self.lock:
            for unit, snap in list(self.durable.items()):
                if unit not in self.state.loaded and isinstance(snap, dict):
                    self._load(unit, int(snap.get("p", 0)))
            records, zones = agg.close_idle(
                self.settings.stream_allowed_lateness_s + self.settings.stream_idle_close_s,
                now_utc())
            out = Applied(records=records, observations=observations_from(records),
                          dirty=zones)
            await self.publish(out)
            return len(records)


"""Wiring of the alert engine (``streams.alerts.machine.AlertEngine``) into the worker.

Everything that changes the engine goes through one single-partition internal topic,
``<worker id>-alert-input``, consumed by the ``alerts-engine`` agent, so the engine sees one
ordered sequence of inputs and its snapshot is consistent with the input offset:

* ``observe``   — values from derived records (crowd density of 1-min windows, car-park
                  occupancy, hourly AQI, incident severity), sent by the aggregation agents;
* ``heartbeat`` — a source reported (at most every ``CITYOPS_HEARTBEAT_EVERY_S`` of event
                  time per source), sent by the validation agents — dead-sensor detection;
* ``intake``    — accepted / dead-lettered counts per feed (dead-letter-rate rule);
* ``tick``      — the timer (``CITYOPS_ALERT_TICK_S``): delayed fires/clears, dead sensors,
                  escalations; the time is the wall clock or, with ``CITYOPS_ALERT_CLOCK=event``,
                  the newest event time the engine has seen;
* ``ack``       — an operator's acknowledgement (HTTP ``POST /alerts/{id}/ack``, the CLI).

Alert events go to the ``alerts`` topic (awaited), then to the webhook dispatcher (which
retries on its own and never blocks the agent), then the engine snapshot and the input offset
are written to the table ``alert-engine`` in one changelog message. A replayed input at or
below the snapshot offset is skipped, so a restart neither repeats nor loses an alert event.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
import structlog
from faust.types import TopicT

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams import metrics
from cityops.streams.alerts.machine import AlertEngine, UnknownAlertError
from cityops.streams.alerts.rules import INCIDENT_SEVERITY_RANK, RuleSet
from cityops.streams.app import Outgoing, producer_of, publish_many
from cityops.streams.batches import run_step, run_steps
from cityops.streams.dispatch import register as deliver_to
from cityops.streams.durable import EXIT_REPLAY, OffsetGapGuard, stop_for_replay
from cityops.streams.layouts import alert_input_topic
from cityops.streams.records import (
    AirQualityIndex,
    AlertEvent,
    FootfallWindow,
    IncidentStats,
    ParkingState,
    Pending,
)
from cityops.streams.state_log import StateLog, by_key

log = structlog.get_logger(__name__)

#: engine inputs packed into one record of the input topic (``op: batch``): a step's
#: observations and heartbeats travel together instead of one record each
INPUTS_PER_RECORD = 1000

ENGINE_KEY = "engine"
OPEN_INCIDENT = {"reported", "dispatched", "on_scene"}


def observations_from(records: list[Any],
                      event_time: datetime | None = None) -> list[dict[str, Any]]:
    """Alert-rule observations carried by derived records (the 1-min window for density).

    ``event_time`` is the time of the event that produced the records: an hourly AQI is
    observed then (not at its ``hour_start``), so pending clears and escalations count
    from the sample that moved the value.

    The time is in POSIX seconds (``ts``), what the engine keeps: as ISO text (``at``, which
    the engine still reads) each observation cost an ``isoformat`` here and a parse and a
    ``timestamp`` there, about one observation per event.
    """
    out: list[dict[str, Any]] = []
    for rec in records:
        seen = None
        if isinstance(rec, Pending):  # a revision not built yet says what it observes
            seen = rec.observes
        elif isinstance(rec, FootfallWindow):
            seen = FootfallWindow.observes(rec.zone_id, rec.window, rec.density_ppm2,
                                           rec.window_end.timestamp())
        if seen is not None:
            kind, subject, value, ts = seen
            out.append({"op": "observe", "kind": kind, "subject": subject, "value": value,
                        "ts": ts})
        elif isinstance(rec, ParkingState):
            out.append({"op": "observe", "kind": "carpark_occupancy",
                        "subject": rec.carpark_id, "value": rec.occupancy_rate,
                        "ts": rec.event_time.timestamp()})
        elif isinstance(rec, AirQualityIndex) and rec.averaging == "1h" and rec.aqi is not None:
            out.append({"op": "observe", "kind": "aqi", "subject": rec.station_id,
                        "value": float(rec.aqi),
                        "ts": (event_time or rec.hour_start).timestamp()})
    return out


def incident_observation(stats: IncidentStats, severity: str) -> dict[str, Any]:
    """The ``incident`` rule watches severity rank while open, 0 once closed."""
    value = INCIDENT_SEVERITY_RANK.get(severity, 0) if stats.status in OPEN_INCIDENT else 0.0
    return {"op": "observe", "kind": "incident", "subject": stats.incident_id,
            "value": float(value), "ts": stats.event_time.timestamp()}


def stop_after_failed_step(agent: str, events: list[Any]) -> None:
    """A step's outputs or state were not delivered: leave now, uncommitted, for a replay.

    Returning from (or crashing) the agent is not safe: Faust's supervisor restarts it and
    ``take_events``'s finalizer acknowledges the failed batch, so the next commit would
    cover records whose outputs were never delivered. Like an offset gap, exit at once with
    ``EXIT_REPLAY`` through ``stop_for_replay``; ``cityops worker`` restarts the worker and
    the restart replays from the last commit.
    """
    msg = events[0].message if events else None
    log.critical("stream.step_failed", agent=agent, n=len(events), action="exit for replay",
                 exit_status=EXIT_REPLAY)
    stop_for_replay(getattr(msg, "topic", agent), getattr(msg, "partition", -1),
                    getattr(msg, "offset", 0) - 1, getattr(msg, "offset", 0))


def _parse_at(text: Any) -> datetime:
    dt = datetime.fromisoformat(str(text))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _input_ts(item: dict[str, Any]) -> float:
    """An observation's or heartbeat's time in POSIX seconds: ``ts``, or ``at`` as ISO text
    (inputs written before they carried seconds)."""
    ts = item.get("ts")
    return float(ts) if ts is not None else _parse_at(item["at"]).timestamp()


#: hands an alert event to delivery (e.g. ``WebhookDispatcher.offer``); its result is ignored
AlertDispatch = Callable[[AlertEvent], object]


class AlertWiring:
    """The alert-input topic, its agent, the engine snapshot table, ticks and acks."""

    def __init__(self, settings: Settings, registry: Registry, rules: RuleSet,
                 app: faust.App, alerts_topic: TopicT,
                 dispatch: AlertDispatch | None = None, run_engine: bool = True) -> None:
        """``run_engine``: this worker may own the engine (subscribe to its input); a
        validation worker only sends inputs (``CITYOPS_WORKER_STAGES=validation``)."""
        self.settings = settings
        self.run_engine = run_engine
        self.rules = rules
        self.app = app
        self.alerts_topic = alerts_topic
        self.dispatch = dispatch
        self.event_clock: float | None = None  # newest event time seen (POSIX s)
        self.registry = registry
        self.engine = self._new_engine()
        self.loaded = False
        self.owned = False  # the alert input's one partition is assigned to this worker
        self.offset = -1
        self.input = app.topic(alert_input_topic(settings), partitions=1,
                               internal=True, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw")
        self.log = StateLog(app, settings, "alert-engine", partitions=1)
        self.lock = asyncio.Lock()
        self.pending_acks: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self.last_heartbeat: dict[str, float] = {}
        self.intake: dict[str, list[int]] = {}
        self.counts = {"inputs": 0, "events": 0, "replayed": 0, "errors": 0}
        self.gaps = OffsetGapGuard("alerts-engine", stop_for_replay)
        self.on_failure: Callable[[str, list[Any]], None] = stop_after_failed_step
        if run_engine:
            app.agent(self.input, name="alerts-engine")(self.agent)
            if settings.worker_direct_dispatch:
                deliver_to(app, self.input.get_topic_name(), self.handle_batch)
        else:  # its one partition exists before the first input, whoever starts first
            app.task(self.input.maybe_declare)
        app.timer(settings.alert_tick_s)(self.on_timer)

    # --- inputs (called from other agents, the timer and the web views) ------------------
    async def _send(self, items: list[dict[str, Any]]) -> list[Any]:
        """Send inputs, up to ``INPUTS_PER_RECORD`` per record (``op: batch``, applied in
        order as one input); returns their delivery futures. One closed batch
        (``publish_many``): a step awaits them with its outputs, so they leave at once."""
        records: list[Outgoing] = []
        for i in range(0, len(items), INPUTS_PER_RECORD):
            chunk = items[i:i + INPUTS_PER_RECORD]
            body = chunk[0] if len(chunk) == 1 else {"op": "batch", "items": chunk}
            records.append((self.input, b"engine", orjson.dumps(body), None))
        return await publish_many(producer_of(self.input), records)

    async def observe(self, items: list[dict[str, Any]]) -> list[Any]:
        return await self._send(items)

    def heartbeat(self, source: str, at: datetime, lane: str | None = None,
                  ts: float | None = None) -> dict[str, Any] | None:
        """The heartbeat input for a source that reported, or None within
        ``CITYOPS_HEARTBEAT_EVERY_S`` (event time) of its last one; the caller sends a
        step's heartbeats together (``observe``). ``ts``: ``at`` in epoch seconds, if the
        caller has it already."""
        if ts is None:
            ts = at.timestamp()
        last = self.last_heartbeat.get(source)
        if last is not None and ts - last < self.settings.heartbeat_every_s and ts >= last:
            return None
        self.last_heartbeat[source] = ts
        # the time in POSIX seconds, what the engine keeps: as ISO text (``at``, which the
        # engine still reads) it cost the validation worker 5 % of its CPU in ``isoformat``,
        # about one heartbeat per event in a backlog, and the engine a parse each
        return {"op": "heartbeat", "source": source, "ts": ts, "lane": lane}

    def count_intake(self, feed: str, accepted: int, dead: int) -> None:
        c = self.intake.setdefault(feed, [0, 0])
        c[0] += accepted
        c[1] += dead

    async def on_timer(self) -> None:
        items: list[dict[str, Any]] = []
        for feed, (ok, dead) in list(self.intake.items()):
            if ok or dead:
                items.append({"op": "intake", "feed": feed, "ok": ok, "dead": dead})
        self.intake.clear()
        items.append({"op": "tick"})
        try:
            await self._send(items)
        except Exception:  # the broker may be briefly away; the next tick retries
            log.warning("alerts.tick_send_failed")

    async def acknowledge(self, alert_id: str, actor: str) -> tuple[int, dict[str, Any]]:
        rid = uuid.uuid4().hex
        fut: asyncio.Future[tuple[int, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future())
        self.pending_acks[rid] = fut
        try:
            await self._send([{"op": "ack", "alert_id": alert_id, "by": actor,
                               "at": datetime.now(UTC).isoformat(), "rid": rid}])
            if not (self.run_engine and self.owned):
                # the engine runs in another worker and answers that worker only: waiting
                # here for the answer kept an officer 30 s on a 202 (2026-12-05)
                return 202, {"status": "queued", "alert_id": alert_id}
            return await asyncio.wait_for(fut, timeout=30)
        except TimeoutError:
            return 202, {"status": "queued", "alert_id": alert_id}
        finally:
            self.pending_acks.pop(rid, None)

    async def list_alerts(self) -> list[dict[str, Any]]:
        """The engine's alerts: this worker's own engine when it runs it, else the latest
        snapshot on the log (the worker that runs the engine wrote it)."""
        if self.owned:
            await self._restore()
            engine = self.engine
        else:
            engine = self._new_engine()
            snap = by_key((await self.log.read([0]))[0]).get(ENGINE_KEY)
            if isinstance(snap, dict):
                engine.from_state(snap.get("state") or {})
        return [_jsonable(a) for a in engine.active_alerts()]

    # --- the agent ------------------------------------------------------------------------
    def _new_engine(self) -> AlertEngine:
        return AlertEngine(self.rules, self.registry, clock=lambda: datetime.now(UTC),
                           silence_by_feed=self.settings.alert_clock == "event",
                           history_after_s=self.settings.alert_webhook_max_age_s,
                           review_within_s=self.settings.alert_review_max_age_s)

    async def reassigned(self, assigned: set[tuple[str, int]],
                         fresh: set[tuple[str, int]]) -> None:
        """After a rebalance: the engine's state is read again when the alert input comes
        (back) here, since another worker may have run the engine meanwhile, and dropped
        when it goes elsewhere; kept while it stays here."""
        tp = (self.input.get_topic_name(), 0)
        self.owned = tp in assigned
        if tp in fresh or not self.owned:
            async with self.lock:
                self.engine = self._new_engine()
                self.loaded, self.offset, self.event_clock = False, -1, None
            self.log.retain(set())
        if tp in fresh:
            self.log.prefetch([0])

    async def _restore(self) -> None:
        if self.loaded:
            return
        snap = by_key((await self.log.read([0]))[0]).get(ENGINE_KEY)
        if self.loaded:  # a step or a view restored it while this read ran: theirs stands
            return
        if isinstance(snap, dict):
            self.engine.from_state(snap.get("state") or {})
            self.offset = int(snap.get("offset", -1))
            self.event_clock = snap.get("clock")
        self.loaded = True

    def _now(self) -> datetime:
        if self.settings.alert_clock == "event" and self.event_clock is not None:
            return datetime.fromtimestamp(self.event_clock, UTC)
        return datetime.now(UTC)

    def _seen_ts(self, ts: float) -> None:
        if self.event_clock is None or ts > self.event_clock:
            self.event_clock = ts

    def _apply(self, item: dict[str, Any]) -> list[AlertEvent]:
        op = item.get("op")
        if op == "batch":
            return [e for one in item["items"] for e in self._apply(one)]
        if op == "observe":
            ts = _input_ts(item)
            self._seen_ts(ts)
            return self.engine.observed(item["kind"], item["subject"], float(item["value"]),
                                        ts)
        if op == "heartbeat":
            ts = _input_ts(item)
            self._seen_ts(ts)
            return self.engine.heard(item["source"], ts, item.get("lane"))
        if op == "intake":
            return self.engine.record_intake(item["feed"], int(item["ok"]), int(item["dead"]),
                                             self._now())
        if op == "tick":
            return self.engine.tick(self._now())
        if op == "ack":
            rid = item.get("rid")
            at = self._now() if self.settings.alert_clock == "event" else _parse_at(item["at"])
            try:
                events = self.engine.acknowledge(item["alert_id"], item["by"], at)
            except UnknownAlertError as exc:
                self._resolve(rid, 404, {"error": str(exc), "alert_id": item["alert_id"]})
                return []
            self._resolve(rid, 200, {"status": "acknowledged" if events else
                                     "already acknowledged", "alert_id": item["alert_id"],
                                     "events": [orjson.loads(e.to_json()) for e in events]})
            return events
        log.warning("alerts.unknown_input", op=op)
        return []

    def _resolve(self, rid: Any, status: int, body: dict[str, Any]) -> None:
        fut = self.pending_acks.get(rid) if isinstance(rid, str) else None
        if fut is not None and not fut.done():
            fut.set_result((status, body))

    def _count_error(self) -> None:
        self.counts["errors"] += 1

    async def agent(self, stream: Any) -> None:
        await run_steps(stream, name="alerts-engine", size=self.settings.worker_batch_max,
                        within_s=self.settings.worker_batch_s, step=self.step,
                        on_failure=lambda: self.on_failure, lock=self.lock,
                        on_error=self._count_error,
                        timeout_s=self.settings.worker_step_timeout_s)

    async def handle_batch(self, records: list[Any]) -> bool:
        """One step over records handed over by ``streams.dispatch``."""
        return await run_step(records, name="alerts-engine", step=self.step,
                              on_failure=lambda: self.on_failure, lock=self.lock,
                              on_error=self._count_error,
                              timeout_s=self.settings.worker_step_timeout_s)

    async def step(self, events: list[Any]) -> None:
        await self._restore()
        produced: list[AlertEvent] = []
        last = self.offset
        for event in events:
            off = event.message.offset
            self.gaps.check(event.message.topic, event.message.partition, off)
            if off <= self.offset:
                self.counts["replayed"] += 1
                metrics.REPLAYED.labels(stage="alerts", feed="-").inc()
                continue
            last = max(last, off)
            self.counts["inputs"] += 1
            try:
                item = orjson.loads(event.value)
                produced.extend(self._apply(item))
            except Exception as exc:  # one bad input never stops the engine
                self.counts["errors"] += 1
                log.warning("alerts.bad_input", offset=off, error=str(exc)[:200])
        futures = await publish_many(producer_of(self.alerts_topic), [
            (self.alerts_topic, e.key(), e.to_json(), None) for e in produced])
        if futures:
            await asyncio.gather(*futures)
        for e in produced:
            metrics.ALERT_EVENTS.labels(kind=e.kind.value, severity=e.severity).inc()
            if self.dispatch is not None:
                with contextlib.suppress(Exception):
                    self.dispatch(e)
        self.counts["events"] += len(produced)
        metrics.ACTIVE_ALERTS.set(len(self.engine.active_alerts()))
        if last > self.offset:
            self.offset = last
            await self.log.write(0, ENGINE_KEY, {"offset": last, "clock": self.event_clock,
                                                 "state": self.engine.to_state()})
            await self.log.drain()


def _jsonable(data: Any) -> Any:
    return orjson.loads(orjson.dumps(data, default=str))

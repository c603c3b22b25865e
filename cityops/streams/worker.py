"""``StreamsWorker``: the Faust app with every agent, the alert wiring, timers and web views.

The warehouse side (sink thread, SQL handler) is passed in by the caller —
``cityops.cli.assembly`` — because ``streams/`` never imports ``warehouse/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import structlog

from cityops import compiled
from cityops.core import gc_tuning
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.streams import metrics, web
from cityops.streams.aggregation import AggregationStage
from cityops.streams.alerting import AlertDispatch, AlertWiring
from cityops.streams.alerts.rules import RuleSet, load_rules
from cityops.streams.alerts.webhooks import WebhookDispatcher, WebhookTarget
from cityops.streams.app import declare_topics, make_app
from cityops.streams.exceptions import WorkerStartError
from cityops.streams.validation import ValidationStage
from cityops.streams.written import WrittenEvents

log = structlog.get_logger(__name__)


class Service(Protocol):
    """Something the worker starts after Faust and stops before it (the warehouse sink)."""

    def start(self) -> None: ...
    def stop(self, timeout_s: float = 30.0) -> None: ...
    @property
    def alive(self) -> bool: ...


class StreamsWorker:
    def __init__(self, settings: Settings, registry: Registry, *,
                 rules: RuleSet | None = None,
                 services: list[Service] | None = None,
                 sql_handler: web.SqlHandler | None = None,
                 dispatch: AlertDispatch | None = None,
                 health_extra: Callable[[], dict[str, Any]] | None = None,
                 closing: list[Callable[[], None]] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.services = list(services or [])
        self.closing = list(closing or [])  # called in order after the services stopped
        self.sql_handler = sql_handler
        self.health_extra = health_extra
        self.started_at = datetime.now(UTC)
        self.app = make_app(settings)
        self.topics = declare_topics(self.app, settings)
        if rules is None:
            rules_path = getattr(settings, "alert_rules", None)
            rules = load_rules(rules_path or None)
        stages = settings.worker_stages
        self.webhooks: WebhookDispatcher | None = None
        if dispatch is None and settings.alert_webhook_urls and stages != "validation":
            self.webhooks = WebhookDispatcher(
                [WebhookTarget.parse(u.get_secret_value())
                 for u in settings.alert_webhook_urls],
                tz=settings.tz, timeout_s=settings.alert_webhook_timeout_s,
                attempts=settings.alert_webhook_attempts,
                queue_size=settings.alert_webhook_queue_size,
                max_age_s=settings.alert_webhook_max_age_s)
            dispatch = self.webhooks.offer
            self.app.task(self._start_webhooks)
        self.alerting = AlertWiring(settings, registry, rules, self.app, self.topics.alerts,
                                    dispatch=dispatch, run_engine=stages != "validation")
        # the clean events a validation step wrote, for this process's aggregation step
        written: dict[str, WrittenEvents | None] = {
            f: WrittenEvents(settings.worker_reuse_events) if stages == "all" else None
            for f in FEEDS}
        self.validation = {f: ValidationStage(f, settings, registry, self.app, self.topics,
                                              self.alerting, written[f])
                           for f in FEEDS if stages != "aggregation"}
        self.aggregation = {f: AggregationStage(f, settings, registry, self.app, self.topics,
                                                self.alerting.observe, written[f])
                            for f in FEEDS if stages != "validation"}
        if settings.stream_idle_close_s > 0:
            self.app.timer(max(5.0, settings.stream_idle_close_s / 4))(self._close_idle)
        web.register_views(self.app, self)
        self.app.on_before_shutdown.connect(self._on_shutdown)
        self._assigned: set[tuple[str, int]] = set()
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self._running = False

    # --- lifecycle -----------------------------------------------------------------------
    async def _on_started(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR1, lambda: dump_tasks(self.app))
        for svc in self.services:
            svc.start()
        web.write_endpoint(self.settings, embedded_warehouse=self.sql_handler is not None)
        gc_tuning.tune(self.settings.gc_gen0_threshold)
        self._running = True
        log.info("worker.started", worker_id=self.settings.worker_id,
                 web=f"http://{self.settings.worker_web_host}:{self.settings.worker_web_port}",
                 compiled=compiled.STATUS.reason)

    async def _on_assigned(self, app: faust.App, /, *args: Any, **kwargs: Any) -> None:
        """Partitions newly assigned to this worker start a fresh offset expectation, and the
        stages read their state again; partitions gone elsewhere are forgotten."""
        assigned = args[0] if args else kwargs.get("assigned", set())
        now = {(tp.topic, tp.partition) for tp in assigned}
        fresh, self._assigned = now - self._assigned, now
        guards = [s.gaps for s in self.validation.values()]
        guards += [s.gaps for s in self.aggregation.values()]
        for guard in [*guards, self.alerting.gaps]:
            guard.forget(fresh)
        for stage in self.validation.values():
            stage.reassigned(now, fresh)
        for agg in self.aggregation.values():
            await agg.reassigned(now, fresh)
        await self.alerting.reassigned(now, fresh)

    async def _start_webhooks(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.start()

    async def _on_shutdown(self, app: faust.App, /, *_args: Any, **_kwargs: Any) -> None:
        self._running = False
        if self.webhooks is not None:
            try:
                await self.webhooks.aclose()
            except Exception:
                log.exception("worker.webhooks_close_failed")
        for svc in self.services:
            try:
                svc.stop()
            except Exception:
                log.exception("worker.service_stop_failed")
        for close in self.closing:
            try:
                close()
            except Exception:
                log.exception("worker.close_failed")
        web.remove_endpoint(self.settings)

    async def _close_idle(self) -> None:
        for stage in self.aggregation.values():
            try:
                await stage.close_idle()
            except Exception:
                log.exception("worker.close_idle_failed", feed=stage.feed)

    def check_port(self) -> None:
        """Fail early, with the variable to change, when the web port is taken."""
        import socket

        host, port = self.settings.worker_web_host, self.settings.worker_web_port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise WorkerStartError(
                    f"web port {host}:{port} is in use ({exc.strerror}); another worker may "
                    "be running — set CITYOPS_WORKER_WEB_PORT") from None

    def run(self) -> None:
        """Run until SIGTERM / SIGINT (Faust's worker handles the signals)."""
        self.check_port()
        level = self.settings.log_level.lower()
        owner = self

        class _Worker(faust.Worker):
            async def on_startup_finished(self) -> None:
                await super().on_startup_finished()
                await owner._on_started()

        worker = _Worker(self.app, loglevel=level, quiet=True, redirect_stdouts=False,
                         override_logging=False)
        logging.getLogger("faust").setLevel(max(logging.INFO, logging.getLevelName(
            self.settings.log_level)))
        worker.execute_from_commandline()

    # --- views' helpers ------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        services = {type(s).__name__: bool(s.alive) for s in self.services}
        extra = self.health_extra() if self.health_extra else {}
        ok = self._running and all(services.values()) and extra.get("ok", True)
        return {
            "status": "ok" if ok else "degraded",
            "worker_id": self.settings.worker_id,
            "started_at": self.started_at.isoformat(),
            "running": self._running,
            "services": services,
            "validate": {f: s.counts for f, s in self.validation.items()},
            "aggregate": {f: s.counts for f, s in self.aggregation.items()},
            "alerts": self.alerting.counts,
            "alert_engine": "here" if self.alerting.owned else "elsewhere",
            **({"webhooks": {k: vars(st) for k, st in self.webhooks.labelled_stats().items()}}
               if self.webhooks is not None else {}),
            **({"sink": extra} if extra else {}),
        }

    def refresh_gauges(self) -> None:
        if self.webhooks is not None:
            for host, st in self.webhooks.labelled_stats().items():
                for outcome in ("delivered", "failed", "dropped", "too_old"):
                    metrics.WEBHOOK_DELIVERIES.labels(webhook=host, outcome=outcome).set(
                        getattr(st, outcome))
        if self.alerting.loaded:
            metrics.ACTIVE_ALERTS.set(len(self.alerting.engine.active_alerts()))

    async def list_alerts(self, include_all: bool = False) -> list[dict[str, Any]]:
        alerts = await self.alerting.list_alerts()
        if include_all:
            return alerts
        return [a for a in alerts if a.get("state") != "cleared_ack"]

    async def acknowledge(self, alert_id: str, actor: str) -> tuple[int, dict[str, Any]]:
        return await self.alerting.acknowledge(alert_id, actor)


def _await_chain(coro: Any) -> list[str]:
    """file:line of each coroutine a task is suspended in, outermost first."""
    out: list[str] = []
    while coro is not None and len(out) < 40:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                 or getattr(coro, "ag_frame", None))
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return out


def dump_tasks(app: Any = None) -> None:
    """``kill -USR1 <worker pid>``: where every asyncio task waits, and where each partition's
    offsets stand, to stderr, for a worker that seems stuck (which await each part of Faust
    and each stage is in; why a commit does not move)."""
    tasks = asyncio.all_tasks()
    print(f"=== {len(tasks)} asyncio tasks (SIGUSR1)", file=sys.stderr)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        print(f"--- {task.get_name()}", file=sys.stderr)
        for line in _await_chain(task.get_coro()):
            print(f"    {line}", file=sys.stderr)
    if app is not None:
        consumer = app.consumer
        active, paused = set(consumer._active_partitions or ()), set(consumer._paused_partitions)
        print(f"=== flow: active={consumer.flow_active} "
              f"can_resume={consumer.can_resume_flow.is_set()} "
              f"suspend={consumer.suspend_flow.is_set()} "
              f"active_tps={len(active)} paused_tps={len(paused)} "
              f"active_and_paused={sorted(f'{tp.topic}/{tp.partition}' for tp in active & paused)}",
              file=sys.stderr)
        for line in offsets_report(consumer):
            print(line, file=sys.stderr)
        for line in producer_report(getattr(app.producer, "_producer", None)):
            print(line, file=sys.stderr)
    sys.stderr.flush()


def offsets_report(consumer: Any) -> list[str]:
    """Per assigned partition: committed and read offsets, acknowledged offsets waiting for
    the commit (the first ones and the breaks in their run), gaps, unacknowledged messages."""
    unacked: dict[Any, list[int]] = {}
    for m in list(getattr(consumer, "_unacked_messages", ())):
        for record in getattr(m, "records", (m,)):  # a step in flight: its records
            unacked.setdefault(record.tp, []).append(record.offset)
    active = set(getattr(consumer, "_active_partitions", None) or ())
    lines = ["=== offsets: tp committed read acked(n, first, breaks) gaps unacked "
             "faust-active fetch(position, paused, awaiting reset)"]
    for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
        acked = sorted(consumer._acked.get(tp, ()))
        breaks = [(a, b) for a, b in itertools.pairwise(acked) if b - a != 1][:8]
        gaps = sorted((iv.begin, iv.end) for iv in consumer._gap.get(tp, ()))[:8]
        waiting = sorted(unacked.get(tp, ()))
        lines.append(
            f"{tp.topic}/{tp.partition} {consumer._committed_offset.get(tp)} "
            f"{consumer._read_offset.get(tp)} acked({len(acked)}, {acked[:3]}, {breaks}) "
            f"gaps {gaps} unacked({len(waiting)}, {waiting[:5]}) {tp in active} "
            f"{fetch_state(consumer, tp)}")
    return lines


def fetch_state(consumer: Any, tp: Any) -> str:
    """Where aiokafka's fetcher stands for a partition (in the consumer's thread: read as is,
    for a dump only): its position, whether it is paused or waiting for an offset reset."""
    try:
        inner = consumer._thread._consumer
        state = inner._subscription.subscription.assignment.state_value(tp)
        position = state._position
        return f"fetch({position}, {state.paused}, {state.awaiting_reset})"
    except Exception as exc:  # a dump never fails on a Faust or aiokafka change
        return f"fetch(? {type(exc).__name__})"


def producer_report(producer: Any, *, limit: int = 20) -> list[str]:
    """Where the worker's producer stands, for a step that waits on a delivery: the batches
    queued per partition (records, age, retries, whether the sender has the partition in a
    request), the batches sent and not answered yet (oldest first), the nodes a request is in
    flight to, whether the sender still runs, and each connection's requests waiting for an
    answer. A drain stopped with its steps waiting on deliveries while the sender sat idle
    (``docs/streams.md``); this tells a lost answer from a batch never sent. Reads aiokafka's
    internals as they are (the pinned version's); never fails."""
    if producer is None:
        return ["=== producer: not started"]
    try:
        now = time.monotonic()
        acc, sender = producer._message_accumulator, producer._sender
        task = sender._sender_task
        state = ("not started" if task is None else "running" if not task.done()
                 else f"stopped ({'cancelled' if task.cancelled() else task.exception()!r})")
        muted = set(sender._muted_partitions)
        lines = [f"=== producer: sender {state}, requests in flight to nodes "
                 f"{sorted(sender._in_flight)}, {len(muted)} partitions in them, "
                 f"linger {acc._linger_time * 1000:g} ms"]
        queued = [(tp, b) for tp, batches in list(acc._batches.items()) for b in batches]
        for tp, b in sorted(queued, key=lambda x: x[1]._ctime)[:limit]:
            lines.append(f"queued {tp.topic}/{tp.partition} records={b.record_count} "
                         f"age={now - b._ctime:.1f}s retries={b.retry_count} "
                         f"in-request={tp in muted}")
        pending = sorted(acc._pending_batches, key=lambda b: b._ctime)
        lines.append(f"sent, not answered: {len(pending)} batches; queued: {len(queued)}")
        for b in pending[:limit]:
            lines.append(f"sent {b.tp.topic}/{b.tp.partition} records={b.record_count} "
                         f"age={now - b._ctime:.1f}s retries={b.retry_count}")
        for node, conn in sorted(producer.client._conns.items(), key=lambda x: str(x[0])):
            lines.append(f"connection {node}: connected={conn.connected()} "
                         f"waiting for answers={len(conn._requests)}")
        return lines
    except Exception as exc:  # a dump never fails on an aiokafka change
        return [f"=== producer: ? {type(exc).__name__}: {exc}"]

"""The Faust app of the worker: its configuration, its topics and the one way to publish.

The agents live in modules named by role: ``streams.validation`` (``validate-<feed>``),
``streams.aggregation`` (``aggregate-<feed>``) and ``streams.alerting`` (``alerts-engine``);
``streams.worker`` puts them on one app. Faust tables use the in-memory store and are rebuilt
from their changelog topics at start.

No exception escapes an agent: an unexpected one dead-letters the record (reason
``invalid``, detail ``internal: ...``) and is counted in ``cityops_agent_errors_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from cityops.core import topics as topic_names
from cityops.core.kafka_security import ssl_context, uses_sasl, uses_tls
from cityops.core.settings import FEEDS, Settings

log = structlog.get_logger(__name__)


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


def _one_flow_wait_per_fetch() -> None:
    """One flow-control wait per fetched batch instead of one per message.

    Faust's ``Consumer._drain_messages`` (faust-streaming 0.15.3) delivers every message as
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: two tasks, an
    ``asyncio.wait`` and the cancellation of the loser per message, which profiles as the
    largest single cost of the worker before any of our code runs. Here the same loop body
    runs inside one ``wait_first`` per fetched batch: a rebalance (``suspend_flow``) still
    abandons delivery at once, the messages not yet delivered keep their read offset (so
    they are fetched again), and ``getmany``'s own checks between messages (flow active,
    consumer generation) still run per message. Offsets, gaps and commits are unchanged;
    ``streams.durable.OffsetGapGuard`` still checks every record an agent receives.
    """
    import asyncio

    from faust.transport import consumer as fconsumer

    base = fconsumer.Consumer
    if getattr(base, "_cityops_batch_drain", False):
        return

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        async def deliver(ait: Any) -> None:
            since_yield = 0
            async for tp, message in ait:
                since_yield += 1
                if since_yield > 100:
                    await asyncio.sleep(0)
                    since_yield = 0
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    set_read_offset(tp, offset)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(fconsumer.CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    await self.wait_first(deliver(ait), self.suspend_flow.wait())
                unset_flag(fconsumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(fconsumer.CONSUMER_FETCHING)

    base._drain_messages = _drain_messages  # type: ignore[method-assign]
    base._cityops_batch_drain = True  # type: ignore[attr-defined]


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
    _one_flow_wait_per_fetch()
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

"""The Faust app of the worker: its configuration, its topics and the one way to publish.

The agents live in modules named by role: ``streams.validation`` (``validate-<feed>``),
``streams.aggregation`` (``aggregate-<feed>``) and ``streams.alerting`` (``alerts-engine``);
``streams.worker`` puts them on one app. The app has no Faust table: the stages write and read
their state on logs of their own (``streams.state_log``).

No exception escapes an agent: an unexpected one dead-letters the record (reason
``invalid``, detail ``internal: ...``) and is counted in ``cityops_agent_errors_total``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from cityops.core import topics as topic_names
from cityops.core.kafka_security import ssl_context, uses_sasl, uses_tls
from cityops.core.settings import FEEDS, Settings
from cityops.streams import commits, dispatch, fair_fetch, seeks
from cityops.streams.producer_metadata import track_topic
from cityops.streams.state_log import STATE_RECORD_MAX_BYTES

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
    dispatch.install(settings.worker_batch_max, settings.worker_align_ms,
                     settings.worker_align_live_ms)
    commits.install()
    seeks.install()
    fair_fetch.install()
    data = (settings.data_dir / "worker" / settings.worker_group).resolve()
    data.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_group,
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
        # the state logs take records up to STATE_RECORD_MAX_BYTES (their topics say so);
        # every other topic keeps the broker's limit, which refuses larger records itself
        producer_max_request_size=max(settings.kafka_max_batch_bytes, STATE_RECORD_MAX_BYTES),
        producer_linger=settings.worker_producer_linger_ms / 1000.0,
        producer_max_batch_size=settings.worker_producer_batch_bytes,
        broker_commit_interval=settings.worker_commit_interval_s,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 4),
        broker_rebalance_timeout=settings.worker_session_timeout_s,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.worker_poll_records,
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


def _as_bytes(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


#: one record for ``publish_many``: topic (a Faust topic or a name), key, value, headers
Outgoing = tuple[Any, bytes | str | None, bytes | str, list[tuple[str, bytes]] | None]

#: (topic name, key, partition count) → partition: the keys of a step's records repeat (zones,
#: car parks, stations), and the producer's murmur2 is pure Python
_PARTITIONS: dict[tuple[str, bytes | None, int], int] = {}
_PARTITIONS_MAX = 100_000


def _partition_of(producer: Any, topic: str, key: bytes | None) -> int:
    """The partition the producer itself would pick for ``key`` (its partitioner, its
    metadata), remembered per key while the topic's partition count stays the same."""
    count = len(producer._metadata.partitions_for_topic(topic) or ())
    cached = _PARTITIONS.get((topic, key, count))
    if cached is not None:
        return cached
    partition = int(producer._partition(topic, None, None, None, key, None))
    if key is not None:  # a keyless record goes to any partition: nothing to remember
        if len(_PARTITIONS) >= _PARTITIONS_MAX:
            _PARTITIONS.clear()
        _PARTITIONS[(topic, key, count)] = partition
    return partition


def producer_of(topic: Any) -> Any:
    """The transport's ``AIOKafkaProducer`` behind a Faust topic's app."""
    return topic.app.producer._ensure_producer()


async def publish_many(producer: Any, items: list[Outgoing]) -> list[Any]:
    """Hand a step's records to the producer as one batch per topic and partition; returns
    the batches' delivery futures (awaited by the caller before its input offsets are
    acknowledged).

    Straight to the transport producer rather than ``Topic.send``: Faust's channel path (a
    ``FutureMessage``, its callbacks and sensors per record) cost more CPU per record than
    validating it, and the producer's own ``send`` per record (size checks, partitioner, a
    future and an accumulator lookup) about 13–19 µs, against 2 µs appended to a batch.
    The raw bytes and ``acks=all`` are the same. Each batch is handed over closed: sent at
    once, not after the linger (``producer_metadata.send_now``). Partitions are the
    producer's own choice for the key (``_partition_of``: murmur2, as Faust leaves it to
    aiokafka), and the order of a partition's records is kept. A batch that is full is sent
    and another started. ``_partition``, ``_metadata`` and ``_wait_on_metadata`` are
    aiokafka's own (the pinned version's; ``tests/integration/streams/test_publish_many.py``
    checks them).
    """
    if not items:
        return []
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]]
    groups = {}
    ready: set[str] = set()  # topics tracked and known to the producer, once per call
    for topic, key, value, headers in items:
        name = topic if isinstance(topic, str) else topic.get_topic_name()
        if name not in ready:
            track_topic(producer, name)
            if producer._metadata.partitions_for_topic(name) is None:  # not known yet
                await producer.client._wait_on_metadata(name)
            ready.add(name)
        kb, vb = _as_bytes(key), _as_bytes(value)
        groups.setdefault((name, _partition_of(producer, name, kb)), []).append(
            (kb, vb or b"", list(headers or ())))
    futures = []
    for (name, partition), records in groups.items():
        batch = producer.create_batch()
        for key_b, value_b, hdrs in records:
            if batch.append(key=key_b, value=value_b, timestamp=None, headers=hdrs) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, name, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key_b, value=value_b, timestamp=None,
                                headers=hdrs) is None:
                    raise ValueError(f"a record of {len(value_b)} bytes does not fit a "
                                     f"producer batch of {name}")
        batch.close()  # complete: sent at once, not after the linger (``send_now``)
        futures.append(await producer.send_batch(batch, name, partition=partition))
    return futures


class Outbox:
    """One step's outputs, handed to the producer together and then awaited together."""

    def __init__(self) -> None:
        self.items: list[Outgoing] = []
        self.futures: list[Any] = []  # delivery futures of records already handed over
        self.inputs: list[dict[str, Any]] = []  # alert-engine inputs (heartbeats) of the step

    def add(self, topic: Any, key: bytes | str | None, value: bytes | str,
            headers: list[tuple[str, bytes]] | None = None) -> None:
        self.items.append((topic, key, value, headers))

    def record(self, topic: Any, record: Any) -> None:
        self.add(topic, record.key(), record.to_json())

    async def deliver(self) -> None:
        """Send every record (in the order added, per partition), then wait until all are
        acknowledged; raises if any delivery failed."""
        items, self.items = self.items, []
        if items:
            self.futures.extend(await publish_many(producer_of(items[0][0]), items))
        futures, self.futures = self.futures, []
        if futures:
            await asyncio.gather(*futures)

"""Kafka producers for the raw feeds: a thin, counted wrapper around kafka-python's producer.

What the wrapper adds to ``kafka.KafkaProducer``:

* configuration from ``Settings`` (ingest section): ``acks=all`` with idempotence (kafka-python
  3.x supports the idempotent producer; it needs ``acks=all``), lz4 batch compression, batch
  size and linger tuned for throughput;
* a bound on records in flight (sent, not yet acknowledged). kafka-python 3.x has no
  ``buffer_memory``, so without it a slow broker makes the accumulator grow without limit;
  here ``send`` blocks instead (backpressure) and, after ``max_block_ms``, raises;
* a target rate (events/s) with a token bucket;
* every record ends in exactly one of ``acked`` or ``failed`` (by reason), so
  ``sent == acked + failed`` once flushed: delivery failures are counted, never dropped;
* Kafka errors converted into ``cityops.ingest.exceptions``;
* ``close`` flushes; ``interrupt_guard`` turns the first Ctrl-C into a graceful stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka import errors as kerr

from cityops.core.feeds import Envelope
from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.ingest.exceptions import (
    BackpressureTimeoutError,
    BrokerUnavailableError,
    DeliveryError,
    IngestError,
    ProducerClosedError,
    RecordTooLargeError,
)
from cityops.ingest.kafka_access import check_access

log = structlog.get_logger(__name__)

#: what kafka-python raises when no bootstrap server answers (3.x: a timeout)
_UNREACHABLE: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(kerr, "NoBrokersAvailable", None), kerr.KafkaTimeoutError,
                kerr.KafkaConnectionError) if c is not None)


def producer_config(settings: Settings, *, bootstrap: str | None = None,
                    client_id: str = "cityops-ingest", **overrides: Any) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments from the ingest settings."""
    acks: Any = {"all": "all", "1": 1, "0": 0}[settings.ingest_acks]
    linger = settings.ingest_linger_ms
    delivery = settings.ingest_delivery_timeout_ms
    config: dict[str, Any] = {
        "bootstrap_servers": (bootstrap or settings.bootstrap_servers).split(","),
        "client_id": client_id,
        "acks": acks,
        "enable_idempotence": acks == "all",
        "compression_type": None if settings.ingest_compression == "none"
        else settings.ingest_compression,
        "linger_ms": linger,
        "batch_size": settings.ingest_batch_bytes,
        "delivery_timeout_ms": delivery,
        "request_timeout_ms": max(1000, min(30_000, delivery - linger)),
        "max_block_ms": settings.ingest_max_block_ms,
        "bootstrap_timeout_ms": min(settings.ingest_max_block_ms, 30_000),
        "max_request_size": max(settings.max_message_bytes + 1024, settings.ingest_batch_bytes),
        "max_in_flight_requests_per_connection": 5,  # ≤ 5 keeps per-partition order (idempotent)
        **kafka_python_security(settings),
    }
    config.update(overrides)
    return config


@dataclass
class ProducerStats:
    """Counters of one producer; ``sent == acked + failed + in_flight`` at any time."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    bytes_sent: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.failed

    @property
    def elapsed_s(self) -> float:
        return (self.stopped or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Acknowledged events per second so far."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed,
                "in_flight": self.in_flight, "bytes": self.bytes_sent,
                "failures": dict(self.failures), "seconds": round(self.elapsed_s, 3),
                "events_per_s": round(self.rate, 1)}


class RateLimiter:
    """Token bucket: at most ``rate`` calls per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self._tokens = self.burst
        self._last = time.monotonic()

    def wait(self, n: float = 1.0) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= n:
                self._tokens -= n
                return
            time.sleep(min(0.5, (n - self._tokens) / self.rate))


def _reason(exc: BaseException) -> str:
    """A stable short reason for a delivery failure: the Kafka error class name."""
    return type(exc).__name__


class FeedProducer:
    """Produce raw feed records to Kafka with bounded in-flight records and full accounting."""

    def __init__(self, settings: Settings, *, bootstrap: str | None = None,
                 client_id: str = "cityops-ingest", rate: float | None = None,
                 max_in_flight: int | None = None, **overrides: Any) -> None:
        self.settings = settings
        self.config = producer_config(settings, bootstrap=bootstrap, client_id=client_id,
                                      **overrides)
        check_access(settings, bootstrap)  # a refused password: one line, not a 30 s wait
        try:
            self._producer = KafkaProducer(**self.config)
        except _UNREACHABLE as exc:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {','.join(self.config['bootstrap_servers'])} "
                f"({exc}); is it running? try `cityops kafka up`") from None
        except (kerr.KafkaError, ValueError, RuntimeError) as exc:
            raise IngestError(f"cannot create Kafka producer: {exc}") from None
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self._max_in_flight = max_in_flight or settings.ingest_max_in_flight
        self._slots = threading.Semaphore(self._max_in_flight)
        self._block_s = self.config["max_block_ms"] / 1000
        effective_rate = settings.ingest_rate if rate is None else rate
        self._limiter = RateLimiter(effective_rate) if effective_rate > 0 else None
        self._closed = False
        self.stopping = threading.Event()

    # --- sending -------------------------------------------------------------------------
    def send(self, topic: str, value: bytes, key: bytes | None = None, *,
             timestamp_ms: int | None = None, block: bool = True) -> Any:
        """Hand one record to Kafka; returns kafka-python's future (already counted).

        Blocks while ``max_in_flight`` records await acknowledgement (``block=False``
        raises ``BackpressureTimeoutError`` at once instead).
        """
        if self._closed:
            raise ProducerClosedError("producer is closed")
        if self._limiter is not None:
            self._limiter.wait()
        if not self._slots.acquire(blocking=block, timeout=self._block_s if block else None):
            self._count_failure("BackpressureTimeout")
            raise BackpressureTimeoutError(
                f"{self._max_in_flight} records in flight for {self._block_s:.0f} s: "
                "Kafka is not acknowledging" if block else "in-flight bound reached")
        try:
            fut = self._producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
        except kerr.KafkaTimeoutError as exc:
            self._slots.release()
            self._count_failure("KafkaTimeoutError")
            raise BrokerUnavailableError(f"no metadata for {topic}: {exc}") from None
        except kerr.MessageSizeTooLargeError as exc:
            self._slots.release()
            self._count_failure("MessageSizeTooLargeError")
            raise RecordTooLargeError(str(exc)) from None
        except kerr.IllegalStateError as exc:
            self._slots.release()
            self._count_failure("ProducerClosed")
            raise ProducerClosedError(str(exc)) from None
        except (kerr.KafkaError, TypeError, ValueError) as exc:
            self._slots.release()
            self._count_failure(_reason(exc))
            raise IngestError(f"send to {topic} failed: {exc}") from None
        with self._lock:
            self.stats.sent += 1
            self.stats.bytes_sent += len(value)
        fut.add_callback(self._on_ack)
        fut.add_errback(self._on_error)
        return fut

    def send_event(self, event: Envelope, topic: str | None = None, **kw: Any) -> Any:
        """Send a feed model to its raw topic, keyed by its source id."""
        return self.send(topic or self.settings.raw_topic(event.feed), event.to_json(),
                         event.key(), **kw)

    def _on_ack(self, _meta: Any) -> None:
        with self._lock:
            self.stats.acked += 1
        self._slots.release()

    def _on_error(self, exc: BaseException) -> None:
        reason = _reason(exc)
        with self._lock:
            self.stats.failed += 1
            self.stats.failures[reason] += 1
            first = self.stats.failures[reason] == 1
        self._slots.release()
        if first:
            log.warning("producer.delivery_failed", reason=reason, detail=str(exc)[:200])

    def _count_failure(self, reason: str) -> None:
        """A record that never reached the accumulator: counted as sent and failed."""
        with self._lock:
            self.stats.sent += 1
            self.stats.failed += 1
            self.stats.failures[reason] += 1

    # --- waiting ---------------------------------------------------------------------------
    @staticmethod
    def outcome(fut: Any, timeout_s: float) -> str | None:
        """Wait for one future: ``None`` when acknowledged, else the failure reason."""
        try:
            fut.get(timeout=timeout_s)
            return None
        except kerr.KafkaTimeoutError as exc:
            del exc
            return "KafkaTimeoutError" if fut.is_done else "ack_timeout"
        except kerr.KafkaError as exc:
            return _reason(exc)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered now and wait; a timeout leaves records in flight."""
        try:
            self._producer.flush(timeout=timeout_s)
        except kerr.KafkaTimeoutError:
            log.warning("producer.flush_timeout", in_flight=self.stats.in_flight)

    def close(self, timeout_s: float | None = None) -> ProducerStats:
        """Flush, close, and wait until every record is acked or failed; returns the stats."""
        if self._closed:
            return self.stats
        timeout = (self.config["delivery_timeout_ms"] / 1000 + 5) if timeout_s is None \
            else timeout_s
        self.flush(timeout)
        self._producer.close(timeout=max(0.0, timeout))
        self._closed = True
        deadline = time.monotonic() + 5
        while self.stats.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.stats.in_flight > 0:  # force-closed with records unresolved: count them
            with self._lock:
                lost = self.stats.in_flight
                self.stats.failed += lost
                self.stats.failures["unresolved_at_close"] += lost
        self.stats.stopped = time.monotonic()
        log.info("producer.closed", **self.stats.as_dict())
        return self.stats

    def partition_for(self, topic: str, key: bytes) -> int:
        """The partition the default partitioner picks for ``key`` (murmur2, as Java)."""
        partitions = sorted(self._producer.partitions_for(topic))
        from kafka.partitioner.default import murmur2

        return (murmur2(key) & 0x7FFFFFFF) % len(partitions)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FeedProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def interrupt_guard(stop: threading.Event) -> Iterator[threading.Event]:
    """First Ctrl-C (SIGINT) or SIGTERM sets ``stop`` so loops end and producers flush;
    a second Ctrl-C raises ``KeyboardInterrupt`` as usual. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def _handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("ingest.stopping", signal=signal.Signals(signum).name)
        stop.set()

    old_int = signal.signal(signal.SIGINT, _handler)
    old_term = signal.signal(signal.SIGTERM, _handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def ensure_delivered(stats: ProducerStats) -> None:
    """Raise ``DeliveryError`` if any record failed (for callers that need all-or-error)."""
    if stats.failed:
        reasons = ", ".join(f"{r}={n}" for r, n in stats.failures.most_common())
        raise DeliveryError("delivery_failed", f"{stats.failed} of {stats.sent}: {reasons}")

"""The seams of ingest: what a replay, the intake and dead letters need of a producer, and what
a long run needs of a progress bar.

``ingest.producer.FeedProducer`` is the production implementation of the producer protocols;
tqdm's bars satisfy ``Progress``. Small protocols let a caller pass anything that does the job.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol


class RecordSender(Protocol):
    """Hands one record to Kafka and returns its delivery future."""

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any: ...


class DeliveryStats(Protocol):
    """Delivery counters of a producer (``ingest.producer.ProducerStats``)."""

    failed: int
    failures: Counter[str]


class RecordProducer(RecordSender, Protocol):
    """A sender that counts delivery failures and can wait for acknowledgements."""

    @property
    def stats(self) -> DeliveryStats: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


class Progress(Protocol):
    """A progress bar (tqdm's interface), advanced by bytes or records."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...

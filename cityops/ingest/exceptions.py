"""Errors of the ingest area: producers, simulators, replay and HTTP intake.

Kafka client errors are converted into these at the producer boundary, so callers never
catch a ``kafka.errors`` class.
"""

from __future__ import annotations

from cityops.exceptions import CityopsError


class IngestError(CityopsError):
    """Base class of ingest errors."""

    code = "ingest_error"


class BrokerUnavailableError(IngestError):
    """No broker answered (bootstrap, metadata) within the configured time."""

    code = "broker_unavailable"


class ProducerClosedError(IngestError):
    """``send`` after ``close`` (or after Ctrl-C stopped the producer)."""

    code = "producer_closed"


class BackpressureTimeoutError(IngestError):
    """The in-flight bound stayed full for ``max_block_ms``: Kafka is not keeping up."""

    code = "backpressure_timeout"


class RecordTooLargeError(IngestError):
    """One record is larger than the producer's maximum request size."""

    code = "record_too_large"


class DeliveryError(IngestError):
    """A record was not acknowledged; ``reason`` is the Kafka error class name."""

    code = "delivery_failed"

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SimulationError(IngestError):
    """Bad simulator arguments (unknown feed, empty range, malformed fault plan)."""

    code = "bad_simulation"


class ReplayError(IngestError):
    """A replay file cannot be read at all (missing, unknown format, required columns absent)."""

    code = "bad_replay_file"


class MappingError(IngestError):
    """An NGSI-LD entity cannot be mapped to a feed event; ``reason`` is a contract code."""

    code = "bad_mapping"

    def __init__(self, reason: str, detail: str, field: str = "") -> None:
        self.reason, self.detail, self.field = reason, detail, field
        super().__init__(f"{reason}: {detail}")


class KafkaAuthError(IngestError):
    """The broker refused our SASL credentials or our TLS handshake failed."""

    code = "kafka_auth"

"""Fail fast and clearly when Kafka refuses our credentials or certificate.

kafka-python (3.x) treats a failed SASL handshake like an unreachable broker: it logs the
failure and retries until its bootstrap timeout (30 s), then reports a timeout. Before a
secured client starts, ``check_access`` connects once with a short bootstrap, watches the
client's log for an authentication or certificate failure, and turns it into one line that
names the setting to fix.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.ingest.exceptions import BrokerUnavailableError, KafkaAuthError

PROBE_TIMEOUT_MS = 5000
_AUTH = ("SaslAuthenticationFailed", "Authentication failed", "authentication failed")
_TLS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "WRONG_VERSION_NUMBER",
        "SSLError")


class _Watch(logging.Handler):
    """Reads the client's log: a refusal shows as an error, or (SCRAM over TLS) as the broker
    closing the connection instead of answering a SCRAM message. Nothing is kept or printed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.auth = False
        self.tls = False
        self._sent_proof = False

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.auth |= any(s in text for s in _AUTH)
        self.tls |= any(s in text for s in _TLS)
        if "SaslAuthenticateRequest" in text:
            self._sent_proof = True  # a SCRAM message (RFC 5802 §5) awaiting its answer
        elif "SaslAuthenticateResponse" in text:
            self._sent_proof = False
        elif self._sent_proof and "disconnected" in text:
            self.auth = True


@contextlib.contextmanager
def _watching() -> Iterator[_Watch]:
    """Capture kafka-python's connection failures (kept off the terminal meanwhile)."""
    logger = logging.getLogger("kafka")
    watch = _Watch()
    before, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(before)
        logger.propagate = propagate


def check_access(settings: Settings, bootstrap: str | None = None) -> None:
    """Raise ``KafkaAuthError`` (one line) when the broker refuses us; no-op on PLAINTEXT."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    from kafka import KafkaAdminClient
    from kafka import errors as kerr

    servers = bootstrap or settings.bootstrap_servers
    with _watching() as watch:
        try:
            admin = KafkaAdminClient(bootstrap_servers=servers.split(","),
                                     client_id="cityops-access-check",
                                     bootstrap_timeout_ms=PROBE_TIMEOUT_MS,
                                     request_timeout_ms=PROBE_TIMEOUT_MS,
                                     **kafka_python_security(settings))
        except (kerr.KafkaError, OSError, ValueError) as exc:
            if watch.auth:
                raise KafkaAuthError(
                    f"Kafka at {servers} refused user {settings.kafka_sasl_username!r} "
                    f"({settings.kafka_sasl_mechanism}): check CITYOPS_KAFKA_SASL_USERNAME "
                    "and CITYOPS_KAFKA_SASL_PASSWORD") from None
            if watch.tls:
                raise KafkaAuthError(
                    f"TLS to Kafka at {servers} failed: the broker's certificate is not "
                    "trusted or the listener is not TLS; check CITYOPS_KAFKA_SSL_CAFILE and "
                    "CITYOPS_KAFKA_SECURITY_PROTOCOL") from None
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {servers} ({type(exc).__name__}); is it "
                "running? try `cityops kafka up`") from None
        admin.close()

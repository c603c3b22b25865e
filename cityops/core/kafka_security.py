"""Kafka client security (SASL/SCRAM, TLS) from settings, for every client library we use.

One place turns ``CITYOPS_KAFKA_SECURITY_PROTOCOL`` and friends into keyword arguments:
kafka-python (producers, admin, the warehouse sink); ``streams.app`` builds the worker's
Faust credentials from the same pieces.
"""

from __future__ import annotations

import ssl
from typing import Any

from cityops.core.settings import Settings


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def cafile(settings: Settings) -> str | None:
    """``kafka_ssl_cafile``; for the local broker (no bootstrap servers set) the certificate
    its launcher made (``<data_dir>/kafka-<port>/tls/ca.pem``, see ``deploy.kafka_local``);
    else None (the system store)."""
    if settings.kafka_ssl_cafile:
        return str(settings.kafka_ssl_cafile)
    if not settings.kafka_bootstrap_servers:
        local = (settings.data_dir / f"kafka-{settings.kafka_port}" / "tls" / "ca.pem").resolve()
        if local.exists():
            return str(local)
    return None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting ``cafile(settings)``."""
    ctx = ssl.create_default_context(cafile=cafile(settings))
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    return ctx


def kafka_python_security(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments (``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_tls(settings):
        out["ssl_context"] = ssl_context(settings)
    if uses_sasl(settings):
        out.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                   sasl_plain_username=settings.kafka_sasl_username,
                   sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return out


"""Fixtures for ingest integration tests: isolated topic prefixes and a consume helper."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer

from cityops.core.settings import Settings, load_settings


@pytest.fixture
def isolated_settings(kafka_broker: str, settings: Settings) -> Settings:
    """Settings of the session broker with a fresh topic prefix (topics auto-created)."""
    return load_settings(data_dir=settings.data_dir, kafka_port=settings.kafka_port,
                         topic_prefix=f"it{uuid.uuid4().hex[:10]}")


@pytest.fixture
def consume() -> Callable[..., list]:
    """``consume(bootstrap, topic, n)``: read records from the start until ``n`` arrived
    (or the topic stays quiet for ``idle_s``); returns kafka ConsumerRecords."""

    def _consume(bootstrap: str, topic: str, n: int | None = None, *, idle_s: float = 5.0,
                 limit_s: float = 120.0) -> list:
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 group_id=None, consumer_timeout_ms=int(idle_s * 1000))
        out: list = []
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=1000, max_records=5000)
                got = [r for records in batch.values() for r in records]
                out.extend(got)
                if n is not None and len(out) >= n:
                    # drain a little more to catch duplicates beyond n
                    extra = consumer.poll(timeout_ms=1000)
                    out.extend(r for records in extra.values() for r in records)
                    break
                if not got and n is None and out:
                    break
                if not got and n is None and time.monotonic() > deadline - limit_s + idle_s:
                    break
        finally:
            consumer.close()
        return out

    return _consume


@pytest.fixture
def serve_intake():
    """``with serve_intake(settings, registry, producer) as base_url:`` runs the real app
    under uvicorn on a free loopback port in a thread."""
    import contextlib

    from asgi_server import serving

    from cityops.ingest.intake import create_app

    @contextlib.contextmanager
    def _serve(settings, registry, producer):
        with serving(create_app(settings, registry, producer), "intake server") as url:
            yield url

    return _serve

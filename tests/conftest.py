"""Shared fixtures: settings, the site registry, and the real local Kafka broker.

The broker fixture uses the same launcher as ``cityops kafka up``: it reuses a broker that
``make test`` already started, or starts one itself (and then stops it at the end).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry, load_registry
from cityops.core.settings import Settings, load_settings

os.environ.setdefault("CITYOPS_DATA_DIR", str(Path(__file__).resolve().parent.parent
                                              / ".cityops-test"))
os.environ.setdefault("CITYOPS_KAFKA_PORT", "19392")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def registry(settings: Settings) -> Registry:
    return load_registry(settings.registry_dir)


@pytest.fixture(scope="session")
def vctx(registry: Registry) -> ValidationContext:
    """Validation context with the packaged Yuzhong registry and the default tolerances."""
    return ValidationContext(registry=registry)


@pytest.fixture(scope="session")
def kafka_broker(settings: Settings) -> Iterator[str]:
    """Bootstrap address of a real, running local Kafka broker (KRaft)."""
    from cityops.deploy.kafka_local import LocalKafka

    broker = LocalKafka(settings)
    was_running = broker.pid() is not None and broker.answering()
    broker.up()
    yield broker.bootstrap
    if not was_running:
        broker.down()


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name so tests never see each other's messages."""
    return f"test.{uuid.uuid4().hex[:12]}"

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


# --- tests that need clickhouse-server ---------------------------------------------------------
#: set by scripts/test.sh when clickhouse-server cannot be installed here; the reason why
WITHOUT_SERVER = "CITYOPS_TEST_WITHOUT_SERVER"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the server fixture ``server``; when ``make test`` found no
    clickhouse-server, deselect those tests and remember them for the summary."""
    for item in items:
        if "clickhouse_port" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)
    reason = os.environ.get(WITHOUT_SERVER)
    if not reason:
        return
    missing = [item for item in items if item.get_closest_marker("server") is not None]
    if missing:
        items[:] = [item for item in items if item not in missing]
        config.hook.pytest_deselected(items=missing)
    config.stash[_NOT_RUN] = (reason, [item.nodeid for item in missing])


_NOT_RUN = pytest.StashKey[tuple[str, list[str]]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Name each test that could not run for want of clickhouse-server, and why."""
    if _NOT_RUN not in config.stash:
        return
    reason, nodeids = config.stash[_NOT_RUN]
    terminalreporter.section(f"{len(nodeids)} tests could NOT run: {reason}", red=True)
    for nodeid in nodeids:
        terminalreporter.write_line(f"NOT RUN {nodeid} — needs clickhouse-server: {reason}")

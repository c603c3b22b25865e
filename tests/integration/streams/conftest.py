"""Fixtures of the streams integration tests (helpers in ``streams_harness.py``)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streams_harness import Producer, WorkerProc, free_port


@pytest.fixture(scope="module")
def make_worker(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[Callable[..., WorkerProc]]:
    """Factory: ``make_worker(**env_overrides)`` → a started ``WorkerProc`` (stopped at end)."""
    workers: list[WorkerProc] = []

    def factory(start: bool = True, **overrides: str) -> WorkerProc:
        base = tmp_path_factory.mktemp("worker")
        prefix = f"t{uuid.uuid4().hex[:10]}"
        env = dict(os.environ)
        env.update({
            "CITYOPS_TOPIC_PREFIX": prefix,
            "CITYOPS_DATA_DIR": str(base / "data"),
            "CITYOPS_WAREHOUSE_URL": f"chdb://{base / 'warehouse'}",
            "CITYOPS_WORKER_WEB_PORT": str(free_port()),
            "CITYOPS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
            "CITYOPS_STREAM_IDLE_CLOSE_S": "0",
            "CITYOPS_ALERT_CLOCK": "event",
            "CITYOPS_SINK_BATCH_S": "0.3",
            "CITYOPS_WORKER_BATCH_S": "0.05",
            "CITYOPS_LOG_LEVEL": "WARNING",
        })
        env.update(overrides)
        w = WorkerProc(env, base / "worker.log")
        workers.append(w)
        if start:
            w.start()
        return w

    yield factory
    for w in workers:
        w.stop()


@pytest.fixture
def producer_for(kafka_broker: str) -> Iterator[Callable[[WorkerProc], Producer]]:
    made: list[Producer] = []

    def factory(worker: WorkerProc) -> Producer:
        p = Producer(kafka_broker, worker.prefix)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.close()

"""The pipeline over SASL/SCRAM-SHA-512 + TLS: a local broker started by the launcher in that
mode, the ingest producer (kafka-python), the worker (aiokafka under Faust) and its warehouse
sink (kafka-python) all authenticating; a wrong password ends with one clear line."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ports import free_port_pair
from streams_harness import CITYOPS, WorkerProc, wait_until

from cityops.core.registry import Registry
from cityops.core.settings import Settings, load_settings
from cityops.deploy.kafka_local import LocalKafka
from cityops.ingest.producer import FeedProducer
from cityops.ingest.simulate import Simulation
from cityops.warehouse.rows import FEED_TABLES

pytestmark = pytest.mark.integration

PASSWORD = "scram-test-pw"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("sasl")
    settings = load_settings(data_dir=data, kafka_port=free_port_pair(),
                             kafka_security_protocol="SASL_SSL",
                             kafka_sasl_password=PASSWORD, kafka_bootstrap_servers="")
    broker = LocalKafka(settings)
    broker.up()
    try:
        yield settings
    finally:
        broker.down()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "CITYOPS_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CITYOPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CITYOPS_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "CITYOPS_KAFKA_SASL_PASSWORD": PASSWORD,
        "CITYOPS_KAFKA_SSL_CAFILE": str(LocalKafka(settings).paths.ca),
    }


def test_pipeline_end_to_end_over_sasl_ssl(secure_broker: Settings, make_worker: Any,
                                          registry: Registry) -> None:
    worker: WorkerProc = make_worker(**_env(secure_broker))
    client = load_settings(**{k.removeprefix("CITYOPS_").lower(): v
                              for k, v in _env(secure_broker).items()},
                           topic_prefix=worker.prefix)
    start = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
    events = list(Simulation(registry, seed=5, start=start, end=start + timedelta(minutes=5),
                             feeds=("parking", "air")).events())
    with FeedProducer(client, client_id="it-sasl") as producer:
        for ev in events:
            producer.send_event(ev)
        producer.flush(60)
        assert producer.stats.acked == len(events) and producer.stats.failed == 0
    sent = {feed: sum(1 for e in events if e.feed == feed) for feed in ("parking", "air")}

    def stored() -> dict[str, int]:
        return {f: worker.scalar(f"SELECT count() FROM {FEED_TABLES[f]} FINAL") for f in sent}

    wait_until(lambda: stored() == sent, timeout=120, what=f"warehouse rows = {sent}")
    assert worker.health()["status"] == "ok"


def test_wrong_password_is_one_clear_line(secure_broker: Settings, tmp_path: Path) -> None:
    import os

    env = {**os.environ, **_env(secure_broker), "CITYOPS_KAFKA_SASL_PASSWORD": "not-it",
           "CITYOPS_DATA_DIR": str(tmp_path)}
    for args in (["worker", "--no-supervise"], ["kafka", "topics"],
                 ["simulate", "--feeds", "air", "--speed", "1000"]):
        t0 = time.monotonic()
        proc = subprocess.run([CITYOPS, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        elapsed = time.monotonic() - t0
        out = proc.stdout + proc.stderr
        errors = [ln[ln.index("error:"):] for ln in proc.stderr.splitlines() if "error:" in ln]
        print(f"cityops {' '.join(args)}: exit {proc.returncode} after {elapsed:.1f} s")
        assert proc.returncode != 0
        assert len(errors) == 1 and "Traceback" not in out, out
        assert "refused user 'cityops' (SCRAM-SHA-512)" in errors[0]
        assert "not-it" not in out
        if args[0] != "simulate":  # simulate prints its banner first
            assert out.strip() == errors[0], out


def test_kafka_up_for_another_protocol_leaves_the_running_broker_alone(
        secure_broker: Settings, tmp_path: Path) -> None:
    """``kafka up`` without the SASL settings beside the running SASL_SSL broker waited two
    minutes for it to answer, then stopped it: the healthy broker was gone."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_KAFKA")}
    env.update(CITYOPS_DATA_DIR=str(secure_broker.data_dir),
               CITYOPS_KAFKA_PORT=str(secure_broker.kafka_port))
    proc = subprocess.run([CITYOPS, "kafka", "up"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    # refused at once by the data's own mode, not after the start timeout's wait
    assert "was formatted for SASL_SSL" in proc.stderr and "Traceback" not in proc.stderr
    broker = LocalKafka(secure_broker)
    assert broker.pid() is not None and broker.answering()

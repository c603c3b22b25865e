"""Switching a deployment between layouts reads nothing twice; two never run at once.

A worker running every step handles a stream (a validation worker started beside it is
refused: both would handle every record) and stops; then a validation worker and an
aggregation worker (the split layout, each in its own consumer group) take over, and later
the single worker again. Each group starts where the other layout's groups stopped
(``streams.layouts``), so every worker reads only the events produced since the
switch. Before, the split workers' new groups read every retained record again from the
earliest (each one recognised and skipped, but fetched and decoded).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streams_harness import CITYOPS, ROOT, Producer, WorkerProc, free_port, wait_until

from cityops.core.settings import load_settings
from cityops.deploy.backlog import group_lag
from cityops.streams.layouts import topics_read

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

COUNTERS = {"jfb_square": "fc_jfb_square_01", "minzu_road": "fc_minzu_road_01",
            "bayi_road": "fc_bayi_road_01", "hongyadong": "fc_hongyadong_01"}


def _events(t0: datetime, first: int, n: int) -> list[dict[str, Any]]:
    zones = list(COUNTERS)
    return [{"event_id": f"s{i}", "source": COUNTERS[zones[i % 4]], "zone_id": zones[i % 4],
             "entries": i % 9, "exits": i % 5, "interval_s": 30,
             "event_time": (t0 + timedelta(seconds=2 * i)).isoformat()}
            for i in range(first, first + n)]


def _counts(w: WorkerProc) -> tuple[int, int]:
    """Footfall records this worker process read: (validation, aggregation)."""
    h = w.health()
    return (int(h["validate"].get("footfall", {}).get("in", 0)),
            int(h["aggregate"].get("footfall", {}).get("in", 0)))


def test_switching_layouts_reads_only_what_came_since(kafka_broker: str,
                                                      tmp_path: Path) -> None:
    prefix = f"sw{uuid.uuid4().hex[:10]}"
    env = dict(os.environ)
    env.update({"CITYOPS_TOPIC_PREFIX": prefix, "CITYOPS_TOPIC_PARTITIONS": "3",
                "CITYOPS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
                "CITYOPS_WORKER_SINK": "false", "CITYOPS_WORKER_BATCH_S": "0.05",
                "CITYOPS_WORKER_COMMIT_INTERVAL_S": "1.0", "CITYOPS_LOG_LEVEL": "WARNING"})
    settings = load_settings(topic_prefix=prefix)

    def worker(name: str, stages: str) -> WorkerProc:
        e = dict(env, CITYOPS_WORKER_STAGES=stages, CITYOPS_DATA_DIR=str(tmp_path / name),
                 CITYOPS_WORKER_WEB_PORT=str(free_port()))
        proc = WorkerProc(e, tmp_path / f"{name}.log")
        proc.start(timeout=120)
        return proc

    def committed_all(group_stages: str) -> bool:
        group = settings.model_copy(update={"worker_stages": group_stages}).worker_group
        return group_lag(kafka_broker, group, sorted(
            t for t in topics_read(settings, group_stages) if ".raw." in t or ".clean." in t
        )) == 0

    t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    prod = Producer(kafka_broker, prefix)

    def produce(first: int, n: int) -> None:
        for ev in _events(t0, first, n):
            prod.send("footfall", ev)
        prod.flush()

    try:
        single = worker("all1", "all")
        produce(0, 300)
        wait_until(lambda: _counts(single) == (300, 300) and committed_all("all"),
                   timeout=180, what="the single worker handled and committed 300 events")
        beside = subprocess.run(
            [CITYOPS, "worker", "--stages", "validation"], cwd=ROOT, capture_output=True,
            text=True, timeout=120, env=dict(env, CITYOPS_DATA_DIR=str(tmp_path / "beside"),
                                             CITYOPS_WORKER_WEB_PORT=str(free_port())))
        assert beside.returncode == 2, beside.stdout + beside.stderr
        assert "another layout is running" in beside.stderr, beside.stderr
        assert settings.worker_id in beside.stderr, beside.stderr
        assert _counts(single) == (300, 300)
        assert single.stop() == 0

        validation, aggregation = worker("v", "validation"), worker("a", "aggregation")
        produce(300, 100)
        wait_until(lambda: _counts(validation)[0] == 100 and _counts(aggregation)[1] == 100
                   and committed_all("validation") and committed_all("aggregation"),
                   timeout=180, what="the split workers handled 100 events")
        assert _counts(validation)[0] == 100 and _counts(aggregation)[1] == 100, (
            "a split worker read again what the single worker had handled")
        for w in (validation, aggregation):
            assert w.stop() == 0

        again = worker("all2", "all")
        produce(400, 50)
        wait_until(lambda: _counts(again) == (50, 50) and committed_all("all"),
                   timeout=180, what="the single worker again, 50 events")
        assert _counts(again) == (50, 50)
        assert int(again.health()["validate"]["footfall"].get("duplicate", 0)) == 0
        again.stop()
    finally:
        prod.close()
        for log in tmp_path.glob("*.log"):
            if "Traceback" in log.read_text(errors="replace"):
                print(f"===== {log}\n{log.read_text(errors='replace')[-4000:]}")


def test_the_layout_check_runs_on_a_broker_just_started(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A broker just started has no group coordinator until it has created its offsets
    topic: the first ``make run`` on a fresh data dir skipped the check and the carry with
    ``CoordinatorNotAvailableError``. They wait for the coordinator now. Its own broker, so
    the suite's is not a fresh one."""
    from ports import free_port_pair
    from structlog.testing import capture_logs

    from cityops.deploy.kafka_local import LocalKafka
    from cityops.streams.layouts import prepare_group

    own = load_settings(data_dir=tmp_path_factory.mktemp("fresh-broker"),
                        kafka_port=free_port_pair(), kafka_bootstrap_servers="")
    broker = LocalKafka(own)
    broker.up()
    try:
        settings = load_settings(kafka_bootstrap_servers=broker.bootstrap,
                                 topic_prefix=f"fresh{uuid.uuid4().hex[:8]}")
        with capture_logs() as logs:
            assert prepare_group(settings) == {}
        assert [e for e in logs if e["event"] == "worker.offsets_not_carried"] == []
    finally:
        broker.down()

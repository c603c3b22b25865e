"""One of three brokers is killed mid-stream while producers, the worker and its warehouse
sink run, and restarted later: the warehouse holds every event sent exactly once.

Topics have replication factor 3 and ``min.insync.replicas=2``; producers use ``acks=all``
with idempotence, so a write is acknowledged only when two replicas hold it and the cluster
keeps accepting writes with one broker down.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streams_harness import WorkerProc, free_port, wait_until

from cityops.core.settings import Settings
from cityops.deploy.kafka_local import LocalKafkaCluster, replication_for
from cityops.ingest.producer import FeedProducer

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ZONES = {"jfb_square": "fc_jfb_square_01", "minzu_road": "fc_minzu_road_01",
         "minquan_road": "fc_minquan_road_01", "bayi_road": "fc_bayi_road_01"}
N_FOOTFALL = 3000
RATE = 150.0  # events/s: the stream lasts ~20 s, long enough to lose and regain a broker


def _footfall() -> list[dict[str, Any]]:
    t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    zones = list(ZONES)
    return [{"event_id": f"f{i}", "source": ZONES[zones[i % 4]], "zone_id": zones[i % 4],
             "entries": (i * 7) % 13, "exits": (i * 5) % 11, "interval_s": 30,
             "event_time": (t0 + timedelta(seconds=i)).isoformat()} for i in range(N_FOOTFALL)]


def _produce(producer: FeedProducer, topic: str, events: list[dict[str, Any]],
             done: threading.Event) -> None:
    started = time.monotonic()
    for i, ev in enumerate(events):
        producer.send(topic, json.dumps(ev).encode(), ev["source"].encode())
        ahead = i / RATE - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(120)
    done.set()


def _leader_of_most(cluster: LocalKafkaCluster, topic: str) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        (desc,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return Counter(p["leader_id"] for p in desc["partitions"]).most_common(1)[0][0]


def _isr(cluster: LocalKafkaCluster, topics: list[str]) -> dict[tuple[str, int], list[int]]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        return {(d["name"], p["partition_index"]): sorted(p["isr_nodes"])
                for d in admin.describe_topics(topics) for p in d["partitions"]}
    finally:
        admin.close()


def test_broker_killed_mid_stream_loses_and_duplicates_nothing(
        kafka_cluster: LocalKafkaCluster, cluster_settings: Settings,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    rf, min_isr = replication_for(kafka_cluster.size)
    assert (kafka_cluster.size, rf, min_isr) == (3, 3, 2)
    base = tmp_path_factory.mktemp("cluster-worker")
    prefix = f"c{int(time.time())}"
    env = dict(os.environ)
    env.update({
        "CITYOPS_TOPIC_PREFIX": prefix, "CITYOPS_DATA_DIR": str(base / "data"),
        "CITYOPS_WAREHOUSE_URL": f"chdb://{base / 'warehouse'}",
        "CITYOPS_WORKER_WEB_PORT": str(free_port()),
        "CITYOPS_KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap,
        "CITYOPS_TOPIC_REPLICATION": str(rf), "CITYOPS_TOPIC_MIN_INSYNC_REPLICAS": str(min_isr),
        "CITYOPS_STREAM_IDLE_CLOSE_S": "0", "CITYOPS_ALERT_CLOCK": "event",
        "CITYOPS_SINK_BATCH_S": "0.3", "CITYOPS_WORKER_BATCH_S": "0.05",
        "CITYOPS_LOG_LEVEL": "WARNING",
        # a step stuck on a delivery after the kill ends in a supervised replay within the
        # stream's 120 s, not after the 600 s default (the stall seen once on a loaded host)
        "CITYOPS_WORKER_STEP_TIMEOUT_S": "60",
    })
    worker = WorkerProc(env, base / "worker.log")
    worker.start(timeout=180)
    producer = None
    try:
        raw = f"{prefix}.raw.footfall"
        isr = _isr(kafka_cluster, [raw, f"{prefix}.clean.footfall"])
        assert isr and all(nodes == [1, 2, 3] for nodes in isr.values()), isr

        events = _footfall()
        settings = cluster_settings.model_copy(update={"topic_prefix": prefix})
        producer = FeedProducer(settings, bootstrap=kafka_cluster.bootstrap,
                                client_id="failover-test")
        done = threading.Event()
        thread = threading.Thread(target=_produce, args=(producer, raw, events, done),
                                  daemon=True)
        thread.start()

        sending, started = producer.stats, time.monotonic()
        trace: list[tuple[float, int, int]] = []  # (s since start, worker in, producer acked)

        def stored() -> int:
            n = worker.health()["validate"]["footfall"]["in"]
            t = round(time.monotonic() - started, 1)
            if not trace or t - trace[-1][0] >= 5.0:
                trace.append((t, n, sending.acked))
            return n

        wait_until(lambda: stored() >= 600, timeout=90, every=0.1, what="stream under way")
        victim = kafka_cluster.nodes[_leader_of_most(kafka_cluster, raw) - 1]
        victim.kill()  # a crash, not a controlled shutdown
        at_kill = stored()
        killed_at = round(time.monotonic() - started, 1)
        # the stream goes on with two brokers: leaders move, acks=all still gets 2 replicas
        try:
            wait_until(lambda: stored() >= at_kill + 900, timeout=120, every=0.2,
                       what="stream continuing with one broker down")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; node {victim.node_id} killed at {killed_at} s with {at_kill} in; "
                f"(s, worker in, producer acked): {trace}; {worker.log_path} ends:\n"
                f"{worker.log_tail(60)}") from None
        victim.start()
        victim.wait_ready()
        thread.join(180)
        assert done.is_set(), "producer did not finish"
        stats = producer.close(30)
        producer = None
        assert (stats.sent, stats.acked, stats.failed) == (N_FOOTFALL, N_FOOTFALL, 0), \
            stats.as_dict()

        seen: list[Any] = []

        def settled() -> bool:
            now = worker.sql("SELECT count(), uniqExact(event_id) FROM footfall_observed")[0]
            seen[:] = now
            return now[1] >= N_FOOTFALL

        try:
            wait_until(settled, timeout=180, every=1.0, what="warehouse to hold every event")
        except AssertionError:
            raise AssertionError(f"have (rows, distinct ids) {seen}, want {N_FOOTFALL}; "
                                 f"health {worker.health()}") from None
        time.sleep(2.0)  # a few more sink batch periods: nothing further may arrive
        # nothing lost, nothing duplicated: the stored rows are exactly the events sent
        rows = worker.sql("SELECT event_id, zone_id, entries, exits FROM footfall_observed")
        assert len(rows) == N_FOOTFALL, f"{len(rows)} rows stored for {N_FOOTFALL} events"
        assert sorted(tuple(r) for r in rows) == sorted(
            (e["event_id"], e["zone_id"], e["entries"], e["exits"]) for e in events)
        assert worker.scalar("SELECT count() FROM dead_letters") == 0
        # the rollup views counted each event once
        assert worker.scalar("SELECT sum(entries) FROM footfall_zone_1m") == sum(
            e["entries"] for e in events)

        # the restarted broker caught up and is back in every in-sync replica set
        def back_in_isr() -> bool:
            from kafka.errors import KafkaError

            try:
                isr = _isr(kafka_cluster, [raw, f"{prefix}.clean.footfall"])
            except KafkaError:  # a metadata request timing out on a loaded host: ask again
                return False
            return all(n == [1, 2, 3] for n in isr.values())

        wait_until(back_in_isr, timeout=120, every=1.0, what="killed broker back in the ISR")
    finally:
        if producer is not None:
            producer.close(5)
        worker.stop()

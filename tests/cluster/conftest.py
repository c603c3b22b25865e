"""Fixtures of the cluster tests: a real local 3-broker KRaft cluster (``cityops kafka up
--brokers 3``) on ``CITYOPS_TEST_CLUSTER_KAFKA_PORT`` (node i on that port + 2i)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityops.core.settings import Settings, load_settings
from cityops.deploy.kafka_local import LocalKafkaCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "streams"))

CLUSTER_PORT = int(os.environ.get("CITYOPS_TEST_CLUSTER_KAFKA_PORT", "19410"))


@pytest.fixture(scope="module")
def cluster_settings(settings: Settings) -> Settings:
    return load_settings(kafka_port=CLUSTER_PORT, kafka_local_brokers=3, kafka_heap_mb=256,
                         kafka_bootstrap_servers="", data_dir=settings.data_dir)


@pytest.fixture(scope="module")
def kafka_cluster(cluster_settings: Settings) -> Iterator[LocalKafkaCluster]:
    """Three running brokers, torn down (data kept under the data dir) at the end."""
    cluster = LocalKafkaCluster(cluster_settings)
    cluster.up()
    # topics are created only once every node lists every broker (a node answering
    # first made the topic creation fail with UnknownBrokerIdError)
    assert all(n.registered_brokers() == {1, 2, 3} for n in cluster.nodes)
    yield cluster
    cluster.down()

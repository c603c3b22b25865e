"""The local cluster's layout without starting it: ports, voters, replication, bootstrap."""

from __future__ import annotations

from pathlib import Path

from cityops.core.settings import load_settings
from cityops.deploy.kafka_local import LocalKafkaCluster, cleaner_buffer_bytes, replication_for


def test_three_brokers_replicate_three_times_and_need_two_in_sync() -> None:
    assert replication_for(1) == (1, 1)
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)


def test_cluster_nodes_share_voters_and_take_consecutive_port_pairs(tmp_path: Path) -> None:
    settings = load_settings(kafka_port=19600, kafka_local_brokers=3, data_dir=tmp_path,
                             kafka_bootstrap_servers="")
    cluster = LocalKafkaCluster(settings)
    assert [(n.node_id, n.port, n.controller_port) for n in cluster.nodes] == [
        (1, 19600, 19601), (2, 19602, 19603), (3, 19604, 19605)]
    assert {n.voters for n in cluster.nodes} == {
        "1@127.0.0.1:19601,2@127.0.0.1:19603,3@127.0.0.1:19605"}
    assert len({n.paths.root for n in cluster.nodes}) == 3
    assert settings.bootstrap_servers == cluster.bootstrap == (
        "127.0.0.1:19600,127.0.0.1:19602,127.0.0.1:19604")


def test_written_broker_config_carries_the_replication_rules(tmp_path: Path) -> None:
    settings = load_settings(kafka_port=19600, data_dir=tmp_path, kafka_bootstrap_servers="")
    node = LocalKafkaCluster(settings, brokers=3).nodes[1]
    node._write_config()
    props = dict(line.split("=", 1) for line in node.paths.config.read_text().splitlines()
                 if "=" in line)
    assert props["node.id"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["unclean.leader.election.enable"] == "false"
    single = LocalKafkaCluster(settings, brokers=1).nodes[0]
    assert single.paths.root == (tmp_path / "kafka-19600").resolve()


def test_the_log_cleaner_buffer_fits_the_broker_heap(tmp_path: Path) -> None:
    """Kafka's default 128 MiB cleaner buffer, allocated whole at start-up, killed a
    256 MiB test broker restarted after a SIGKILL (Java heap space)."""
    settings = load_settings(kafka_port=19600, data_dir=tmp_path, kafka_bootstrap_servers="",
                             kafka_heap_mb=256)
    node = LocalKafkaCluster(settings, brokers=3).nodes[0]
    node._write_config()
    props = dict(line.split("=", 1) for line in node.paths.config.read_text().splitlines()
                 if "=" in line)
    assert int(props["log.cleaner.dedupe.buffer.size"]) == 32 * 1024 * 1024
    assert [cleaner_buffer_bytes(mb) // 2**20 for mb in (128, 512, 1024, 8192)] == [
        16, 64, 128, 128]

"""``cityops kafka backlog`` on the real broker: each group's records behind, its members, its
rate and when it will have caught up; an absent broker is one line."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.core.settings import Settings, load_settings
from cityops.deploy.backlog import group_lag, open_reader, progress, read_backlogs
from cityops.deploy.kafka_local import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _deployment(kafka_broker: str) -> Settings:
    settings = load_settings(topic_prefix=f"bl{uuid.uuid4().hex[:10]}", topic_partitions=3,
                             kafka_bootstrap_servers=kafka_broker)
    ensure_topics(settings, kafka_broker)
    return settings


def _produce(kafka_broker: str, topic: str, per_partition: int) -> None:
    prod = KafkaProducer(bootstrap_servers=kafka_broker)
    for p in range(3):
        for i in range(per_partition):
            prod.send(topic, value=b"{}", key=f"{p}-{i}".encode(), partition=p)
    prod.flush()
    prod.close()


def _commit(kafka_broker: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for ``group`` as a worker would (no member stays behind)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, group_id=group,
                             enable_auto_commit=False)
    consumer.assign(list(offsets))
    consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
    consumer.close()


def test_a_group_is_behind_by_what_follows_its_commits_and_an_unread_topic_from_its_start(
        kafka_broker: str) -> None:
    settings = _deployment(kafka_broker)
    footfall, parking = settings.topic("raw.footfall"), settings.topic("raw.parking")
    _produce(kafka_broker, footfall, 40)
    _produce(kafka_broker, parking, 10)
    validation = settings.model_copy(update={"worker_stages": "validation"}).worker_group
    _commit(kafka_broker, validation, {TopicPartition(footfall, p): 30 for p in range(3)})

    by_role = {g.role: g for g in read_backlogs(settings)}
    v = by_role["validation"]
    assert v.group == validation and v.used and v.members == 0
    assert v.topics[footfall].behind == 3 * 10  # after the commits
    assert v.topics[parking].behind == 3 * 10  # never committed: all it would read
    assert v.behind == 60
    assert not by_role["aggregation"].used and not by_role["all"].used
    assert not by_role["sink"].used  # nothing stored yet, no sink running


def test_two_readings_give_the_rate_and_when_the_group_will_have_caught_up(
        kafka_broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _deployment(kafka_broker)
    footfall = settings.topic("raw.footfall")
    _produce(kafka_broker, footfall, 100)
    validation = settings.model_copy(update={"worker_stages": "validation"}).worker_group
    _commit(kafka_broker, validation, {TopicPartition(footfall, p): 0 for p in range(3)})
    member = KafkaConsumer(footfall, bootstrap_servers=kafka_broker, group_id=validation,
                           enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        while not member.assignment():  # joined: the group has a member
            member.poll(timeout_ms=500, max_records=1)
        member.seek_to_beginning()
        before = read_backlogs(settings)
        read = 0  # the member reads and commits 150 records between two readings
        while read < 150:
            read += sum(len(v) for v in member.poll(timeout_ms=500, max_records=150 - read)
                        .values())
        member.commit()
        _produce(kafka_broker, footfall, 10)  # and 30 more arrive meanwhile
        (v,) = [p for p in progress(before, read_backlogs(settings), 2.0)
                if p.group.role == "validation"]
        assert (v.group.members, v.group.behind) == (1, 180)
        assert (v.committed_per_s, v.arrived_per_s) == (75.0, 15.0)
        assert v.eta_s == 3.0  # 180 left at a net 60 a second

        monkeypatch.setenv("CITYOPS_KAFKA_BOOTSTRAP_SERVERS", kafka_broker)
        monkeypatch.setenv("CITYOPS_TOPIC_PREFIX", settings.topic_prefix)
        one = CliRunner().invoke(app, ["kafka", "backlog", "--json"])
        assert one.exit_code == 0, one.output
        # stdout alone: kafka-python's own warnings (a slow poll on a busy host) go to stderr
        (group,) = json.loads(one.stdout)["groups"]  # only the group in use is listed
        assert (group["role"], group["members"], group["behind"]) == ("validation", 1, 180)
        assert "eta_s" not in group  # one reading has no rate

        watched = CliRunner().invoke(app, ["kafka", "backlog", "--json", "--watch", "0.5",
                                           "--count", "2"])
        assert watched.exit_code == 0, watched.output
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        assert len(lines) == 2
        (still,) = lines[1]["groups"]
        assert (still["behind"], still["committed_per_s"], still["eta_s"]) == (180, 0, None)

        table = CliRunner().invoke(app, ["kafka", "backlog", "--watch", "0.5", "--count", "2"],
                                   env={"COLUMNS": "200"})
        assert table.exit_code == 0, table.output
        assert "raw.footfall (180)" in table.output  # the deployment's prefix left out
        assert "caught up in" in table.output and "not shrinking" in table.output
    finally:
        member.close()


def test_one_reader_kept_open_sees_every_new_record_and_commit(kafka_broker: str) -> None:
    """``kafka backlog --watch`` and the bench's drains ask through one reader kept open: each
    reading must be the broker's, not what the clients learned at the first one."""
    settings = _deployment(kafka_broker)
    footfall = settings.topic("raw.footfall")
    group = f"g{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, footfall, 20)
    with open_reader(settings) as reader:
        assert reader.behind(group, [footfall]) == 60  # never committed: all of it
        _commit(kafka_broker, group, {TopicPartition(footfall, p): 5 for p in range(3)})
        assert reader.behind(group, [footfall]) == 45
        _produce(kafka_broker, footfall, 10)
        assert reader.behind(group, [footfall]) == 75
        validation = settings.model_copy(update={"worker_stages": "validation"}).worker_group
        _commit(kafka_broker, validation, {TopicPartition(footfall, p): 25 for p in range(3)})
        kept = {g.group: (g.used, g.behind) for g in read_backlogs(settings, reader)}
        assert kept == {g.group: (g.used, g.behind) for g in read_backlogs(settings)}
        assert kept[validation] == (True, 3 * 5)

        # a partition never committed counts from its start, not from offset 0: records
        # deleted from its head (retention) are not there to read
        admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
        try:
            admin.delete_records({TopicPartition(footfall, 0): 12})
        finally:
            admin.close()
        fresh = f"h{uuid.uuid4().hex[:8]}"
        assert reader.behind(fresh, [footfall]) == 90 - 12
        assert group_lag(kafka_broker, fresh, [footfall]) == 90 - 12
        assert reader.members([fresh, validation]) == {fresh: 0, validation: 0}


def test_no_broker_is_one_line_and_exit_status_2(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CITYOPS_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    result = CliRunner().invoke(app, ["kafka", "backlog"])
    assert result.exit_code == 2
    assert f"no Kafka broker answered at 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output

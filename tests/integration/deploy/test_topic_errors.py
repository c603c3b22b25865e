"""Topic creation reports Kafka's refusals and absences as our errors, on the real broker."""

from __future__ import annotations

import socket
import uuid

import pytest

from cityops.core.settings import Settings, load_settings
from cityops.deploy.exceptions import BrokerError, BrokerUnreachable, TopicSetupError
from cityops.deploy.kafka_local import ensure_topics

pytestmark = pytest.mark.integration


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_topics_are_created_once(kafka_broker: str, settings: Settings) -> None:
    fresh = load_settings(topic_prefix=_prefix())
    created = ensure_topics(fresh, kafka_broker)
    assert created == fresh.all_topics
    assert ensure_topics(fresh, kafka_broker) == []


def test_a_replication_factor_the_cluster_cannot_meet_is_a_topic_setup_error(
        kafka_broker: str) -> None:
    fresh = load_settings(topic_prefix=_prefix(), topic_replication=3)
    with pytest.raises(TopicSetupError) as caught:
        ensure_topics(fresh, kafka_broker)
    assert caught.value.kafka_error == "InvalidReplicationFactorError"
    assert "only 1 broker" in str(caught.value) and len(str(caught.value)) < 400
    assert isinstance(caught.value, BrokerError) and caught.value.code == "topic_setup_failed"


def test_no_broker_at_the_address_is_broker_unreachable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerUnreachable) as caught:
        ensure_topics(load_settings(), f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert caught.value.code == "broker_unreachable"


def test_kafka_topics_command_reports_the_refusal_in_one_line(
        kafka_broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cityops.cli.main import app

    monkeypatch.setenv("CITYOPS_KAFKA_BOOTSTRAP_SERVERS", kafka_broker)
    monkeypatch.setenv("CITYOPS_TOPIC_PREFIX", _prefix())
    monkeypatch.setenv("CITYOPS_TOPIC_REPLICATION", "3")
    result = CliRunner().invoke(app, ["kafka", "topics"])
    assert result.exit_code == 2
    assert "InvalidReplicationFactorError" in result.output
    assert "Traceback" not in result.output

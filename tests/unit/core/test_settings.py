"""Settings: safe defaults, env overrides, and a bad value names its variable."""

from __future__ import annotations

import pytest

from cityops.core.exceptions import SettingsError
from cityops.core.settings import FEEDS, load_settings


def test_defaults_are_local_and_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYOPS_KAFKA_PORT", raising=False)
    monkeypatch.delenv("CITYOPS_WAREHOUSE_URL", raising=False)
    s = load_settings()
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.effective_warehouse_url.startswith("chdb:///")
    assert s.timezone == "Asia/Shanghai"
    assert {f"cityops.raw.{f}" for f in FEEDS} <= set(s.all_topics)
    assert "cityops.dlq" in s.all_topics and "cityops.late" in s.all_topics


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CITYOPS_WAREHOUSE_URL", "clickhouse://ops:pw@ch.local:9000/cityops")
    monkeypatch.setenv("CITYOPS_TOPIC_PREFIX", "yz")
    s = load_settings()
    assert s.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.effective_warehouse_url.startswith("clickhouse://")
    assert s.raw_topic("air") == "yz.raw.air"


@pytest.mark.parametrize(("var", "value", "needle"), [
    ("CITYOPS_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
    ("CITYOPS_WAREHOUSE_URL", "postgres://x", "chdb://, clickhouse://"),
    ("CITYOPS_KAFKA_PORT", "80", "greater than or equal to 1024"),
    ("CITYOPS_KAFKA_BOOTSTRAP_SERVERS", "localhost", "not host:port"),
    ("CITYOPS_LOG_LEVEL", "LOUD", "DEBUG"),
    ("CITYOPS_TOPIC_PARTITIONS", "many", "integer"),
])
def test_bad_setting_names_variable_and_allowed_values(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert var in str(err.value)
    assert needle in str(err.value)


def test_grafana_token_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_GRAFANA_TOKEN", "glsa_secret_value")
    s = load_settings()
    assert "glsa_secret_value" not in repr(s)
    assert s.grafana_token.get_secret_value() == "glsa_secret_value"


def test_validation_context_from_settings_carries_the_configured_limits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cityops.core.feeds import ValidationContext

    monkeypatch.setenv("CITYOPS_MAX_CLOCK_SKEW_S", "42")
    monkeypatch.setenv("CITYOPS_OCCUPANCY_TOLERANCE", "0.1")
    ctx = ValidationContext.from_settings(load_settings())
    assert (ctx.max_clock_skew_s, ctx.occupancy_tolerance, ctx.registry) == (42.0, 0.1, None)
    bare = ValidationContext()  # no configuration: the settings' own defaults
    monkeypatch.delenv("CITYOPS_MAX_CLOCK_SKEW_S")
    monkeypatch.delenv("CITYOPS_OCCUPANCY_TOLERANCE")
    defaults = load_settings()
    assert (bare.max_clock_skew_s, bare.occupancy_tolerance) == (
        defaults.max_clock_skew_s, defaults.occupancy_tolerance)


def test_kafka_batch_limit_leaves_room_for_a_dead_letter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(max_message_bytes=1_000_000).kafka_max_batch_bytes == 2_000_000
    assert load_settings(max_message_bytes=2048).kafka_max_batch_bytes == 1_048_588

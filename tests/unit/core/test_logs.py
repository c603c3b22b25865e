"""What reaches the terminal of kafka-python's logging (``core.logs``)."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import Cancelled

from cityops.core.logs import configure_logging
from cityops.core.settings import load_settings


def test_a_refresh_cut_short_by_the_client_s_own_close_is_not_shown_as_an_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="console"))
    cluster = logging.getLogger("kafka.cluster")
    cluster.error("Metadata refresh: failed %s", "Transport closed for writes")
    cluster.error("Metadata refresh: failed %s", Cancelled())  # the close cancelled it
    cluster.error("Metadata refresh: failed %s", "Cancelled by the operator")
    cluster.error("Metadata refresh: failed %s", "KafkaConnectionError: connection refused")
    cluster.error("Metadata refresh: failed %s",
                  "KafkaConnectionError: Connection at 127.0.0.1:9092 closed")
    cluster.error("Metadata refresh loop error: %s", "boom")
    shown = capsys.readouterr().err
    assert "Transport closed for writes" not in shown
    assert not [line for line in shown.splitlines() if line.rstrip().endswith("failed Cancelled")]
    assert "Cancelled by the operator" in shown  # only the close's own word is dropped
    assert "connection refused" in shown  # any other failure is still an error
    assert "Metadata refresh loop error: boom" in shown
    assert "Connection at 127.0.0.1:9092 closed" in shown  # a broker gone: still shown


def test_configuring_twice_keeps_one_filter() -> None:
    configure_logging(load_settings())
    configure_logging(load_settings())
    filters = [f for f in logging.getLogger("kafka.cluster").filters
               if type(f).__name__ == "ClosingClientNoise"]
    assert len(filters) == 1

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


def test_clickhouse_driver_warnings_are_one_line_and_ours_keep_their_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    """clickhouse-driver logs each failed connect with its traceback: six of them (636 lines)
    came before `cityops sql --url`'s one-line error for a server that was down."""
    configure_logging(load_settings(log_format="console"))
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        logging.getLogger("clickhouse_driver.connection").warning(
            "Failed to connect to %s:%s", "127.0.0.1", 1, exc_info=True)
        logging.getLogger("cityops.test").warning("ours", exc_info=True)
    lines = capsys.readouterr().err.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "[warning" in line and "Failed to" in line]
    assert lines[at].rstrip().endswith(
        "Failed to connect to 127.0.0.1:1: ConnectionRefusedError: [Errno 111] "
        "Connection refused")
    assert "ours" in lines[at + 1]  # no traceback between the driver's line and the next
    rest = "\n".join(lines[at + 2:])
    assert "Traceback" in rest and "ConnectionRefusedError" in rest  # ours keeps its own

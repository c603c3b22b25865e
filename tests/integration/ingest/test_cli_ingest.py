"""The ingest commands end to end against the real broker: Ctrl-C flushes, replay summarises."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityops.cli.main import app

pytestmark = pytest.mark.integration


def _env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CITYOPS_DATA_DIR=str(settings.data_dir), CITYOPS_KAFKA_PORT=str(
        settings.kafka_port), CITYOPS_TOPIC_PREFIX=settings.topic_prefix)
    return env


def test_ctrl_c_stops_simulate_and_flushes(isolated_settings, kafka_broker, consume):
    cli = Path(sys.executable).with_name("cityops")
    proc = subprocess.Popen(
        [str(cli), "simulate", "--feeds", "footfall,parking", "--speed", "120",
         "--duration", "300", "-q"],
        env=_env(isolated_settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # wait until events reach the broker, then press Ctrl-C
        topic = isolated_settings.raw_topic("footfall")
        while not consume(kafka_broker, topic, 1, idle_s=1, limit_s=5):
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text
    assert re.search(r"stopped_early\s+│\s+True", text), text
    acked = int(re.search(r"acked\s+│\s+(\d+)", text).group(1))
    sent = int(re.search(r"sent\s+│\s+(\d+)", text).group(1))
    failed = int(re.search(r"failed\s+│\s+(\d+)", text).group(1))
    assert sent == acked > 0 and failed == 0
    got = consume(kafka_broker, isolated_settings.raw_topic("footfall"), None, idle_s=3)
    got += consume(kafka_broker, isolated_settings.raw_topic("parking"), None, idle_s=3)
    assert len(got) == acked  # everything sent before Ctrl-C was flushed and delivered


def test_replay_command(tmp_path, isolated_settings, kafka_broker, monkeypatch, consume):
    for k, v in _env(isolated_settings).items():
        if k.startswith("CITYOPS_"):
            monkeypatch.setenv(k, v)
    path = tmp_path / "air.csv"
    path.write_text(
        "station,time,pm25,no2\n"
        "aq_micro_square,2025-10-03T20:00:00+08:00,41.5,30\n"
        "aq_micro_square,2025-10-03T20:01:00+08:00,,\n"  # no pollutant
        "aq_micro_bayi,2025-10-03T20:01:00+08:00,43.0,31.5\n", encoding="utf-8")
    result = CliRunner().invoke(app, [
        "replay", str(path), "--feed", "air", "--map", "station_id=station,event_time=time",
        "--map", "pm25_ugm3=pm25,no2_ugm3=no2", "--set", "averaging_s=60", "-q"])
    assert result.exit_code == 0, result.output
    assert re.search(r"sent\s+│\s+2", result.output)
    # October 2025 is older than the default raw TTL of 400 days: said before sending
    said = " ".join(result.output.split())
    assert re.search(r"[23] of [23] records \(oldest 2025-10-03\) are older than the raw "
                     r"retention of 400 days", said), said
    assert "stay in the raw tables until" in said
    assert re.search(r"rejected: no_measurement\s+│\s+1", result.output)
    assert len(consume(kafka_broker, isolated_settings.raw_topic("air"), 2)) == 2
    assert len(consume(kafka_broker, isolated_settings.topic("dlq"), 1)) == 1
    missing = CliRunner().invoke(app, ["replay", str(path), "--feed", "air", "-q"])
    assert missing.exit_code == 2 and "station_id" in missing.output

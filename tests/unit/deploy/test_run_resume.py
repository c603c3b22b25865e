"""Where a second ``cityops run`` starts its simulator, and how fast it catches up."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.cli.run_cmd import plan_start

NOW = datetime(2026, 12, 1, 20, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_fresh_warehouse_replays_the_last_hours() -> None:
    assert plan_start(NOW, None, 6.0, 60.0) == (NOW - timedelta(hours=6), 60.0)


def test_second_run_carries_on_one_second_after_the_newest_event() -> None:
    newest = NOW - timedelta(minutes=10, milliseconds=250)
    start, speed = plan_start(NOW, newest, 6.0, 60.0)
    assert start == NOW - timedelta(minutes=10)  # 19:49:59.750 → 19:49:59 + 1 s
    assert start > newest and speed == 60.0  # 10 minutes at 60× is well inside the budget


def test_a_long_gap_is_caught_up_in_a_first_run_s_wall_time() -> None:
    newest = NOW - timedelta(days=3)
    start, speed = plan_start(NOW, newest, 6.0, 60.0)
    assert start == newest + timedelta(seconds=1)
    # 3 days − 1 s in the 6 min a first run takes: ≈ 720×
    assert abs((NOW - start).total_seconds() / speed - 6 * 3600 / 60) < 1e-6


def test_fresh_asks_and_keeps_the_data_when_told_no(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from cityops.cli.main import app

    data = tmp_path / "data"
    (data / "warehouse").mkdir(parents=True)
    (data / "warehouse" / "part").write_text("rows")
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(data))
    result = CliRunner().invoke(app, ["run", "--fresh"], input="n\n")
    assert result.exit_code == 1 and "Delete everything under" in result.output
    assert str(data) in "".join(result.output.split())  # the data dir it was given
    assert (data / "warehouse" / "part").read_text() == "rows"


def test_fresh_wipes_the_data_dir_when_confirmed(tmp_path, monkeypatch) -> None:
    from cityops.cli.run_cmd import _wipe
    from cityops.core.settings import load_settings
    from cityops.deploy.kafka_local import LocalKafka

    data = tmp_path / "data"
    (data / "kafka-19999" / "meta").mkdir(parents=True)
    (data / "logs").mkdir()
    (data / "logs" / "worker.log").write_text("x")
    settings = load_settings(data_dir=data, kafka_port=19998)
    _wipe(settings, LocalKafka(settings), yes=True)  # no broker runs on that data dir
    assert data.exists() and list(data.iterdir()) == []

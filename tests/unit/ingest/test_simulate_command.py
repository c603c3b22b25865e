"""``cityops simulate --out`` (no Kafka) and the run modes' range planning."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.core.contract import Rejection, decode_event
from cityops.ingest.run import plan_range, run
from cityops.ingest.simulate import Simulation

TZ = ZoneInfo("Asia/Shanghai")


def test_simulate_to_a_file(tmp_path, vctx):
    out = tmp_path / "sim.jsonl"
    result = CliRunner().invoke(app, [
        "simulate", "--feeds", "parking,incidents,air", "--start", "2025-10-01T19:00",
        "--end", "2025-10-01T20:00", "--seed", "5", "--out", str(out), "-q",
        "--faults", "malformed=0.02"])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) > 1000
    feeds = Counter()
    rejected = 0
    for line in lines:
        feed = ("parking" if b'"carpark_id"' in line else "air" if b'"station_id"' in line
                else "incidents" if b'"incident_id"' in line else None)
        if feed is None:
            rejected += 1
            continue
        feeds[feed] += 1
        if isinstance(decode_event(feed, line, vctx), Rejection):
            rejected += 1
    assert set(feeds) == {"parking", "incidents", "air"}
    assert 0.005 * len(lines) < rejected < 0.05 * len(lines)
    again = tmp_path / "again.jsonl"
    CliRunner().invoke(app, [
        "simulate", "--feeds", "parking,incidents,air", "--start", "2025-10-01T19:00",
        "--end", "2025-10-01T20:00", "--seed", "5", "--out", str(again), "-q",
        "--faults", "malformed=0.02"])
    assert again.read_bytes() == out.read_bytes()


def test_simulate_rejects_bad_options():
    r = CliRunner().invoke(app, ["simulate", "--feeds", "weather", "--out", "/dev/null",
                                 "--start", "2025-10-01T19:00", "--end", "2025-10-01T20:00"])
    assert r.exit_code == 2 and "unknown feeds" in r.output
    r = CliRunner().invoke(app, ["simulate", "--faults", "dup=7", "--out", "/dev/null",
                                 "--start", "2025-10-01T19:00", "--end", "2025-10-01T20:00"])
    assert r.exit_code == 2 and "probability" in r.output


def test_plan_range_modes():
    now = datetime(2026, 11, 27, 12, 0, 0, 500, tzinfo=TZ)
    # real time: starts now, optional duration
    assert plan_range(now=now, start=None, end=None, speed=None, duration_s=600) == (
        now.replace(microsecond=0), now.replace(microsecond=0) + timedelta(minutes=10), 1.0)
    # accelerated: replays the recent past and ends now (no event from the future)
    start, end, speed = plan_range(now=now, start=None, end=None, speed=60, duration_s=120)
    assert speed == 60 and end == now.replace(microsecond=0)
    assert end - start == timedelta(hours=2)
    # rate-driven: enough of the recent past for rate × duration events, ending now
    start, end, speed = plan_range(now=now, start=None, end=None, speed=None, duration_s=60,
                                   rate=500, events_per_s=1.0)
    assert speed is None and end - start == timedelta(seconds=30_000)
    # historical range: as fast as possible
    s0 = datetime(2025, 10, 1, tzinfo=TZ)
    assert plan_range(now=now, start=s0, end=s0 + timedelta(days=1), speed=None,
                      duration_s=None) == (s0, s0 + timedelta(days=1), None)


def test_paced_run_follows_simulated_time(registry):
    # a fake clock: pacing waits exactly (emit time - start) / speed, no real sleeping
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    start = datetime(2025, 10, 1, 19, tzinfo=TZ)
    sim = Simulation(registry, seed=1, start=start, end=start + timedelta(minutes=10),
                     feeds=("air",))
    seen: list[float] = []
    summary = run(sim, lambda rec: seen.append(now[0]), speed=60, clock=lambda: now[0],
                  sleep=sleep)
    assert summary.emitted == len(seen) == 4 * 10 + 1
    assert seen[-1] == 9 * 60 / 60  # the last per-minute value (19:09) at 9 s wall time
    assert seen == sorted(seen)
    stopped = run(sim, lambda rec: None, speed=60, duration_s=3.0, clock=lambda: now[0],
                  sleep=sleep)
    assert stopped.stopped_early

"""An in-order file of hourly counters replayed with ``cityops replay`` through the real broker
and the real worker (idle-window timer on): no late event, and the warehouse's hours and
nights equal what pandas computes from the file by interval start."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from streams_harness import CITYOPS, WorkerProc, wait_until

from cityops.core.registry import Registry

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
HOURS = 11  # reports ending 17:00 … 03:00: covering 16:00–17:00 … 02:00–03:00


def _evening() -> datetime:
    """16:00 local two days ago: recent enough for every horizon, wholly in the past."""
    d = (datetime.now(TZ) - timedelta(days=2)).date()
    return datetime(d.year, d.month, d.day, 16, tzinfo=TZ)


def _file(registry: Registry, path: Path) -> pd.DataFrame:
    start = _evening()
    rows = []
    for h in range(1, HOURS + 1):  # sorted by event time, as an exported data set is
        for i, c in enumerate(sorted(registry.counters.values(), key=lambda c: c.id)):
            rows.append({"counter": c.id, "zone": c.zone_id,
                         "hour_end": (start + timedelta(hours=h)).isoformat(),
                         "count": 50 + 13 * h + 7 * i, "out": 20 + 5 * h + i})
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return df


def test_in_order_hourly_replay_has_no_late_events_and_exact_nights(
        make_worker: Any, registry: Registry, tmp_path: Path) -> None:
    worker: WorkerProc = make_worker(CITYOPS_STREAM_IDLE_CLOSE_S="20")  # idle timer every 5 s
    path = tmp_path / "hourly.csv"
    df = _file(registry, path)
    env = dict(worker.env)
    # 720× : one hour of the file every 5 s of wall time, so the idle timer runs between hours
    proc = subprocess.run(
        [CITYOPS, "replay", str(path), "--feed", "footfall", "--speed", "720", "-q",
         "--map", "source=counter,zone_id=zone,event_time=hour_end,entries=count,exits=out",
         "--set", "interval_s=3600"],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(df)
    wait_until(lambda: worker.scalar("SELECT count() FROM footfall_observed FINAL") == n,
               timeout=120, what="all reports in the warehouse")
    wait_until(lambda: worker.health()["aggregate"]["footfall"]["in"] >= n, timeout=60,
               what="all reports aggregated")
    assert worker.health()["aggregate"]["footfall"]["late"] == 0
    assert worker.scalar("SELECT count() FROM late_events FINAL") == 0

    # pandas, from the file: each hourly report belongs to the hour it covers
    df["hour"] = pd.to_datetime(df["hour_end"]).dt.tz_convert(TZ) - pd.Timedelta(hours=1)
    hourly = df.groupby(["zone", "hour"])["count"].sum()
    got = {(z, pd.Timestamp(datetime.fromtimestamp(t, UTC)).tz_convert(TZ)): e
           for z, t, e in worker.sql(
               "SELECT zone_id, toUnixTimestamp(hour), entries FROM footfall_zone_1h")}
    assert got == {k: int(v) for k, v in hourly.items()}
    night = df[(df["hour"].dt.hour >= 18) | (df["hour"].dt.hour < 2)]
    nights = night.groupby("zone")["count"].sum()
    rows = worker.sql("SELECT zone_id, toString(night_date), entries FROM night_footfall")
    assert {z: (d, e) for z, d, e in rows} == {
        z: (_evening().date().isoformat(), int(v)) for z, v in nights.items()}

    # the stream's minute windows hold the same people as the hourly rollup, hour by hour
    # (the last report, ending 03:00, fires every window up to 03:00)
    expected = {(z, int(h.timestamp())): int(v) for (z, h), v in hourly.items()}

    def stream() -> dict:
        return {(z, t): e for z, t, e in worker.sql(
            "SELECT zone_id, toUnixTimestamp(toStartOfHour(window_start)) AS h, sum(entries) "
            "FROM footfall_windows FINAL WHERE window = 'tumbling_1m' GROUP BY zone_id, h")}

    # revisions of the last windows may still be on their way to the warehouse
    wait_until(lambda: stream() == expected, timeout=90, what="stream windows = file hours")
    assert worker.scalar("SELECT count() FROM footfall_windows FINAL WHERE window = "
                         "'tumbling_1m'") == df["zone"].nunique() * HOURS * 60

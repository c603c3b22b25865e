"""``cityops board`` against a running worker: the overview board's queries go through the
worker's read-only ``/sql`` (the worker holds the embedded warehouse), and the frame shows the
district as the worker sees it."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streams_harness import CITYOPS, Producer, WorkerProc, wait_until

pytestmark = pytest.mark.integration

ZONE, COUNTER, CARPARK = "jfb_square", "fc_jfb_square_01", "cp_wfc"


def test_board_draws_the_worker_s_warehouse_through_its_sql_endpoint(
        make_worker: Any, kafka_broker: str) -> None:
    worker: WorkerProc = make_worker()
    prod = Producer(kafka_broker, worker.prefix)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        for i in range(12):
            t = now - timedelta(minutes=12 - i)
            prod.send("footfall", {"event_id": f"f{i}", "source": COUNTER, "zone_id": ZONE,
                                   "entries": 900, "exits": 100, "interval_s": 60,
                                   "event_time": t.isoformat()})
            prod.send("parking", {"event_id": f"p{i}", "source": CARPARK,
                                  "carpark_id": CARPARK, "capacity": 650,
                                  "occupied": 400 + 20 * i, "event_time": t.isoformat()})
        prod.flush()
    finally:
        prod.close()
    wait_until(lambda: (worker.scalar("SELECT count() FROM parking_states") or 0) >= 10
               and (worker.scalar("SELECT count() FROM footfall_windows") or 0) >= 5,
               timeout=90, what="derived rows in the warehouse")
    env = dict(worker.env, COLUMNS="160", CITYOPS_WORKER_TOKEN="")
    result = subprocess.run([CITYOPS, "board", "--once"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Command centre overview" in out
    assert "解放碑广场" in out  # the zone with density from the worker's windows
    line = next(x for x in out.splitlines() if "环球金融中心停车场" in x)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    car = cells.index(next(c for c in cells if "环球金融中心停车场" in c))
    assert cells[car + 1:car + 3] == ["30", "95%"]  # newest: 620 of 650 taken
    assert "error" not in out.lower() and "sql_endpoint" not in out

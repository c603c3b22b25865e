"""The sink's check for events already stored, per batch: asking the tables every batch, and
asking only for rows at or before the newest stored event of their site (``StoredMarks``).

A migrated embedded warehouse is filled with ``--stored`` footfall rows of every counter of the
site registry (one every 100 ms of event time), then each variant runs ``--batches`` batches of
``--rows`` new rows, read in order as ``clean.footfall`` delivers them, through
``WarehouseSink._without_stored`` and inserts them. Printed per batch: the CPU of the sink's
thread, the CPU of the whole process (the engine's query threads included; its merges of the
inserted parts also land here) and the wall time of the check, and how many id queries ran.

Run: ``make bench`` or ``.venv/bin/python bench/bench_sink_check.py [--stored 300000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityops.core.registry import load_registry  # noqa: E402
from cityops.core.settings import load_settings  # noqa: E402
from cityops.warehouse.embedded import EmbeddedWarehouse  # noqa: E402
from cityops.warehouse.migrate import migrate  # noqa: E402
from cityops.warehouse.sink import SITE_COLUMNS, WarehouseSink  # noqa: E402

TABLE = "footfall_observed"
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 1, tzinfo=TZ)


def footfall_rows(counters: list[Any], lo: int, hi: int) -> list[dict[str, Any]]:
    """Rows ``lo`` to ``hi`` of a stream of reports, one every 100 ms, counter after counter."""
    now = datetime.now(TZ)
    out = []
    for i in range(lo, hi):
        c = counters[i % len(counters)]
        out.append({"event_id": f"{c.id}:{i}", "source": c.id, "zone_id": c.zone_id,
                    "event_time": START + timedelta(milliseconds=100 * i), "entries": i % 7,
                    "exits": i % 3, "interval_s": 60, "lat": None, "lon": None,
                    "ingested_at": now})
    return out


def run(sink: WarehouseSink, wh: EmbeddedWarehouse, counters: list[Any], at: int,
        batches: int, rows: int) -> dict[str, float]:
    """Check and insert ``batches`` batches from row ``at``; seconds per batch."""
    thread = cpu = wall = 0.0
    for k in range(batches):
        batch = footfall_rows(counters, at + k * rows, at + (k + 1) * rows)
        t0, c0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        fresh = sink._without_stored({TABLE: batch})[TABLE]
        thread += time.thread_time() - t0
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        assert len(fresh) == rows, "new rows were taken for stored ones"
        wh.insert(TABLE, fresh)
        sink.marks.stored(TABLE, SITE_COLUMNS[TABLE], fresh)
    return {"thread": thread / batches, "cpu": cpu / batches, "wall": wall / batches}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stored", type=int, default=300_000, help="rows stored beforehand")
    ap.add_argument("--rows", type=int, default=6_000, help="rows per batch")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2, help="alternated runs of each variant")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cityops-bench-sink-") as folder:
        settings = load_settings(data_dir=folder)
        registry = load_registry(settings.registry_dir)
        counters = sorted(registry.counters.values(), key=lambda c: c.id)
        wh = EmbeddedWarehouse(str(Path(folder) / "warehouse"))
        migrate(wh, timezone=settings.timezone, raw_ttl_days=0, registry=registry)
        for lo in range(0, args.stored, 50_000):
            wh.insert(TABLE, footfall_rows(counters, lo, min(args.stored, lo + 50_000)))
        at = args.stored
        print(f"bench_sink_check: {args.stored:,} rows stored, {len(counters)} counters, "
              f"batches of {args.rows:,} new rows read in order, ms per batch")
        for _ in range(args.repeat):
            for label, with_marks in (("asking every batch", False), ("marks", True)):
                sink = WarehouseSink(settings, wh)
                if not with_marks:  # the check before the marks: every row is asked about
                    sink.marks.to_ask = lambda table, column, rows: rows  # type: ignore[method-assign]
                took = run(sink, wh, counters, at, args.batches, args.rows)
                at += args.batches * args.rows
                print(f"  {label:<20} sink thread {took['thread'] * 1000:6.1f}  process "
                      f"{took['cpu'] * 1000:6.1f}  wall {took['wall'] * 1000:6.1f}  "
                      f"(µs of the sink thread per row {took['thread'] * 1e6 / args.rows:.2f}; "
                      f"id queries {sink.stats.id_checks} of {args.batches} batches; table "
                      f"{at:,} rows after)")
        wh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Storage benchmark for the capacity plan: bytes per sensor per day, after compression.

Simulates ``--days`` (default 7) of every sensor of the site registry at its real cadence
(``cityops.ingest.simulate``), inserts it into the full schema on the embedded engine (chdb),
so the rollup materialized views run as in production, merges every table (``OPTIMIZE …
FINAL``) and reads ``system.parts``: compressed bytes on disk per table, then per sensor (or
rollup key) per day. Prints a table and one JSON line (docs/capacity.md quotes them).

Run: ``make bench`` or ``.venv/bin/python bench/bench_storage.py [--days 7]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import lz4.frame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_warehouse import fresh_database  # noqa: E402

from cityops.core.registry import load_registry  # noqa: E402
from cityops.core.settings import load_settings  # noqa: E402
from cityops.warehouse.rows import event_row  # noqa: E402

#: raw table → (feed's sensor column, rollup tables fed from it)
RAW = {"footfall_observed": ("source", ["agg_footfall_zone_1m", "agg_footfall_zone_1h"]),
       "parking_observed": ("source", ["agg_parking_1h"]),
       "air_quality_observed": ("source", ["agg_air_1h"]),
       "incidents_reported": ("source", ["agg_incidents_1h"])}
BATCH = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    settings = load_settings()
    registry = load_registry(settings.registry_dir)
    from cityops.ingest.simulate import Simulation

    wh = fresh_database(settings, registry, "warehouse-bench-storage", "storage")
    start = datetime(2026, 3, 2, tzinfo=ZoneInfo(settings.timezone))  # an ordinary week
    wire: dict[str, list[bytes]] = {}
    for d in range(args.days):
        t0 = start + timedelta(days=d)
        rows: dict[str, list[dict]] = {}
        for ev in Simulation(registry, seed=31 + d, start=t0, end=t0 + timedelta(days=1)).events():
            table, row = event_row(ev, ingested_at=t0)
            rows.setdefault(table, []).append(row)
            if d == 0:
                wire.setdefault(table, []).append(ev.model_dump_json().encode())
        for table, data in rows.items():
            for i in range(0, len(data), BATCH):
                wh.insert(table, data[i:i + BATCH])
    tables = [t for raw, (_, aggs) in RAW.items() for t in (raw, *aggs)]
    for table in tables:
        wh.execute(f"OPTIMIZE TABLE {table} FINAL")
    parts = {r[0]: r[1:] for r in wh.query(
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes), "
        "sum(bytes_on_disk) FROM system.parts WHERE database = 'storage' AND active "
        "GROUP BY table")}
    result: dict[str, dict] = {"days": args.days}
    print(f"{'table':28} {'rows':>10} {'on disk':>12} {'raw bytes':>12} {'ratio':>6} "
          f"{'sensors':>8} {'B/sensor/day':>13}")
    for raw, (col, aggs) in RAW.items():
        sensors = wh.query(f"SELECT uniqExact({col}) FROM {raw}")[0][0]
        for table in (raw, *aggs):
            n, comp, uncomp, disk = parts.get(table, (0, 0, 0, 0))
            per = disk / max(1, sensors) / args.days
            result[table] = {"rows": int(n), "bytes_on_disk": int(disk),
                             "uncompressed": int(uncomp), "sensors": int(sensors),
                             "bytes_per_sensor_day": round(per, 1),
                             "rows_per_sensor_day": round(n / max(1, sensors) / args.days, 2)}
            ratio = uncomp / comp if comp else 0
            print(f"{table:28} {int(n):>10,} {int(disk):>12,} {int(uncomp):>12,} "
                  f"{ratio:>6.1f} {sensors:>8} {per:>13,.0f}")
    wh.close()
    print("\nKafka messages (JSON as produced; lz4 over 2,000-message batches, as the producer "
          "compresses):")
    for table, blobs in wire.items():
        sample = b"".join(blobs[:2000])
        ratio = len(sample) / len(lz4.frame.compress(sample))
        mean = sum(map(len, blobs)) / len(blobs)
        result.setdefault("kafka", {})[table] = {"bytes_per_message": round(mean),
                                                  "lz4_ratio": round(ratio, 1)}
        print(f"  {table:28} {mean:>6.0f} B/message   lz4 {ratio:.1f}x")
    print(json.dumps({"storage": result}))


if __name__ == "__main__":
    main()

"""Warehouse benchmark: insert rows/s on both backends, catalogue-query latency (p50 / p95).

* embedded (chdb): the full schema, fed ``--days`` (default 30) of simulated data for every
  sensor of the site registry (``cityops.ingest.simulate``), inserted in columnar batches;
  the rollup materialized views run on every insert, as in production;
* server (clickhouse-driver, native protocol, lz4): footfall rows into a plain MergeTree table
  on the clickhouse-server started by ``scripts/services.d/clickhouse-up.sh`` (Debian's 18.16
  cannot hold the full schema);
* every query of ``docs/analyst-queries.md`` run ``--runs`` times over the 30 days, p50 / p95.

Run: ``make bench`` or ``.venv/bin/python bench/bench_warehouse.py [--days 30] [--runs 9]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityops.core.registry import load_registry  # noqa: E402
from cityops.core.settings import load_settings  # noqa: E402
from cityops.warehouse.catalog import load_catalogue  # noqa: E402
from cityops.warehouse.embedded import EmbeddedWarehouse  # noqa: E402
from cityops.warehouse.migrate import migrate  # noqa: E402
from cityops.warehouse.rows import event_row  # noqa: E402

BATCH = 50_000


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return values[k]


def simulate_days(registry, start: datetime, days: int):
    """Yield (day, {table: rows}) for each simulated day."""
    from cityops.ingest.simulate import Simulation

    for d in range(days):
        t0 = start + timedelta(days=d)
        sim = Simulation(registry, seed=7 + d, start=t0, end=t0 + timedelta(days=1))
        rows: dict[str, list[dict]] = {}
        for ev in sim.events():
            table, row = event_row(ev, ingested_at=t0)
            rows.setdefault(table, []).append(row)
        yield d, rows


def fresh_database(settings, registry, folder: str, database: str) -> EmbeddedWarehouse:
    """An empty, migrated embedded database ``database`` under ``<data dir>/<folder>``."""
    path = (settings.data_dir / folder).resolve()
    wh = EmbeddedWarehouse(str(path), database=database)
    wh.execute(f"DROP DATABASE IF EXISTS {database} SYNC")
    wh.close()
    wh = EmbeddedWarehouse(str(path), database=database)
    migrate(wh, timezone=settings.timezone, raw_ttl_days=0, registry=registry)
    return wh


def bench_embedded(settings, registry, days: int, runs: int) -> tuple[dict, list]:
    from tqdm import tqdm

    wh = fresh_database(settings, registry, "warehouse-bench", "bench")
    start = datetime(2026, 1, 20, tzinfo=ZoneInfo(settings.timezone))  # spans Spring Festival
    insert_s, gen_s, total = 0.0, 0.0, 0
    per_table: dict[str, int] = {}
    t_gen = time.perf_counter()
    for _d, rows in tqdm(simulate_days(registry, start, days), total=days, desc="simulate+insert",
                         unit="day"):
        gen_s += time.perf_counter() - t_gen
        for table, data in rows.items():
            for i in range(0, len(data), BATCH):
                chunk = data[i:i + BATCH]
                t = time.perf_counter()
                wh.insert(table, chunk)
                insert_s += time.perf_counter() - t
                total += len(chunk)
                per_table[table] = per_table.get(table, 0) + len(chunk)
        t_gen = time.perf_counter()
    stats = {"rows": total, "insert_s": insert_s, "rows_per_s": total / insert_s,
             "simulate_s": gen_s, "per_table": per_table}
    latencies = []
    for q in load_catalogue(ROOT / "docs" / "analyst-queries.md"):
        wh.query_df(q.sql)  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            df = wh.query_df(q.sql)
            times.append((time.perf_counter() - t) * 1000)
        latencies.append((q.id, q.title, len(df), _pct(times, 0.5), _pct(times, 0.95)))
    wh.close()
    return stats, latencies


def _server_port(settings) -> tuple[int, bool]:
    port_file = settings.data_dir.resolve() / "clickhouse" / "port"
    if port_file.exists():
        return int(port_file.read_text().strip()), False
    env = dict(os.environ, CITYOPS_DATA_DIR=str(settings.data_dir.resolve()))
    subprocess.run([str(ROOT / "scripts/services.d/clickhouse-up.sh")], env=env, check=True)
    return int(port_file.read_text().strip()), True


def bench_server(settings, registry, rows_wanted: int) -> dict:
    from cityops.warehouse import connect

    port, started = _server_port(settings)
    try:
        wh = connect(f"clickhouse://default@127.0.0.1:{port}/default?compression=lz4")
        wh.execute("DROP TABLE IF EXISTS bench_footfall")
        wh.execute("""CREATE TABLE bench_footfall (
            event_id String, schema_version UInt8, source String, zone_id String,
            event_time DateTime('Asia/Shanghai'), lat Nullable(Float64), lon Nullable(Float64),
            entries UInt32, exits UInt32, interval_s UInt16, dwell_s Nullable(Float32),
            density_ppm2 Nullable(Float32), ingested_at DateTime('Asia/Shanghai'))
            ENGINE = MergeTree PARTITION BY toYYYYMM(event_time)
            ORDER BY (zone_id, event_time, source, event_id)""")
        rows: list[dict] = []
        start = datetime(2026, 1, 20, tzinfo=ZoneInfo(settings.timezone))
        for _d, day in simulate_days(registry, start, 60):
            rows.extend(day["footfall_observed"])
            if len(rows) >= rows_wanted:
                break
        rows = rows[:rows_wanted]
        t = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            wh.insert("bench_footfall", rows[i:i + BATCH])
        elapsed = time.perf_counter() - t
        count = wh.query("SELECT count() FROM bench_footfall")[0][0]
        t = time.perf_counter()
        df = wh.query_df("SELECT zone_id, toStartOfHour(event_time) AS h, sum(entries) AS e "
                         "FROM bench_footfall GROUP BY zone_id, h")
        q_ms = (time.perf_counter() - t) * 1000
        wh.execute("DROP TABLE IF EXISTS bench_footfall")
        version = ".".join(map(str, wh.server_version))
        wh.close()
        return {"rows": count, "insert_s": elapsed, "rows_per_s": count / elapsed,
                "version": version, "hourly_rollup_ms": q_ms, "hourly_rows": len(df)}
    finally:
        if started:
            env = dict(os.environ, CITYOPS_DATA_DIR=str(settings.data_dir.resolve()))
            subprocess.run([str(ROOT / "scripts/services.d/clickhouse-down.sh")], env=env,
                           check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--server-rows", type=int, default=1_000_000)
    ap.add_argument("--skip-server", action="store_true")
    args = ap.parse_args()
    settings = load_settings()
    registry = load_registry(settings.registry_dir)

    stats, latencies = bench_embedded(settings, registry, args.days, args.runs)
    print(f"\nembedded (chdb), full schema + 5 rollup MVs, {args.days} days of every sensor")
    print(f"  rows inserted      {stats['rows']:>12,}  "
          f"({', '.join(f'{t} {n:,}' for t, n in stats['per_table'].items())})")
    print(f"  insert time        {stats['insert_s']:>12.1f} s   (simulation "
          f"{stats['simulate_s']:.1f} s, not counted)")
    print(f"  insert rate        {stats['rows_per_s']:>12,.0f} rows/s  (batches of {BATCH:,})")
    print(f"\ncatalogue queries over {args.days} days, {args.runs} runs each (ms)")
    print(f"  {'query':<6}{'rows':>7}{'p50':>10}{'p95':>10}  title")
    for qid, title, n, p50, p95 in latencies:
        print(f"  {qid:<6}{n:>7}{p50:>10.1f}{p95:>10.1f}  {title[:70]}")
    all_p50 = [x[3] for x in latencies]
    print(f"  median of p50s {statistics.median(all_p50):.1f} ms; worst p95 "
          f"{max(x[4] for x in latencies):.1f} ms")
    if not args.skip_server:
        srv = bench_server(settings, registry, args.server_rows)
        print(f"\nserver (clickhouse-driver, native protocol, lz4) on ClickHouse {srv['version']},"
              " plain MergeTree")
        print(f"  rows inserted      {srv['rows']:>12,}")
        print(f"  insert rate        {srv['rows_per_s']:>12,.0f} rows/s  (batches of {BATCH:,})")
        print(f"  hourly rollup query {srv['hourly_rollup_ms']:>10.1f} ms "
              f"({srv['hourly_rows']:,} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

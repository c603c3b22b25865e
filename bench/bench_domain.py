"""CPU per event of the worker's domain code alone: no broker, no Faust, no event loop.

The drain (``bench_streams.py``) measures the whole worker, but on a 2-CPU host its figures
move ±20 % from run to run with the broker and the sink beside it. This one runs the same
mix of events (``bench_streams.mix``) through the pure functions the worker's steps call,
in one process, and prints the CPU time of each stage per event (the best of ``--repeat``
runs), so a change of a few microseconds in the hot path shows:

* validate — ``core.fast_contract.fast_decode``, or for a record it leaves alone
  ``pipeline.judge`` (size, UTF-8, strict JSON, the feed contract), and the clean record's
  JSON;
* decode clean — the aggregation step's ``core.fast_contract.decode_clean`` of that JSON (or
  the model's ``model_validate_json`` for a record it leaves alone);
* aggregate — the feed's ``Aggregator.add`` (windows, presence, trends, AQI, incidents)
  with the worker's processing clock;
* publish — the step's records: latest revision per record (the footfall windows' pending
  revisions built only for those), JSON, alert observations;
* sink row — the warehouse sink's row of the clean record (``warehouse.sink``'s converter:
  ``decode_clean`` and ``rows.fast_event_row``, or the model's);
* sink derived — the sink's rows of the records the step published (the same converter:
  ``rows.fast_record_row``, or the model's ``model_validate_json`` and ``rows.record_row``),
  per event of the feed.

    .venv/bin/python bench/bench_domain.py [--events 60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_streams import mix  # noqa: E402

from cityops.core import gc_tuning  # noqa: E402
from cityops.core.fast_contract import clean_context, decode_clean, fast_decode  # noqa: E402
from cityops.core.feeds import FEED_MODELS, ValidationContext  # noqa: E402
from cityops.core.registry import load_registry  # noqa: E402
from cityops.core.settings import FEEDS, load_settings  # noqa: E402
from cityops.streams.alerting import observations_from  # noqa: E402
from cityops.streams.feed_aggregators import aggregator_for  # noqa: E402
from cityops.streams.pipeline import Origin, aggregation_key, judge  # noqa: E402
from cityops.streams.records import latest_revisions  # noqa: E402
from cityops.warehouse.sink import default_converter  # noqa: E402

STEP = 500  # events per step, as CITYOPS_WORKER_BATCH_MAX


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    out = fn()
    return time.process_time() - started, out


def run_feed(feed: str, raws: list[tuple[bytes, bytes]], settings: Any, registry: Any,
             ctx: ValidationContext) -> dict[str, float]:
    """Seconds of CPU per stage for ``raws`` of one feed."""
    now = datetime.now(UTC)
    model = FEED_MODELS[feed]
    took: dict[str, float] = {}

    def validate() -> list[bytes]:
        out = []
        for i, (key, raw) in enumerate(raws):
            fast = fast_decode(feed, raw, ctx, max_bytes=settings.max_message_bytes)
            if fast is not None:  # the validation step's fast path, as the worker runs it
                fast.unit().encode()
                out.append(fast.to_json())
                continue
            judged = judge(feed, raw, key, Origin("raw", 0, i), ctx,
                           max_bytes=settings.max_message_bytes, received_at=now)
            assert judged.event is not None, judged.dead
            aggregation_key(judged.event).encode()
            out.append(judged.event.to_json())
        return out

    took["validate"], clean = cpu(validate)
    cctx = clean_context(settings.max_clock_skew_s)
    took["decode clean"], events = cpu(
        lambda: [decode_clean(feed, c, cctx) or model.model_validate_json(c) for c in clean])
    aggregator = aggregator_for(feed, settings, registry)
    steps: list[list[Any]] = []

    def aggregate() -> None:
        records: list[Any] = []
        for ev in events:
            unit = aggregator.unit(aggregation_key(ev), 0)
            outcome = aggregator.add(unit, ev, now)
            records.extend(outcome.records)
            if len(records) >= STEP:
                steps.append(records)
                records = []
        steps.append(records)

    took["aggregate"], _ = cpu(aggregate)

    published: list[tuple[str, bytes]] = []

    def publish() -> int:
        published.clear()
        for records in steps:
            observations_from(records)
            for rec in latest_revisions(records):
                published.append((rec.topic, rec.to_json()))
        return len(published)

    took["publish"], _ = cpu(publish)
    topic = settings.topic(f"clean.{feed}")
    convert = default_converter(settings)
    took["sink row"], _ = cpu(lambda: [convert(topic, c) for c in clean])
    derived = [(settings.topic(suffix), value) for suffix, value in published]
    took["sink derived"], _ = cpu(lambda: [convert(t, value) for t, value in derived])
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3)
    args, _ = ap.parse_known_args()  # `make bench` passes every benchmark the same options
    settings = load_settings()
    registry = load_registry(settings.registry_dir)
    ctx = ValidationContext.from_settings(settings, registry)
    by_feed: dict[str, list[tuple[bytes, bytes]]] = {f: [] for f in FEEDS}
    for feed, key, value in mix(args.events, "dom", datetime(2026, 11, 1, tzinfo=UTC)):
        by_feed[feed].append((key, value))
    # the collector as the worker sets it (``core.gc_tuning``): with Python's defaults the
    # records a stage keeps made full collections land in one stage or another, and the
    # footfall aggregate of one run took 46–56 µs per report from repeat to repeat
    gc_tuning.tune(settings.gc_gen0_threshold)
    best: dict[str, dict[str, float]] = {}
    for _ in range(max(1, args.repeat)):
        for feed, raws in by_feed.items():
            if not raws:
                continue
            took = run_feed(feed, raws, settings, registry, ctx)
            kept = best.setdefault(feed, took)
            for stage, s in took.items():
                kept[stage] = min(kept[stage], s)
    stages = ["validate", "decode clean", "aggregate", "publish", "sink row", "sink derived"]
    print(f"bench_domain: {args.events:,} events of the mix, CPU µs per event "
          f"(best of {args.repeat})")
    print(f"  {'feed':10} {'events':>7} " + " ".join(f"{s:>13}" for s in stages)
          + f" {'total':>8}")
    total_all = {s: 0.0 for s in stages}
    for feed, took in best.items():
        n = len(by_feed[feed])
        for s in stages:
            total_all[s] += took[s]
        print(f"  {feed:10} {n:7,} " + " ".join(f"{1e6 * took[s] / n:13.1f}" for s in stages)
              + f" {1e6 * sum(took.values()) / n:8.1f}")
    n = sum(len(r) for r in by_feed.values())
    print(f"  {'mix':10} {n:7,} " + " ".join(f"{1e6 * total_all[s] / n:13.1f}" for s in stages)
          + f" {1e6 * sum(total_all.values()) / n:8.1f}")


if __name__ == "__main__":
    main()

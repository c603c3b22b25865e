"""Fold the simulator's four feeds through the hot modules and print what came out, hashed.

Run as a script by ``tests/unit/test_compiled.py``, once with the compiled build and once
with ``CITYOPS_COMPILED=0``: the same events must give the same records, outcomes and unit
states, byte for byte. Prints one JSON line: which modules ran compiled, the digest, counts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cityops.compiled import STATUS, running_compiled
from cityops.core.intervals import spread_aligned, spread_hours
from cityops.core.registry import load_registry
from cityops.core.settings import FEEDS, Settings
from cityops.streams.aggregators import FootfallAggregator
from cityops.streams.feed_aggregators import _Keyed, aggregator_for
from cityops.streams.pipeline import ReplayGuard
from cityops.streams.records import built
from cityops.streams.state_chain import apply, diff
from tests.simulated_clean import clean_events

EMITTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _clock(ticks: itertools.count[int]) -> Callable[[], float]:
    """A processing clock that reads alike in both runs (one tick per call)."""
    return lambda: float(next(ticks))


def main() -> None:
    compiled = running_compiled()  # before anything below is used
    settings = Settings()
    registry = load_registry(settings.registry_dir)
    sha = hashlib.sha256()
    counts: dict[str, int] = {}
    for feed in FEEDS:
        ticks = itertools.count()
        agg = (_Keyed(FootfallAggregator(
            registry, settings.stream_allowed_lateness_s, clock=_clock(ticks),
            idle_intervals=4.0, min_idle_s=180.0, pending_records=True))
            if feed == "footfall" else aggregator_for(feed, settings, registry))
        guard = ReplayGuard()
        units: dict[str, dict[str, Any]] = {}
        records = 0
        for offset, ev in enumerate(clean_events(registry, feed)):
            origin = (offset % 6, offset)  # (raw partition, offset), as the header gives
            if not guard.is_new(origin):
                raise AssertionError(f"offset {offset} refused")
            guard.mark(origin)
            unit = agg.unit(getattr(ev, "zone_id", None) or ev.source, offset % 6)
            out = agg.add(unit, ev, EMITTED)
            made = [r.to_json() for r in built(out.records)]
            records += len(made)
            sha.update(repr((out.accepted, out.lateness_s, out.watermark, made)).encode())
            state = agg.to_state(unit)
            # the state log's change records must rebuild the state they were made from
            before = units.get(unit, {})
            if apply(before, diff(before, state)) != state:
                raise AssertionError(f"{feed} {unit}: a change record does not rebuild it")
            units[unit] = state
        sha.update(json.dumps(units, sort_keys=True, default=str).encode())
        sha.update(json.dumps(guard.to_state(), sort_keys=True).encode())
        counts[feed] = records
    for count, start, end in ((7, 0, 3_600_000), (100, 30_000, 7_230_000), (1, 59_999, 60_001)):
        sha.update(repr(spread_aligned(count, start, end, 60_000)).encode())
        sha.update(repr(spread_hours(count, start, end, settings.tz)).encode())
    print(json.dumps({"compiled": compiled, "status": STATUS.reason,
                      "digest": sha.hexdigest(), "records": counts}))


if __name__ == "__main__":
    main()

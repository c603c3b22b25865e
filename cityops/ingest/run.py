"""Drive a simulation in one of three modes and hand each wire record to a sink.

* real time — simulated time is the wall clock (``speed`` 1, start now);
* accelerated — ``speed`` simulated seconds per wall second (``--speed 60``: an hour a
  minute); without an explicit start the run replays the recent past and ends at "now", so
  no event is from the future;
* as fast as possible — a historical ``start``/``end`` range with no pacing (``speed`` None);
* rate-driven — only a ``rate``: the recent past (ending now) replayed at that many events/s.

A ``rate`` caps events per second in every mode; ``duration_s`` caps the wall-clock time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cityops.ingest.pacing import Pacer
from cityops.ingest.ports import Progress
from cityops.ingest.producer import RateLimiter
from cityops.ingest.simulate import Simulation, WireRecord


@dataclass
class RunSummary:
    emitted: int = 0
    by_feed: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first_event: float | None = None
    last_event: float | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"emitted": self.emitted, "by_feed": dict(self.by_feed),
                "faults": dict(self.faults), "seconds": round(self.seconds, 3),
                "events_per_s": round(self.emitted / self.seconds, 1) if self.seconds else None,
                "stopped_early": self.stopped_early}


def events_per_sim_second(sim: Simulation) -> float:
    """Roughly how many events one simulated second yields (from the registry cadences)."""
    reg = sim.registry
    per_s = 0.0
    if "footfall" in sim.feeds:
        per_s += sum(1 / c.cadence_s for c in reg.counters.values())
    if "parking" in sim.feeds:
        per_s += sum(1 / c.cadence_s for c in reg.carparks.values())
    if "air" in sim.feeds:
        per_s += sum(1 / (3600 if s.kind == "national" else s.cadence_s)
                     for s in reg.stations.values())
    if "incidents" in sim.feeds:
        per_s += len(reg.zones) * 4 * 0.1 / 3600  # a few lifecycles per zone and hour
    return max(per_s, 1e-6)


def plan_range(*, now: datetime, start: datetime | None, end: datetime | None,
               speed: float | None, duration_s: float | None, rate: float | None = None,
               events_per_s: float | None = None
               ) -> tuple[datetime, datetime | None, float | None]:
    """(start, end, speed) for the CLI's options; see the module docstring.

    With a ``rate`` and neither ``start`` nor ``speed``, the run is rate-driven: it replays
    enough of the recent past (ending now) to send ``rate`` events/s for ``duration_s``
    (``events_per_s`` = events per simulated second), as fast as the rate allows."""
    if start is not None:
        if end is None and duration_s is not None:
            end = start + timedelta(seconds=duration_s * (speed or 1.0)) if speed else None
        return start, end, speed
    if rate and not speed and events_per_s:
        span = timedelta(seconds=rate * (duration_s or 3600.0) / events_per_s)
        return (now - span).replace(microsecond=0), now.replace(microsecond=0), None
    speed = speed or 1.0
    if speed == 1.0:
        start = now.replace(microsecond=0)
        return start, (start + timedelta(seconds=duration_s)) if duration_s else end, 1.0
    span = timedelta(seconds=(duration_s or 86400.0 / speed) * speed)
    start = (now - span).replace(microsecond=0)
    return start, end or now.replace(microsecond=0), speed


def run(sim: Simulation, sink: Callable[[WireRecord], None], *, speed: float | None = None,
        rate: float | None = None, duration_s: float | None = None,
        stop: threading.Event | None = None, progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> RunSummary:
    """Feed every wire record of ``sim`` to ``sink``, paced by ``speed`` (None: no pacing)."""
    summary = RunSummary()
    limiter = RateLimiter(rate) if rate else None
    wall0 = clock()
    deadline = wall0 + duration_s if duration_s else None
    pacer = Pacer(speed, origin=sim.start.timestamp(), stop=stop, deadline=deadline,
                  clock=clock, sleep=sleep) if speed else None
    for rec in sim.wire():
        if stop is not None and stop.is_set():
            summary.stopped_early = True
            break
        if pacer is not None:
            pacer.wait(rec.emit_at)
        if deadline is not None and clock() >= deadline:
            summary.stopped_early = True
            break
        if stop is not None and stop.is_set():
            summary.stopped_early = True
            break
        if limiter is not None:
            limiter.wait()
        sink(rec)
        summary.emitted += 1
        summary.by_feed[rec.feed] += 1
        if rec.fault:
            summary.faults[rec.fault.split(":")[0]] += 1
        if summary.first_event is None:
            summary.first_event = rec.emit_at
        summary.last_event = rec.emit_at
        if progress is not None:
            progress.update(1)
    summary.seconds = clock() - wall0
    return summary

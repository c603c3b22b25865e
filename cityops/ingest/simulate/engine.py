"""The simulation engine: merges per-source generators day by day and applies faults.

``Simulation(registry, seed=…, start=…, end=…, feeds=…, faults=…)``:

* ``events()`` — feed models (``cityops.core.feeds``) in emission order: event-time order
  per source, merged across sources; injected duplicates / late / out-of-order events appear
  where they would arrive, dead sensors fall silent, a skewed sensor carries a wrong clock;
* ``timed()`` — ``SimEvent``s: the model plus the simulated moment it is emitted and the
  fault label, for pacing (real time, accelerated) and for tests;
* ``wire()`` — ``WireRecord``s: topic feed, key and the exact bytes to produce, including
  the injected malformed records.

Determinism: same registry + seed + range + feeds + faults → identical events, ids and bytes.
Values at a given moment do not depend on where the range starts (every simulation day is
generated from its own seeds), so overlapping ranges agree.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from cityops.core.feeds import Envelope
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS
from cityops.ingest.exceptions import SimulationError
from cityops.ingest.simulate import generators as gen
from cityops.ingest.simulate.calendar import rng_for, sim_day_bounds, sim_day_of
from cityops.ingest.simulate.faults import MALFORMED_KINDS, FaultPlan, corrupt
from cityops.ingest.simulate.model import DayModel, DistrictModel


@dataclass(frozen=True)
class SimEvent:
    emit_at: float  # simulated epoch seconds at which the event is sent
    event: Envelope
    fault: str | None = None  # "duplicate", "late", "out_of_order", "clock_skew"


@dataclass(frozen=True)
class WireRecord:
    """One record as produced to Kafka: ``value`` is what goes on the wire."""

    feed: str
    key: bytes
    value: bytes
    emit_at: float
    event_id: str
    fault: str | None = None  # adds "malformed:<kind>" for corrupted records

    @property
    def malformed(self) -> bool:
        return bool(self.fault and self.fault.startswith("malformed"))


def _as_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SimulationError(f"{name} must be timezone-aware (e.g. 2025-10-01T00:00+08:00)")
    return moment


class Simulation:
    """Deterministic simulated feeds of the district in the registry, over [start, end)."""

    def __init__(self, registry: Registry, *, seed: int, start: datetime, end: datetime | None,
                 feeds: Iterable[str] = FEEDS, faults: FaultPlan | None = None,
                 tz: str | None = None) -> None:
        self.registry = registry
        self.seed = int(seed)
        self.start = _as_aware(start, "start")
        self.end = _as_aware(end, "end") if end is not None else None
        if self.end is not None and self.end <= self.start:
            raise SimulationError(f"end {self.end.isoformat()} is not after start "
                                  f"{self.start.isoformat()}")
        self.feeds = tuple(dict.fromkeys(feeds))
        unknown = [f for f in self.feeds if f not in FEEDS]
        if unknown or not self.feeds:
            raise SimulationError(f"unknown feeds {unknown} (allowed: {', '.join(FEEDS)})")
        self.faults = faults or FaultPlan()
        self.zone = ZoneInfo(tz or registry.manifest.timezone)
        offset = self.start.astimezone(self.zone).utcoffset() or timedelta(0)
        self.model = DistrictModel(registry, self.seed, timezone(offset))
        self._start_s = self.start.timestamp()
        self._end_s = self.end.timestamp() if self.end is not None else float("inf")

    # --- sources -------------------------------------------------------------------------
    def sources(self, feed: str) -> list[str]:
        reg = self.registry
        return sorted(reg.site_ids(feed))

    def _streams(self, day: DayModel, incidents_only: bool = False) -> list[Iterator[gen.Timed]]:
        reg = self.registry
        out: list[Iterator[gen.Timed]] = []
        for feed in self.feeds:
            if incidents_only and feed != "incidents":
                continue
            for sid in self.sources(feed):
                if feed == "footfall":
                    out.append(gen.footfall(day, reg.counters[sid]))
                elif feed == "parking":
                    out.append(gen.parking(day, sid))
                elif feed == "air":
                    out.append(gen.air(day, reg.stations[sid]))
                else:
                    out.append(gen.incidents(day, sid))
        return out

    # --- merged, fault-free stream --------------------------------------------------------
    def _merged(self) -> Iterator[tuple[int, Envelope]]:
        """Events in event-time order across sources, opening simulation days lazily."""
        heap: list[tuple[int, int, Envelope, Iterator[gen.Timed]]] = []
        counter = itertools.count()

        def push(stream: Iterator[gen.Timed]) -> None:
            for t, ev in stream:
                heapq.heappush(heap, (t, next(counter), ev, stream))
                return

        first = sim_day_of(self.start, self.zone)
        # incidents reported the day before may still have updates inside the range
        for stream in self._streams(self.model.day(first - timedelta(days=1)),
                                    incidents_only=True):
            push(stream)
        day: date = first
        for stream in self._streams(self.model.day(day)):
            push(stream)
        next_start = sim_day_bounds(day + timedelta(days=1), self.zone)[0].timestamp()
        while True:
            while not heap or heap[0][0] >= next_start:
                if next_start >= self._end_s:
                    break
                day += timedelta(days=1)
                for stream in self._streams(self.model.day(day)):
                    push(stream)
                next_start = sim_day_bounds(day + timedelta(days=1), self.zone)[0].timestamp()
            if not heap:
                return
            t, _, ev, stream = heapq.heappop(heap)
            if t >= self._end_s:
                return
            push(stream)
            if t >= self._start_s:
                yield t, ev

    # --- faults --------------------------------------------------------------------------
    def _dead(self) -> dict[str, float]:
        plan = self.faults
        if not plan.dead_sensors:
            return {}
        candidates = [s for f in self.feeds if f in ("footfall", "parking", "air")
                      for s in self.sources(f)]
        r = rng_for(self.seed, "faults", "dead")
        chosen = r.sample(candidates, min(plan.dead_sensors, len(candidates)))
        span = (self._end_s - self._start_s) if self.end is not None else 86400.0
        return {s: self._start_s + plan.dead_after * span for s in chosen}

    def skewed_sensor(self) -> str | None:
        plan = self.faults
        if not plan.clock_skew_s:
            return None
        if plan.skew_sensor:
            return plan.skew_sensor
        candidates = [s for f in self.feeds if f in ("footfall", "parking", "air")
                      for s in self.sources(f)]
        return rng_for(self.seed, "faults", "skew").choice(candidates) if candidates else None

    def dead_sensors(self) -> dict[str, datetime]:
        """Sensors the fault plan kills, with the moment each falls silent."""
        return {s: datetime.fromtimestamp(t, self.start.tzinfo) for s, t in self._dead().items()}

    def timed(self) -> Iterator[SimEvent]:
        plan = self.faults
        if not plan.any:
            for t, ev in self._merged():
                yield SimEvent(float(t), ev)
            return
        r = rng_for(self.seed, "faults", "stream")
        dead = self._dead()
        skewed = self.skewed_sensor()
        held: list[tuple[float, int, SimEvent]] = []
        seq = itertools.count()
        for t, ev in self._merged():
            while held and held[0][0] <= t:
                yield heapq.heappop(held)[2]
            if ev.source in dead and t >= dead[ev.source]:
                continue
            fault = None
            if skewed is not None and ev.source == skewed:
                ev = _skew(ev, plan.clock_skew_s)
                fault = "clock_skew"
            x = r.random()
            if x < plan.late:
                heapq.heappush(held, (t + plan.late_s, next(seq), SimEvent(
                    t + plan.late_s, ev, "late")))
                continue
            if x < plan.late + plan.out_of_order:
                delay = r.uniform(0.5 * plan.out_of_order_s, plan.out_of_order_s)
                heapq.heappush(held, (t + delay, next(seq), SimEvent(t + delay, ev,
                                                                     "out_of_order")))
                continue
            yield SimEvent(float(t), ev, fault)
            if plan.duplicates and r.random() < plan.duplicates:
                delay = r.uniform(0.0, 30.0)
                heapq.heappush(held, (t + delay, next(seq), SimEvent(t + delay, ev,
                                                                     "duplicate")))
        while held:
            yield heapq.heappop(held)[2]

    def events(self) -> Iterator[Envelope]:
        for item in self.timed():
            yield item.event

    __iter__ = events

    def wire(self) -> Iterator[WireRecord]:
        """Records as they go on the wire; ``malformed`` faults corrupt some of them."""
        plan = self.faults
        r = rng_for(self.seed, "faults", "wire")
        for item in self.timed():
            ev = item.event
            value = ev.to_json()
            fault = item.fault
            if plan.malformed and r.random() < plan.malformed:
                kind = MALFORMED_KINDS[r.randrange(len(MALFORMED_KINDS))]
                value = corrupt(value, kind, r)
                fault = f"malformed:{kind}"
            yield WireRecord(ev.feed, ev.key(), value, item.emit_at, ev.event_id, fault)


def _skew(ev: Envelope, skew_s: float) -> Envelope:
    when = ev.event_time + timedelta(seconds=skew_s)
    epoch = int(when.timestamp())
    event_id = ev.event_id
    head, _, tail = event_id.rpartition(":")
    if tail.isdigit() and head:
        event_id = f"{head}:{epoch}"
    return ev.model_copy(update={"event_time": when, "event_id": event_id})


def simulate(registry: Registry, *, seed: int, start: datetime, end: datetime,
             feeds: Iterable[str] = FEEDS, faults: FaultPlan | None = None) -> Iterator[Envelope]:
    """Shorthand for ``Simulation(...).events()``."""
    return Simulation(registry, seed=seed, start=start, end=end, feeds=feeds,
                      faults=faults).events()


def wire_records(registry: Registry, *, seed: int, start: datetime, end: datetime,
                 feeds: Iterable[str] = FEEDS,
                 faults: FaultPlan | None = None) -> Iterator[WireRecord]:
    """Shorthand for ``Simulation(...).wire()``: the exact bytes, malformed ones included."""
    return Simulation(registry, seed=seed, start=start, end=end, feeds=feeds,
                      faults=faults).wire()

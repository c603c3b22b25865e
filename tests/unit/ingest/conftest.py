"""Shared simulator samples for the ingest unit tests (deterministic seeds, built once)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityops.core.registry import Registry
from cityops.ingest.simulate import Simulation, sim_day_of

TZ = ZoneInfo("Asia/Shanghai")
SEED = 20251001


def one_counter_per_zone(registry: Registry) -> Registry:
    """The registry with one counter per zone: same zones and flows, fewer events to count
    (a zone's arrivals are split across its counters, so patterns per zone are unchanged)."""
    keep = {}
    for zone, counters in registry.counters_by_zone.items():
        first = sorted(counters, key=lambda c: c.id)[0]
        keep[first.id] = first
        assert zone
    return Registry(manifest=registry.manifest, zones=registry.zones, counters=keep,
                    carparks=registry.carparks, stations=registry.stations,
                    source_dir=registry.source_dir)


class Sample:
    """Aggregates of a simulated range, by simulation day and local hour."""

    def __init__(self) -> None:
        self.entries_day: dict = defaultdict(int)
        self.entries_hour: dict = defaultdict(lambda: defaultdict(int))
        self.zone_density: dict = {}  # (zone, day, hour) -> max density seen
        self.occupancy: dict = defaultdict(list)  # carpark -> [(epoch, rate, status)]
        self.full_days: dict = defaultdict(set)  # day -> car parks reporting full in evening
        self.reported: list = []  # incident "reported" events
        self.days: set = set()


def build_sample(registry: Registry, start: datetime, days: int, feeds: tuple[str, ...],
                 seed: int = SEED) -> Sample:
    s = Sample()
    sim = Simulation(registry, seed=seed, start=start, end=start + timedelta(days=days),
                     feeds=feeds)
    for ev in sim.events():
        local = ev.event_time.astimezone(TZ)
        day = sim_day_of(ev.event_time, TZ)
        s.days.add(day)
        if ev.feed == "footfall":
            s.entries_day[day] += ev.entries
            s.entries_hour[day][local.hour] += ev.entries
            if ev.density_ppm2 is not None:
                key = (ev.zone_id, day, local.hour)
                s.zone_density[key] = max(s.zone_density.get(key, 0.0), ev.density_ppm2)
        elif ev.feed == "parking":
            s.occupancy[ev.carpark_id].append(
                (ev.event_time.timestamp(), ev.occupied / ev.capacity, ev.status.value))
            if ev.status.value == "full" and (local.hour >= 18 or local.hour < 2):
                s.full_days[day].add(ev.carpark_id)
        elif ev.feed == "incidents" and ev.status.value == "reported":
            s.reported.append(ev)
    return s


@pytest.fixture(scope="session")
def small_registry(registry: Registry) -> Registry:
    return one_counter_per_zone(registry)


@pytest.fixture(scope="session")
def golden_week(small_registry: Registry) -> Sample:
    """29 Sep – 13 Oct 2025: an ordinary week either side of the National Day golden week."""
    start = datetime(2025, 9, 29, 4, tzinfo=TZ)
    return build_sample(small_registry, start, 15, ("footfall", "parking", "incidents"))


@pytest.fixture(scope="session")
def november(small_registry: Registry) -> Sample:
    """Four ordinary weeks (3–30 Nov 2025), footfall only."""
    start = datetime(2025, 11, 3, 4, tzinfo=TZ)
    return build_sample(small_registry, start, 28, ("footfall",))

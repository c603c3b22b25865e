"""Deterministic simulators of the four feeds, driven by the site registry.

Stable API (other areas call it)::

    from cityops.ingest.simulate import Simulation, FaultPlan, simulate, wire_records

    sim = Simulation(registry, seed=7, start=start, end=end,
                     feeds=("footfall", "parking"), faults=FaultPlan(duplicates=0.01))
    for event in sim.events(): ...      # cityops.core.feeds models
    for rec in sim.wire(): ...          # WireRecord(feed, key, value bytes, …)

See ``docs/ingest.md`` for the model behind the numbers.
"""

from cityops.ingest.simulate.calendar import day_info, holiday_of, sim_day_of, weather_of
from cityops.ingest.simulate.engine import (
    SimEvent,
    Simulation,
    WireRecord,
    simulate,
    wire_records,
)
from cityops.ingest.simulate.faults import MALFORMED_KINDS, FaultPlan

__all__ = [
    "MALFORMED_KINDS", "FaultPlan", "SimEvent", "Simulation", "WireRecord", "day_info",
    "holiday_of", "sim_day_of", "simulate", "weather_of", "wire_records",
]

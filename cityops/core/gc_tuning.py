"""Garbage-collector settings of the long-running processes (the worker, the sink).

A step allocates tens of thousands of short-lived objects (records, models, dicts), and with
Python's default generation-0 threshold (700 allocations) a collection ran every few records,
each walking every young object. With 50,000 the worker used about 10 % less CPU per event
(``bench/bench_streams.py --only alone``: four alternated pairs, 505 → 455 µs on average;
single runs vary by ±10 %). ``gc.freeze`` then moves what start-up built (modules, the
registry, the apps) out of the collector's sight, so the full collections that still run
walk only what the work itself keeps.
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger(__name__)


def tune(gen0_threshold: int) -> None:
    """Freeze what exists now and collect generation 0 every ``gen0_threshold`` allocations
    (``CITYOPS_GC_GEN0_THRESHOLD``; 0 leaves Python's own settings). Call it once start-up
    is done."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    log.info("gc.tuned", gen0_threshold=gen0_threshold, frozen=gc.get_freeze_count())

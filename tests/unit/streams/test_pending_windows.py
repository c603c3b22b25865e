"""Footfall windows as pending revisions: the worker builds only the revisions it publishes.

``FootfallAggregator(pending_records=True)`` (the worker's) returns ``records.Pending``
revisions; the aggregation step takes each window's newest revision (``latest_revisions``)
and builds only those. Against the same aggregator building every revision at once, on a
backlog read the way a catching-up worker reads it (counters' partitions at different
speeds, with duplicates, late and out-of-order reports), every step must publish the same
JSON, make the same alert observations and leave the same state, and build far fewer models.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.core.feeds import FootfallObserved
from cityops.core.registry import Registry
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan
from cityops.streams.aggregators import FootfallAggregator
from cityops.streams.alerting import observations_from
from cityops.streams.records import Pending, built, latest_revisions

START = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
EMITTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STEP = 200  # events per step, as a fetched batch


def _catching_up(registry: Registry) -> list[FootfallObserved]:
    """Five hours of footfall reports as a lagging worker reads them: the counters split over
    three raw partitions, the first read three times as fast as the others."""
    faults = FaultPlan(duplicates=0.02, late=0.03, out_of_order=0.05)
    queues: list[list[FootfallObserved]] = [[], [], []]
    for rec in wire_records(registry, seed=9, start=START, end=START + timedelta(hours=5),
                            feeds=["footfall"], faults=faults):
        if rec.fault and rec.fault.startswith("malformed"):
            continue
        ev = FootfallObserved.model_validate_json(rec.value)
        queues[sum(ev.source.encode()) % 3].append(ev)
    order: list[FootfallObserved] = []
    its = [iter(q) for q in queues]
    live = [True, True, True]
    while any(live):
        for partition, turns in ((0, 3), (1, 1), (2, 1)):
            for _ in range(turns):
                ev = next(its[partition], None)
                if ev is None:
                    live[partition] = False
                    break
                order.append(ev)
    return order


def _clock() -> Callable[[], float]:
    """A processing clock both aggregators read alike (one tick per call)."""
    ticks = itertools.count()
    return lambda: START.timestamp() + 3600 + 0.01 * next(ticks)


def _aggregator(registry: Registry, pending: bool) -> FootfallAggregator:
    return FootfallAggregator(registry, 120, clock=_clock(), idle_intervals=4.0,
                              min_idle_s=180.0, pending_records=pending)


def _steps(events: list[FootfallObserved]) -> Iterator[list[FootfallObserved]]:
    for i in range(0, len(events), STEP):
        yield events[i:i + STEP]


def test_pending_revisions_publish_what_built_records_publish(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _catching_up(registry)
    assert len(events) > 3000
    eager, lazy = _aggregator(registry, False), _aggregator(registry, True)
    builds = {"n": 0}
    build = Pending.build

    def counted(self: Pending) -> Any:
        builds["n"] += 1
        return build(self)

    # counted on the pending side: a compiled aggregator's methods cannot be replaced
    monkeypatch.setattr(Pending, "build", counted)
    made = published = revisions = 0
    for step in _steps(events):
        now_records: list[Any] = []
        later: list[Any] = []
        for ev in step:
            a, b = eager.add(ev, EMITTED), lazy.add(ev, EMITTED)
            assert (a.accepted, a.lateness_s, a.watermark) == (
                b.accepted, b.lateness_s, b.watermark)
            assert all(isinstance(r, Pending) for r in b.records)
            assert observations_from(a.records, ev.event_time) == observations_from(
                b.records, ev.event_time)
            now_records.extend(a.records)
            later.extend(b.records)
        # built at the end of the step, after later events changed the windows: each
        # pending revision still gives the record of its own moment
        assert [r.to_json() for r in built(later)] == [r.to_json() for r in now_records]
        made += len(now_records)
        builds["n"] = 0
        out = latest_revisions(later)
        assert builds["n"] == len(out)  # only the published revisions were built
        assert [r.to_json() for r in out] == [
            r.to_json() for r in latest_revisions(now_records)]
        published += len(out)
        revisions += sum(r.revision > 0 for r in out)
    for zone in registry.zones:
        assert eager.to_state(zone) == lazy.to_state(zone)
    assert revisions > 0  # the backlog did re-fire windows
    assert published < made / 2, (published, made)


def test_a_pending_window_mixed_with_a_built_one_is_one_record(registry: Registry) -> None:
    """A step can hold a window both pending (from an event) and built (closed by the idle
    timer, which builds its records): they are one record, and the later one is published."""
    lazy = _aggregator(registry, True)
    for step in _steps(_catching_up(registry)):
        records = [r for ev in step for r in lazy.add(ev, EMITTED).records]
        seen: dict[str, int] = {}
        for i, rec in enumerate(records):
            seen.setdefault(rec.rid, i)
        repeated = [i for i, rec in enumerate(records) if seen[rec.rid] != i]
        if repeated:
            break
    else:
        raise AssertionError("no window was revised within a step")
    first = seen[records[repeated[0]].rid]
    mixed = list(records)
    mixed[first] = records[first].build()  # an older revision, already a model
    want = [r.to_json() for r in latest_revisions(records)]
    assert [r.to_json() for r in latest_revisions(mixed)] == want
    newest_built = records[repeated[0]].build()
    tail = latest_revisions([*records, newest_built])
    assert tail[-1].to_json() == newest_built.to_json()
    assert len({r.record_id() for r in tail}) == len(tail)

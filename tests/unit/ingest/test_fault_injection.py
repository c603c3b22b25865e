"""Injected faults: each one present at about its rate, and detectable downstream."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityops.core.contract import Rejection, decode_event
from cityops.ingest.exceptions import SimulationError
from cityops.ingest.simulate import MALFORMED_KINDS, FaultPlan, Simulation

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 10, 2, 18, tzinfo=TZ)
END = START + timedelta(hours=2)


def _sim(registry, plan: FaultPlan, feeds=("footfall", "parking", "air", "incidents")):
    return Simulation(registry, seed=77, start=START, end=END, feeds=feeds, faults=plan)


def test_no_faults_by_default(registry):
    plan = FaultPlan()
    assert not plan.any
    items = list(_sim(registry, plan).timed())
    assert all(i.fault is None for i in items)
    assert len({i.event.event_id for i in items}) == len(items)


def test_duplicates_repeat_the_same_event(registry):
    items = list(_sim(registry, FaultPlan(duplicates=0.02)).timed())
    ids = Counter(i.event.event_id for i in items)
    dups = [i for i in items if i.fault == "duplicate"]
    assert 0.01 < len(dups) / len(items) < 0.03
    assert all(ids[d.event.event_id] == 2 for d in dups)


def test_late_and_out_of_order_events_arrive_after_younger_ones(registry):
    plan = FaultPlan(late=0.01, late_s=900, out_of_order=0.03, out_of_order_s=60)
    items = list(_sim(registry, plan).timed())
    faults = Counter(i.fault for i in items)
    n = len(items)
    assert 0.005 < faults["late"] / n < 0.02 and 0.02 < faults["out_of_order"] / n < 0.045
    newest: dict[str, float] = defaultdict(float)
    newest_any = 0.0
    behind = Counter()
    for i in items:
        t = i.event.event_time.timestamp()
        if i.fault == "late":
            assert i.emit_at - t == pytest.approx(900)
        if i.fault == "late" and i.emit_at < END.timestamp():
            assert newest_any - t >= 800  # the stream moved on by (almost) 15 minutes
        if t < newest[i.event.source]:
            behind[i.fault] += 1
        newest[i.event.source] = max(newest[i.event.source], t)
        newest_any = max(newest_any, i.emit_at)
    assert behind["out_of_order"] > 0.5 * faults["out_of_order"]
    assert behind[None] == 0  # only injected faults break per-source order
    # emission order is monotonic in emit time
    emits = [i.emit_at for i in items]
    assert emits == sorted(emits)


def test_dead_sensors_fall_silent(registry):
    sim = _sim(registry, FaultPlan(dead_sensors=3, dead_after=0.5))
    dead = sim.dead_sensors()
    assert len(dead) == 3
    last: dict[str, datetime] = {}
    for ev in sim.events():
        if ev.feed != "incidents":
            last[ev.source] = ev.event_time
    for sensor, when in dead.items():
        assert when == START + timedelta(hours=1)
        assert last[sensor] < when
    alive = [s for s in last if s not in dead]
    assert all(last[s] >= END - timedelta(minutes=61) for s in alive)


def test_clock_skewed_sensor(registry, vctx):
    sim = _sim(registry, FaultPlan(clock_skew_s=900, skew_sensor="cp_wfc"), feeds=("parking",))
    skewed = [i for i in sim.timed() if i.event.source == "cp_wfc"]
    assert skewed and all(i.fault == "clock_skew" for i in skewed)
    for i in skewed:
        assert i.event.event_time.timestamp() - i.emit_at == 900
        assert i.event.event_id == f"cp_wfc:{int(i.event.event_time.timestamp())}"
    # in real time the skewed sensor's events are "from the future": the contract refuses them
    ctx = vctx.__class__(registry=registry, now=datetime.fromtimestamp(skewed[0].emit_at, TZ))
    result = decode_event("parking", skewed[0].event.to_json(), ctx)
    assert isinstance(result, Rejection) and result.reason == "future_event"


def test_malformed_records_are_all_rejected_with_a_reason(registry, vctx):
    recs = list(_sim(registry, FaultPlan(malformed=0.05)).wire())
    bad = [r for r in recs if r.malformed]
    assert 0.03 < len(bad) / len(recs) < 0.07
    reasons = Counter()
    for r in recs:
        result = decode_event(r.feed, r.value, vctx)
        if r.malformed:
            assert isinstance(result, Rejection), r
            reasons[result.reason] += 1
        else:
            assert not isinstance(result, Rejection), (r, result)
    kinds = Counter(r.fault.split(":")[1] for r in bad)
    assert set(kinds) == set(MALFORMED_KINDS)
    for expected in ("bad_json", "bad_encoding", "missing_field", "unexpected_field",
                     "negative_count", "naive_timestamp", "not_an_object", "wrong_type"):
        assert reasons[expected] > 0, reasons


def test_all_faults_together_are_deterministic(registry):
    plan = FaultPlan.parse("all")
    a = [(r.value, r.fault, r.emit_at) for r in _sim(registry, plan).wire()]
    b = [(r.value, r.fault, r.emit_at) for r in _sim(registry, plan).wire()]
    assert a == b
    assert {f.split(":")[0] for _, f, _ in a if f} == {
        "duplicate", "late", "out_of_order", "malformed", "clock_skew"}


def test_fault_plan_parsing():
    plan = FaultPlan.parse("dup=0.01, late=0.002,ooo=0.05,malformed=0.01,dead=2,skew=600")
    assert plan == FaultPlan(duplicates=0.01, late=0.002, out_of_order=0.05, malformed=0.01,
                             dead_sensors=2, clock_skew_s=600.0)
    assert FaultPlan.parse("") == FaultPlan() == FaultPlan.parse("none")
    assert FaultPlan.parse("skew=-120,skew_sensor=fc_jfb_square_01").skew_sensor == \
        "fc_jfb_square_01"
    for bad in ("dup", "frobnicate=1", "dup=x", "dup=2", "late=0.7,ooo=0.7"):
        with pytest.raises(SimulationError):
            FaultPlan.parse(bad)

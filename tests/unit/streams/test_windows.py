"""Event-time windows: assignment, firing, allowed lateness, late events, state snapshots."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cityops.streams.aggregators import Outcome
from cityops.streams.windows import (
    AddResult,
    HoppingWindow,
    TumblingWindow,
    WindowedAggregator,
    WindowSnapshot,
)


def _sum(acc: int, value: int, ts: float) -> int:
    return acc + value


def _agg(lateness_s: float = 30) -> WindowedAggregator[str, int, int]:
    return WindowedAggregator(TumblingWindow(60), lateness_s, lambda: 0, _sum)


def test_tumbling_assignment() -> None:
    assert TumblingWindow(60).windows_for(125) == [(120, 180)]
    assert TumblingWindow(60).windows_for(120) == [(120, 180)]
    assert TumblingWindow(60).windows_for(119.999) == [(60, 120)]


def test_hopping_assignment() -> None:
    assert HoppingWindow(300, 60).windows_for(125) == [
        (-120, 180), (-60, 240), (0, 300), (60, 360), (120, 420)]
    assert HoppingWindow(300, 60).windows_for(120) == [
        (-120, 180), (-60, 240), (0, 300), (60, 360), (120, 420)]
    assert HoppingWindow(120, 60).windows_for(60) == [(0, 120), (60, 180)]


def test_window_bounds_are_floats_however_the_sizes_were_given() -> None:
    """Compiled, a float field holds 60.0 for 60: the bounds (kept in the state logs) must
    read the same from source, whether the sizes were given as ints or floats."""
    for assigner in (TumblingWindow(60), HoppingWindow(300, 60), TumblingWindow(60.0)):
        for ts in (125, 125.5, 0):
            bounds = [b for window in assigner.windows_for(ts) for b in window]
            assert bounds and all(type(b) is float for b in bounds), (assigner, ts, bounds)


def test_bad_windows() -> None:
    with pytest.raises(ValueError):
        HoppingWindow(60, 120)
    with pytest.raises(ValueError):
        TumblingWindow(0)


def test_fire_revise_close_and_late() -> None:
    agg = _agg(30)
    r = agg.add("k", 10, 1)
    assert (r.accepted, r.updated, r.emit) == (True, [(0, 60)], [])
    assert agg.add("k", 59, 2).emit == []
    r = agg.add("k", 61, 4)  # event time passes 60: window (0, 60) fires with revision 0
    assert [(s.start_s, s.end_s, s.acc, s.revision) for s in r.emit] == [(0, 60, 3, 0)]
    assert r.watermark_s == 31
    r = agg.add("k", 50, 8)  # behind event time but within lateness: revision 1
    assert r.accepted
    assert [(s.start_s, s.acc, s.revision) for s in r.emit] == [(0, 11, 1)]
    r = agg.add("k", 95, 1)  # watermark 65 closes (0, 60)
    assert r.emit == []
    assert [s.start_s for s in agg.open_windows("k")] == [60]
    r = agg.add("k", 40, 1)  # older than the watermark: late, nothing updated
    assert (r.accepted, r.late, r.lateness_s, r.updated) == (False, True, 25, [])
    assert agg.late_count("k") == 1


def test_a_snapshot_shows_every_change_and_an_earlier_one_keeps_its_values() -> None:
    """A window's snapshot is made once and reused until the window changes: folding a
    value, firing and revising each show in the next snapshot, and never in an earlier one
    (the state chain diffs the previous snapshot against the next)."""

    def window(state: dict[str, Any]) -> tuple[Any, ...]:
        w = state["windows"]["0.0"]
        return (w["acc"], w["revision"], w["fired"])

    agg = _agg(30)
    agg.add("k", 10, 1)
    first = agg.to_state("k")
    assert agg.to_state("k")["windows"]["0.0"] is first["windows"]["0.0"]  # reused
    agg.add("k", 20, 2)  # folded
    folded = agg.to_state("k")
    agg.add("k", 61, 4)  # (0, 60) fires
    fired = agg.to_state("k")
    agg.add("k", 50, 8)  # revised
    revised = agg.to_state("k")
    assert [window(s) for s in (first, folded, fired, revised)] == [
        (1, 0, False), (3, 0, False), (3, 0, True), (11, 1, True)]


def test_watermark_is_per_key() -> None:
    agg = _agg(30)
    agg.add("a", 10_000, 1)
    r = agg.add("b", 10, 1)
    assert r.accepted


def test_close_until_returns_unfired_windows() -> None:
    agg = _agg(30)
    agg.add("k", 70, 5)
    closed = agg.close_until("k", 200)
    assert [(s.start_s, s.acc, s.emitted) for s in closed] == [(60, 5, False)]
    assert agg.add("k", 150, 1).late  # the external watermark also makes older events late
    assert agg.close_all_until(300) == []


def test_state_roundtrip_is_json() -> None:
    agg = _agg(30)
    for ts, v in ((10, 1), (61, 2), (50, 3)):
        agg.add("k", ts, v)
    snapshot = json.loads(json.dumps(agg.to_state("k")))
    other = _agg(30)
    other.from_state("k", snapshot)
    assert other.to_state("k") == agg.to_state("k")
    r1, r2 = agg.add("k", 45, 10), other.add("k", 45, 10)
    assert [(s.acc, s.revision) for s in r1.emit] == [(s.acc, s.revision) for s in r2.emit]
    assert [(s.acc, s.revision) for s in r2.emit] == [(14, 2)]  # 1 + 3 + 10


def test_close_idle_closes_only_keys_quiet_on_the_feed_clock() -> None:
    # key "a" on time, key "b" 250 s ahead: "b" moves the feed clock, but "a" is not idle
    agg = _agg(30)
    agg.add("a", 1_000, 1)
    agg.add("b", 1_250, 1)
    assert agg.close_idle(60) == {}
    assert agg.add("a", 1_010, 1).accepted  # a's next on-time event is still accepted
    # once the feed has moved on without "a" for more than idle_after_s, "a" is closed,
    # up to its own clock moved on by that quiet time
    agg.add("b", 1_300, 1)
    agg.add("b", 1_400, 1)
    closed = agg.close_idle(60)
    assert list(closed) == ["a"]
    assert [(s.start_s, s.acc, s.emitted) for s in closed["a"]] == [(960, 2, False)]
    assert agg.watermark("a") == 1_010 + (1_400 - 1_300) - 60
    assert agg.close_idle(60) == {}  # nothing left to close: nothing to re-snapshot


def _outputs(agg: WindowedAggregator[str, int, int], restore_every: int | None,
             events: list[tuple[str, float, int]]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for i, (key, ts, value) in enumerate(events):
        if restore_every and i % restore_every == 0:
            for k in list(agg.keys()):  # as after a restart: state from its snapshot
                agg.from_state(k, json.loads(json.dumps(agg.to_state(k))))
        res = agg.add(key, ts, value)
        out.append((res.accepted,
                    [(s.key, s.start_s, s.end_s, s.acc, s.revision) for s in res.emit]))
        if i % 11 == 0:  # as the idle timer does: sometimes past the key's own clock
            until = ts + 150 if i % 33 == 0 else ts - 200
            out.append(tuple((s.key, s.start_s, s.acc, s.emitted)
                             for s in agg.close_until(key, until)))
    return out


@pytest.mark.parametrize("assigner", [TumblingWindow(60), HoppingWindow(300, 60)])
def test_many_open_windows_fire_and_close_in_order_across_restores(assigner: object) -> None:
    """The per-key window index (kept beside the state, rebuilt after a restore) fires and
    closes exactly what a fresh aggregator fed the same events does: out-of-order, late and
    allowed-late events, several keys, hours of open windows."""
    import random

    rng = random.Random(7)
    events = [(f"z{rng.randrange(3)}", 1_000_000 + i * 7 + rng.uniform(-400, 60), rng.randrange(9))
              for i in range(3000)]
    runs = [_outputs(WindowedAggregator(assigner, 600, lambda: 0, _sum),  # type: ignore[arg-type]
                     every, events) for every in (None, 7, 101)]
    assert runs[0] == runs[1] == runs[2]
    assert sum(len(emitted) for r in runs[0] if len(r) == 2 and r[0] is True
               for emitted in [r[1]]) > 100


def test_results_compare_and_show_by_value_like_the_dataclasses_they_were() -> None:
    """``WindowSnapshot``, ``AddResult`` and ``aggregators.Outcome`` are plain classes (a
    compiled dataclass keeps an interpreted ``__init__``); tests and callers still compare
    them field by field."""
    agg = _agg(lateness_s=0)
    first = agg.add("z", 10, 1)
    fired = agg.add("z", 70, 2)
    assert fired.emit == [WindowSnapshot("z", 0.0, 60.0, 1, 0, True)]
    assert fired.emit != [WindowSnapshot("z", 0.0, 60.0, 1, 1, True)]
    assert first == AddResult(True, first.watermark_s, [(0.0, 60.0)])
    assert first != AddResult(False, first.watermark_s, [(0.0, 60.0)])
    assert first != "AddResult"
    assert repr(fired.emit[0]) == ("WindowSnapshot(key='z', start_s=0.0, end_s=60.0, acc=1, "
                                   "revision=0, emitted=True)")
    late = Outcome(False, lateness_s=5.0, watermark_s=0.0)
    assert late == Outcome(False, [], 5.0, [], 0.0)
    assert late.watermark is not None and late.watermark.isoformat() == "1970-01-01T08:00:00+08:00"
    with pytest.raises(TypeError):
        hash(late)  # mutable: compared by value, never a dict key

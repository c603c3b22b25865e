"""Per-source watermarks: a key waits for its slowest active source, idle sources stop counting.

The processing clock is passed explicitly (``now_s``), so a backlog read in seconds and a
real-time stream read over hours are both plain sequences of calls here.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.core.feeds import FootfallObserved
from cityops.core.registry import Registry
from cityops.streams.aggregators import FootfallAggregator
from cityops.streams.windows import TumblingWindow, WindowedAggregator

LATENESS_S = 30
CADENCE_S = 10


def _sum(acc: int, value: int, ts: float) -> int:
    return acc + value


def _agg() -> WindowedAggregator[str, int, int]:
    agg: WindowedAggregator[str, int, int] = WindowedAggregator(
        TumblingWindow(60), LATENESS_S, lambda: 0, _sum)
    agg.configure_sources(idle_intervals=3, min_idle_s=0)
    return agg


def _add(agg: WindowedAggregator[str, int, int], source: str, ts: float, now_s: float,
         value: int = 1) -> bool:
    return agg.add("zone", ts, value, source=source, now_s=now_s, cadence_s=CADENCE_S).accepted


def _final_windows(agg: WindowedAggregator[str, int, int], emitted: dict[float, int]
                   ) -> dict[float, int]:
    for snap in agg.close_all_until(10**9):
        emitted[snap.start_s] = snap.acc
    return emitted


def _run(order: list[tuple[str, float]], now: list[float]) -> tuple[dict[float, int], int]:
    agg = _agg()
    agg.expect("zone", {"a": CADENCE_S, "b": CADENCE_S})  # the registry's sources of the key
    emitted: dict[float, int] = {}
    late = 0
    for (source, ts), now_s in zip(order, now, strict=True):
        res = agg.add("zone", ts, 1, source=source, now_s=now_s, cadence_s=CADENCE_S)
        late += res.late
        for snap in res.emit:
            emitted[snap.start_s] = snap.acc  # highest revision wins, as in the warehouse
    return _final_windows(agg, emitted), late


def test_two_sources_read_at_different_speeds_give_the_real_time_windows() -> None:
    a = [("a", float(t)) for t in range(0, 3600, CADENCE_S)]
    b = [("b", float(t) + 3) for t in range(0, 3600, CADENCE_S)]
    real_time = sorted(a + b, key=lambda e: e[1])
    live, live_late = _run(real_time, [ts for _, ts in real_time])
    # catching up: "a"'s partition is read ten times as fast as "b"'s, all within 2 s
    catch_up = []
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        catch_up.extend(a[ia:ia + 10])
        ia += 10
        catch_up.extend(b[ib:ib + 1])
        ib += 1
    drained, drained_late = _run(catch_up, [i * 0.001 for i in range(len(catch_up))])
    assert (live_late, drained_late) == (0, 0)
    assert drained == live
    assert sum(live.values()) == len(a) + len(b) and live[0.0] == 12


def test_newest_of_any_source_made_the_lagging_source_late() -> None:
    """The rule the per-source watermark replaces: the same catch-up order, without sources."""
    agg: WindowedAggregator[str, int, int] = WindowedAggregator(
        TumblingWindow(60), LATENESS_S, lambda: 0, _sum)
    agg.add("zone", 600, 1)  # "a" read ahead
    assert agg.add("zone", 3, 1).late  # "b"'s on-time first report


def test_an_idle_source_stops_holding_the_watermark_back() -> None:
    agg = _agg()
    assert _add(agg, "a", 0, now_s=0) and _add(agg, "b", 0, now_s=0)
    for k in range(1, 30):  # "b" falls silent; "a" reports every 10 s, in real time
        assert _add(agg, "a", 10 * k, now_s=10 * k)
    # "b" is silent for more than 3 × 10 s of processing time: "a" alone drives the key
    assert agg.watermark("zone") == 290 - LATENESS_S
    assert [w.start_s for w in agg.open_windows("zone")] == [240]


def test_sources_heard_before_a_new_idle_setting_are_judged_by_it() -> None:
    """A source's idle time is kept with its clock; configuring it again reaches them too."""
    agg = _agg()  # idle after 3 × 10 s
    _add(agg, "a", 0, now_s=0)
    _add(agg, "b", 0, now_s=0)
    agg.configure_sources(idle_intervals=30, min_idle_s=0)  # now after 300 s
    for k in range(1, 30):  # "b" silent for 290 s: still not idle, it holds the key
        _add(agg, "a", 10 * k, now_s=10 * k)
    assert agg.watermark("zone") == 0 - LATENESS_S


def test_a_source_expected_after_the_others_were_heard_holds_the_key_back() -> None:
    agg = _agg()
    agg.expect("zone", {"a": CADENCE_S})
    _add(agg, "a", 0, now_s=0)
    _add(agg, "a", 10, now_s=0.1)  # every expected source heard: the key moves
    assert agg.watermark("zone") == 10 - LATENESS_S
    agg.expect("zone", {"a": CADENCE_S, "b": CADENCE_S})  # a counter added to the zone
    _add(agg, "a", 100, now_s=0.2)
    assert agg.watermark("zone") == 10 - LATENESS_S  # waits for "b"'s partition


def test_a_silent_source_holds_the_watermark_while_it_is_not_idle() -> None:
    agg = _agg()
    _add(agg, "a", 0, now_s=0)
    _add(agg, "b", 0, now_s=0)
    for k in range(1, 30):  # a backlog: "a" races 290 s ahead of "b" within 2.9 s
        _add(agg, "a", 10 * k, now_s=0.1 * k)
    assert agg.watermark("zone") == 0 - LATENESS_S
    assert _add(agg, "b", 10, now_s=3.0)  # "b"'s next report is on time


def test_a_source_coming_back_holds_again_and_its_old_reports_are_late() -> None:
    agg = _agg()
    _add(agg, "a", 0, now_s=0)
    _add(agg, "b", 0, now_s=0)
    for k in range(1, 20):
        _add(agg, "a", 10 * k, now_s=10 * k)  # "b" idle from now_s 30 on
    wm = agg.watermark("zone")
    assert wm == 190 - LATENESS_S
    res = agg.add("zone", 100, 1, source="b", now_s=200, cadence_s=CADENCE_S)
    assert res.late and res.lateness_s == wm - 100  # behind where "a" took the key: late
    assert _add(agg, "b", 170, now_s=201)  # back, on time
    for k in range(20, 40):  # "a" races on to 390; "b" (heard again) holds the key …
        _add(agg, "a", 10 * k, now_s=201 + 0.01 * k)
    assert agg.watermark("zone") == wm  # … where it was: a watermark never moves back
    assert _add(agg, "b", 250, now_s=202)
    assert agg.watermark("zone") == 250 - LATENESS_S


def test_truly_late_events_are_still_late_with_all_sources_active() -> None:
    agg = _agg()
    for t in range(0, 200, CADENCE_S):
        _add(agg, "a", t, now_s=t)
        _add(agg, "b", t + 5, now_s=t)
    assert agg.watermark("zone") == 190 - LATENESS_S  # min(190, 195) − lateness
    res = agg.add("zone", 100, 1, source="a", now_s=200, cadence_s=CADENCE_S)
    assert (res.accepted, res.lateness_s) == (False, 60)


def test_a_report_far_behind_its_own_source_is_late_while_another_holds_the_key() -> None:
    agg = _agg()
    _add(agg, "a", 0, now_s=0)
    _add(agg, "b", 0, now_s=0)
    _add(agg, "a", 300, now_s=1)  # "b" (active) holds the key at 0 − lateness
    assert agg.watermark("zone") == -LATENESS_S
    res = agg.add("zone", 100, 1, source="a", now_s=2, cadence_s=CADENCE_S)
    assert (res.accepted, res.lateness_s) == (False, 300 - LATENESS_S - 100)
    assert _add(agg, "b", 100, now_s=3)  # the same time from the lagging "b": on time


def test_an_expected_source_not_heard_yet_holds_the_key_until_idle() -> None:
    agg = _agg()
    agg.expect("zone", {"a": CADENCE_S, "b": CADENCE_S})
    for k in range(30):  # only "a" so far, read fast: "b"'s partition may lag
        _add(agg, "a", 10 * k, now_s=0.01 * k)
    assert agg.watermark("zone") is None
    assert _add(agg, "b", 0, now_s=1)  # "b"'s first report, 290 s behind "a": on time
    agg2 = _agg()
    agg2.expect("zone", {"a": CADENCE_S, "b": CADENCE_S})
    for k in range(30):  # in real time: "b" never reports and is idle after 30 s
        _add(agg2, "a", 10 * k, now_s=10 * k)
    assert agg2.watermark("zone") == 290 - LATENESS_S


def test_source_clocks_survive_a_restore_and_restart_their_idle_count() -> None:
    agg = _agg()
    _add(agg, "b", 50, now_s=1_000)
    _add(agg, "a", 100, now_s=1_000)
    snap = json.loads(json.dumps(agg.to_state("zone")))
    other = _agg()
    other.from_state("zone", snap)
    assert other.watermark("zone") == agg.watermark("zone") == 50 - LATENESS_S
    # an hour later on another worker: "b" counts as heard at its first use there
    assert _add(other, "a", 400, now_s=4_600)
    assert other.watermark("zone") == 50 - LATENESS_S
    assert _add(other, "b", 60, now_s=4_601)


def test_close_idle_waits_for_processing_time_silence() -> None:
    agg = _agg()
    agg.add("a", 1_000, 1, source="s", now_s=0, cadence_s=CADENCE_S)
    agg.add("b", 1_250, 1, source="t", now_s=0.1, cadence_s=CADENCE_S)
    agg.add("b", 1_400, 1, source="t", now_s=0.2, cadence_s=CADENCE_S)
    # the feed clock moved 400 s past "a", but only 0.2 s passed: "a" may just be lagging
    assert agg.close_idle(60, now_s=0.2) == {}
    closed = agg.close_idle(60, now_s=61)
    assert list(closed) == ["a"]


TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=TZ)
NOW = datetime(2026, 5, 2, tzinfo=TZ)


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _report(counter: str, sec: int, entries: int) -> FootfallObserved:
    return FootfallObserved(event_id=f"{counter}-{sec}", source=counter,
                            event_time=T0 + timedelta(seconds=sec), zone_id="jfb_square",
                            entries=entries, exits=0, interval_s=30)


def _minutes(registry: Registry, order: list[FootfallObserved], step_s: float
             ) -> tuple[dict[datetime, int], int]:
    clock = Clock()
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None, clock=clock, idle_intervals=4)
    minutes: dict[datetime, int] = {}
    late = 0
    for ev in order:
        out = agg.add(ev, NOW)
        late += not out.accepted
        for r in out.records:
            if r.window == "tumbling_1m":
                minutes[r.window_start] = r.entries
        clock.now_s += step_s
    for r in agg.close_all_until(T0 + timedelta(hours=3), NOW):
        if r.window == "tumbling_1m":
            minutes[r.window_start] = r.entries
    return minutes, late


def test_footfall_zone_of_four_counters_drained_out_of_step_equals_real_time(
        registry: Registry) -> None:
    counters = [c.id for c in registry.counters_by_zone["jfb_square"]]
    assert len(counters) == 4
    rng = random.Random(7)
    streams = {c: [_report(c, 30 * k + i, rng.randint(0, 9)) for k in range(1, 240)]
               for i, c in enumerate(counters)}
    real_time = sorted((ev for s in streams.values() for ev in s), key=lambda e: e.event_time)
    live, live_late = _minutes(registry, real_time, step_s=30 / 4)
    # a drain: each counter's partition delivers in chunks of its own size, in turn
    pos = dict.fromkeys(counters, 0)
    drained_order: list[FootfallObserved] = []
    while any(pos[c] < len(streams[c]) for c in counters):
        for n, c in enumerate(counters):
            chunk = 5 * (n + 1) ** 2
            drained_order.extend(streams[c][pos[c]:pos[c] + chunk])
            pos[c] += chunk
    drained, drained_late = _minutes(registry, drained_order, step_s=0.0005)
    assert (live_late, drained_late) == (0, 0)
    assert drained == live
    assert sum(live.values()) == sum(ev.entries for ev in real_time)


def test_footfall_truly_late_report_is_late_with_the_other_counters_idle(
        registry: Registry) -> None:
    clock = Clock()
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None, clock=clock, idle_intervals=4)
    for sec in (10, 40, 70, 30):
        clock.now_s = sec
        assert agg.add(_report("fc_jfb_square_01", sec, 1), NOW).accepted
    clock.now_s = 300  # the zone's other three counters have been silent for 4 × 30 s
    agg.add(_report("fc_jfb_square_01", 300, 0), NOW)  # watermark 300 − 120 − 30 = 150
    out = agg.add(_report("fc_jfb_square_01", 100, 1), NOW)
    assert (out.accepted, out.lateness_s) == (False, 80)  # its interval 70–100 s


def test_footfall_report_starting_after_the_watermark_counts_in_the_minute_begun_before_it(
        registry: Registry) -> None:
    """A report's interval, not the minute its first part falls in, is what may be late: the
    minute's windows are still open (they end after the report starts, so after the
    watermark). The windows once refused it while the report was taken as on time, and its
    people were neither counted nor sent to the late topic."""
    clock = Clock()
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None, clock=clock, idle_intervals=4)
    for sec in (10, 40, 70):
        clock.now_s = sec
        agg.add(_report("fc_jfb_square_01", sec, 0), NOW)
    clock.now_s = 300  # the zone's other three counters have been silent for 4 × 30 s
    agg.add(_report("fc_jfb_square_01", 300, 0), NOW)  # watermark 300 − 120 − 30 = 150
    out = agg.add(_report("fc_jfb_square_01", 185, 6), NOW)  # 155–185 s: after it
    assert out.accepted
    minutes = {r.window_start: r.entries for r in out.records if r.window == "tumbling_1m"}
    # 25 of its 30 s in 12:02 (120–180 s), 5 in 12:03
    assert minutes == {T0 + timedelta(minutes=2): 5, T0 + timedelta(minutes=3): 1}
    # the 5-minute windows the zone's time (300 s) has passed fire now, the others later
    fives = {r.window_start: r.entries for r in out.records if r.window == "hopping_5m"}
    assert fives == {T0 - timedelta(minutes=2): 5, T0 - timedelta(minutes=1): 6, T0: 6}
    later = {r.window_start: r.entries for r in agg.close_all_until(T0 + timedelta(hours=1), NOW)
             if r.window == "hopping_5m" and r.window_start > T0}
    assert later == {T0 + timedelta(minutes=1): 6, T0 + timedelta(minutes=2): 6,
                     T0 + timedelta(minutes=3): 1, T0 + timedelta(minutes=4): 0}

"""Domain aggregators: footfall windows and presence, parking trend, air AQI, incidents."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cityops.core.feeds import (
    AirQualityObserved,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
)
from cityops.core.registry import Registry
from cityops.streams.aggregators import (
    RESET_SPANS_KEPT,
    AirQualityAggregator,
    FootfallAggregator,
    IncidentAggregator,
    ParkingAggregator,
    least_squares_slope,
)

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=TZ)  # a whole minute and hour
NOW = datetime(2026, 5, 2, tzinfo=TZ)


def ff(sec: float, entries: int, exits: int, zone: str = "jfb_square",
       start: datetime = T0, interval_s: int = 1) -> FootfallObserved:
    return FootfallObserved(event_id=f"e{sec}", source="fc_jfb_square_01",
                            event_time=start + timedelta(seconds=sec), zone_id=zone,
                            entries=entries, exits=exits, interval_s=interval_s)


def test_footfall_windows_presence_and_lateness(registry: Registry) -> None:
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None)
    assert agg.add(ff(10, 100, 20), NOW).records == []
    assert agg.add(ff(40, 50, 10), NOW).records == []
    out = agg.add(ff(70, 10, 0), NOW)  # event time passes T0+60: both windows ending there fire
    recs = {(r.window, r.window_start): r for r in out.records}
    assert set(recs) == {("tumbling_1m", T0), ("hopping_5m", T0 - timedelta(minutes=4))}
    t = recs[("tumbling_1m", T0)]
    assert (t.entries, t.exits, t.events, t.net_presence, t.revision) == (150, 30, 2, 120, 0)
    assert t.density_ppm2 == 0.01  # 120 persons / 12000 m²
    assert t.window_end == T0 + timedelta(minutes=1)
    assert recs[("hopping_5m", T0 - timedelta(minutes=4))].entries == 150

    late_ok = agg.add(ff(30, 5, 0), NOW)  # within the allowed lateness: revision 1
    assert late_ok.accepted
    revised = {r.window: r for r in late_ok.records}
    assert set(revised) == {"tumbling_1m", "hopping_5m"}
    assert (revised["tumbling_1m"].entries, revised["tumbling_1m"].revision) == (155, 1)
    assert revised["tumbling_1m"].net_presence == 120  # presence after its newest event
    assert agg.presence("jfb_square") == 135

    agg.add(ff(300, 0, 0), NOW)  # watermark T0+150: 120 s lateness + the 30-s cadence
    too_late = agg.add(ff(100, 1, 0), NOW)
    assert (too_late.accepted, too_late.lateness_s) == (False, 51)  # its interval 99–100 s
    assert agg.presence("jfb_square") == 135  # late events never touch the estimate


def test_presence_floor_decay_and_daily_reset(registry: Registry) -> None:
    agg = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=3600)
    agg.add(ff(0, 10, 30), NOW)
    assert agg.presence("jfb_square") == 0  # floored at 0
    agg.add(ff(60, 100, 0), NOW)
    agg.add(ff(3660, 0, 0), NOW)  # one half-life later
    assert agg.presence("jfb_square") == 50

    night = datetime(2026, 5, 2, 4, 59, tzinfo=TZ)
    reset = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=0)
    reset.add(ff(0, 100, 0, start=night), NOW)
    reset.add(ff(90, 10, 0, start=night), NOW)  # 05:00:30: the 05:00 reset happened first
    assert reset.presence("jfb_square") == 10


def test_footfall_idle_close_and_state(registry: Registry) -> None:
    agg = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=0)
    agg.add(ff(10, 4, 1), NOW)
    state = json.loads(json.dumps(agg.to_state("jfb_square")))
    other = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=0)
    other.from_state("jfb_square", state)
    closed = other.close_all_until(T0 + timedelta(minutes=10), NOW)
    assert sorted((r.window, r.entries) for r in closed) == [
        ("hopping_5m", 4)] * 5 + [("tumbling_1m", 4)]
    assert all(r.revision == 0 and r.net_presence == 3 for r in closed)


def test_footfall_window_snapshot_is_the_state_logs_json(registry: Registry) -> None:
    """In memory a window's counts are a class; on the state log they stay the JSON object
    the log has always held, and one written before (without the last report's id) is
    read back and counted on."""
    agg = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=0)
    agg.add(ff(10, 4, 1), NOW)
    agg.add(ff(20, 2, 0), NOW)
    state = json.loads(json.dumps(agg.to_state("jfb_square")))
    minute = state["windows"]["tumbling_1m"]["windows"]
    assert [w["acc"] for w in minute.values()] == [
        {"entries": 6, "exits": 1, "events": 2, "presence": 5.0,
         "presence_ts": (T0 + timedelta(seconds=20)).timestamp(), "report": "e20"}]

    del next(iter(minute.values()))["acc"]["report"]
    other = FootfallAggregator(registry, allowed_lateness_s=60, presence_half_life_s=0)
    other.from_state("jfb_square", state)
    other.add(ff(30, 1, 1), NOW)
    closed = other.close_all_until(T0 + timedelta(minutes=10), NOW)
    assert sorted((r.window, r.entries, r.exits, r.events) for r in closed) == [
        ("hopping_5m", 7, 2, 3)] * 5 + [("tumbling_1m", 7, 2, 3)]


def pk(sec: float, occupied: int, capacity: int = 100) -> ParkingObserved:
    return ParkingObserved(event_id=f"p{sec}", source="cp_wfc", carpark_id="cp_wfc",
                           event_time=T0 + timedelta(seconds=sec), capacity=capacity,
                           occupied=occupied)


def test_least_squares() -> None:
    assert least_squares_slope([(0, 1), (1, 3), (2, 5)]) == 2
    assert least_squares_slope([(0, 1)]) is None
    assert least_squares_slope([(1, 1), (1, 2)]) is None


def test_parking_trend_and_minutes_to_full() -> None:
    agg = ParkingAggregator(trend_window_s=600)
    first = agg.add(pk(0, 50), NOW).records[0]
    assert (first.trend_per_min, first.minutes_to_full, first.occupancy_rate) == (0, None, 0.5)
    agg.add(pk(60, 56), NOW)
    s = agg.add(pk(120, 62), NOW).records[0]
    assert s.trend_per_min == 6.0
    assert s.minutes_to_full == 6.33  # 38 free / 6 per minute
    assert s.occupancy_rate == 0.62
    full = agg.add(pk(180, 100), NOW).records[0]
    assert full.minutes_to_full == 0
    emptying = ParkingAggregator()
    emptying.add(pk(0, 80), NOW)
    assert emptying.add(pk(60, 70), NOW).records[0].minutes_to_full is None


def test_parking_window_drops_old_points_and_state() -> None:
    agg = ParkingAggregator(trend_window_s=600)
    agg.add(pk(0, 50), NOW)
    s = agg.add(pk(700, 60), NOW).records[0]
    assert s.trend_per_min == 0  # the point at 0 s is outside the 10-min regression
    assert agg.to_state("cp_wfc") == {"points": [[(T0 + timedelta(seconds=700)).timestamp(),
                                                  60.0]]}
    assert agg.add(pk(10, 50), NOW).accepted is False


def air(end: datetime, averaging_s: int = 60, station: str = "aq_micro_square",
        **values: float) -> AirQualityObserved:
    return AirQualityObserved(event_id=f"a{end.timestamp()}", source=station,
                              station_id=station, event_time=end, averaging_s=averaging_s,
                              **values)


def test_air_hourly_mean_from_minutes() -> None:
    agg = AirQualityAggregator()
    out = None
    for i in range(60):
        pm = 70.0 if i < 30 else 80.0
        out = agg.add(air(T0 + timedelta(minutes=i + 1), pm25_ugm3=pm), NOW)
    assert out is not None
    (rec,) = out.records  # one hour of data: no rolling 24-h index yet
    assert rec.averaging == "1h"
    assert rec.hour_start == T0
    assert (rec.pm25_ugm3, rec.aqi, rec.samples, rec.revision) == (75.0, 100, 60, 59)
    assert rec.primary_pollutants == ["pm25"]
    assert rec.category == "良"


def test_air_daily_moving_averages() -> None:
    agg = AirQualityAggregator()
    out = None
    for h in range(24):
        o3 = 100.0 if h < 16 else 200.0
        out = agg.add(air(T0 + timedelta(hours=h + 1), averaging_s=3600, station="aq_jiefangbei",
                          pm25_ugm3=100.0, o3_ugm3=o3), NOW)
        if h == 18:
            assert [r.averaging for r in out.records] == ["1h"]  # 19 hours < 20 needed
    assert out is not None
    hourly, daily = out.records
    assert hourly.hour_start == T0 + timedelta(hours=23)
    assert hourly.iaqi == {"pm25": 132, "o3_1h": 100}  # 100 + 50/40*25 = 131.25 → 132
    assert hourly.o3_8h_ugm3 == 200
    assert hourly.aqi == 132
    assert daily.averaging == "24h"
    assert (daily.pm25_ugm3, daily.o3_1h_ugm3, daily.o3_8h_ugm3) == (100, 200, 200)
    assert daily.iaqi == {"pm25": 132, "o3_1h": 100, "o3_8h": 137}  # 100 + 50/55*40 → 137
    assert daily.aqi == 137
    assert daily.primary_pollutants == ["o3_8h"]
    assert daily.samples == 24


def inc(incident: str, status: str, sec: float, zone: str = "jfb_square",
        severity: str = "high") -> IncidentReported:
    return IncidentReported(event_id=f"{incident}-{status}-{sec}", source=zone,
                            event_time=T0 + timedelta(seconds=sec), incident_id=incident,
                            incident_type="medical", severity=severity, zone_id=zone,
                            status=status)


def test_incident_lifecycle() -> None:
    agg = IncidentAggregator()
    a = agg.add(inc("i1", "reported", 0), NOW)
    assert (a.records[0].open_count, a.records[0].response_s, a.violations) == (1, None, [])
    assert agg.add(inc("i2", "reported", 10), NOW).records[0].open_count == 2
    on = agg.add(inc("i1", "on_scene", 300), NOW).records[0]
    assert (on.response_s, on.status, on.open_count) == (300, "on_scene", 2)
    done = agg.add(inc("i1", "resolved", 900), NOW).records[0]
    assert (done.status, done.open_count) == ("resolved", 1)
    after = agg.add(inc("i1", "dispatched", 1000), NOW)
    assert (after.accepted, after.violations) == (False, ["after_terminal"])
    agg.add(inc("i2", "on_scene", 100), NOW)
    back = agg.add(inc("i2", "dispatched", 200), NOW)
    assert (back.accepted, back.violations) == (False, ["status_regression"])


def test_incident_out_of_order_delivery() -> None:
    agg = IncidentAggregator()
    first = agg.add(inc("i3", "on_scene", 500), NOW)
    assert first.violations == ["missing_reported"]
    assert first.records[0].response_s is None
    late_report = agg.add(inc("i3", "reported", 200), NOW)
    assert late_report.violations == []
    assert (late_report.records[0].status, late_report.records[0].response_s) == ("on_scene",
                                                                                 300)
    odd = agg.add(inc("i3", "dispatched", 600), NOW)  # after on_scene in time: regression
    assert odd.violations == ["status_regression"]
    agg.add(inc("i3", "resolved", 700), NOW)
    state = json.loads(json.dumps(agg.to_state()))
    again = IncidentAggregator()
    again.from_state(state)
    assert again.open_count("jfb_square") == 0
    assert again.evict_closed_before(T0 + timedelta(seconds=701)) == 1


def test_footfall_close_idle_keeps_a_zone_behind_a_fast_zone_on_time(
        registry: Registry) -> None:
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0)
    assert agg.add(ff(10, 4, 1), NOW).accepted  # jfb_square, on time
    assert agg.add(ff(260, 2, 0, zone="minzu_road"), NOW).accepted  # 250 s ahead
    records, zones = agg.close_idle(120 + 60, NOW)
    assert (records, zones) == ([], set())
    nxt = agg.add(ff(20, 1, 0), NOW)  # jfb_square's next on-time event
    assert nxt.accepted and nxt.lateness_s == 0
    # jfb_square quiet for 300 s of feed time (> 180): its windows close, only it is dirty
    agg.add(ff(300, 1, 0, zone="minzu_road"), NOW)
    agg.add(ff(600, 1, 0, zone="minzu_road"), NOW)
    records, zones = agg.close_idle(120 + 60, NOW)
    assert zones == {"jfb_square"}
    assert {r.zone_id for r in records} == {"jfb_square"}
    assert ("tumbling_1m", 5) in {(r.window, r.entries) for r in records}


def test_incident_state_of_closed_incidents_is_evicted_after_a_day(
        registry: Registry) -> None:
    from cityops.core.settings import Settings
    from cityops.streams.feed_aggregators import aggregator_for

    state = aggregator_for("incidents", Settings(), registry)
    unit = state.unit("jfb_square", 0)
    assert unit == "@0"  # incidents are held per clean partition, not per message key
    state.from_state(unit, {})
    state.add(unit, inc("old", "reported", 0), NOW)
    state.add(unit, inc("old", "resolved", 600), NOW)
    state.add(unit, inc("open", "reported", 700), NOW)
    state.add(unit, inc("new", "reported", 24 * 3600), NOW)  # < 24 h after resolution
    assert set(state.to_state(unit)) == {"old", "open", "new"}
    state.add(unit, inc("new", "dispatched", 24 * 3600 + 601), NOW)
    # resolved more than 24 h of event time ago: gone; still-open ones are kept
    assert set(state.to_state(unit)) == {"open", "new"}


def test_hourly_reports_spread_over_their_minutes_and_are_never_late(
        registry: Registry) -> None:
    """An in-order file of hourly counters (interval 3600 s) in three zones, with the idle timer
    running between hours: no late event, and each hour's people in that hour's minutes."""
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None)
    zones = ("jfb_square", "minzu_road", "bayi_road")
    evening = datetime(2026, 5, 1, 17, tzinfo=TZ)
    minute_windows: dict[tuple[str, datetime], int] = {}
    for h in range(1, 11):  # reports ending 18:00 … 03:00, covering 17:00–18:00 … 02:00–03:00
        for i, zone in enumerate(zones):
            out = agg.add(ff(h * 3600, 100 + i, 7, zone=zone, start=evening, interval_s=3600),
                          NOW)
            assert out.accepted and out.lateness_s == 0, (h, zone)
            for r in out.records:
                if r.window == "tumbling_1m":
                    minute_windows[(r.zone_id, r.window_start)] = r.entries
        records, _ = agg.close_idle(120 + 60, NOW)
        for r in records:
            if r.window == "tumbling_1m":
                minute_windows[(r.zone_id, r.window_start)] = r.entries
    closed = agg.close_all_until(evening + timedelta(hours=12), NOW)
    for r in closed:
        if r.window == "tumbling_1m":
            minute_windows[(r.zone_id, r.window_start)] = r.entries
    # 100 people over 17:00–18:00: floor(100k/60) − floor(100(k−1)/60) → 1, 2, 2, 1, …, 2
    hour17 = [minute_windows[("jfb_square", evening + timedelta(minutes=m))] for m in range(60)]
    assert sum(hour17) == 100 and hour17[:4] == [1, 2, 2, 1] and hour17[-1] == 2
    # every hour's minutes add up to that hour's report, none spill into the next hour
    for h in range(10):
        start = evening + timedelta(hours=h)
        got = sum(v for (z, t), v in minute_windows.items()
                  if z == "minzu_road" and start <= t < start + timedelta(hours=1))
        assert got == 101, h
    assert all(agg.windows[n].late_count(z) == 0 for n in agg.windows for z in zones)


def test_hourly_report_after_thirty_second_ones_in_the_same_hour_is_on_time(
        registry: Registry) -> None:
    counters = dict(registry.counters)
    counters["fc_hourly"] = counters["fc_jfb_square_01"].model_copy(
        update={"id": "fc_hourly", "cadence_s": 3600})  # the zone also has an hourly counter
    reg = registry.model_copy(update={"counters": counters})
    agg = FootfallAggregator(reg, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None)
    for k in range(1, 121):  # 30-s reports 12:00:00–13:00:00, one person each
        assert agg.add(ff(30 * k, 1, 0, interval_s=30), NOW).accepted
    hourly = FootfallObserved(event_id="hourly-13", source="fc_hourly", event_time=T0 + timedelta(
        hours=1), zone_id="jfb_square", entries=60, exits=0, interval_s=3600)
    out = agg.add(hourly, NOW)
    assert out.accepted
    revised = {r.window_start: r for r in out.records if r.window == "tumbling_1m"}
    assert len(revised) == 60  # every minute of the hour is re-published …
    assert revised[T0].entries == 2 + 1 and revised[T0].revision == 1  # … with its share
    assert revised[T0].events == 3  # two 30-s reports and the hourly one


def test_a_longer_interval_than_registered_never_reopens_closed_windows(
        registry: Registry) -> None:
    agg = FootfallAggregator(registry, allowed_lateness_s=120, presence_half_life_s=0,
                             reset_hour_local=None)
    for k in range(1, 121):  # the zone's 30-s counter, 12:00–13:00
        agg.add(ff(30 * k, 1, 0, interval_s=30), NOW)
    out = agg.add(ff(3601, 60, 0, interval_s=3600), NOW)  # an unregistered hourly report
    # windows up to 12:57 were closed and published: the report is late, not re-opening them
    assert not out.accepted and out.lateness_s == 57 * 60 - 1


def test_a_forgotten_unit_is_restored_from_its_snapshot_not_reused(registry: Registry) -> None:
    """A revoked partition's units are forgotten; on its return the table's newer snapshot
    (written by the worker that held it meanwhile) is what counts, not the stale copy."""
    from cityops.core.settings import Settings
    from cityops.streams.feed_aggregators import aggregator_for

    here = aggregator_for("footfall", Settings(), registry)
    there = aggregator_for("footfall", Settings(), registry)
    for agg in (here, there):
        agg.add("jfb_square", ff(10, 4, 1), NOW)
    there.add("jfb_square", ff(70, 6, 0), NOW)  # the other worker moved the zone on
    newer = json.loads(json.dumps(there.to_state("jfb_square")))
    here.forget("jfb_square")
    assert here.to_state("jfb_square")["presence"] == {"value": 0.0, "ts": None}
    here.from_state("jfb_square", newer)
    assert here.to_state("jfb_square") == there.to_state("jfb_square")
    parking = aggregator_for("parking", Settings(), registry)
    empty = parking.to_state("cp_wfc")
    parking.add("cp_wfc", pk(0, 10), NOW)
    assert parking.to_state("cp_wfc") != empty
    parking.forget("cp_wfc")
    assert parking.to_state("cp_wfc") == empty
    incidents = aggregator_for("incidents", Settings(), registry)
    incidents.add("@0", inc("i1", "reported", 0), NOW)
    incidents.forget("@0")
    assert incidents.to_state("@0") == {}


def test_incident_open_counts_and_eviction_match_a_scan_of_every_incident() -> None:
    """Open counts and eviction come from indexes kept beside the incidents; over random
    out-of-order, repeated, regressing and zone-changing updates (and a restore half-way),
    they equal a scan of every incident, as they were computed before."""
    import random

    rng = random.Random(7)
    statuses = ["reported", "dispatched", "on_scene", "resolved", "cancelled"]
    zones = ["jfb_square", "minzu_road", "bayi_road"]
    agg = IncidentAggregator()
    for n in range(3000):
        if n == 1500:
            restored = IncidentAggregator()
            restored.from_state(json.loads(json.dumps(agg.to_state())))
            agg = restored
        ev = inc(f"i{rng.randrange(120)}", rng.choice(statuses), n * 60 + rng.uniform(-3000, 0),
                 zone=rng.choice(zones))
        out = agg.add(ev, NOW)
        state = agg.to_state()
        for zone in zones:
            scanned = sum(1 for i in state.values()
                          if i["zone"] == zone and i["status"] not in ("resolved", "cancelled"))
            assert agg.open_count(zone) == scanned
        if out.accepted:
            assert out.records[0].open_count == agg.open_count(out.records[0].zone_id)
        if n % 50 == 49:
            cutoff = T0 + timedelta(seconds=n * 60 - 2 * 3600)
            due = {k for k, i in state.items() if i["status"] in ("resolved", "cancelled")
                   and i["times"][i["status"]] < cutoff.timestamp()}
            assert agg.evict_closed_before(cutoff) == len(due)
            assert set(agg.to_state()) == set(state) - due


def _reset_reference(ts: float, hour: int, tz: ZoneInfo) -> float:
    local = datetime.fromtimestamp(ts, tz)
    boundary = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if boundary > local:
        boundary -= timedelta(days=1)
    return boundary.timestamp()


def test_daily_reset_boundary_is_remembered_per_day_without_changing_it(
        registry: Registry) -> None:
    """The boundary of the last daily reset is computed once per local day and reused: the
    same answer as computing it for each report, forwards, backwards, on the boundary itself
    and across a daylight-saving change."""
    for tz, start in ((TZ, datetime(2026, 5, 1, 3, 0, tzinfo=TZ)),
                      (ZoneInfo("America/New_York"),
                       datetime(2026, 3, 6, 3, 0, tzinfo=ZoneInfo("America/New_York")))):
        agg = FootfallAggregator(registry, allowed_lateness_s=60, reset_hour_local=5, tz=tz)
        base = start.timestamp()
        probes = [base + k * 1799.5 for k in range(0, 400)]  # about 8 days, forwards
        probes += [base + 2 * 86_400 + s for s in (-0.001, 0.0, 0.001)]
        probes += [base + k * 7_001.0 for k in range(100, 0, -1)]  # backwards
        boundaries = {_reset_reference(p, 5, tz) for p in probes}
        assert len(boundaries) > 5
        for p in probes:
            assert agg._last_reset_s(p) == _reset_reference(p, 5, tz), datetime.fromtimestamp(
                p, tz)


def test_the_reset_boundaries_of_zones_days_apart_are_all_remembered(
        registry: Registry) -> None:
    """While a backlog drains, zones read from different clean partitions can be days
    apart: each of their days' boundaries is remembered (the latest used first, up to
    ``RESET_SPANS_KEPT`` days), not worked out again at every report of the other zone."""
    agg = FootfallAggregator(registry, allowed_lateness_s=60, reset_hour_local=5, tz=TZ)
    base = datetime(2026, 5, 1, 12, 0, tzinfo=TZ).timestamp()
    ahead = [base + 3 * 86_400 + 30 * k for k in range(200)]
    behind = [base + 30 * k for k in range(200)]
    for a, b in zip(ahead, behind, strict=True):
        assert agg._last_reset_s(a) == _reset_reference(a, 5, TZ)
        assert agg._last_reset_s(b) == _reset_reference(b, 5, TZ)
    assert [lo for lo, _hi in agg._reset_spans] == [
        _reset_reference(behind[-1], 5, TZ), _reset_reference(ahead[-1], 5, TZ)]
    days = [base + d * 86_400 for d in range(RESET_SPANS_KEPT + 3)]
    for p in days:
        assert agg._last_reset_s(p) == _reset_reference(p, 5, TZ)
    assert [lo for lo, _hi in agg._reset_spans] == [
        _reset_reference(p, 5, TZ) for p in reversed(days[-RESET_SPANS_KEPT:])]


def _air_stream(n: int, seed: int) -> list[AirQualityObserved]:
    """Samples of three stations, mostly in order, some hours back or missing, with every
    pollutant now and then: enough hours for the daily indexes and the 8-h O3 means."""
    import random

    rnd = random.Random(seed)
    out, t = [], T0
    fields = ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")
    for i in range(n):
        t += timedelta(seconds=rnd.choice((60, 120, 300, 600)) if rnd.random() < 0.995
                       else 36_000)
        end = t - timedelta(hours=rnd.choice((1, 5, 40))) if rnd.random() < 0.08 else t
        values = {f: round(rnd.uniform(0, 30 if f == "co_mgm3" else 900), 1)
                  for f in fields if rnd.random() < 0.85}
        out.append(AirQualityObserved(
            event_id=f"a{i}", source=f"aq{i % 3}", station_id=f"aq{i % 3}", event_time=end,
            averaging_s=rnd.choice((60, 300, 3600)), **values))
    return out


def _air_steps(agg: AirQualityAggregator, events: list[AirQualityObserved],
               restore_every: int = 0) -> list[tuple[list[dict[str, Any]], list[Any]]]:
    """Per step of 29 samples: the published records (newest revisions, built) and the
    alert observations, the state restored from its JSON snapshot every ``restore_every``."""
    from cityops.streams.alerting import observations_from
    from cityops.streams.records import latest_revisions

    steps, records, observed = [], [], []
    for i, ev in enumerate(events, 1):
        outcome = agg.add(ev, NOW)
        records.extend(outcome.records)
        observed.extend(observations_from(outcome.records, ev.event_time))
        if restore_every and i % restore_every == 0:
            for station in list(agg._state):
                snap = json.loads(json.dumps(agg.to_state(station)))
                agg.forget(station)
                agg.from_state(station, snap)
        if i % 29 == 0 or i == len(events):
            steps.append(([r.model_dump(mode="json") for r in latest_revisions(records)],
                          observed))
            records, observed = [], []
    return steps


def test_air_pending_revisions_publish_what_built_models_do() -> None:
    events = _air_stream(4000, seed=7)
    eager = _air_steps(AirQualityAggregator(), events)
    pending = _air_steps(AirQualityAggregator(pending_records=True), events)
    daily = sum(r["averaging"] == "24h" for recs, _obs in eager for r in recs)
    assert daily > 300 and sum(len(obs) for _recs, obs in eager) > 2000
    assert pending == eager


def test_air_restored_state_gives_the_indexes_of_an_uninterrupted_run() -> None:
    events = _air_stream(3000, seed=11)
    assert _air_steps(AirQualityAggregator(), events, restore_every=41) == _air_steps(
        AirQualityAggregator(), events)


def test_air_state_taken_over_from_another_worker_replaces_what_it_held() -> None:
    """A partition comes back with a snapshot written elsewhere (or an older one): the
    indexes follow the snapshot, not what this aggregator had folded before."""
    events = _air_stream(3000, seed=5)
    ahead, behind = AirQualityAggregator(), AirQualityAggregator()
    _air_steps(ahead, events[:2000])
    _air_steps(behind, events[:1200])
    for station in list(ahead._state):
        behind.from_state(station, json.loads(json.dumps(ahead.to_state(station))))
    assert _air_steps(behind, events[2000:]) == _air_steps(ahead, events[2000:])


def test_air_sums_kept_for_an_hour_give_what_reading_every_hour_again_gives() -> None:
    """Each sample's indexes read the hours before its own from sums kept while the
    station's samples stay in one hour. A twin restored from the state just before each
    sample has nothing kept and reads every hour again: the indexes must be the same,
    whether the sample is in the kept hour, in an earlier one (late), in a new one, or
    evicts old hours (a 10-hour gap)."""
    events = _air_stream(2500, seed=23)
    agg = AirQualityAggregator()
    same_hour = 0
    for ev in events:
        station = ev.station_id
        twin = AirQualityAggregator()
        if station in agg._state:
            twin.from_state(station, json.loads(json.dumps(agg.to_state(station))))
            kept = agg._before.get(station)
            hour = (ev.event_time.timestamp() - (ev.averaging_s or 0) / 2) // 3600
            same_hour += kept is not None and kept.hour == hour
        got, fresh = agg.add(ev, NOW), twin.add(ev, NOW)
        assert (got.accepted, got.lateness_s) == (fresh.accepted, fresh.lateness_s)
        assert [r.model_dump() for r in got.records] == [r.model_dump() for r in fresh.records]
    assert same_hour > 1000  # most samples used what was kept


def test_air_state_restored_within_an_hour_reads_the_restored_hours() -> None:
    """A snapshot taken over mid-hour (another worker folded a late sample into an earlier
    hour) replaces the sums kept for the hour: the next sample of that hour reads the
    restored hours, as the worker that wrote the snapshot does."""
    def sample(i: int, end: datetime, pm25: float, averaging_s: int = 60) -> AirQualityObserved:
        return AirQualityObserved(event_id=f"r{i}", source="aq0", station_id="aq0",
                                  event_time=end, averaging_s=averaging_s, pm25_ugm3=pm25)

    hourly = [sample(h, T0 + timedelta(hours=h), 30.0 + h, 3600) for h in range(1, 31)]
    last = T0 + timedelta(hours=30, minutes=30)
    here, there = AirQualityAggregator(), AirQualityAggregator()
    for ev in [*hourly, sample(100, last, 80.0)]:
        here.add(ev, NOW), there.add(ev, NOW)
    there.add(sample(101, T0 + timedelta(hours=25), 400.0, 3600), NOW)  # late, 5 h back
    here.from_state("aq0", json.loads(json.dumps(there.to_state("aq0"))))
    ev = sample(102, last + timedelta(minutes=1), 90.0)
    got, want = here.add(ev, NOW), there.add(ev, NOW)
    daily = [r for r in want.records if r.averaging == "24h"]
    assert daily and daily[0].pm25_ugm3 is not None
    assert [r.model_dump() for r in got.records] == [r.model_dump() for r in want.records]

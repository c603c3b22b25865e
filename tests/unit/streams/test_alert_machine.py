"""Alert state machine: exactly the expected events, once each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cityops.core.registry import Registry
from cityops.streams.alerts.machine import AlertEngine, UnknownAlertError, is_history
from cityops.streams.alerts.rules import (
    AlertRulesError,
    RuleSet,
    levels_for,
    load_rules,
)
from cityops.streams.records import AlertEvent

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
CLOCK_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def only(events: list[AlertEvent], rule_id: str) -> list[AlertEvent]:
    """Events of one rule (ticks also report every silent registry sensor as dead)."""
    return [e for e in events if e.rule_id == rule_id]


def kinds(events: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(e.kind.value, e.severity, e.state.value) for e in events]


@pytest.fixture
def engine(registry: Registry) -> AlertEngine:
    return AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT)


def test_packaged_rules_load(registry: Registry) -> None:
    rules = load_rules()
    assert rules.version == "2026.11.1"
    crowd = rules.rule("crowd_density")
    assert [(lv.fire, lv.clear) for lv in levels_for(crowd, "jfb_square", registry)] == [
        (2.0, 1.6), (4.0, 3.5)]
    # hongyadong: registry density_warning 1.5 / critical 2.5 override the zone-kind table
    assert [(lv.fire, lv.clear) for lv in levels_for(crowd, "hongyadong", registry)] == [
        (1.5, 1.2), (2.5, 2.083333)]


def test_bad_rules_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: '1'\nrules:\n  - {id: x1, kind: aqi, title: t, subject: s,"
                   " levels: [{severity: warning, fire: 100, clear: 120}]}\n")
    with pytest.raises(AlertRulesError, match=r"rule x1: rules\.0\.levels\.0: .*clear"):
        load_rules(bad)
    # the rule is named by its id wherever it stands in the file; a rule with no id by place
    bad.write_text("version: '1'\nrules:\n  - {id: ok1, kind: aqi, title: t, subject: s,"
                   " levels: [{severity: warning, fire: 100, clear: 90}]}\n"
                   "  - {id: carpark_full, kind: aqi, title: t, subject: s,"
                   " levels: [{severity: warning, fire: 0.95, clear: 0.99}]}\n"
                   "  - {kind: aqi, title: t, subject: s, levels: []}\n")
    with pytest.raises(AlertRulesError, match=r": rule carpark_full: rules\.1\.levels\.0"):
        load_rules(bad)
    bad.write_text("version: '1'\nrules:\n  - {kind: aqi, title: t, subject: s, levels: []}\n")
    with pytest.raises(AlertRulesError, match=r"rules\.yaml: rules\.0\.id: Field required"):
        load_rules(bad)
    with pytest.raises(AlertRulesError, match="not found"):
        load_rules(tmp_path / "missing.yaml")


def test_each_level_times_its_own_rise(engine: AlertEngine) -> None:
    """crowd_density at jfb_square (warning 2.0, critical 4.0; min_fire 60 s): critical fires
    60 s after the density crossed *its* threshold, not 60 s after warning was crossed."""
    assert engine.observe("crowd_density", "jfb_square", 2.5, at(0)) == []
    assert engine.observe("crowd_density", "jfb_square", 4.5, at(50)) == []
    fired = engine.observe("crowd_density", "jfb_square", 4.5, at(60))
    assert kinds(fired) == [("fired", "warning", "active_unack")]
    assert engine.observe("crowd_density", "jfb_square", 4.5, at(100)) == []
    up = engine.observe("crowd_density", "jfb_square", 4.5, at(110))
    assert kinds(up) == [("severity_changed", "critical", "active_unack")]


def test_each_level_times_its_own_clear(engine: AlertEngine) -> None:
    """aqi (min_clear 3600 s): falling from major below warning's clear 30 min after leaving
    major clears the alert an hour after it fell below *warning's* clear."""
    engine.observe("aqi", "aq_jiefangbei", 210, at(0))
    assert kinds(engine.observe("aqi", "aq_jiefangbei", 180, at(60))) == []  # below 190
    assert kinds(engine.observe("aqi", "aq_jiefangbei", 100, at(1860))) == []  # below 140
    down = engine.observe("aqi", "aq_jiefangbei", 100, at(3660))
    assert kinds(down) == [("severity_changed", "warning", "active_unack")]
    assert engine.observe("aqi", "aq_jiefangbei", 100, at(5400)) == []  # 59 min below 140
    cleared = engine.observe("aqi", "aq_jiefangbei", 100, at(1860 + 3600))
    assert kinds(cleared) == [("cleared", "warning", "cleared_unack")]


def test_a_snapshot_from_before_per_level_timers_restores(engine: AlertEngine,
                                                          registry: Registry) -> None:
    engine.observe("aqi", "aq_jiefangbei", 160, at(0))
    state = json.loads(json.dumps(engine.to_state()))
    for tr in state["trackers"].values():
        del tr["since"]
        tr["pending_dir"], tr["pending_since"] = 0, None
    again = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT)
    again.from_state(state)
    assert [a["severity"] for a in again.active_alerts()] == ["warning"]
    again.observe("aqi", "aq_jiefangbei", 100, at(60))
    assert kinds(only(again.tick(at(60 + 3600)), "aqi"))[-1] == (
        "cleared", "warning", "cleared_unack")


def test_rise_fires_once_after_min_duration(engine: AlertEngine) -> None:
    # carpark_full: fire 0.95, clear 0.90, min_fire 120 s
    assert engine.observe("carpark_occupancy", "cp_wfc", 0.96, at(0)) == []
    assert engine.observe("carpark_occupancy", "cp_wfc", 0.97, at(60)) == []
    fired = engine.observe("carpark_occupancy", "cp_wfc", 0.97, at(120))
    assert kinds(fired) == [("fired", "warning", "active_unack")]
    e = fired[0]
    assert (e.alert_id, e.seq, e.value, e.threshold) == ("carpark_full:cp_wfc:1777608120", 0,
                                                        0.97, 0.95)
    assert e.rule_version == "2026.11.1"
    assert e.emitted_at == CLOCK_AT
    assert engine.observe("carpark_occupancy", "cp_wfc", 0.99, at(180)) == []


def test_flapping_fires_once_and_clears_once(engine: AlertEngine) -> None:
    # aqi: warning fire 150 / clear 140, min_fire 0, min_clear 3600
    events: list[AlertEvent] = []
    t = 0
    for value in (120, 151, 149, 152, 141, 155, 139, 150, 138, 145, 139):  # around both
        events += engine.observe("aqi", "aq_jiefangbei", value, at(t))
        t += 600  # every 10 min: never 1 h below 140 in a row
    assert kinds(events) == [("fired", "warning", "active_unack")]
    for _ in range(7):  # one hour and more steadily below the clear threshold
        events += engine.observe("aqi", "aq_jiefangbei", 130, at(t))
        t += 600
    assert kinds(events) == [("fired", "warning", "active_unack"),
                             ("cleared", "warning", "cleared_unack")]
    assert events[1].alert_id == events[0].alert_id
    assert events[1].seq == 1


def test_delayed_clear_by_tick(engine: AlertEngine) -> None:
    engine.observe("aqi", "aq_jiefangbei", 160, at(0))
    engine.observe("aqi", "aq_jiefangbei", 100, at(100))
    esc = only(engine.tick(at(3000)), "aqi")  # unacknowledged for 10 and 30 min
    assert [(e.kind.value, e.escalation_level) for e in esc] == [("escalated", 1),
                                                                 ("escalated", 2)]
    cleared = only(engine.tick(at(3700)), "aqi")  # 3600 s after the drop, no newer value
    assert kinds(cleared) == [("cleared", "warning", "cleared_unack")]
    assert cleared[0].seq == 3
    assert only(engine.tick(at(4000)), "aqi") == []


def test_severity_change_same_alert(engine: AlertEngine) -> None:
    fired = engine.observe("aqi", "aq_jiefangbei", 160, at(0))
    up = engine.observe("aqi", "aq_jiefangbei", 210, at(60))
    assert kinds(up) == [("severity_changed", "major", "active_unack")]
    assert up[0].alert_id == fired[0].alert_id
    assert (up[0].seq, up[0].threshold) == (1, 200)
    assert engine.observe("aqi", "aq_jiefangbei", 195, at(120)) == []  # holds above 190
    assert engine.observe("aqi", "aq_jiefangbei", 180, at(180)) == []  # wants down: waits 1 h
    down = engine.observe("aqi", "aq_jiefangbei", 175, at(180 + 3600))
    assert kinds(down) == [("severity_changed", "warning", "active_unack")]
    assert down[0].seq == 2


def test_acknowledge_and_escalation(engine: AlertEngine) -> None:
    fired = engine.observe("incident", "inc_42", 3, at(0))  # a critical incident
    assert kinds(fired) == [("fired", "critical", "active_unack")]
    aid = fired[0].alert_id
    assert only(engine.tick(at(299)), "severe_incident") == []
    esc = only(engine.tick(at(300)), "severe_incident")  # level 1 after 5 min
    assert kinds(esc) == [("escalated", "critical", "active_unack")]
    assert esc[0].escalation_level == 1
    assert only(engine.tick(at(600)), "severe_incident") == []
    ack = engine.acknowledge(aid, "duty officer Li", at(700))
    assert kinds(ack) == [("acknowledged", "critical", "active_ack")]
    assert ack[0].actor == "duty officer Li"
    assert engine.acknowledge(aid, "duty officer Li", at(701)) == []
    assert only(engine.tick(at(2000)), "severe_incident") == []  # acknowledged: no level 2
    cleared = engine.observe("incident", "inc_42", 0, at(2100))  # resolved
    assert kinds(cleared) == [("cleared", "critical", "cleared_ack")]
    assert [e.seq for e in fired + esc + ack + cleared] == [0, 1, 2, 3]
    with pytest.raises(UnknownAlertError):
        engine.acknowledge(aid, "x", at(2200))


def test_cleared_unacknowledged_then_acknowledged(engine: AlertEngine) -> None:
    fired = engine.observe("incident", "inc_7", 2, at(0))
    cleared = engine.observe("incident", "inc_7", 0, at(60))
    assert kinds(cleared) == [("cleared", "major", "cleared_unack")]
    assert [a["alert_id"] for a in engine.active_alerts()] == [fired[0].alert_id]
    ack = engine.acknowledge(fired[0].alert_id, "ops", at(120))
    assert kinds(ack) == [("acknowledged", "major", "cleared_ack")]
    assert engine.active_alerts() == []


def test_dead_sensor(engine: AlertEngine) -> None:
    engine.heartbeat("cp_wfc", at(0))  # cadence 30 s: dead after 5 × 30 = 150 s
    events = engine.tick(at(149))
    assert [e.subject for e in events] == []
    events = engine.tick(at(150))
    dead = [e for e in events if e.subject == "cp_wfc"]
    assert kinds(dead) == [("fired", "warning", "active_unack")]
    assert dead[0].rule_id == "dead_sensor"
    assert [e for e in engine.tick(at(160)) if e.subject == "cp_wfc"] == []
    back = engine.heartbeat("cp_wfc", at(170))
    assert kinds(back) == [("cleared", "warning", "cleared_unack")]
    assert [e for e in engine.tick(at(180)) if e.subject == "cp_wfc"] == []


def test_event_clock_measures_silence_on_the_sensor_s_own_lane(registry: Registry) -> None:
    """Accelerated replay: partition 1 of the footfall topic is processed 20 minutes of event
    time behind partition 0, and parking further ahead. Sensors on the lagging lane are not
    dead for that; a counter that stops while its lane moves on is."""
    engine = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, silence_by_feed=True)
    counters = sorted(registry.counters)
    fast, slow = counters[::2], counters[1::2]
    for t in range(0, 1501, 30):
        for c in fast[1:]:  # fast[0] stops after t = 300
            engine.heartbeat(c, at(t), "raw.footfall/0")
        if t <= 300:
            engine.heartbeat(fast[0], at(t), "raw.footfall/0")
            for c in slow:
                engine.heartbeat(c, at(t), "raw.footfall/1")
    for cp in registry.carparks:
        engine.heartbeat(cp, at(1800), "raw.parking/0")
    dead = [e for e in engine.tick(at(1800)) if e.rule_id == "dead_sensor"]
    assert [e.subject for e in dead if e.subject in registry.counters
            or e.subject in registry.carparks] == [fast[0]]  # 1500 − 300 s = 40 × its 30-s cadence
    restored = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, silence_by_feed=True)
    restored.from_state(engine.to_state())  # lanes survive a restart
    assert [e.subject for e in restored.tick(at(1800)) if e.kind.value == "fired"
            and e.subject in registry.counters] == []


class WallClock:
    """The wall clock of a worker reading a backlog: moved by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def dead_counters(events: list[AlertEvent], registry: Registry) -> list[tuple[str, str]]:
    return [(e.subject, e.kind.value) for e in events
            if e.rule_id == "dead_sensor" and e.subject in registry.counters]


def test_a_wall_clock_catch_up_finds_no_sensor_silent_for_the_outage(
        registry: Registry) -> None:
    """A worker back after a 3-hour outage reads the outage's reports in a minute of wall
    clock, ticking every second: footfall lane 1 ten minutes of event time behind lane 0,
    the car parks' lane first read 20 steps in. Measured against now, every counter and car
    park was silent at the first tick: dead-sensor alerts were sent for all of them and
    stayed active (the tick's reading was newer than every backlog heartbeat). A counter off
    for half an hour of the outage is found silent in the backlog and cleared by its own
    reports, unsent; one still off is sent once the data is current, as a reminder."""
    wall = WallClock(CLOCK_AT)
    engine = AlertEngine(load_rules(), registry, clock=wall, history_after_s=HOUR_S,
                         review_within_s=6 * HOUR_S)
    counters, carparks = sorted(registry.counters), sorted(registry.carparks)
    lanes = {c: f"raw.footfall/{i % 2}" for i, c in enumerate(counters)}
    quiet = counters[0]  # stopped 2 h ago, in the outage: its lane moves on without it
    back = counters[2]  # on the same lane, off from 2 h to 1 h 30 min ago
    start = CLOCK_AT - timedelta(hours=3)
    events: list[AlertEvent] = []
    for step in range(360):  # 30 s of event time per 1/6 s of wall clock
        wall.now = CLOCK_AT + timedelta(seconds=step / 6)
        for c in counters:
            t = start + timedelta(seconds=30 * step - (600 if lanes[c].endswith("1") else 0))
            off = (c == quiet and t >= CLOCK_AT - timedelta(hours=2)) or (
                c == back and timedelta(hours=1, minutes=30) < CLOCK_AT - t
                <= timedelta(hours=2))
            if not off:
                events += engine.heartbeat(c, t, lanes[c])
        for cp in carparks if step >= 20 else []:
            events += engine.heartbeat(cp, start + timedelta(seconds=30 * (step - 20)),
                                       "raw.parking/0")
        if step % 6 == 0:
            events += engine.tick(wall.now)
    dead = [(e.subject, e.kind.value) for e in events if e.rule_id == "dead_sensor"]
    assert {s for s, _ in dead} & {*counters, *carparks} == {quiet, back}  # in the backlog
    assert dead_counters(events, registry)[0] == (quiet, "fired")
    assert [k for s, k in dead if s == back] == ["fired", "cleared"]  # by its own reports
    sent = [e for e in events if e.rule_id == "dead_sensor" and e.subject in counters
            and not is_history(e.event_time.timestamp(), wall.now.timestamp(), HOUR_S)]
    assert [(e.subject, e.kind.value) for e in sent] == [(quiet, "reminded")]  # once current
    assert sent[0].value == pytest.approx((sent[0].event_time - (
        CLOCK_AT - timedelta(hours=2, seconds=30))).total_seconds() / 30)  # silent since
    never = {s for s, site in registry.stations.items() if 5 * site.cadence_s < 3 * 3600}
    assert never and never <= {s for s, _ in dead}  # stations that never reported are silent
    # caught up, the lanes stop: their sensors go silent at the wall clock's pace
    wall.now += timedelta(seconds=149)
    assert dead_counters(engine.tick(wall.now), registry) == []
    wall.now += timedelta(seconds=11 * 60)
    fired = {e.subject for e in engine.tick(wall.now) if e.kind.value == "fired"}
    assert fired == set(counters) - {quiet} | set(carparks)
    restored = AlertEngine(load_rules(), registry, clock=wall)
    restored.from_state(json.loads(json.dumps(engine.to_state())))  # the lags survive it
    assert restored._lane_lag == engine._lane_lag


def test_a_live_wall_clock_finds_a_stopped_sensor_silent_after_five_cadences(
        registry: Registry) -> None:
    """Live, each report is read two seconds after it was sent: a counter that stops is
    dead after five cadences, two seconds later than measured from its own time."""
    wall = WallClock(CLOCK_AT)
    engine = AlertEngine(load_rules(), registry, clock=wall)
    counter = sorted(registry.counters)[0]
    wall.now = CLOCK_AT + timedelta(seconds=2)
    engine.heartbeat(counter, CLOCK_AT, "raw.footfall/0")
    assert [e.subject for e in engine.tick(CLOCK_AT + timedelta(seconds=151))
            if e.subject == counter] == []
    assert [(e.subject, e.kind.value) for e in engine.tick(CLOCK_AT + timedelta(seconds=152))
            if e.subject == counter] == [(counter, "fired")]


def test_a_silence_found_on_a_lagging_lane_is_cleared_by_that_lane_s_next_report(
        registry: Registry) -> None:
    """Event clock: lane 1 is read 40 minutes of event time behind lane 0. A counter silent
    on it is dated at its lane's time, not the tick's, so its own next report on that lane
    clears the alert; dated at the tick, that report was older and ignored."""
    engine = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, silence_by_feed=True)
    counters = sorted(registry.counters)
    quiet, others = counters[1], counters[3::2]
    for t in range(0, 601, 30):
        for c in others:
            engine.heartbeat(c, at(t), "raw.footfall/1")
        if t == 0:
            engine.heartbeat(quiet, at(t), "raw.footfall/1")
    for t in range(0, 3001, 30):
        engine.heartbeat(counters[0], at(t), "raw.footfall/0")
    fired = [e for e in engine.tick(at(3000)) if e.subject == quiet]
    assert (fired[0].kind.value, fired[0].event_time) == ("fired", at(600))  # then escalated
    back = engine.heartbeat(quiet, at(630), "raw.footfall/1")
    assert [(e.subject, e.kind.value) for e in back] == [(quiet, "cleared")]


def test_dead_letter_rate(engine: AlertEngine) -> None:
    # window 300 s, ≥ 20 records, warning at 5 %, min_fire 60 s
    assert engine.record_intake("parking", 95, 5, at(0)) == []  # 5 % wanted: pending
    fired = engine.record_intake("parking", 95, 5, at(60))
    assert kinds(fired) == [("fired", "warning", "active_unack")]
    assert fired[0].subject == "parking"
    assert fired[0].value == 0.05


def test_state_roundtrip(engine: AlertEngine, registry: Registry) -> None:
    fired = engine.observe("aqi", "aq_jiefangbei", 160, at(0))
    engine.observe("aqi", "aq_jiefangbei", 100, at(100))
    snapshot = json.loads(json.dumps(engine.to_state()))
    other = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT)
    other.from_state(snapshot)
    cleared = only(other.tick(at(3700)), "aqi")
    assert kinds(cleared) == [("cleared", "warning", "cleared_unack")]
    assert (cleared[0].alert_id, cleared[0].seq) == (fired[0].alert_id, 1)


def test_unknown_kind(engine: AlertEngine) -> None:
    with pytest.raises(KeyError):
        engine.observe("noise", "x", 1, at(0))


def test_zone_override_in_rules(registry: Registry) -> None:
    rules = load_rules()
    data = rules.model_dump()
    crowd = next(r for r in data["rules"] if r["id"] == "crowd_density")
    crowd["subjects"] = {"jfb_square": [{"severity": "warning", "fire": 1.0, "clear": 0.8}]}
    crowd["min_fire_s"] = 0
    custom = RuleSet.model_validate(data)
    eng = AlertEngine(custom, registry, clock=lambda: CLOCK_AT)
    assert kinds(eng.observe("crowd_density", "jfb_square", 1.1, at(0))) == [
        ("fired", "warning", "active_unack")]
    assert eng.observe("crowd_density", "minzu_road", 1.1, at(0)) == []


def test_rules_and_a_registry_given_to_a_running_engine_are_read_afresh(
        registry: Registry) -> None:
    """The engine reads each kind's rules and each subject's levels once, for the rule set
    and registry it holds: replacing either (a rules reload) is never judged by the old."""
    eng = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT)
    assert eng.observe("crowd_density", "jfb_square", 1.1, at(0)) == []  # below 2.0
    data = load_rules().model_dump()
    crowd = next(r for r in data["rules"] if r["id"] == "crowd_density")
    crowd["subjects"] = {"jfb_square": [{"severity": "warning", "fire": 1.0, "clear": 0.8}]}
    crowd["min_fire_s"] = 0
    eng.rules = RuleSet.model_validate(data)
    assert kinds(eng.observe("crowd_density", "jfb_square", 1.2, at(10))) == [
        ("fired", "warning", "active_unack")]
    assert eng._levels_of(eng.rules.rule("crowd_density"), "hongyadong")[0].fire == 1.5
    quieter = registry.model_copy(update={"zones": {
        **registry.zones, "hongyadong": registry.zones["hongyadong"].model_copy(
            update={"density_warning_ppm2": 3.0, "density_critical_ppm2": 5.0})}})
    eng.registry = quieter
    assert eng._levels_of(eng.rules.rule("crowd_density"), "hongyadong")[0].fire == 3.0
    assert eng.observe("crowd_density", "hongyadong", 2.0, at(20)) == []  # warning 1.5 before


def test_levels_are_each_subject_s_own_and_kept_within_bounds(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT)
    crowd = eng.rules.rule("crowd_density")
    for zone in ("jfb_square", "hongyadong", "jfb_square"):
        assert eng._levels_of(crowd, zone) == levels_for(crowd, zone, registry)
    monkeypatch.setattr("cityops.streams.alerts.machine.LEVELS_KEPT", 3)
    incident = eng.rules.rule("severe_incident")
    for n in range(10):  # incident ids never come back: the levels kept stay bounded
        eng._levels_of(incident, f"inc_{n}")
        assert len(eng._levels) <= 3
    assert eng._levels_of(crowd, "hongyadong") == levels_for(crowd, "hongyadong", registry)


def test_event_clock_waits_for_every_lane_before_a_never_heard_sensor_is_silent(
        registry: Registry) -> None:
    """Replay at speed, first run: partition 0 of the footfall topic is read 10 minutes of
    event time ahead of partition 1, whose counters' first reports are still unread. They
    are not dead for that (measured against their kind's newest report they were); once
    partition 1 has moved on without one of them, it is."""
    engine = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, silence_by_feed=True)
    counters = sorted(registry.counters)
    fast, slow = counters[::2], counters[1::2]
    for t in range(0, 601, 30):
        for c in fast:
            engine.heartbeat(c, at(t), "raw.footfall/0")
    engine.heartbeat(slow[0], at(0), "raw.footfall/1")  # partition 1 has just begun
    silent = {e.subject for e in engine.tick(at(600)) if e.rule_id == "dead_sensor"}
    assert silent & set(counters) == set()
    for t in range(30, 601, 30):  # partition 1 catches up; slow[1] never reports
        for c in [slow[0], *slow[2:]]:
            engine.heartbeat(c, at(t), "raw.footfall/1")
    silent = {e.subject for e in engine.tick(at(600)) if e.rule_id == "dead_sensor"
              and e.kind.value == "fired"}
    assert silent & set(counters) == {slow[1]}


# --- history: alerts sent to no one close when they clear ----------------------------------
HOUR_S = 3600.0


def history_engine(registry: Registry) -> AlertEngine:
    """The worker's engine: events older than an hour by the wall clock are history, and an
    alert of history only that fired over 6 hours ago needs no review (T0 is 8 h ago)."""
    return AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, history_after_s=HOUR_S,
                       review_within_s=6 * HOUR_S)


def test_an_alert_fired_and_cleared_in_history_closes_without_acknowledgement(
        registry: Registry) -> None:
    engine = history_engine(registry)  # T0 is 8 h before the wall clock: a backfill
    fired = engine.observe("incident", "inc_7", 2, at(0))
    assert kinds(fired) == [("fired", "major", "active_unack")]
    assert [a["alert_id"] for a in engine.active_alerts()] == [fired[0].alert_id]
    cleared = engine.observe("incident", "inc_7", 0, at(60))
    assert kinds(cleared) == [("cleared", "major", "cleared_ack")]
    assert cleared[0].alert_id == fired[0].alert_id and cleared[0].actor is None
    assert cleared[0].message.endswith("(fired in replayed history, never sent: closed "
                                       "without acknowledgement)")
    assert engine.active_alerts() == []
    assert engine.to_state()["awaiting_ack"] == {}
    with pytest.raises(UnknownAlertError):
        engine.acknowledge(fired[0].alert_id, "ops", CLOCK_AT)


def test_an_alert_whose_firing_was_live_still_awaits_acknowledgement(
        registry: Registry) -> None:
    engine = history_engine(registry)
    recent = CLOCK_AT - timedelta(minutes=30)  # within the hour: sent when it fired
    fired = engine.observe("incident", "inc_8", 2, recent)
    cleared = engine.observe("incident", "inc_8", 0, recent + timedelta(minutes=1))
    assert kinds(cleared) == [("cleared", "major", "cleared_unack")]
    assert "history" not in cleared[0].message
    assert [a["alert_id"] for a in engine.active_alerts()] == [fired[0].alert_id]


def test_an_outage_alert_within_the_review_horizon_awaits_acknowledgement(
        registry: Registry) -> None:
    """A catch-up after a 3-hour outage: sent to no one, but the shift reviews it."""
    engine = history_engine(registry)
    start = CLOCK_AT - timedelta(hours=3)
    fired = engine.observe("incident", "inc_15", 2, start)
    cleared = engine.observe("incident", "inc_15", 0, start + timedelta(minutes=20))
    assert kinds(cleared) == [("cleared", "major", "cleared_unack")]
    assert "history" not in cleared[0].message
    assert [a["alert_id"] for a in engine.active_alerts()] == [fired[0].alert_id]


def test_a_history_alert_cleared_live_closes_as_it_is_sent(registry: Registry) -> None:
    """Still firing when a backfill ends, it clears on live data: the clear is sent, saying
    the alert is closed, and nobody is asked to acknowledge a firing they never saw."""
    engine = history_engine(registry)
    engine.observe("incident", "inc_9", 2, at(0))
    cleared = engine.observe("incident", "inc_9", 0, CLOCK_AT - timedelta(minutes=5))
    assert kinds(cleared) == [("cleared", "major", "cleared_ack")]
    assert "closed without acknowledgement" in cleared[0].message
    assert engine.active_alerts() == []


def test_a_history_alert_is_not_escalated(registry: Registry) -> None:
    """With the wall alert clock a replayed alert's escalations would be dated now and sent:
    "unacknowledged, escalated" to phones that never got the alert."""
    engine = history_engine(registry)
    fired = engine.observe("incident", "inc_14", 3, at(0))  # critical: escalates after 5 min
    assert only(engine.tick(CLOCK_AT), "severe_incident") == []
    cleared = engine.observe("incident", "inc_14", 0, at(60))
    assert kinds(cleared) == [("cleared", "critical", "cleared_ack")]
    assert cleared[0].alert_id == fired[0].alert_id and engine.active_alerts() == []


def test_a_catch_up_after_an_outage_sends_nothing_of_an_incident_already_over(
        registry: Registry) -> None:
    """A worker back after a 3-hour outage, on the wall clock, ticks while it reads the
    outage's reports: an incident opened and closed 2 h ago is left for the shift to review,
    and nothing of it reaches a phone."""
    engine = history_engine(registry)
    start = CLOCK_AT - timedelta(hours=2, minutes=30)
    events = engine.observe("incident", "inc_16", 3, start)
    events += only(engine.tick(CLOCK_AT), "severe_incident")
    events += only(engine.tick(CLOCK_AT + timedelta(minutes=1)), "severe_incident")
    events += engine.observe("incident", "inc_16", 0, start + timedelta(minutes=30))
    assert kinds(events) == [("fired", "critical", "active_unack"),
                             ("cleared", "critical", "cleared_unack")]
    assert all(CLOCK_AT - e.event_time > timedelta(hours=1) for e in events)  # none sent
    assert [a["alert_id"] for a in engine.active_alerts()] == [events[0].alert_id]


def test_a_history_alert_active_on_current_data_is_reminded_once_then_escalates(
        registry: Registry) -> None:
    engine = history_engine(registry)
    fired = engine.observe("incident", "inc_17", 3, at(0))  # 8 h ago: a backfill
    now = CLOCK_AT - timedelta(minutes=1)
    reminded = engine.observe("incident", "inc_17", 3, now)  # the same level, current
    assert kinds(reminded) == [("reminded", "critical", "active_unack")]
    assert reminded[0].alert_id == fired[0].alert_id and reminded[0].event_time == now
    assert reminded[0].message.endswith(
        "still active; fired 7 h 59 min before in replayed history, not sent until now")
    assert engine.observe("incident", "inc_17", 3, CLOCK_AT) == []  # once
    # escalations count from the reminder, sent at the wall clock's CLOCK_AT, not from the
    # firing 8 h ago
    assert only(engine.tick(CLOCK_AT + timedelta(minutes=4)), "severe_incident") == []
    escalated = only(engine.tick(CLOCK_AT + timedelta(minutes=5)), "severe_incident")
    assert [(e.kind.value, e.escalation_level) for e in escalated] == [("escalated", 1)]
    cleared = engine.observe("incident", "inc_17", 0, CLOCK_AT + timedelta(minutes=6))
    assert kinds(cleared) == [("cleared", "critical", "cleared_unack")]  # it was sent


def test_an_open_incident_of_an_outage_is_reminded_once_the_data_is_current(
        registry: Registry) -> None:
    """An incident sends no new report while it stays open: once the engine's newest data
    is current, a tick reminds of it if it was reported within the review age."""
    engine = history_engine(registry)
    fired = engine.observe("incident", "inc_18", 2, CLOCK_AT - timedelta(hours=2))
    old = engine.observe("incident", "inc_19", 2, at(0))  # 8 h: past the review age
    assert only(engine.tick(CLOCK_AT), "severe_incident") == []  # still catching up
    engine.heartbeat(next(iter(registry.counters)), CLOCK_AT - timedelta(seconds=30))
    reminded = only(engine.tick(CLOCK_AT), "severe_incident")
    assert [(e.alert_id, e.kind.value) for e in reminded] == [(fired[0].alert_id, "reminded")]
    assert reminded[0].event_time == CLOCK_AT
    assert "fired 2 h before in replayed history" in reminded[0].message
    assert only(engine.tick(CLOCK_AT + timedelta(seconds=10)), "severe_incident") == []
    assert kinds(engine.observe("incident", "inc_19", 0, at(60))) == [
        ("cleared", "major", "cleared_ack")]
    assert old[0].alert_id not in {a["alert_id"] for a in engine.active_alerts()}


def test_a_history_alert_clearing_when_its_data_is_current_is_not_reminded(
        registry: Registry) -> None:
    """Crowd density clears after 5 min below its clear level: an alert of a backfill whose
    first current reading is already below it gets no "still active", only its clear."""
    engine = history_engine(registry)
    fired = [e for t in range(0, 181, 60)
             for e in engine.observe("crowd_density", "jfb_square", 3.0, at(t))]
    assert kinds(fired) == [("fired", "warning", "active_unack")]
    now = CLOCK_AT - timedelta(minutes=10)
    quiet = [e for m in range(0, 5) for e in engine.observe(
        "crowd_density", "jfb_square", 0.5, now + timedelta(minutes=m))]
    assert quiet == []
    cleared = engine.observe("crowd_density", "jfb_square", 0.5, now + timedelta(minutes=5))
    assert kinds(cleared) == [("cleared", "warning", "cleared_ack")]
    assert cleared[0].message.endswith("closed without acknowledgement)")


def test_the_first_sent_event_of_a_history_alert_says_when_it_fired(
        registry: Registry) -> None:
    engine = history_engine(registry)
    engine.observe("incident", "inc_20", 2, CLOCK_AT - timedelta(hours=3))
    worse = engine.observe("incident", "inc_20", 3, CLOCK_AT - timedelta(minutes=10))
    assert kinds(worse) == [("severity_changed", "critical", "active_unack")]
    assert worse[0].message.endswith(
        "(fired 2 h 50 min before in replayed history, not sent until now)")
    engine.observe("incident", "inc_21", 2, CLOCK_AT - timedelta(hours=5))
    cleared = engine.observe("incident", "inc_21", 0, CLOCK_AT - timedelta(minutes=5))
    assert kinds(cleared) == [("cleared", "major", "cleared_unack")]  # within the review age
    assert cleared[0].message.endswith(
        "(fired 4 h 55 min before in replayed history, not sent until now)")
    live = engine.observe("incident", "inc_22", 2, CLOCK_AT - timedelta(minutes=2))
    assert "history" not in live[0].message
    assert "history" not in engine.observe("incident", "inc_22", 0, CLOCK_AT)[0].message


def test_a_firing_read_late_escalates_from_when_it_was_sent(registry: Registry) -> None:
    """A catch-up reads a critical incident reported 14 minutes ago: within the hour, so its
    firing is sent now. Counted from its event time it escalated at the next tick and again
    a minute later; the shift lead's five minutes start when the firing was sent."""
    engine = history_engine(registry)
    fired = engine.observe("incident", "inc_23", 3, CLOCK_AT - timedelta(minutes=14))
    assert kinds(fired) == [("fired", "critical", "active_unack")]
    assert only(engine.tick(CLOCK_AT + timedelta(minutes=4)), "severe_incident") == []
    escalated = only(engine.tick(CLOCK_AT + timedelta(minutes=5)), "severe_incident")
    assert [(e.kind.value, e.escalation_level) for e in escalated] == [("escalated", 1)]


def test_a_history_alert_acknowledged_by_an_officer_clears_as_acknowledged(
        registry: Registry) -> None:
    engine = history_engine(registry)
    fired = engine.observe("incident", "inc_10", 2, at(0))
    ack = engine.acknowledge(fired[0].alert_id, "duty officer Li", CLOCK_AT)
    assert kinds(ack) == [("acknowledged", "major", "active_ack")]
    cleared = engine.observe("incident", "inc_10", 0, at(60))
    assert kinds(cleared) == [("cleared", "major", "cleared_ack")]
    assert "history" not in cleared[0].message


def test_history_survives_a_snapshot_and_old_snapshots_count_as_live(
        registry: Registry) -> None:
    engine = history_engine(registry)
    engine.observe("incident", "inc_11", 2, at(0))
    state = json.loads(json.dumps(engine.to_state()))
    restored = history_engine(registry)
    restored.from_state(state)
    assert kinds(restored.observe("incident", "inc_11", 0, at(60))) == [
        ("cleared", "major", "cleared_ack")]
    for tracker in state["trackers"].values():  # a snapshot from before ``live`` was kept
        if tracker.get("alert"):
            del tracker["alert"]["live"]
    older = history_engine(registry)
    older.from_state(state)
    assert kinds(older.observe("incident", "inc_11", 0, at(60))) == [
        ("cleared", "major", "cleared_unack")]


def test_without_a_horizon_every_cleared_alert_awaits_acknowledgement(
        engine: AlertEngine) -> None:
    fired = engine.observe("incident", "inc_13", 2, at(0))  # 8 h old, horizon 0
    assert kinds(engine.observe("incident", "inc_13", 0, at(60))) == [
        ("cleared", "major", "cleared_unack")]
    assert [a["alert_id"] for a in engine.active_alerts()] == [fired[0].alert_id]


def test_event_clock_judges_no_sensor_of_a_kind_not_read_yet(registry: Registry) -> None:
    """Replay at speed, first run: the parking topic is read 4 minutes of event time ahead
    before the footfall topic's first record is. No counter is silent for that (measured
    against the parking clock, all 20 were, from the first record read); once the footfall
    topic is read without one of them for 5 cadences, that one is."""
    engine = AlertEngine(load_rules(), registry, clock=lambda: CLOCK_AT, silence_by_feed=True)
    counters = sorted(registry.counters)
    for t in range(0, 241, 30):
        for cp in registry.carparks:
            engine.heartbeat(cp, at(t), "raw.parking/0")
    silent = {e.subject for e in engine.tick(at(240)) if e.rule_id == "dead_sensor"}
    assert silent & set(counters) == set()
    for t in range(0, 601, 30):  # the footfall topic now read; counters[0] never reports
        for c in counters[1:]:
            engine.heartbeat(c, at(t), "raw.footfall/0")
    for cp in registry.carparks:
        engine.heartbeat(cp, at(600), "raw.parking/0")
    fired = {e.subject for e in engine.tick(at(600)) if e.rule_id == "dead_sensor"
             and e.kind.value == "fired"}
    assert fired & set(counters) == {counters[0]}


def test_the_alerts_doc_quotes_hongyadong_s_levels_in_force(registry: Registry) -> None:
    """docs/alerts.md once gave the zone-kind table's 3.0/2.5 as Hongyadong's critical level;
    the registry's own 2.5 comes first."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "alerts.md").read_text("utf-8")
    quoted = re.search(r"Hongyadong [^|]*?warning ([\d.]+)/([\d.]+), critical ([\d.]+)/([\d.]+)",
                       doc)
    assert quoted is not None
    crowd = load_rules().rule("crowd_density")
    in_force = [(lv.fire, lv.clear) for lv in levels_for(crowd, "hongyadong", registry)]
    assert [(float(quoted[1]), float(quoted[2])), (float(quoted[3]), float(quoted[4]))] == [
        (fire, round(clear, 2)) for fire, clear in in_force]

"""A step's alert-engine inputs travel as one record (``op: batch``) and apply in order,
exactly as the same inputs sent one record each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.alerting import AlertWiring, observations_from
from cityops.streams.alerts.machine import is_history
from cityops.streams.alerts.rules import load_rules
from cityops.streams.app import declare_topics, make_app
from cityops.streams.records import FootfallWindow, ParkingState

T0 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)


def _wiring(settings: Settings, registry: Registry, tmp_path: Any) -> AlertWiring:
    s = settings.model_copy(update={"data_dir": tmp_path, "alert_clock": "event"})
    app = make_app(s)
    return AlertWiring(s, registry, load_rules(None), app, declare_topics(app, s).alerts)


def _inputs(zone: str, source: str) -> list[dict[str, Any]]:
    """A crowd that rises past every density threshold, and a sensor reporting."""
    items: list[dict[str, Any]] = []
    for minute in range(12):
        at = (T0 + timedelta(minutes=minute)).isoformat()
        items.append({"op": "observe", "kind": "crowd_density", "subject": zone,
                      "value": 0.2 + 0.3 * minute, "at": at})
        items.append({"op": "heartbeat", "source": source, "at": at, "lane": "raw/0"})
    items.append({"op": "tick"})
    return items


def test_a_batch_record_fires_what_its_inputs_fire_one_by_one(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    zone = sorted(registry.zones)[0]
    source = sorted(registry.counters)[0]
    items = _inputs(zone, source)
    one_by_one = _wiring(settings, registry, tmp_path / "a")
    singles = [e for item in items for e in one_by_one._apply(orjson.loads(orjson.dumps(item)))]
    batched = _wiring(settings, registry, tmp_path / "b")
    together = batched._apply(orjson.loads(orjson.dumps({"op": "batch", "items": items})))
    key = [(e.rule_id, e.subject, e.kind.value, e.event_time, e.seq) for e in singles]
    assert key and key == [(e.rule_id, e.subject, e.kind.value, e.event_time, e.seq)
                          for e in together]
    assert {e.kind.value for e in together} >= {"fired"}
    assert one_by_one.engine.to_state() == batched.engine.to_state()


def test_heartbeats_are_throttled_per_source_in_event_time(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    w = _wiring(settings, registry, tmp_path)
    every = w.settings.heartbeat_every_s
    beats = [w.heartbeat("s1", T0 + timedelta(seconds=s), "raw/0")
             for s in (0, every / 2, every, every * 1.5)]
    assert [b is not None for b in beats] == [True, False, True, False]
    assert beats[0] == {"op": "heartbeat", "source": "s1", "ts": T0.timestamp(),
                        "lane": "raw/0"}
    # the validation step passes the event time it has in seconds already: the same beats
    given = _wiring(settings, registry, tmp_path / "given")
    times = [T0 + timedelta(seconds=s) for s in (0, every / 2, every, every * 1.5)]
    assert [given.heartbeat("s1", t, "raw/0", ts=t.timestamp()) for t in times] == beats


def test_a_heartbeat_in_seconds_applies_as_one_in_iso_text(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    """Heartbeats carry their time in POSIX seconds (``ts``); inputs written before, with
    ISO text (``at``), still apply, to the same engine state and the same alerts."""
    zone = sorted(registry.zones)[0]
    source = sorted(registry.counters)[0]
    items = _inputs(zone, source)
    later, other = T0 + timedelta(hours=2), sorted(registry.counters)[1]
    items += [  # silent for two hours while another sensor of its lane reports: dead, back
        *({"op": "heartbeat", "source": other, "at": (later + timedelta(seconds=s)).isoformat(),
           "lane": "raw/0"} for s in (0, 30)), {"op": "tick"},
        {"op": "heartbeat", "source": source, "at": (later + timedelta(minutes=1)).isoformat(),
         "lane": "raw/0"}, {"op": "tick"}]
    as_text = _wiring(settings, registry, tmp_path / "text")
    as_seconds = _wiring(settings, registry, tmp_path / "seconds")
    beats, kinds = 0, []
    for item in items:
        text_events = as_text._apply(orjson.loads(orjson.dumps(item)))
        if item["op"] == "heartbeat":
            beat = as_seconds.heartbeat(item["source"], datetime.fromisoformat(item["at"]),
                                        item["lane"])
            assert beat is not None and "at" not in beat
            item, beats = beat, beats + 1
        seconds_events = as_seconds._apply(orjson.loads(orjson.dumps(item)))
        kinds += [e.kind.value for e in text_events
                  if e.rule_id == "dead_sensor" and e.subject == source]
        assert [(e.rule_id, e.subject, e.kind.value, e.event_time) for e in seconds_events] == [
            (e.rule_id, e.subject, e.kind.value, e.event_time) for e in text_events]
    assert beats == 15
    assert kinds == ["fired", "cleared"], kinds  # the sensor's own alert
    assert as_seconds.event_clock == as_text.event_clock
    assert as_seconds.engine.to_state() == as_text.engine.to_state()


def test_an_observation_in_seconds_applies_as_one_in_iso_text(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    """Observations carry their time in POSIX seconds (``ts``), as ``observations_from``
    writes them; inputs written before, with ISO text (``at``), still apply, to the same
    alerts and the same engine state."""
    zone = sorted(registry.zones)[0]
    items = [item for item in _crowd_that_comes_and_goes(zone) if item["op"] == "observe"]
    carpark = sorted(registry.carparks)[0]
    items += [{"op": "observe", "kind": "carpark_occupancy", "subject": carpark,
               "value": 0.5 + 0.05 * i,
               "at": (T0 + timedelta(minutes=3 * i, seconds=17.25)).isoformat()}
              for i in range(10)]
    items.append({"op": "tick"})
    as_text = _wiring(settings, registry, tmp_path / "text")
    as_seconds = _wiring(settings, registry, tmp_path / "seconds")
    fired = 0
    for item in items:
        text_events = as_text._apply(orjson.loads(orjson.dumps(item)))
        if item["op"] == "observe":
            at = item.pop("at")
            item["ts"] = datetime.fromisoformat(at).timestamp()
        seconds_events = as_seconds._apply(orjson.loads(orjson.dumps(item)))
        fired += sum(e.kind.value == "fired" for e in seconds_events)
        assert [(e.rule_id, e.subject, e.kind.value, e.event_time, e.value)
                for e in seconds_events] == [
            (e.rule_id, e.subject, e.kind.value, e.event_time, e.value) for e in text_events]
    assert fired >= 2  # the crowd and the car park
    assert as_seconds.event_clock == as_text.event_clock
    assert as_seconds.engine.to_state() == as_text.engine.to_state()


def test_derived_records_are_observed_in_posix_seconds() -> None:
    end = datetime(2026, 11, 30, 20, 1, tzinfo=UTC)
    window = FootfallWindow(zone_id="jfb_square", window="tumbling_1m",
                            window_start=end - timedelta(minutes=1), window_end=end,
                            entries=5, exits=1, events=2, net_presence=4.0,
                            density_ppm2=0.002, emitted_at=end)
    seen = datetime(2026, 11, 30, 20, 0, 42, 123456, tzinfo=UTC)
    parking = ParkingState(carpark_id="cp_wfc", event_time=seen, capacity=100, occupied=62,
                           occupancy_rate=0.62, trend_per_min=0.0, emitted_at=end)
    assert [(o["kind"], o["ts"], "at" in o) for o in observations_from([window, parking])] == [
        ("crowd_density", end.timestamp(), False),
        ("carpark_occupancy", seen.timestamp(), False)]


def _crowd_that_comes_and_goes(zone: str) -> list[dict[str, Any]]:
    """Last week's crowd: past every density threshold, then gone for an hour."""
    rise = _inputs(zone, "unused")[:-1:2]
    fall = [{"op": "observe", "kind": "crowd_density", "subject": zone, "value": 0.1,
             "at": (T0 + timedelta(minutes=12 + minute)).isoformat()} for minute in range(60)]
    return [*rise, *fall, {"op": "tick"}]


def test_the_worker_closes_alerts_its_webhooks_never_sent(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    """The engine's history horizon is the webhooks' age limit, its review horizon
    ``CITYOPS_ALERT_REVIEW_MAX_AGE_S``: a replayed crowd alert, fired and cleared days ago,
    closes; with either limit off it waits for an officer."""
    zone = sorted(registry.zones)[0]
    items = {"op": "batch", "items": _crowd_that_comes_and_goes(zone)}
    states = {}
    for max_age_s, review_s in ((3600.0, 86_400.0), (0.0, 86_400.0), (3600.0, 0.0)):
        s = settings.model_copy(update={"alert_webhook_max_age_s": max_age_s,
                                        "alert_review_max_age_s": review_s})
        w = _wiring(s, registry, tmp_path / f"{max_age_s}-{review_s}")
        events = [e for e in w._apply(orjson.loads(orjson.dumps(items)))
                  if e.rule_id == "crowd_density"]
        assert events and events[0].kind.value == "fired"
        cleared = [e.state.value for e in events if e.kind.value == "cleared"]
        awaiting = [a for a in w.engine.active_alerts() if a["rule_id"] == "crowd_density"]
        states[max_age_s, review_s] = (cleared, len(awaiting))
    assert states == {(3600.0, 86_400.0): (["cleared_ack"], 0),
                      (0.0, 86_400.0): (["cleared_unack"], 1),
                      (3600.0, 0.0): (["cleared_unack"], 1)}


def test_a_wall_clock_catch_up_sends_nothing_of_an_outage_incident_already_over(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    """A worker back after an outage, on the default wall clock, ticks and counts intake while
    it reads the outage's reports: an incident opened and closed 2 h ago is not escalated
    (it used to be, dated now, so sent), and waits for the shift's review."""
    s = settings.model_copy(update={"data_dir": tmp_path, "alert_clock": "wall"})
    app = make_app(s)
    w = AlertWiring(s, registry, load_rules(None), app, declare_topics(app, s).alerts)
    opened = datetime.now(UTC) - timedelta(hours=2, minutes=30)
    items = [{"op": "observe", "kind": "incident", "subject": "inc_outage", "value": 3,
              "at": opened.isoformat()},
             {"op": "intake", "feed": "incidents", "ok": 1, "dead": 0}, {"op": "tick"},
             {"op": "observe", "kind": "incident", "subject": "inc_outage", "value": 0,
              "at": (opened + timedelta(minutes=30)).isoformat()}, {"op": "tick"}]
    events = [e for e in w._apply(orjson.loads(orjson.dumps({"op": "batch", "items": items})))
              if e.subject == "inc_outage"]
    assert [(e.kind.value, e.state.value) for e in events] == [
        ("fired", "active_unack"), ("cleared", "cleared_unack")]
    now = datetime.now(UTC).timestamp()
    assert all(is_history(e.event_time.timestamp(), now, s.alert_webhook_max_age_s)
               for e in events)
    assert [a["subject"] for a in w.engine.active_alerts()] == ["inc_outage"]

"""Incidents left open with no update for ``CITYOPS_INCIDENT_EXPIRE_AFTER_S`` close without
word: they leave the state and the zone's open count, a record says so, their alert clears."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.core.feeds import IncidentReported
from cityops.core.settings import load_settings
from cityops.streams.aggregators import EXPIRED, IncidentAggregator
from cityops.streams.alerting import incident_observation
from cityops.streams.feed_aggregators import IncidentsByPartition
from cityops.streams.records import IncidentStats

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=TZ)
NOW = datetime(2026, 5, 9, tzinfo=TZ)
DAY = 86_400.0


def inc(incident: str, status: str, sec: float, zone: str = "jfb_square") -> IncidentReported:
    return IncidentReported(event_id=f"{incident}-{status}-{sec}", source=zone,
                            event_time=T0 + timedelta(seconds=sec), incident_id=incident,
                            incident_type="medical", severity="high", zone_id=zone,
                            status=status)


def at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def test_an_incident_open_a_day_without_word_expires_with_a_record() -> None:
    agg = IncidentAggregator()
    agg.add(inc("i1", "reported", 0), NOW)
    agg.add(inc("i1", "on_scene", 300), NOW)
    agg.add(inc("i2", "reported", 600), NOW)
    assert agg.expire_quiet(at(DAY + 299), DAY, NOW) == []  # i1's latest update is at 300 s
    [rec] = agg.expire_quiet(at(DAY + 301), DAY, NOW)
    assert (rec.incident_id, rec.status, rec.open_count, rec.response_s) == (
        "i1", EXPIRED, 1, 300)
    assert rec.event_time == at(DAY + 300)  # a day after its latest update, whenever seen
    assert agg.open_count("jfb_square") == 1
    assert set(agg.to_state()) == {"i2"}


def test_an_update_keeps_an_incident_alive_and_closed_ones_never_expire() -> None:
    agg = IncidentAggregator()
    agg.add(inc("i1", "reported", 0), NOW)
    agg.add(inc("i1", "dispatched", 50_000), NOW)
    agg.add(inc("i2", "reported", 10), NOW)
    agg.add(inc("i2", "resolved", 20), NOW)
    assert agg.expire_quiet(at(DAY + 100), DAY, NOW) == []
    assert [r.incident_id for r in agg.expire_quiet(at(DAY + 50_001), DAY, NOW)] == ["i1"]
    assert set(agg.to_state()) == {"i2"}  # left to evict_closed_before


def test_the_incident_the_event_updates_is_kept_and_can_expire_later() -> None:
    agg = IncidentAggregator()
    agg.add(inc("i1", "reported", 0), NOW)
    assert agg.expire_quiet(at(2 * DAY), DAY, NOW, keep="i1") == []
    assert [r.incident_id for r in agg.expire_quiet(at(2 * DAY), DAY, NOW)] == ["i1"]


def test_a_restored_state_expires_the_same_incidents() -> None:
    agg = IncidentAggregator()
    for n, zone in enumerate(("jfb_square", "minzu_road", "jfb_square")):
        agg.add(inc(f"i{n}", "reported", n * 1000, zone=zone), NOW)
    restored = IncidentAggregator()
    restored.from_state(json.loads(json.dumps(agg.to_state())))
    first = agg.expire_quiet(at(DAY + 1500), DAY, NOW)
    again = restored.expire_quiet(at(DAY + 1500), DAY, NOW)
    assert first == again and [r.incident_id for r in first] == ["i0", "i1"]
    assert [r.open_count for r in first] == [1, 0]


def test_expiry_matches_a_scan_of_the_state_through_random_updates() -> None:
    rng = random.Random(11)
    statuses = ["reported", "dispatched", "on_scene", "resolved", "cancelled"]
    zones = ["jfb_square", "minzu_road", "bayi_road"]
    agg = IncidentAggregator()
    quiet_s = 4 * 3600
    expired_in_all = 0
    for n in range(3000):
        if n == 1500:
            restored = IncidentAggregator()
            restored.from_state(json.loads(json.dumps(agg.to_state())))
            agg = restored
        agg.add(inc(f"i{rng.randrange(400)}", rng.choice(statuses),
                    n * 60 + rng.uniform(-3000, 0), zone=rng.choice(zones)), NOW)
        if n % 40 == 39:
            now = at(n * 60)
            state = agg.to_state()
            due = {k for k, i in state.items() if i["status"] not in ("resolved", "cancelled")
                   and max(i["times"].values()) < now.timestamp() - quiet_s}
            expired = agg.expire_quiet(now, quiet_s, NOW)
            assert {r.incident_id for r in expired} == due
            expired_in_all += len(expired)
            assert set(agg.to_state()) == set(state) - due
            for zone in zones:
                assert agg.open_count(zone) == sum(
                    1 for i in agg.to_state().values()
                    if i["zone"] == zone and i["status"] not in ("resolved", "cancelled"))
    assert expired_in_all > 100


def test_the_feed_aggregator_publishes_expiries_first_even_with_a_refused_update() -> None:
    feed = IncidentsByPartition(load_settings(incident_expire_after_s=DAY))
    feed.add("@0", inc("i1", "reported", 0), NOW)
    feed.add("@0", inc("i2", "resolved", 10), NOW)
    refused = feed.add("@0", inc("i2", "dispatched", DAY + 60), NOW)  # after its close
    assert not refused.accepted and refused.violations == ["after_terminal"]
    assert [(r.incident_id, r.status, r.open_count) for r in refused.records] == [
        ("i1", EXPIRED, 0)]
    later = feed.add("@0", inc("i3", "reported", DAY + 120), NOW)
    assert [(r.incident_id, r.status, r.open_count) for r in later.records] == [
        ("i3", "reported", 1)]


def test_no_expiry_when_switched_off() -> None:
    feed = IncidentsByPartition(load_settings(incident_expire_after_s=0))
    feed.add("@0", inc("i1", "reported", 0), NOW)
    out = feed.add("@0", inc("i2", "reported", 30 * DAY), NOW)
    assert [(r.incident_id, r.open_count) for r in out.records] == [("i2", 2)]


def test_an_expired_incident_clears_its_alert() -> None:
    rec = IncidentStats(zone_id="jfb_square", event_time=T0, incident_id="i1", status=EXPIRED,
                        open_count=0, emitted_at=NOW)
    assert incident_observation(rec, "critical")["value"] == 0.0
    assert incident_observation(rec.model_copy(update={"status": "on_scene"}),
                                "critical")["value"] > 0

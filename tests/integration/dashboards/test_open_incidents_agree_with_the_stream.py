"""The boards' open incidents and the Grafana incident rule agree with the stream: an incident
left ``CITYOPS_INCIDENT_EXPIRE_AFTER_S`` without word is closed as ``expired`` by the stream
(its alert clears), and neither the boards nor Grafana show it open any more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cityops.core.feeds import IncidentReported
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.dashboards import check, macros
from cityops.dashboards.alerts import build_rules, value_sql
from cityops.dashboards.boards import incidents_by_sql, open_incidents_sql
from cityops.streams.alerts.rules import RuleSet
from cityops.streams.feed_aggregators import aggregator_for
from cityops.streams.records import IncidentStats
from cityops.warehouse.backend import Warehouse
from cityops.warehouse.rows import event_row

from .conftest import drop, fresh_warehouse

pytestmark = pytest.mark.integration

AT = datetime(2026, 10, 1, 12, tzinfo=UTC)  # the boards' "now" ($__toTime)
DAY_S = 86_400.0

#: incident → [(hours before AT, status, severity)]
PLAN = {
    "inc_silent": [(50, "reported", "high"), (30, "dispatched", "critical")],  # quiet 30 h
    "inc_edge": [(23, "reported", "medium")],  # quiet 23 h: still open
    "inc_recent": [(3, "reported", "high"), (2, "on_scene", "high")],
    "inc_closed": [(5, "reported", "critical"), (4, "resolved", "critical")],
    "inc_ancient": [(35 * 24, "reported", "high")],  # quiet 35 days
    "inc_now": [(0, "reported", "low")],  # the newest update: the stream's clock reaches AT
}


def _events(zone: str) -> list[IncidentReported]:
    out = [IncidentReported(event_id=f"{inc}:{j}", source="ops", incident_id=inc,
                            event_time=AT - timedelta(hours=h), incident_type="medical",
                            severity=sev, zone_id=zone, status=status)
           for inc, steps in PLAN.items() for j, (h, status, sev) in enumerate(steps)]
    return sorted(out, key=lambda e: e.event_time)


def stream_open(settings: Settings, registry: Registry,
                events: list[IncidentReported]) -> set[str]:
    """Incidents the stream holds open after ``events``: the latest record of each."""
    agg = aggregator_for("incidents", settings, registry)
    latest: dict[str, str] = {}
    for ev in events:
        for rec in agg.add(agg.unit(ev.incident_id, 0), ev, AT).records:
            if isinstance(rec, IncidentStats):
                latest[rec.incident_id] = rec.status
    return {inc for inc, status in latest.items()
            if status not in ("resolved", "cancelled", "expired")}


@pytest.fixture(scope="module")
def incidents_wh(settings: Settings, registry: Registry) -> Iterator[Warehouse]:
    wh = fresh_warehouse(settings, registry)
    for ev in _events(sorted(registry.zones)[0]):
        table, row = event_row(ev, ingested_at=ev.event_time)
        wh.insert(table, [row])
    yield wh
    drop(wh)


def board_open(wh: Warehouse, expire_after_s: float) -> set[str]:
    ctx = check.context(AT - timedelta(hours=24), AT)  # the safety board's default range
    return {str(r[0]) for r in wh.query(macros.expand(open_incidents_sql(expire_after_s), ctx))}


def grafana_open(wh: Warehouse, rules: RuleSet, registry: Registry,
                 expire_after_s: float) -> set[str]:
    """Subjects the generated Grafana incident rule sees open (value > 0) over its lookback."""
    generated = next(g for g in build_rules(rules, registry, expire_after_s)
                     if g.rule.kind == "incident")
    ctx = macros.QueryContext(AT - timedelta(seconds=generated.lookback_s), AT, 10_000, {})
    rows = wh.query(macros.expand_backend(value_sql(generated.rule, registry, expire_after_s),
                                          ctx))
    return {str(s) for s, v in rows if float(v) > 0}


def test_an_incident_a_day_without_word_is_off_the_boards_as_it_is_off_the_stream(
        settings: Settings, registry: Registry, incidents_wh: Warehouse) -> None:
    events = _events(sorted(registry.zones)[0])
    expiring = settings.model_copy(update={"incident_expire_after_s": DAY_S})
    stream = stream_open(expiring, registry, events)
    assert stream == {"inc_edge", "inc_recent", "inc_now"}
    assert board_open(incidents_wh, DAY_S) == stream
    by_type = incidents_wh.query(macros.expand(
        incidents_by_sql(DAY_S), check.context(AT - timedelta(hours=24), AT)))
    assert sum(int(r[3]) for r in by_type) == len(stream)


def test_with_expiry_off_the_boards_keep_a_silent_incident_open_as_the_stream_does(
        settings: Settings, registry: Registry, incidents_wh: Warehouse) -> None:
    events = _events(sorted(registry.zones)[0])
    never = settings.model_copy(update={"incident_expire_after_s": 0.0})
    stream = stream_open(never, registry, events)
    assert stream == {"inc_silent", "inc_edge", "inc_recent", "inc_ancient", "inc_now"}
    # without an expiry the boards still look back 30 days only (docs/dashboards.md)
    assert board_open(incidents_wh, 0.0) == stream - {"inc_ancient"}


def test_an_expiry_longer_than_the_boards_lookback_widens_it(
        settings: Settings, registry: Registry, rules: RuleSet,
        incidents_wh: Warehouse) -> None:
    events = _events(sorted(registry.zones)[0])
    forty_days = 40 * DAY_S
    stream = stream_open(settings.model_copy(update={"incident_expire_after_s": forty_days}),
                         registry, events)
    assert stream == {"inc_silent", "inc_edge", "inc_recent", "inc_ancient", "inc_now"}
    assert board_open(incidents_wh, forty_days) == stream
    assert grafana_open(incidents_wh, rules, registry, forty_days) == stream - {"inc_now"}


def test_the_grafana_incident_rule_lets_an_expired_incident_go(
        settings: Settings, registry: Registry, rules: RuleSet,
        incidents_wh: Warehouse) -> None:
    ranked = {inc for inc, steps in PLAN.items() if steps[-1][2] != "low"}
    assert grafana_open(incidents_wh, rules, registry, DAY_S) == (
        {"inc_edge", "inc_recent"} & ranked)
    # without an expiry Grafana's rule looks back 7 days
    assert grafana_open(incidents_wh, rules, registry, 0.0) == (
        {"inc_silent", "inc_edge", "inc_recent"} & ranked)

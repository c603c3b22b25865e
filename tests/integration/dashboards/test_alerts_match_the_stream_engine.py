"""The generated Grafana alert rules, evaluated as Grafana evaluates them, fire and clear at
the same instants as the stream alert engine's rule on the same data."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.dashboards import evaluate, fixtures
from cityops.dashboards.provisioning import Bundle
from cityops.streams.alerts.rules import RuleSet
from cityops.warehouse.backend import Warehouse

from .conftest import drop, fresh_warehouse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results(settings: Settings, registry: Registry, rules: RuleSet,
            bundle: Bundle) -> Iterator[Callable[[str], evaluate.Comparison]]:
    """Each rule's replay, run by the first test that asks for it (each test's time limit then
    covers one rule's replay, not all six), on one warehouse."""
    wh: Warehouse = fresh_warehouse(settings, registry)
    done: dict[str, evaluate.Comparison] = {}

    def of(rule_id: str) -> evaluate.Comparison:
        if rule_id not in done:
            done[rule_id] = evaluate.replay(
                wh, rules, registry, bundle.rules, rule_id,
                fixtures.default_end(settings.timezone), settings.tz,
                interval_s=max(10, int(settings.alert_tick_s)))
        return done[rule_id]

    try:
        yield of
    finally:
        drop(wh)


@pytest.mark.parametrize("rule_id", ["crowd_density", "carpark_full", "aqi", "severe_incident",
                                     "dead_sensor", "dead_letter_rate"])
def test_grafana_and_the_engine_agree_at_every_evaluation(
        results: Callable[[str], evaluate.Comparison], rule_id: str) -> None:
    c = results(rule_id)
    assert c.instants > 100
    assert c.mismatches == []


@pytest.mark.parametrize("rule_id", ["crowd_density", "carpark_full", "aqi", "severe_incident",
                                     "dead_sensor", "dead_letter_rate"])
def test_every_level_fires_for_the_loud_subject_and_never_for_the_quiet_one(
        results: Callable[[str], evaluate.Comparison], registry: Registry,
        rule_id: str) -> None:
    c = results(rule_id)
    quiet = {"crowd_density": sorted(registry.zones)[1],
             "carpark_full": sorted(registry.carparks)[1],
             "aqi": sorted(registry.stations)[1], "severe_incident": "inc_quiet",
             "dead_sensor": evaluate.dead_sensor_subjects(registry)[1],
             "dead_letter_rate": evaluate.DEAD_LETTER_QUIET}[rule_id]
    for uid, n in c.fired.items():
        assert n > 0, f"{uid} never fired"
        assert quiet not in c.subjects[uid]

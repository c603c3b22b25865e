"""Grafana's per-series alert states as replayed by ``evaluate.GrafanaRuleSim``."""

from __future__ import annotations

from cityops.dashboards.evaluate import GrafanaRuleSim


def test_pending_period_then_firing_then_recovery_threshold_holds() -> None:
    sim = GrafanaRuleSim(for_s=60, keep_firing_s=0)
    assert sim.step(0, {"a": 2}) == set()  # pending
    assert sim.step(30, {"a": 2}) == set()
    assert sim.step(60, {"a": 2}) == {"a"}  # for elapsed
    assert sim.step(70, {"a": 1}) == {"a"}  # between clear and fire: keeps firing
    assert sim.step(80, {"a": 0}) == set()  # below clear: resolved


def test_a_spike_shorter_than_for_never_fires() -> None:
    sim = GrafanaRuleSim(for_s=60, keep_firing_s=0)
    assert sim.step(0, {"a": 2}) == set()
    assert sim.step(10, {"a": 1}) == set()  # back under fire before for: normal again
    assert sim.step(60, {"a": 2}) == set()  # pending starts anew


def test_keep_firing_for_delays_the_clear_and_a_return_cancels_it() -> None:
    sim = GrafanaRuleSim(for_s=0, keep_firing_s=300)
    assert sim.step(0, {"a": 2}) == {"a"}
    assert sim.step(10, {"a": 0}) == {"a"}  # recovering
    assert sim.step(200, {"a": 2}) == {"a"}  # back: alerting again
    assert sim.step(210, {"a": 0}) == {"a"}
    assert sim.step(509, {"a": 0}) == {"a"}
    assert sim.step(510, {"a": 0}) == set()


def test_a_missing_series_counts_as_not_firing() -> None:
    sim = GrafanaRuleSim(for_s=0, keep_firing_s=0)
    assert sim.step(0, {"a": 2, "b": 0}) == {"a"}
    assert sim.step(10, {}) == set()

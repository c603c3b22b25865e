"""Incident durations in ``incident_lifecycle``: from ``reported``, else from the first
sighting, and unknown (NULL) when the first sighting is the milestone itself; an incident
first seen already resolved once took 0 s to resolve."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.migrate import migrate
from tests.integration.warehouse.conftest import drop, open_warehouse

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 6, 20, tzinfo=SH)


def _update(incident: str, status: str, minutes: int) -> dict:
    return {"event_id": f"{incident}:{status}", "source": "ops_desk", "incident_id": incident,
            "incident_type": "fall", "severity": "low", "zone_id": "jfb_square",
            "status": status, "event_time": T0 + timedelta(minutes=minutes)}


@pytest.fixture
def wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    try:
        migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=400, registry=registry)
        wh.insert("incidents_reported", [
            # the whole life: from `reported`
            _update("full", "reported", 0), _update("full", "dispatched", 2),
            _update("full", "on_scene", 7), _update("full", "resolved", 30),
            # first seen resolved: nothing is known of how long it took
            _update("late", "resolved", 15),
            # first seen dispatched: the response and resolution from that sighting (lower
            # bounds), the dispatch itself unknown
            _update("mid", "dispatched", 0), _update("mid", "on_scene", 4),
            _update("mid", "resolved", 20),
        ])
        yield wh
    finally:
        drop(wh)


def test_durations_are_unknown_when_first_seen_at_the_milestone(wh: EmbeddedWarehouse) -> None:
    rows = {r[0]: r[1:] for r in wh.query(
        "SELECT incident_id, dispatch_s, response_s, resolution_s FROM incident_lifecycle")}
    assert rows["full"] == (120.0, 420.0, 1800.0)
    assert rows["late"] == (None, None, None)
    assert rows["mid"] == (None, 240.0, 1200.0)

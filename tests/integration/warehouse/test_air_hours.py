"""Air samples counted in the hour of their midpoint, in the warehouse as in the stream.

A sample covers [event_time − averaging_s, event_time): a national station's 14:00 value
(13:00–14:00) belongs to the 13:00 hour. ``agg_air_1h`` bucketed by the hour of event_time, so
``air_quality_1h`` put that station's hours one hour after ``air_quality_index`` (the
stream's) and after ``footfall_zone_1h``'s interval starts. Expected hours are worked out by
hand from that rule; the stream's own hours are then compared on the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityops.core.feeds import AirQualityObserved
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.aggregators import AirQualityAggregator
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.migrate import discover, migrate
from tests.integration.warehouse.conftest import drop, open_warehouse

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
D = datetime(2026, 3, 6, tzinfo=SH)


def _sample(station: str, end: datetime, averaging_s: int, pm25: float, n: list[int]) -> dict:
    n[0] += 1
    return {"event_id": f"{station}-{n[0]}", "source": station, "station_id": station,
            "event_time": end, "averaging_s": averaging_s, "pm25_ugm3": pm25}


def _samples() -> list[dict]:
    n = [0]
    at = lambda h, m=0: D + timedelta(hours=h, minutes=m)  # noqa: E731
    return [
        # national, hourly: 13:00–14:00 reported at 14:00, 14:00–15:00 at 15:00
        _sample("aq_national", at(14), 3600, 40.0, n),
        _sample("aq_national", at(15), 3600, 60.0, n),
        # micro, each minute: 13:01 … 14:00 all cover the 13:00 hour (the one ending 14:00:00
        # too), 14:01 the 14:00 hour
        *[_sample("aq_micro", at(13, m), 60, 10.0 + (m == 60) * 50, n) for m in range(1, 61)],
        _sample("aq_micro", at(14, 1), 60, 99.0, n),
        # half-hourly: 13:30–14:00 and 14:00–14:30
        _sample("aq_half", at(14), 1800, 20.0, n), _sample("aq_half", at(14, 30), 1800, 30.0, n),
    ]


EXPECTED = {  # (station, local hour) → (samples, PM2.5 mean)
    ("aq_national", "13:00"): (1, 40.0), ("aq_national", "14:00"): (1, 60.0),
    ("aq_micro", "13:00"): (60, (59 * 10.0 + 60.0) / 60), ("aq_micro", "14:00"): (1, 99.0),
    ("aq_half", "13:00"): (1, 20.0), ("aq_half", "14:00"): (1, 30.0),
}


def _hours(wh: EmbeddedWarehouse) -> dict[tuple[str, str], tuple[int, float]]:
    rows = wh.query("SELECT station_id, hour, samples, pm25_ugm3 FROM air_quality_1h "
                    "ORDER BY station_id, hour")
    return {(s, h.astimezone(SH).strftime("%H:%M")): (int(n), round(float(pm), 6))
            for s, h, n, pm in rows}


@pytest.fixture
def air_wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    try:
        yield wh
    finally:
        drop(wh)


def test_each_sample_lands_in_the_hour_of_its_midpoint(air_wh: EmbeddedWarehouse,
                                                      registry: Registry) -> None:
    migrate(air_wh, timezone="Asia/Shanghai", raw_ttl_days=400, registry=registry)
    air_wh.insert("air_quality_observed", _samples())
    assert _hours(air_wh) == {k: (n, round(m, 6)) for k, (n, m) in EXPECTED.items()}


def test_the_warehouse_hours_are_the_stream_s(registry: Registry) -> None:
    """The stream's hourly index (``air_quality_index``) of the same samples: same hours,
    same sample counts and means (the stream publishes means to 3 decimals)."""
    agg = AirQualityAggregator()
    latest: dict[tuple[str, str], tuple[int, float]] = {}
    emitted = datetime(2026, 3, 6, 8, tzinfo=UTC)
    for row in _samples():
        out = agg.add(AirQualityObserved(**row), emitted)
        for rec in out.records:
            if getattr(rec, "averaging", None) == "1h":
                key = (rec.station_id, rec.hour_start.astimezone(SH).strftime("%H:%M"))
                latest[key] = (rec.samples, rec.pm25_ugm3)
    assert latest == {k: (n, round(m, 3)) for k, (n, m) in EXPECTED.items()}


def test_the_migration_rebuckets_existing_air_rollups(air_wh: EmbeddedWarehouse,
                                                      registry: Registry) -> None:
    migrate(air_wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry,
            migrations=[m for m in discover() if m.version < 8])
    # a sample from a week earlier whose raw row is gone (expired) before the migration
    old = _sample("aq_national", D - timedelta(days=7) + timedelta(hours=20), 3600, 70.0, [99])
    air_wh.insert("air_quality_observed", [*_samples(), old])
    air_wh.execute("DELETE FROM air_quality_observed WHERE event_id = {e:String}",
                   {"e": old["event_id"]})
    before = _hours(air_wh)  # written by the hour of event_time: the national 13–14 at 14:00
    assert before[("aq_national", "14:00")] == (1, 40.0)
    report = migrate(air_wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry)
    assert report.applied[0] == "0008_air_hour_midpoint"
    after = _hours(air_wh)
    # the limit: the expired sample's rollup row has no raw row to rebuild from and stays
    assert after.pop(("aq_national", "20:00")) == (1, 70.0)
    assert after == {k: (n, round(m, 6)) for k, (n, m) in EXPECTED.items()}
    # new inserts go through the new view
    air_wh.insert("air_quality_observed",
                  [_sample("aq_national", D + timedelta(hours=16), 3600, 80.0, [500])])
    assert _hours(air_wh)[("aq_national", "15:00")] == (1, 80.0)

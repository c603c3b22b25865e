"""Incident rates follow the stated assumption (INCIDENTS_PER_10K_ENTRIES): two evening hours
of the whole street show several incidents, each through its whole lifecycle."""

from __future__ import annotations

from datetime import date, timedelta
from statistics import mean
from zoneinfo import ZoneInfo

from cityops.core.registry import Registry
from cityops.ingest.simulate.generators import INCIDENTS_PER_10K_ENTRIES, incidents
from cityops.ingest.simulate.model import DistrictModel

TZ = ZoneInfo("Asia/Shanghai")
EVENING = range(15 * 60, 17 * 60)  # minutes after 04:00: 19:00–21:00


def test_two_evening_hours_show_several_incidents_at_the_stated_rate(
        registry: Registry) -> None:
    district = DistrictModel(registry, 7, TZ)
    counts, expected = [], []
    for d in (date(2026, 11, 16) + timedelta(days=k) for k in range(4)):  # Mon–Thu
        day = district.day(d)
        arrivals = sum(sum(rate[m] for m in EVENING) for rate in day.zone_rate.values())
        expected.append(arrivals * INCIDENTS_PER_10K_ENTRIES / 10_000)
        updates: dict[str, list[str]] = {}
        for zone in registry.zones:
            for _t, ev in incidents(day, zone):
                updates.setdefault(ev.incident_id, []).append(ev.status.value)
        reported = [i for i, steps in updates.items() if steps[0] == "reported" and
                    (int(i.rsplit("_", 1)[1]) - day.start_epoch) // 60 in EVENING]
        counts.append(len(reported))
        for i in reported:  # reported → dispatched → on scene → resolved (or called off)
            assert updates[i][-1] in ("resolved", "cancelled"), updates[i]
    # ≈ 230,000 entries 18–22 h on a weekday: about 5 incidents in two hours, never none
    assert min(counts) >= 1 and mean(counts) >= 3, counts
    # the density term only adds: at least the stated rate, at most twice it
    assert mean(expected) * 0.6 <= mean(counts) <= mean(expected) * 2.5, (counts, expected)

"""Statistical shape of the simulated feeds on deterministic seeds (generous margins)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from statistics import mean
from zoneinfo import ZoneInfo

from cityops.core.registry import Registry
from cityops.ingest.simulate import Simulation

TZ = ZoneInfo("Asia/Shanghai")
ORDINARY_WEEK = [date(2025, 9, 29) + timedelta(days=i) for i in range(5)]  # Mon–Fri
GOLDEN_WEEK = [date(2025, 10, 1) + timedelta(days=i) for i in range(7)]
AFTER_WEEK = [date(2025, 10, 8) + timedelta(days=i) for i in range(3)] + [date(2025, 10, 13)]


def _corr(xs: list[float], ys: list[float]) -> float:
    mx, my = mean(xs), mean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / (sxx * syy) ** 0.5


def test_evening_peak_above_afternoon_every_day(golden_week, november):
    for sample in (golden_week, november):
        for day in sorted(sample.days):
            hours = sample.entries_hour[day]
            evening = sum(hours[h] for h in (19, 20, 21))
            afternoon = sum(hours[h] for h in (14, 15, 16))
            assert evening > 1.1 * afternoon, (day, evening, afternoon)


def test_evening_peak_is_pronounced_on_ordinary_weekdays(november):
    ratios = []
    for day in sorted(november.days):
        if day.weekday() < 4:  # Mon–Thu
            hours = november.entries_hour[day]
            ratios.append(sum(hours[h] for h in (19, 20, 21)) /
                          sum(hours[h] for h in (14, 15, 16)))
    assert mean(ratios) > 1.6
    # the night (18:00–02:00) carries a large share of the day's footfall
    night = [sum(november.entries_hour[d][h] for h in (18, 19, 20, 21, 22, 23, 0, 1))
             / november.entries_day[d] for d in sorted(november.days)]
    assert mean(night) > 0.45


def test_weekend_above_weekday(november):
    weekend = [v for d, v in november.entries_day.items() if d.weekday() >= 5]
    weekday = [v for d, v in november.entries_day.items() if d.weekday() < 4]
    assert len(weekend) == 8 and len(weekday) == 16
    assert mean(weekend) > 1.15 * mean(weekday)


def test_golden_week_surge(golden_week):
    ordinary = mean(golden_week.entries_day[d] for d in ORDINARY_WEEK[:2] + AFTER_WEEK)
    national_day = mean(golden_week.entries_day[d] for d in GOLDEN_WEEK[:3])
    assert national_day > 2.0 * ordinary
    # every golden-week day is above every ordinary weekday
    assert min(golden_week.entries_day[d] for d in GOLDEN_WEEK) > max(
        golden_week.entries_day[d] for d in ORDINARY_WEEK[:2] + AFTER_WEEK)


def test_spring_festival_eve_is_quiet_in_the_evening_and_busy_after(small_registry):
    # 2026 Spring Festival is 17 Feb: eve 16 Feb (family dinner), 18 Feb a golden-week day
    start = datetime(2026, 2, 9, 4, tzinfo=TZ)
    evening: dict[date, int] = defaultdict(int)
    daily: dict[date, int] = defaultdict(int)
    for ev in Simulation(small_registry, seed=3, start=start, end=start + timedelta(days=10),
                         feeds=("footfall",)).events():
        local = ev.event_time.astimezone(TZ)
        d = (local - timedelta(hours=4)).date()
        daily[d] += ev.entries
        if local.hour in (19, 20, 21):
            evening[d] += ev.entries
    eve, ordinary = date(2026, 2, 16), [date(2026, 2, 10), date(2026, 2, 11)]
    assert evening[eve] < 0.8 * mean(evening[d] for d in ordinary)
    assert daily[date(2026, 2, 18)] > 1.8 * mean(daily[d] for d in ordinary)


def test_parking_follows_footfall(golden_week):
    # hourly district footfall vs mean occupancy rate one hour later (cars stay a while)
    foot: dict[tuple[date, int], int] = {}
    for day, hours in golden_week.entries_hour.items():
        for h, n in hours.items():
            foot[(day, h)] = n
    occ: dict[tuple[date, int], list[float]] = defaultdict(list)
    for rows in golden_week.occupancy.values():
        for epoch, rate, _ in rows:
            local = datetime.fromtimestamp(epoch - 3600, TZ)
            occ[((local - timedelta(hours=4)).date(), local.hour)].append(rate)
    keys = sorted(k for k in foot if k in occ)
    assert len(keys) > 300
    r = _corr([foot[k] for k in keys], [mean(occ[k]) for k in keys])
    assert r > 0.7, r


def test_car_parks_reach_full_on_busy_evenings_not_on_quiet_ones(golden_week, registry):
    for day in GOLDEN_WEEK[:5]:
        assert len(golden_week.full_days[day]) >= len(registry.carparks) // 2, day
    for day in ORDINARY_WEEK[:2] + AFTER_WEEK[1:3]:
        assert len(golden_week.full_days[day]) <= 2, day
    # occupancy never exceeds capacity and status agrees with the numbers
    for rows in golden_week.occupancy.values():
        for _, rate, status in rows:
            assert 0.0 <= rate <= 1.0
            assert (status == "full") == (rate >= 1.0)


def test_spill_over_fills_neighbours(registry):
    # on National Day evening, each full car park's neighbours are (almost) full too
    start = datetime(2025, 10, 2, 19, tzinfo=TZ)
    last: dict[str, float] = {}
    for ev in Simulation(registry, seed=5, start=start, end=start + timedelta(minutes=90),
                         feeds=("parking",)).events():
        last[ev.carpark_id] = ev.occupied / ev.capacity
    for cp_id, rate in last.items():
        if rate >= 1.0:
            for n in registry.carparks[cp_id].neighbours:
                assert last[n] > 0.85, (cp_id, n, last[n])


def test_incident_rate_rises_with_density(golden_week):
    # incidents per zone-hour, binned by the zone's density in that hour
    incidents: dict[tuple, int] = defaultdict(int)
    for ev in golden_week.reported:
        local = ev.event_time.astimezone(TZ)
        incidents[(ev.zone_id, (local - timedelta(hours=4)).date(), local.hour)] += 1
    bins: dict[int, list[int]] = defaultdict(list)
    for key, density in golden_week.zone_density.items():
        b = 0 if density < 0.25 else 1 if density < 0.75 else 2
        bins[b].append(incidents.get(key, 0))
    rates = [mean(bins[b]) for b in (0, 1, 2)]
    assert all(len(bins[b]) >= 50 for b in (0, 1, 2)), {b: len(v) for b, v in bins.items()}
    assert rates[0] < rates[1] < rates[2], rates
    assert rates[2] > 3 * rates[0], rates
    # crowd-crush-risk reports only come from dense zone-hours
    for ev in golden_week.reported:
        if ev.incident_type.value == "crowd_crush_risk":
            local = ev.event_time.astimezone(TZ)
            key = (ev.zone_id, (local - timedelta(hours=4)).date(), local.hour)
            assert golden_week.zone_density.get(key, 0) > 0.4


def test_incident_lifecycle_order_and_delays(golden_week, registry):
    start = datetime(2025, 10, 2, 4, tzinfo=TZ)
    by_id: dict[str, list] = defaultdict(list)
    for ev in Simulation(registry, seed=11, start=start, end=start + timedelta(days=3),
                         feeds=("incidents",)).events():
        by_id[ev.incident_id].append(ev)
    assert len(by_id) > 30
    finished = 0
    for updates in by_id.values():
        statuses = [u.status.value for u in updates]
        assert statuses[0] == "reported"
        assert statuses in (["reported", "dispatched", "on_scene", "resolved"],
                            ["reported", "dispatched", "cancelled"],
                            ["reported", "dispatched", "on_scene"], ["reported", "dispatched"],
                            ["reported"])
        times = [u.event_time for u in updates]
        assert times == sorted(times)
        assert len({u.event_id for u in updates}) == len(updates)
        if statuses[-1] == "resolved":
            finished += 1
            total = (times[-1] - times[0]).total_seconds()
            assert 60 < total < 6 * 3600
            assert 5 <= (times[1] - times[0]).total_seconds() < 900  # dispatch delay
    assert finished > 0.7 * len(by_id)


def _air(registry, start: datetime, days: int) -> tuple[dict, dict]:
    by_hour: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    national: dict[str, list[float]] = defaultdict(list)
    for ev in Simulation(registry, seed=SEED_AIR, start=start, end=start + timedelta(days=days),
                         feeds=("air",)).events():
        local = ev.event_time.astimezone(TZ) - timedelta(seconds=ev.averaging_s / 2)
        if ev.averaging_s == 60:
            for k in ("o3_ugm3", "no2_ugm3", "pm25_ugm3"):
                by_hour[k][local.hour].append(getattr(ev, k))
        else:
            for k in ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3"):
                national[k].append(getattr(ev, k))
    return by_hour, national


SEED_AIR = 7


def test_o3_peaks_in_the_afternoon_and_no2_at_rush_hours(registry):
    by_hour, national = _air(registry, datetime(2025, 7, 14, 4, tzinfo=TZ), 5)
    o3 = {h: mean(v) for h, v in by_hour["o3_ugm3"].items()}
    peak = max(o3, key=o3.get)
    assert 13 <= peak <= 17, o3
    assert o3[peak] > 2.5 * o3[7]
    no2 = {h: mean(v) for h, v in by_hour["no2_ugm3"].items()}
    assert no2[8] > 1.2 * no2[14] and no2[18] > 1.2 * no2[14]
    assert no2[8] > no2[3] and no2[18] > no2[3]
    # hourly values for the national station: 24 a day, all six pollutants
    assert len(national["pm25_ugm3"]) == 5 * 24
    assert all(len(v) == 5 * 24 for v in national.values())


def test_plausible_chongqing_levels_winter_worse_than_summer(registry):
    _, summer = _air(registry, datetime(2025, 7, 14, 4, tzinfo=TZ), 7)
    _, winter = _air(registry, datetime(2026, 1, 5, 4, tzinfo=TZ), 7)
    assert 10 < mean(summer["pm25_ugm3"]) < 45
    assert 35 < mean(winter["pm25_ugm3"]) < 160
    assert mean(winter["pm25_ugm3"]) > 1.5 * mean(summer["pm25_ugm3"])
    assert mean(summer["o3_ugm3"]) > 1.5 * mean(winter["o3_ugm3"])
    assert all(v < 500 for v in winter["pm25_ugm3"])
    assert 2 < mean(winter["so2_ugm3"]) < 30 and 0.3 < mean(winter["co_mgm3"]) < 3
    assert all(pm10 >= pm25 for pm10, pm25 in zip(winter["pm10_ugm3"], winter["pm25_ugm3"],
                                                   strict=True))


def test_multi_day_pollution_episodes(registry):
    # a winter quarter of the national station: some spells of ≥ 2 days well above the median
    reg = Registry(manifest=registry.manifest, zones=registry.zones, counters={},
                   carparks={}, source_dir=registry.source_dir,
                   stations={k: s for k, s in registry.stations.items() if s.kind == "national"})
    start = datetime(2025, 12, 1, 4, tzinfo=TZ)
    daily: dict[date, list[float]] = defaultdict(list)
    sim = Simulation(reg, seed=SEED_AIR, start=start, end=start + timedelta(days=90),
                     feeds=("air",))
    for ev in sim.events():
        if ev.averaging_s == 3600:
            daily[(ev.event_time.astimezone(TZ) - timedelta(hours=4)).date()].append(
                ev.pm25_ugm3)
    means = [mean(daily[d]) for d in sorted(daily)]
    median = sorted(means)[len(means) // 2]
    spells, run = 0, 0
    for m in means:
        run = run + 1 if m > 1.5 * median else 0
        if run == 2:
            spells += 1
    assert spells >= 2, (median, [round(m) for m in means])

"""The expected behaviour of the district over one simulation day, minute by minute.

``DayModel`` holds the deterministic curves every feed samples from, so the feeds agree with
each other: the same crowd that the footfall counters see fills the car parks and raises the
incident rate; the same weather that keeps people home washes the air.

* footfall: arrivals per minute per zone = zone base × diurnal profile (with the evening
  night-economy peak) × weekday/holiday factor × weather × a day-to-day wobble; people stay
  ``dwell`` minutes, so presence is the running sum of arrivals and density = presence / area;
* parking: a per-minute stock model per car park (cars arrive with the crowd, stay a few
  hours, office towers fill on workday mornings); a full car park turns drivers away to its
  ``neighbours`` (spill-over), who may fill in turn;
* air: hourly district concentrations from season, daily cycles (NO2 at rush hours, O3 in the
  afternoon), weather (rain washes particles out, stagnant air accumulates them) and
  multi-day pollution episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property

from cityops.core.registry import CarPark, Registry, Station, Zone
from cityops.ingest.simulate.calendar import (
    DAY_START_HOUR,
    DayInfo,
    day_info,
    rng_for,
    sim_day_bounds,
    stable_unit,
)

MINUTES = 24 * 60

# Relative arrival intensity of an ordinary weekday by local hour [h, h+1): quiet nights,
# a lunch bump, a flat afternoon and the night-economy evening peak (18:00–02:00).
WEEKDAY_PROFILE = (
    0.30, 0.18, 0.10, 0.05, 0.03, 0.03, 0.06, 0.14, 0.25, 0.32, 0.42, 0.52,
    0.58, 0.55, 0.52, 0.53, 0.56, 0.66, 0.82, 0.96, 1.00, 0.94, 0.75, 0.50,
)

# Arrivals per hour per m² of walkable area at profile 1.0 on an ordinary weekday.
_KIND_RATE = {"plaza": 1.15, "street": 0.80, "stairs_and_terraces": 0.60, "mall": 0.90,
              "station": 1.50}
# Mean dwell (minutes) by zone kind.
_KIND_DWELL = {"plaza": 25, "street": 20, "stairs_and_terraces": 45, "mall": 60, "station": 10}

# Air quality by month (1..12): PM2.5 mean µg/m³, O3 afternoon peak µg/m³, NO2 mean µg/m³.
_PM25 = (75, 60, 48, 38, 30, 25, 22, 23, 28, 38, 50, 68)
_O3_PEAK = (55, 70, 95, 125, 150, 160, 175, 180, 145, 105, 70, 50)
_NO2 = (48, 45, 40, 36, 32, 30, 29, 29, 33, 38, 43, 47)
# Episode (stagnant, polluted spell) start probability per day by month.
_EPISODE_P = (0.10, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01, 0.02, 0.03, 0.05, 0.08, 0.10)


def local_hour(minute: int) -> float:
    """Local clock hour (0–24, fractional) of minute ``minute`` of a simulation day."""
    return (DAY_START_HOUR + minute / 60.0) % 24.0


def _profile(hour: float) -> float:
    """Weekday profile, linearly interpolated between hour centres."""
    x = hour - 0.5
    i = math.floor(x)
    f = x - i
    a = WEEKDAY_PROFILE[i % 24]
    b = WEEKDAY_PROFILE[(i + 1) % 24]
    return a + (b - a) * f


def _in(hour: float, lo: float, hi: float) -> bool:
    """``hour`` within [lo, hi) on the clock, wrapping midnight when lo > hi."""
    return lo <= hour < hi if lo <= hi else hour >= lo or hour < hi


@dataclass(frozen=True)
class ZoneTraits:
    """What makes a zone's crowd its own (from the registry; no per-id constants)."""

    zone: Zone
    base_per_hour: float  # arrivals per hour at profile 1.0, ordinary weekday
    dwell_min: int
    evening_boost: float  # night-economy draw (food streets, the Hongyadong night view)
    day_boost: float

    @classmethod
    def of(cls, zone: Zone, seed: int) -> ZoneTraits:
        personality = 0.85 + 0.3 * stable_unit(seed, "zone", zone.id)
        base = zone.area_m2 * _KIND_RATE.get(zone.kind, 0.8) * personality
        dwell = _KIND_DWELL.get(zone.kind, 20)
        evening, day = 1.0, 1.0
        food = "food" in zone.name_en.lower() or "好吃" in zone.name_zh
        if food:
            evening, dwell = 1.25, 35
        if zone.kind == "stairs_and_terraces":
            evening, day = 1.40, 0.80
        return cls(zone, base, dwell, evening, day)


@dataclass(frozen=True)
class CarParkTraits:
    carpark: CarPark
    attract: float  # share of district car arrivals relative to capacity
    office_share: float  # spaces taken by commuters on workdays
    stay_min: float  # mean shopper stay
    resident_share: float  # overnight occupancy

    @classmethod
    def of(cls, cp: CarPark, seed: int) -> CarParkTraits:
        u = stable_unit(seed, "carpark", cp.id)
        return cls(cp, attract=0.85 + 0.35 * u, office_share=0.30 if cp.ring_road else 0.10,
                   stay_min=130 + 60 * stable_unit(seed, "stay", cp.id),
                   resident_share=0.04 + 0.04 * stable_unit(seed, "res", cp.id))


class DistrictModel:
    """The registry plus a seed: builds (and caches) one ``DayModel`` per simulation day."""

    def __init__(self, registry: Registry, seed: int, tz: timezone) -> None:
        self.registry = registry
        self.seed = seed
        self.tz = tz
        self.zones = {z: ZoneTraits.of(zone, seed) for z, zone in registry.zones.items()}
        self.carparks = {c: CarParkTraits.of(cp, seed) for c, cp in registry.carparks.items()}
        self.weekday_peak_total = sum(t.base_per_hour for t in self.zones.values()) / 60.0
        self._cache: dict[date, DayModel] = {}

    def day(self, d: date) -> DayModel:
        model = self._cache.get(d)
        if model is None:
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
            model = self._cache[d] = DayModel(self, d)
        return model


@dataclass
class DayModel:
    district: DistrictModel
    day: date
    info: DayInfo = field(init=False)
    start_epoch: int = field(init=False)
    tz: timezone = field(init=False)

    def __post_init__(self) -> None:
        self.info = day_info(self.district.seed, self.day)
        start, _ = sim_day_bounds(self.day, self.district.tz)
        self.start_epoch = int(start.timestamp())
        # a fixed offset for the whole day (the district time zone has no DST)
        offset = start.utcoffset() or timedelta(0)
        self.tz = timezone(offset)

    def minute_of(self, epoch: float) -> int:
        return min(MINUTES - 1, max(0, int((epoch - self.start_epoch) // 60)))

    def when(self, epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, self.tz)

    # --- footfall ------------------------------------------------------------------------
    def shape(self, hour: float, traits: ZoneTraits) -> float:
        """Relative arrival intensity at local ``hour`` for this day and zone."""
        info, w = self.info, self.info.weather
        p = _profile(hour)
        evening = _in(hour, 18, 2)
        p *= traits.evening_boost if evening else traits.day_boost
        weekend_night = info.weekday in (4, 5) or (info.holiday is not None)
        if info.is_weekend and _in(hour, 10, 18):
            p *= 1.22  # weekend shopping afternoons
        if weekend_night and _in(hour, 22, 3):
            p *= 1.25  # Friday/Saturday and holiday nights run late
        hol = info.holiday
        if hol is not None:
            if hol.golden_week and _in(hour, 9, 18):
                p *= 1.35  # tourists all day
            if hol.name == "spring_festival" and hol.day_index == 0:
                p *= 0.45 if _in(hour, 17, 2) else 1.35  # reunion dinner at home
            if hol.name == "new_year_eve" and _in(hour, 22, 2):
                p *= 1.8  # countdown at the Jiefangbei monument
        if w.kind == "light_rain":
            p *= 0.85
        elif w.kind == "heavy_rain":
            p *= 0.62
        if w.t_max_c >= 35:  # the "furnace" summer: people come out after dark
            p *= 0.72 if _in(hour, 11, 17) else (1.10 if evening else 1.0)
        return p

    @cached_property
    def zone_rate(self) -> dict[str, list[float]]:
        """Arrivals per minute per zone, for each minute of the simulation day."""
        scale = self.info.footfall_factor * self.info.busyness
        out: dict[str, list[float]] = {}
        for z, traits in self.district.zones.items():
            per_min = traits.base_per_hour / 60.0 * scale
            out[z] = [per_min * self.shape(local_hour(m) + 1 / 120, traits)
                      for m in range(MINUTES)]
        return out

    @cached_property
    def presence(self) -> dict[str, list[float]]:
        """Persons present per zone per minute: arrivals of the last ``dwell`` minutes."""
        out: dict[str, list[float]] = {}
        for z, rate in self.zone_rate.items():
            dwell = self.district.zones[z].dwell_min
            acc, pres = 0.0, []
            for m, r in enumerate(rate):
                acc += r
                if m >= dwell:
                    acc -= rate[m - dwell]
                pres.append(max(acc, 0.0))
            out[z] = pres
        return out

    @cached_property
    def density(self) -> dict[str, list[float]]:
        return {z: [p / self.district.zones[z].zone.area_m2 for p in pres]
                for z, pres in self.presence.items()}

    @cached_property
    def footfall_index(self) -> list[float]:
        """District arrivals relative to an ordinary weekday's peak (≈ 1 then)."""
        rates = list(self.zone_rate.values())
        peak = self.district.weekday_peak_total or 1.0
        return [sum(r[m] for r in rates) / peak for m in range(MINUTES)]

    # --- parking ---------------------------------------------------------------------------
    @cached_property
    def parking(self) -> dict[str, list[float]]:
        """Occupied spaces per car park per minute (stock model with spill-over)."""
        cps = self.district.carparks
        ids = list(cps)
        cap = {c: float(cps[c].carpark.capacity) for c in ids}
        shoppers = {c: 0.0 for c in ids}
        office = {c: 0.0 for c in ids}
        resident = {c: cps[c].resident_share * cap[c] for c in ids}
        out: dict[str, list[float]] = {c: [] for c in ids}
        workday = self.info.is_workday
        idx = self.footfall_index
        lead = 30  # drivers arrive a little before the crowd peaks on foot
        for m in range(MINUTES):
            hour = local_hour(m)
            f = idx[min(MINUTES - 1, m + lead)]
            spill: dict[str, float] = {}
            for c in ids:
                t = cps[c]
                # arrivals per minute: sized so an ordinary weekday evening is ~70–85 % full
                arrive = f * t.attract * cap[c] * 0.62 / t.stay_min
                office_target = t.office_share * cap[c] if (workday and _in(hour, 8, 18.5)) \
                    else 0.0
                office_in = max(0.0, office_target - office[c]) * (0.03 if _in(hour, 7, 10)
                                                                     else 0.01)
                office_out = max(0.0, office[c] - office_target) * 0.04
                office[c] += office_in - office_out
                shoppers[c] -= shoppers[c] / t.stay_min
                room = cap[c] - shoppers[c] - office[c] - resident[c]
                taken = min(arrive, max(room, 0.0))
                shoppers[c] += taken
                if arrive > taken:
                    spill[c] = arrive - taken
            for c, extra in spill.items():  # turned away: 70 % try the neighbours
                nbrs = cps[c].carpark.neighbours
                for n in nbrs:
                    room = cap[n] - shoppers[n] - office[n] - resident[n]
                    take = min(max(room, 0.0), 0.7 * extra / len(nbrs))
                    shoppers[n] += take
            for c in ids:
                out[c].append(min(cap[c], shoppers[c] + office[c] + resident[c]))
        return out

    # --- air quality -----------------------------------------------------------------------
    @cached_property
    def episodes(self) -> list[tuple[float, float, float]]:
        """(start epoch, length h, peak) of pollution episodes begun in the last 7 days."""
        seed = self.district.seed
        out = []
        for back in range(0, 7):
            d0 = self.day - timedelta(days=back)
            r = rng_for(seed, "episode", d0.isoformat())
            if r.random() >= _EPISODE_P[d0.month - 1]:
                continue
            length_h = 24 * r.uniform(2.0, 5.0)
            peak = r.uniform(0.8, 2.2) if d0.month in (11, 12, 1, 2) else r.uniform(0.4, 1.0)
            start = self.start_epoch - back * 86400 + r.uniform(0, 12) * 3600
            out.append((start, length_h, peak))
        return out

    def episode_strength(self, epoch: float) -> float:
        """Extra pollution factor of multi-day episodes active at ``epoch`` (0 = none)."""
        strength = 0.0
        for start, length_h, peak in self.episodes:
            t_h = (epoch - start) / 3600
            if 0 <= t_h <= length_h:  # ramps up over a day, holds, clears in 12 h
                ramp = min(1.0, t_h / 24, (length_h - t_h) / 12)
                strength = max(strength, peak * ramp)
        return strength

    def air_at(self, epoch: float) -> dict[str, float]:
        """District background concentrations at ``epoch`` (µg/m³; CO mg/m³), °C, %."""
        info, w = self.info, self.info.weather
        month = self.day.month - 1
        hour = local_hour(int((epoch - self.start_epoch) // 60) % MINUTES) + \
            ((epoch - self.start_epoch) % 60) / 3600
        ep = self.episode_strength(epoch)
        wash = {"clear": 1.0, "cloudy": 1.0, "light_rain": 0.65, "heavy_rain": 0.45}[w.kind]
        # boundary layer: particles accumulate at night/morning, disperse in the afternoon
        pm_cycle = 1.0 + 0.18 * math.cos(2 * math.pi * (hour - 8.5) / 24) \
            + 0.06 * math.cos(2 * math.pi * (hour - 22) / 12)
        pm25 = _PM25[month] * pm_cycle * wash * (1 + ep) / w.ventilation ** 0.5
        pm10 = pm25 * 1.55 + 12 * wash
        rush = 1.0 + 0.6 * math.exp(-((hour - 8.5) ** 2) / 1.5) \
            + 0.5 * math.exp(-((hour - 18.5) ** 2) / 1.8)
        photo = 1.0 - 0.25 * math.exp(-((hour - 14.5) ** 2) / 6)  # NO2 used up making O3
        workday = 1.0 if info.is_workday else 0.85
        no2 = _NO2[month] * rush * photo * workday * (1 + 0.35 * ep) / w.ventilation ** 0.3
        sun = {"clear": 1.1, "cloudy": 0.85, "light_rain": 0.55, "heavy_rain": 0.45}[w.kind]
        heat = 1.2 if w.t_max_c >= 35 else 1.0
        o3_shape = 0.18 + 0.82 * max(0.0, math.cos(2 * math.pi * (hour - 15) / 24)) ** 2.2
        o3 = _O3_PEAK[month] * sun * heat * o3_shape
        so2 = (11.0 if month in (0, 1, 10, 11) else 7.5) * (1 + 0.3 * ep) * \
            (1 + 0.15 * math.cos(2 * math.pi * (hour - 9) / 24))
        co = (1.15 if month in (0, 1, 10, 11) else 0.8) * (0.85 + 0.15 * rush) * (1 + 0.3 * ep)
        return {"pm25_ugm3": pm25, "pm10_ugm3": pm10, "o3_ugm3": o3, "no2_ugm3": no2,
                "so2_ugm3": so2, "co_mgm3": co, "temperature_c": w.temperature(hour),
                "humidity_pct": w.humidity(hour)}


def station_bias(station: Station, seed: int) -> dict[str, float]:
    """Local factors of a station: roadside NO2/CO at the ring-road exit, cooking PM on food
    streets, and a persistent calibration bias for low-cost micro-stations."""
    name = (station.name_en + station.name_zh).lower()
    bias = {"pm25_ugm3": 1.0, "pm10_ugm3": 1.0, "o3_ugm3": 1.0, "no2_ugm3": 1.0,
            "so2_ugm3": 1.0, "co_mgm3": 1.0}
    if "ring road" in name or "环道" in name:
        bias.update(no2_ugm3=1.6, co_mgm3=1.5, o3_ugm3=0.8, pm25_ugm3=1.1)
    if "bayi" in name or "八一" in name or "food" in name:
        bias.update(pm25_ugm3=1.15, pm10_ugm3=1.1)
    if station.kind == "micro":
        for k in bias:
            bias[k] *= 0.92 + 0.16 * stable_unit(seed, "calib", station.id, k)
    return bias

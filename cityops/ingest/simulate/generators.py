"""Per-source event generators for one simulation day.

Each generator yields ``(epoch_s, event)`` in event-time order for one source (a counter, a
car park, a station, a zone's incidents) and draws from its own RNG seeded by
(seed, feed, source, day), so a source's events do not depend on which other feeds or sources
are simulated, nor on where the simulated range starts.

Events are built with ``model_construct`` (no validation on the hot path); the tests check
that every generated event validates against the contract, on large samples of every feed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import TypeVar

from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    IncidentStatus,
    IncidentType,
    ParkingObserved,
    ParkingStatus,
    Position,
    Severity,
)
from cityops.core.registry import Counter, Station
from cityops.ingest.simulate.calendar import rng_for, stable_unit
from cityops.ingest.simulate.model import MINUTES, DayModel, local_hour, station_bias

Timed = tuple[int, Envelope]
E = TypeVar("E", bound=Envelope)

ALMOST_FULL_RATE = 0.92  # occupancy from which a car park reports "almost_full"


def poisson(r: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth below 30, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, r.random()
        while p > limit:
            k += 1
            p *= r.random()
        return k
    return max(0, round(r.gauss(lam, math.sqrt(lam))))


def _grid(day: DayModel, cadence: int) -> range:
    """Report times (epoch s, aligned to the cadence) in [day start, day end)."""
    first = -(-day.start_epoch // cadence) * cadence  # first aligned time ≥ day start
    return range(first, day.start_epoch + MINUTES * 60, cadence)


def _pos(lat: float, lon: float) -> Position:
    return Position.model_construct(lat=lat, lon=lon)


_DEFAULTS: dict[type, dict[str, object]] = {}


def build(cls: type[E], **values: object) -> E:
    """Construct a trusted model without validation, like ``model_construct`` but lean
    (defaults filled from the field definitions; the tests validate large samples)."""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {
            name: (None if f.is_required() else f.get_default(call_default_factory=True))
            for name, f in cls.model_fields.items()}
    obj = cls.__new__(cls)
    data = {name: values.get(name, default)  # in field order, as validation would
            for name, default in defaults.items()}
    object.__setattr__(obj, "__dict__", data)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


# --- footfall ----------------------------------------------------------------------------------
def footfall(day: DayModel, counter: Counter) -> Iterator[Timed]:
    """Entries/exits of one counter per interval, ending at the report time."""
    district = day.district
    r = rng_for(district.seed, "footfall", counter.id, day.day.isoformat())
    zone_id = counter.zone_id
    traits = district.zones[zone_id]
    peers = district.registry.counters_by_zone[zone_id]
    weights = {c.id: 0.7 + 0.6 * stable_unit(district.seed, "share", c.id) for c in peers}
    share = weights[counter.id] / sum(weights.values())
    rate = day.zone_rate[zone_id]
    density = day.density[zone_id]
    dwell = traits.dwell_min
    cadence = counter.cadence_s
    camera = counter.technology == "camera"
    probe = counter.technology in ("camera", "wifi_probe")
    src = counter.id
    for t in _grid(day, cadence):
        m = day.minute_of(t - 1)
        lam_in = rate[m] * share * cadence / 60.0
        lam_out = (rate[m - dwell] if m >= dwell else rate[0] * 0.5) * share * cadence / 60.0
        entries = min(100_000, poisson(r, lam_in))
        exits = min(100_000, poisson(r, lam_out))
        ev = build(
            FootfallObserved, event_id=f"{src}:{t}", source=src,
            event_time=day.when(t), zone_id=zone_id,
            entries=entries, exits=exits, interval_s=cadence,
            dwell_s=round(dwell * 60 * r.uniform(0.85, 1.15), 1) if probe else None,
            density_ppm2=round(min(10.0, density[m] * r.uniform(0.93, 1.07)), 4)
            if camera else None,
        )
        yield t, ev


# --- parking -----------------------------------------------------------------------------------
def parking(day: DayModel, carpark_id: str) -> Iterator[Timed]:
    cp = day.district.registry.carparks[carpark_id]
    r = rng_for(day.district.seed, "parking", cp.id, day.day.isoformat())
    occ = day.parking[cp.id]
    cap = cp.capacity
    pos = _pos(cp.lat, cp.lon)
    for t in _grid(day, cp.cadence_s):
        x = (t - day.start_epoch) / 60.0
        m = min(MINUTES - 2, int(x))
        f = x - m
        level = occ[m] + (occ[m + 1] - occ[m]) * min(1.0, f)
        # gate counts are exact when the barrier is closed
        occupied = cap if level >= cap - 0.5 else max(0, min(cap, round(level + r.gauss(0, 1.2))))
        rate = occupied / cap
        status = (ParkingStatus.FULL if occupied >= cap else
                  ParkingStatus.ALMOST_FULL if rate >= ALMOST_FULL_RATE else ParkingStatus.OPEN)
        yield t, build(
            ParkingObserved, event_id=f"{cp.id}:{t}", source=cp.id,
            event_time=day.when(t), position=pos,
            carpark_id=cp.id, capacity=cap, occupied=occupied, free=cap - occupied,
            status=status)


# --- air quality -------------------------------------------------------------------------------
_MICRO_FIELDS = ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "co_mgm3")
_NATIONAL_FIELDS = ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")


def air(day: DayModel, station: Station) -> Iterator[Timed]:
    """Per-minute values for micro-stations, hourly means for the national station."""
    r = rng_for(day.district.seed, "air", station.id, day.day.isoformat())
    bias = station_bias(station, day.district.seed)
    national = station.kind == "national"
    fields = _NATIONAL_FIELDS if national else _MICRO_FIELDS
    cadence = 3600 if national else station.cadence_s
    noise = 0.03 if national else 0.10
    pos = _pos(station.lat, station.lon)
    for t in _grid(day, cadence):
        if national:  # the hour's mean: average four samples across the hour
            samples = [day.air_at(t - cadence + (k + 0.5) * cadence / 4) for k in range(4)]
            base = {k: sum(s[k] for s in samples) / 4 for k in samples[0]}
        else:
            base = day.air_at(t - cadence / 2)
        values: dict[str, float] = {}
        for k in fields:
            v = base[k] * bias[k] * math.exp(r.gauss(0, noise))
            if k == "o3_ugm3" and bias["no2_ugm3"] > 1.2:  # titration by traffic NO at roads
                v = max(2.0, v - 0.15 * base["no2_ugm3"] * (bias["no2_ugm3"] - 1))
            values[k] = round(min(v, 1900.0), 2 if k == "co_mgm3" else 1)
        yield t, build(
            AirQualityObserved, event_id=f"{station.id}:{t}", source=station.id,
            event_time=day.when(t),
            position=pos, station_id=station.id, averaging_s=cadence,
            temperature_c=round(max(-29.0, min(49.0, base["temperature_c"] + r.gauss(0, 0.3))),
                                1),
            humidity_pct=round(max(0.0, min(100.0, base["humidity_pct"] + r.gauss(0, 1.5))), 1),
            **values)


# --- incidents ---------------------------------------------------------------------------------
_TYPE_WEIGHTS = {
    IncidentType.MEDICAL: 0.22, IncidentType.FALL: 0.12, IncidentType.ESCALATOR_FAULT: 0.05,
    IncidentType.THEFT: 0.15, IncidentType.LOST_PERSON: 0.12, IncidentType.FIGHT: 0.05,
    IncidentType.TRAFFIC: 0.04, IncidentType.FIRE: 0.01, IncidentType.OTHER: 0.10,
}
_SEVERITY = {
    IncidentType.CROWD_CRUSH_RISK: ((Severity.MEDIUM, 0.2), (Severity.HIGH, 0.55),
                                    (Severity.CRITICAL, 0.25)),
    IncidentType.FIRE: ((Severity.MEDIUM, 0.3), (Severity.HIGH, 0.5), (Severity.CRITICAL, 0.2)),
    IncidentType.MEDICAL: ((Severity.LOW, 0.2), (Severity.MEDIUM, 0.5), (Severity.HIGH, 0.25),
                           (Severity.CRITICAL, 0.05)),
    IncidentType.FALL: ((Severity.LOW, 0.35), (Severity.MEDIUM, 0.5), (Severity.HIGH, 0.15)),
    IncidentType.FIGHT: ((Severity.LOW, 0.2), (Severity.MEDIUM, 0.55), (Severity.HIGH, 0.25)),
}
_DEFAULT_SEVERITY = ((Severity.LOW, 0.6), (Severity.MEDIUM, 0.35), (Severity.HIGH, 0.05))
# median handling time on scene, seconds
_HANDLE_S = {
    IncidentType.MEDICAL: 1200, IncidentType.FALL: 900, IncidentType.THEFT: 1800,
    IncidentType.LOST_PERSON: 2400, IncidentType.FIGHT: 900, IncidentType.FIRE: 3600,
    IncidentType.CROWD_CRUSH_RISK: 2700, IncidentType.ESCALATOR_FAULT: 5400,
    IncidentType.TRAFFIC: 1800, IncidentType.OTHER: 900,
}


#: Incidents needing an on-street response (lost persons, medical cases, thefts, falls …) per
#: 10,000 zone entries at low density. Assumption, stated so it can be argued with: mass-
#: gathering medicine reports 0.5–2 patient presentations per 1,000 attendees (Arbon 2004,
#: Milsten et al. 2002); a shopping street is no festival, most visits are short, so we take
#: medical cases at about 1/50 of the low end (0.011 per 1,000 entries) and, medical being
#: 22 % of the incident mix below, all incidents at 0.5 per 10,000 entries. On an ordinary
#: weekday evening (≈ 230,000 zone entries 18:00–22:00 over the street) that is ≈ 3 incidents
#: an hour, more on dense golden-week nights (the density term).
INCIDENTS_PER_10K_ENTRIES = 0.5
#: incidents per zone and hour whatever the crowd (escalator faults, traffic at the edges)
INCIDENT_FLOOR_PER_HOUR = 0.012


def incident_rate_per_hour(entries_per_hour: float, density: float) -> float:
    """Expected incidents per hour in a zone: a small floor plus a term proportional to the
    people arriving and growing faster than linearly with crowd density (persons/m²)."""
    return INCIDENT_FLOOR_PER_HOUR + (
        entries_per_hour * INCIDENTS_PER_10K_ENTRIES / 10_000 * (1.0 + density * density))


def _pick(r: random.Random, table: tuple[tuple[Severity, float], ...]) -> Severity:
    x, acc = r.random() * sum(w for _, w in table), 0.0
    for value, w in table:
        acc += w
        if x < acc:
            return value
    return table[-1][0]


def _incident_type(r: random.Random, day: DayModel, zone_kind: str, density: float,
                   warning: float, hour: float) -> IncidentType:
    weights = dict(_TYPE_WEIGHTS)
    if zone_kind == "stairs_and_terraces":
        weights[IncidentType.FALL] *= 2.0
        weights[IncidentType.ESCALATOR_FAULT] *= 2.0
    if hour >= 22 or hour < 3:
        weights[IncidentType.FIGHT] *= 3.0
    if density > 0.6 * warning:
        weights[IncidentType.CROWD_CRUSH_RISK] = 0.6 * (density / warning) ** 2
    x, acc = r.random() * sum(weights.values()), 0.0
    for kind, w in weights.items():
        acc += w
        if x < acc:
            return kind
    return IncidentType.OTHER


def incidents(day: DayModel, zone_id: str) -> Iterator[Timed]:
    """Incidents of one zone reported during the day, each as its lifecycle of updates."""
    district = day.district
    zone = district.registry.zones[zone_id]
    r = rng_for(district.seed, "incidents", zone_id, day.day.isoformat())
    arrivals = day.zone_rate[zone_id]  # entries per minute
    density = day.density[zone_id]
    warning = zone.density_warning_ppm2 or 2.0
    lat_m = 1 / 111_000
    lon_m = 1 / (111_000 * math.cos(math.radians(zone.lat)))
    updates: list[Timed] = []
    for m in range(MINUTES):
        if r.random() >= incident_rate_per_hour(arrivals[m] * 60.0, density[m]) / 60.0:
            continue
        t0 = day.start_epoch + m * 60 + r.randrange(60)
        hour = local_hour(m)
        kind = _incident_type(r, day, zone.kind, density[m], warning, hour)
        severity = _pick(r, _SEVERITY.get(kind, _DEFAULT_SEVERITY))
        urgent = severity in (Severity.HIGH, Severity.CRITICAL)
        dispatch = r.lognormvariate(math.log(45 if urgent else 100), 0.5)
        travel = r.lognormvariate(math.log(240 * (1 + 0.6 * density[m])), 0.4)
        handle = r.lognormvariate(math.log(_HANDLE_S[kind]), 0.6)
        inc_id = f"inc_{zone_id}_{t0}"
        pos = _pos(round(zone.lat + r.gauss(0, 40) * lat_m, 6),
                   round(zone.lon + r.gauss(0, 40) * lon_m, 6))
        cancelled = not urgent and r.random() < 0.06
        steps = [(t0, IncidentStatus.REPORTED), (t0 + dispatch, IncidentStatus.DISPATCHED)]
        if cancelled:  # a false alarm: called off once the team checked
            steps.append((t0 + dispatch + travel, IncidentStatus.CANCELLED))
        else:
            steps += [(t0 + dispatch + travel, IncidentStatus.ON_SCENE),
                      (t0 + dispatch + travel + handle, IncidentStatus.RESOLVED)]
        for seq, (ts, status) in enumerate(steps):
            t = int(ts)
            updates.append((t, build(
            IncidentReported, event_id=f"{inc_id}:{seq}", source=zone_id,
            event_time=day.when(t),
                position=pos, incident_id=inc_id, incident_type=kind, severity=severity,
                zone_id=zone_id, status=status,
                description=(f"{kind.value.replace('_', ' ')} reported at {zone.name_en} "
                             f"({zone.name_zh})") if seq == 0 else None)))
    updates.sort(key=lambda item: (item[0], item[1].event_id))
    yield from updates

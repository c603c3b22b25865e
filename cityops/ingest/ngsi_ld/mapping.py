"""Smart Data Models entities → cityops feed events.

=====================  =========  ===========================================================
Smart Data Model       feed       mapping
=====================  =========  ===========================================================
AirQualityObserved     air        ``pm25 pm10 o3 no2 so2`` → ``*_ugm3``, ``co`` → ``co_mgm3``
                                  (the upper-case formulas ``CO``, ``NO2``… of older models
                                  too); default unit µg/m³ (GQ), any ``unitCode`` of
                                  ``units``; ``temperature`` (default CEL);
                                  ``relativeHumidity`` (default C62, a 0–1 ratio; P1 %);
                                  ``averaging_s`` from an interval ``dateObserved``, else the
                                  registry station kind (national 3600 s, micro 60 s)
OffStreetParking       parking    capacity from the registry, ``totalSpotNumber`` cross-checked
                                  against it within ``CITYOPS_OCCUPANCY_TOLERANCE``;
                                  ``occupiedSpotNumber``, else ``totalSpotNumber −
                                  availableSpotNumber``, else ``occupancy`` × capacity;
                                  ``availableSpotNumber`` → free; ``status`` incl. DATEX II
CrowdFlowObserved      footfall   ``peopleCountTowards`` / ``peopleCountAway`` → entries /
                                  exits by the counter's ``towards`` orientation; an undirected
                                  ``peopleCount`` by the walkway's ``direction`` and the
                                  counter's ``inbound``; interval → ``interval_s``
=====================  =========  ===========================================================

Observation time, first found wins: ``dateObserved`` (``dateObservedFrom``/``dateObservedTo``
for crowd flows), ``observationDateTime``, the latest ``observedAt`` of the measured
attributes, ``modifiedAt``, ``dateModified``.

A measurement that is physically impossible (a concentration above the contract's plausibility
bound, e.g. CO 500 mg/m³) or given in a unit cityops does not convert is refused *on its own*:
the attribute is left out, named with its reason in the answer and dead-lettered, and the rest
of the entity is kept, because one broken channel of a multi-pollutant station must not cost
the station's other valid readings. An entity left with no measurement at all is refused
whole. The site, the time and the counts of parking and crowd-flow entities are never dropped
on their own: a fault there refuses the entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cityops.core.feeds import AirQualityObserved, ParkingStatus, ValidationContext
from cityops.core.registry import Registry
from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld import attributes as attrs
from cityops.ingest.ngsi_ld import sites, units
from cityops.ingest.ngsi_ld.context import compact
from cityops.ingest.ngsi_ld.times import Observed, parse_time

ENTITY_FEEDS = {"AirQualityObserved": "air", "OffStreetParking": "parking",
                "CrowdFlowObserved": "footfall"}
POLLUTANTS = {"pm25": "pm25_ugm3", "pm10": "pm10_ugm3", "o3": "o3_ugm3", "no2": "no2_ugm3",
              "so2": "so2_ugm3", "co": "co_mgm3"}

# OffStreetParking status, including the DATEX II ParkingSiteStatusEnum values; the most
# restrictive of several listed statuses wins
PARKING_STATUS = {
    "open": ParkingStatus.OPEN, "spacesavailable": ParkingStatus.OPEN,
    "almostempty": ParkingStatus.OPEN, "almostfull": ParkingStatus.ALMOST_FULL,
    "full": ParkingStatus.FULL, "fullatentrance": ParkingStatus.FULL,
    "closed": ParkingStatus.CLOSED, "closedabnormal": ParkingStatus.CLOSED,
    "outofservice": ParkingStatus.CLOSED, "unknown": ParkingStatus.UNKNOWN,
    "statusunknown": ParkingStatus.UNKNOWN,
    "noparkinginformationavailable": ParkingStatus.UNKNOWN,
}
_SEVERITY = [ParkingStatus.CLOSED, ParkingStatus.FULL, ParkingStatus.ALMOST_FULL,
             ParkingStatus.OPEN, ParkingStatus.UNKNOWN]


@dataclass(frozen=True)
class Refusal:
    """One attribute left out of an otherwise accepted entity, and why."""

    attribute: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Mapped:
    """An entity's feed event, and the attributes refused on their own."""

    entity_id: str
    feed: str
    event: dict[str, Any]
    refused: tuple[Refusal, ...] = ()


class _Entity:
    """A compacted entity with the names its sender used, for reasons."""

    def __init__(self, data: dict[str, Any], sent: dict[str, str]) -> None:
        self.data, self.sent = data, sent

    def shown(self, name: str) -> str:
        return self.sent.get(name, name)


def _short_type(entity: dict[str, Any]) -> str:
    t = entity.get("type")
    if isinstance(t, list):
        t = next((x for x in t if isinstance(x, str) and x in ENTITY_FEEDS), t[0] if t else None)
    if not isinstance(t, str):
        raise MappingError("missing_field", "entity has no type", "type")
    return t.rsplit("/", 1)[-1].rsplit("#", 1)[-1].rsplit(":", 1)[-1]


def _observed(e: _Entity, measured: tuple[str, ...], *, crowd: bool = False) -> Observed:
    data = e.data
    v = attrs.value(data, "dateObserved")
    if v is not None:
        return parse_time(v, e.shown("dateObserved"))
    if crowd:
        to = attrs.value(data, "dateObservedTo")
        if to is not None:
            end = parse_time(to, e.shown("dateObservedTo"))
            frm = attrs.value(data, "dateObservedFrom")
            if frm is None:
                return end
            start = parse_time(frm, e.shown("dateObservedFrom"))
            span = int((end.end - start.end).total_seconds())
            if span <= 0:
                raise MappingError("bad_interval", "dateObservedTo is not after "
                                   "dateObservedFrom", e.shown("dateObservedTo"))
            return Observed(end.end, span)
    v = attrs.value(data, "observationDateTime")
    if v is not None:
        return parse_time(v, e.shown("observationDateTime"))
    stamps = [parse_time(s, f"{e.shown(n)}.observedAt") for n in measured
              if (s := attrs.meta(data, n, "observedAt")) is not None]
    if stamps:
        return max(stamps, key=lambda o: o.end)
    for name in ("modifiedAt", "dateModified"):
        v = attrs.value(data, name)
        if v is not None:
            return parse_time(v, e.shown(name))
    raise MappingError("missing_field", "no observation time (dateObserved, "
                       "observationDateTime, observedAt, modifiedAt or dateModified)",
                       "dateObserved")


def _bound(field: str) -> float:
    for item in AirQualityObserved.model_fields[field].metadata:
        if hasattr(item, "le") and item.le is not None:
            return float(item.le)
    raise KeyError(field)  # every pollutant field has a bound; a missing one is a bug


def _air(e: _Entity, ctx: ValidationContext) -> tuple[dict[str, Any], list[Refusal]]:
    reg = ctx.registry
    data = e.data
    site = sites.site_id(data, "AirQualityObserved", "air", reg)
    when = _observed(e, (*POLLUTANTS, "temperature", "relativeHumidity"))
    event: dict[str, Any] = {"event_id": f"{site}:{int(when.end.timestamp())}",
                             "source": site, "station_id": site, "event_time": when.iso()}
    station = reg.stations.get(site) if reg is not None else None
    if when.span_s is not None:
        event["averaging_s"] = when.span_s
    else:
        event["averaging_s"] = 60 if station is not None and station.kind == "micro" else 3600
    refused: list[Refusal] = []
    for name, out in POLLUTANTS.items():
        shown = e.shown(name)
        try:
            v = attrs.number(data, name, shown)
            if v is None:
                continue
            code = attrs.unit(data, name, "GQ")
            ugm3 = units.concentration_ugm3(name, v, code, shown)
            converted = ugm3 / 1000.0 if out == "co_mgm3" else ugm3
            target = "mg/m³" if out == "co_mgm3" else "µg/m³"
            if not 0.0 <= converted <= _bound(out):
                raise MappingError("out_of_range", f"{shown} {v:g} {units.unit_name(code)} = "
                                   f"{converted:g} {target} is physically impossible (bound "
                                   f"0–{_bound(out):g} {target})", shown)
            event[out] = round(converted, 3)
        except MappingError as exc:
            refused.append(Refusal(exc.field or shown, exc.reason, exc.detail))
    for name, field, convert, default, low, high in (
            ("temperature", "temperature_c", units.temperature_c, "CEL", -30.0, 50.0),
            ("relativeHumidity", "humidity_pct", units.humidity_pct, "C62", 0.0, 100.0)):
        shown = e.shown(name)
        try:
            v = attrs.number(data, name, shown)
            if v is None:
                continue
            out_v = convert(v, attrs.unit(data, name, default), shown)
            if not low <= out_v <= high:
                raise MappingError("out_of_range", f"{shown} {v:g} = {out_v:g} is outside "
                                   f"{low:g}–{high:g}", shown)
            event[field] = round(out_v, 2)
        except MappingError as exc:
            refused.append(Refusal(exc.field or shown, exc.reason, exc.detail))
    if not any(p in event for p in POLLUTANTS.values()):
        if refused:
            first = refused[0]
            raise MappingError(first.reason, first.detail + " (and the entity has no other "
                               "pollutant value)", first.attribute)
        raise MappingError("no_measurement", "no pollutant value in the entity", "co")
    return event, refused


def _status(e: _Entity) -> tuple[ParkingStatus | None, list[Refusal]]:
    raw = attrs.value(e.data, "status")
    if raw is None:
        return None, []
    values = raw if isinstance(raw, list) else [raw]
    found: list[ParkingStatus] = []
    unknown: list[Any] = []
    for v in values:
        status = PARKING_STATUS.get(str(v).replace("_", "").lower())
        if status is not None:
            found.append(status)
        else:
            unknown.append(v)
    refused = [Refusal(e.shown("status"), "unknown_status", f"status {v!r} is neither an "
                       "OffStreetParking nor a DATEX II parking site status; stored as unknown")
               for v in unknown]
    if not found:
        return ParkingStatus.UNKNOWN, refused
    return min(found, key=_SEVERITY.index), refused


def _parking(e: _Entity, ctx: ValidationContext) -> tuple[dict[str, Any], list[Refusal]]:
    reg = ctx.registry
    data = e.data
    site = sites.site_id(data, "OffStreetParking", "parking", reg)
    counts = ("availableSpotNumber", "occupiedSpotNumber", "occupancy", "totalSpotNumber")
    when = _observed(e, counts)
    total = attrs.number(data, "totalSpotNumber", e.shown("totalSpotNumber"))
    capacity = total
    if reg is not None and site in reg.carparks:
        capacity = float(reg.carparks[site].capacity)
        tol = ctx.occupancy_tolerance
        if total is not None and abs(total - capacity) > capacity * tol:
            raise MappingError("capacity_mismatch", f"totalSpotNumber {total:g} differs from "
                               f"the registry capacity {capacity:g} of {site} by more than "
                               f"{tol:.0%}", e.shown("totalSpotNumber"))
    if capacity is None:
        raise MappingError("missing_field", "totalSpotNumber is required for a car park not "
                           "in the registry", "totalSpotNumber")
    available = attrs.number(data, "availableSpotNumber", e.shown("availableSpotNumber"))
    occupied = attrs.number(data, "occupiedSpotNumber", e.shown("occupiedSpotNumber"))
    occupancy = attrs.number(data, "occupancy", e.shown("occupancy"))
    if occupied is None and available is not None:
        occupied = (total if total is not None else capacity) - available
    if occupied is None and occupancy is not None:
        if not 0.0 <= occupancy <= 1.0:
            raise MappingError("out_of_range", f"occupancy {occupancy:g} is not a 0–1 ratio",
                               e.shown("occupancy"))
        occupied = round(occupancy * capacity)
    if occupied is None:
        raise MappingError("missing_field", "one of occupiedSpotNumber, availableSpotNumber, "
                           "occupancy is required", "availableSpotNumber")
    for name, v in (("occupiedSpotNumber", occupied), ("availableSpotNumber", available)):
        if v is not None and not float(v).is_integer():
            raise MappingError("wrong_type", f"{e.shown(name)} must be a whole number",
                               e.shown(name))
    event: dict[str, Any] = {
        "event_id": f"{site}:{int(when.end.timestamp())}", "source": site, "carpark_id": site,
        "event_time": when.iso(), "capacity": int(capacity), "occupied": int(occupied),
    }
    if available is not None:
        event["free"] = int(available)
    status, refused = _status(e)
    if status is not None:
        event["status"] = status.value
    return event, refused


def _count(e: _Entity, name: str) -> int | None:
    v = attrs.number(e.data, name, e.shown(name))
    if v is not None and (v < 0 or not v.is_integer()):
        raise MappingError("wrong_type", f"{e.shown(name)} must be a whole number ≥ 0, got "
                           f"{v:g}", e.shown(name))
    return None if v is None else int(v)


def _crowd(e: _Entity, ctx: ValidationContext) -> tuple[dict[str, Any], list[Refusal]]:
    reg = ctx.registry
    data = e.data
    site = sites.site_id(data, "CrowdFlowObserved", "footfall", reg)
    counts = ("peopleCount", "peopleCountTowards", "peopleCountAway")
    when = _observed(e, counts, crowd=True)
    counter = reg.counters.get(site) if reg is not None else None
    total, towards, away = (_count(e, n) for n in counts)
    if towards is not None or away is not None:
        if counter is None or counter.towards is None:
            raise MappingError("no_orientation", f"counter {site!r} has no 'towards' "
                               "orientation in the registry, so peopleCountTowards/Away "
                               "cannot be told apart as entries and exits", "peopleCountTowards")
        towards, away = towards or 0, away or 0
        entries, exits = (towards, away) if counter.towards == "entry" else (away, towards)
    elif total is not None:
        direction = attrs.text(data, "direction")
        if direction not in ("inbound", "outbound"):
            raise MappingError("undirected_count", "peopleCount without peopleCountTowards/"
                               "Away needs the walkway's direction (inbound / outbound)",
                               e.shown("direction"))
        if counter is None or counter.inbound is None:
            raise MappingError("no_orientation", f"counter {site!r} has no 'inbound' "
                               "orientation in the registry, so an undirected peopleCount "
                               "cannot be read as entries or exits", "peopleCount")
        inbound_is_entry = counter.inbound == "entry"
        if (direction == "inbound") == inbound_is_entry:
            entries, exits = total, 0
        else:
            entries, exits = 0, total
    else:
        raise MappingError("missing_field", "peopleCount or peopleCountTowards/Away is "
                           "required", "peopleCount")
    zone = counter.zone_id if counter is not None else attrs.text(data, "refZone")
    if zone is None:
        raise MappingError("unknown_counter", f"counter {site!r} is not in the site registry "
                           "and the entity names no zone", "id")
    interval = when.span_s
    if interval is None:
        interval = counter.cadence_s if counter is not None else 60
    event: dict[str, Any] = {
        "event_id": f"{site}:{int(when.end.timestamp())}", "source": site,
        "event_time": when.iso(), "zone_id": zone, "entries": entries, "exits": exits,
        "interval_s": interval,
    }
    return event, []


_MAPPERS = {"air": _air, "parking": _parking, "footfall": _crowd}


def map_entity(entity: Any, ctx: ValidationContext | None = None,
               context: Any = None) -> Mapped:
    """The feed event of one NGSI-LD entity; ``MappingError`` says why there is none.

    ``context`` is the request's JSON-LD context (from a ``Link`` header) for entities that
    carry no ``@context`` of their own.
    """
    if not isinstance(entity, dict):
        raise MappingError("not_an_object", f"entity is a JSON {type(entity).__name__}")
    ctx = ctx or ValidationContext()
    data, sent = compact(entity, context)
    etype = _short_type(data)
    feed = ENTITY_FEEDS.get(etype)
    if feed is None:
        raise MappingError("unknown_feed", f"entity type {etype!r} is not mapped (supported: "
                           f"{', '.join(ENTITY_FEEDS)})", "type")
    e = _Entity(data, sent)
    event, refused = _MAPPERS[feed](e, ctx)
    pos = sites.position(data, ctx.registry)
    if pos is not None:
        event["position"] = pos
    return Mapped(str(data.get("id")), feed, event, tuple(refused))


def entity_to_event(entity: Any, registry: Registry | None = None
                    ) -> tuple[str, dict[str, Any]]:
    """(feed, event dict) for one entity, with the default tolerances (refused attributes
    are left out; ``map_entity`` reports them)."""
    mapped = map_entity(entity, ValidationContext(registry=registry))
    return mapped.feed, mapped.event

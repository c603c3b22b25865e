"""FIWARE NGSI-LD Smart Data Models → cityops feed events.

A city already publishing FIWARE entities can post them to the HTTP intake
(``/ngsi-ld/v1/entityOperations/upsert`` or ``/ngsi-ld/v1/entities``) unchanged. Both the
*normalized* representation (``{"type": "Property", "value": …, "observedAt": …}``) and
*keyValues* (plain values) are read.

=======================  ==========  =========================================================
Smart Data Model         feed        mapping
=======================  ==========  =========================================================
AirQualityObserved       air         ``pm25 pm10 o3 no2 so2`` → ``*_ugm3``, ``co`` → ``co_mgm3``
                                     (``unitCode`` GQ µg/m³, GP mg/m³, 59 ppm, 61 ppb converted
                                     at 25 °C); ``temperature``; ``relativeHumidity`` (0–1 or
                                     %) → ``humidity_pct``; ``dateObserved`` (or a property's
                                     ``observedAt``) → ``event_time``; ``averaging_s`` from the
                                     registry station kind (national 3600, micro 60)
OffStreetParking         parking     ``totalSpotNumber`` → capacity, ``occupiedSpotNumber`` or
                                     ``totalSpotNumber − availableSpotNumber`` (or
                                     ``occupancy`` × capacity) → occupied, ``availableSpotNumber``
                                     → free, ``status`` (open, spacesAvailable, almostFull, full,
                                     closed, outOfService, …) → status
CrowdFlowObserved        footfall    ``peopleCount`` → entries (``direction`` inbound / absent)
                                     or exits (outbound); ``dateObservedTo − dateObservedFrom``
                                     → interval_s; the counter's zone from the registry
=======================  ==========  =========================================================

The site id is taken from ``refDevice`` (last ``:`` segment of its URN), else from the entity
id (``urn:ngsi-ld:<Type>:<site id>`` → ``<site id>``). ``location`` (GeoJSON Point,
[lon, lat], WGS-84) → ``position``. ``event_id`` = ``<site>:<epoch s>`` (plus ``:in`` /
``:out`` for directed crowd flows), so an entity re-posted unchanged is a duplicate.
The result is a plain dict that the caller validates with ``decode_event`` like any event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cityops.core.registry import Registry
from cityops.ingest.exceptions import MappingError

ENTITY_FEEDS = {"AirQualityObserved": "air", "OffStreetParking": "parking",
                "CrowdFlowObserved": "footfall"}

# molar masses (g/mol) for ppb/ppm → µg/m³ at 25 °C, 1 atm (molar volume 24.45 L)
_MOLAR = {"no2": 46.0055, "o3": 47.9982, "so2": 64.066, "co": 28.010}
_POLLUTANTS = {"pm25": "pm25_ugm3", "pm10": "pm10_ugm3", "o3": "o3_ugm3", "no2": "no2_ugm3",
               "so2": "so2_ugm3", "co": "co_mgm3"}
_PARKING_STATUS = {
    "open": "open", "spacesavailable": "open", "almostempty": "open", "almostfull":
    "almost_full", "full": "full", "closed": "closed", "outofservice": "closed",
    "unknown": "unknown",
}


def _short_type(entity: dict[str, Any]) -> str:
    t = entity.get("type")
    if isinstance(t, list):
        t = t[0] if t else None
    if not isinstance(t, str):
        raise MappingError("missing_field", "entity has no type", "type")
    return t.rsplit("/", 1)[-1].rsplit("#", 1)[-1].rsplit(":", 1)[-1]


def _attr(entity: dict[str, Any], name: str) -> Any:
    """The value of attribute ``name`` in normalized or keyValues form (None if absent)."""
    raw = entity.get(name)
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "type" in raw[0]:
        raw = raw[0]  # multi-attribute: first instance
    if isinstance(raw, dict) and raw.get("type") in ("Property", "GeoProperty", "Relationship"):
        raw = raw.get("object") if raw.get("type") == "Relationship" else raw.get("value")
    if isinstance(raw, dict) and "@value" in raw:
        raw = raw["@value"]
    return raw


def _meta(entity: dict[str, Any], name: str, key: str) -> Any:
    raw = entity.get(name)
    return raw.get(key) if isinstance(raw, dict) else None


def _number(entity: dict[str, Any], name: str) -> float | None:
    v = _attr(entity, name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MappingError("wrong_type", f"{name} must be a number, got {type(v).__name__}",
                           name)
    return float(v)


def _site_id(entity: dict[str, Any], etype: str) -> str:
    ref = _attr(entity, "refDevice")
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if isinstance(ref, str) and ref:
        return ref.rsplit(":", 1)[-1]
    eid = entity.get("id")
    if not isinstance(eid, str) or not eid:
        raise MappingError("missing_field", "entity has no id", "id")
    marker = f":{etype}:"
    return eid.split(marker, 1)[1] if marker in eid else eid.rsplit(":", 1)[-1]


def _time(entity: dict[str, Any], *names: str, observed_from: tuple[str, ...] = ()) -> str:
    for name in names:
        v = _attr(entity, name)
        if isinstance(v, str) and v:
            return v.split("/")[-1] if "/" in v and name == "dateObserved" else v
    for name in observed_from:
        v = _meta(entity, name, "observedAt")
        if isinstance(v, str) and v:
            return v
    raise MappingError("missing_field", f"no observation time ({' / '.join(names)} or "
                       "observedAt)", names[0] if names else "")


def _epoch(text: str, field: str) -> int:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("bad_timestamp", f"{text!r} is not ISO-8601", field) from None
    if moment.tzinfo is None:  # never guess the host's zone
        raise MappingError("naive_timestamp", f"{text!r} has no UTC offset", field)
    return int(moment.timestamp())


def _position(entity: dict[str, Any]) -> dict[str, float] | None:
    loc = _attr(entity, "location")
    if isinstance(loc, dict) and loc.get("type") == "Point":
        coords = loc.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2 and all(
                isinstance(c, int | float) for c in coords[:2]):
            return {"lat": float(coords[1]), "lon": float(coords[0])}
    return None


def _convert(pollutant: str, value: float, unit: str | None) -> float:
    unit = str(unit or "").upper()
    target_mg = pollutant == "co"
    if unit in ("", "GQ"):  # µg/m³ (CO given in µg/m³ goes to mg/m³)
        return value / 1000.0 if target_mg and unit == "GQ" else value
    if unit == "GP":  # mg/m³
        return value if target_mg else value * 1000.0
    if unit in ("59", "61"):  # ppm, ppb
        if pollutant not in _MOLAR:
            raise MappingError("out_of_range", f"{pollutant} cannot be given in ppm/ppb",
                               pollutant)
        ppb = value * (1000.0 if unit == "59" else 1.0)
        ugm3 = ppb * _MOLAR[pollutant] / 24.45
        return ugm3 / 1000.0 if target_mg else ugm3
    raise MappingError("out_of_range", f"unsupported unitCode {unit!r} for {pollutant}",
                       pollutant)


def _air(entity: dict[str, Any], registry: Registry | None) -> dict[str, Any]:
    site = _site_id(entity, "AirQualityObserved")
    when = _time(entity, "dateObserved", observed_from=tuple(_POLLUTANTS))
    event: dict[str, Any] = {"event_id": f"{site}:{_epoch(when, 'dateObserved')}",
                             "source": site, "station_id": site, "event_time": when}
    station = registry.stations.get(site) if registry is not None else None
    event["averaging_s"] = 60 if station is not None and station.kind == "micro" else 3600
    for name, out in _POLLUTANTS.items():
        v = _number(entity, name)
        if v is not None:
            event[out] = round(_convert(name, v, _meta(entity, name, "unitCode")), 3)
    t = _number(entity, "temperature")
    if t is not None:
        event["temperature_c"] = t
    rh = _number(entity, "relativeHumidity")
    if rh is not None:
        event["humidity_pct"] = round(rh * 100.0 if rh <= 1.0 else rh, 2)
    return event


def _parking(entity: dict[str, Any], registry: Registry | None) -> dict[str, Any]:
    site = _site_id(entity, "OffStreetParking")
    when = _time(entity, "dateObserved", "dateModified",
                 observed_from=("availableSpotNumber", "occupiedSpotNumber", "occupancy"))
    total = _number(entity, "totalSpotNumber")
    if total is None and registry is not None and site in registry.carparks:
        total = float(registry.carparks[site].capacity)
    if total is None:
        raise MappingError("missing_field", "totalSpotNumber is required", "totalSpotNumber")
    available = _number(entity, "availableSpotNumber")
    occupied = _number(entity, "occupiedSpotNumber")
    occupancy = _number(entity, "occupancy")
    if occupied is None and available is not None:
        occupied = total - available
    if occupied is None and occupancy is not None:
        occupied = round(occupancy * total)
    if occupied is None:
        raise MappingError("missing_field", "one of occupiedSpotNumber, availableSpotNumber, "
                           "occupancy is required", "availableSpotNumber")
    event: dict[str, Any] = {
        "event_id": f"{site}:{_epoch(when, 'dateObserved')}", "source": site,
        "carpark_id": site, "event_time": when, "capacity": int(total), "occupied": int(occupied),
    }
    if available is not None:
        event["free"] = int(available)
    status = _attr(entity, "status")
    if isinstance(status, list):
        status = status[0] if status else None
    if isinstance(status, str):
        event["status"] = _PARKING_STATUS.get(status.replace("_", "").lower(), "unknown")
    return event


def _crowd(entity: dict[str, Any], registry: Registry | None) -> dict[str, Any]:
    site = _site_id(entity, "CrowdFlowObserved")
    until = _time(entity, "dateObservedTo", "dateObserved")
    end = _epoch(until, "dateObservedTo")
    frm = _attr(entity, "dateObservedFrom")
    interval = end - _epoch(frm, "dateObservedFrom") if isinstance(frm, str) else 60
    count = _number(entity, "peopleCount")
    if count is None:
        raise MappingError("missing_field", "peopleCount is required", "peopleCount")
    if not float(count).is_integer():
        raise MappingError("wrong_type", "peopleCount must be a whole number", "peopleCount")
    direction = _attr(entity, "direction")
    outbound = isinstance(direction, str) and direction.lower() == "outbound"
    zone = None
    if registry is not None and site in registry.counters:
        zone = registry.counters[site].zone_id
    zone = zone or _attr(entity, "refZone") or _attr(entity, "areaServed")
    if not isinstance(zone, str):
        raise MappingError("unknown_counter", f"counter {site!r} is not in the site registry "
                           "and the entity names no zone", "id")
    suffix = (":out" if outbound else ":in") if isinstance(direction, str) else ""
    event: dict[str, Any] = {
        "event_id": f"{site}:{end}{suffix}", "source": site, "event_time": until,
        "zone_id": zone, "entries": 0 if outbound else int(count),
        "exits": int(count) if outbound else 0, "interval_s": interval,
    }
    return event


def entity_to_event(entity: Any, registry: Registry | None = None) -> tuple[str, dict[str, Any]]:
    """(feed, event dict) for one NGSI-LD entity; ``MappingError`` says why not."""
    if not isinstance(entity, dict):
        raise MappingError("not_an_object", f"entity is a JSON {type(entity).__name__}")
    etype = _short_type(entity)
    feed = ENTITY_FEEDS.get(etype)
    if feed is None:
        raise MappingError("unknown_feed", f"entity type {etype!r} is not mapped (supported: "
                           f"{', '.join(ENTITY_FEEDS)})", "type")
    mapper = {"air": _air, "parking": _parking, "footfall": _crowd}[feed]
    event = mapper(entity, registry)
    pos = _position(entity)
    if pos is not None:
        event["position"] = pos
    return feed, event

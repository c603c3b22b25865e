"""Which registry site an NGSI-LD entity speaks of, and where it is.

Site ids are looked up in this order: ``refDevice``, ``refPointOfInterest``, the entity id.
Each is first matched whole against the registry's ``external_ids`` (a vendor's URN, an
upstream id with a timestamp in it), then by its last segment (``urn:ngsi-ld:Device:cp_wfc``
→ ``cp_wfc``; ``urn:ngsi-ld:OffStreetParking:cp_wfc`` → ``cp_wfc``) against the registry ids.
Two of them naming different sites is refused (``id_conflict``); none naming a site of the
feed is refused (``unknown_site``) with every id tried in the reason.

``location`` may be a GeoJSON Point, LineString, Polygon or Multi-geometry ([lon, lat],
WGS-84): every vertex must lie inside the district's bounding box (``outside_district``
otherwise), and the event's position is the Point, or the mean of the vertices.
"""

from __future__ import annotations

from typing import Any

from cityops.core.registry import Registry
from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld import attributes as attrs

SECTION = {"air": "stations", "parking": "carparks", "footfall": "counters"}
REFERENCES = ("refDevice", "refPointOfInterest")


def _candidates(entity: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in REFERENCES:
        ref = attrs.value(entity, name)
        if isinstance(ref, list):
            ref = ref[0] if ref else None
        if isinstance(ref, str) and ref:
            out.append((name, ref))
    eid = entity.get("id")
    if not isinstance(eid, str) or not eid:
        raise MappingError("missing_field", "entity has no id", "id")
    out.append(("id", eid))
    return out


def _short(ref: str, etype: str) -> str:
    marker = f":{etype}:"
    return ref.split(marker, 1)[1] if marker in ref else ref.rsplit(":", 1)[-1]


def site_id(entity: dict[str, Any], etype: str, feed: str, registry: Registry | None) -> str:
    """The registry id of the site an entity reports on."""
    candidates = _candidates(entity)
    if registry is None:  # no registry: the first reference's last segment, unchecked
        return _short(candidates[0][1], etype)
    section = SECTION[feed]
    known = getattr(registry, section)
    found: dict[str, str] = {}  # registry id → the attribute that named it
    for attr, ref in candidates:
        mapped = registry.external_ids.get(ref)
        if mapped is not None:
            if mapped[0] != section:
                raise MappingError("wrong_site_kind", f"{attr} {ref!r} maps to {mapped[0]} "
                                   f"entry {mapped[1]!r}, not to one of the {section}", attr)
            found.setdefault(mapped[1], attr)
        elif _short(ref, etype) in known:
            found.setdefault(_short(ref, etype), attr)
    if len(found) > 1:
        named = ", ".join(f"{a} → {s}" for s, a in found.items())
        raise MappingError("id_conflict", f"the entity's ids name different sites: {named}",
                           next(iter(found.values())))
    if not found:
        tried = ", ".join(f"{a} {r!r}" for a, r in candidates)
        raise MappingError("unknown_site", f"no registry {section} entry for {tried}; add the "
                           f"id to that entry's external_ids", candidates[0][0])
    return next(iter(found))


def _vertices(geometry: dict[str, Any]) -> list[list[float]]:
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
             "Polygon": 2, "MultiPolygon": 3}.get(kind if isinstance(kind, str) else "")
    if depth is None:
        raise MappingError("bad_location", f"location type {kind!r} is not a GeoJSON geometry "
                           "cityops reads", "location")
    points: list[Any] = [coords]
    for _ in range(depth):
        points = [p for group in points if isinstance(group, list) for p in group]
    good = [p for p in points if isinstance(p, list) and len(p) >= 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in p[:2])]
    if not good or len(good) != len(points):
        raise MappingError("bad_location", f"location {kind} has malformed coordinates",
                           "location")
    return good


def position(entity: dict[str, Any], registry: Registry | None) -> dict[str, float] | None:
    """The event position from ``location``, checked against the district's bounding box."""
    geometry = attrs.value(entity, "location")
    if geometry is None:
        return None
    if not isinstance(geometry, dict):
        raise MappingError("bad_location", "location is not a GeoJSON geometry", "location")
    points = _vertices(geometry)
    if registry is not None:
        box = registry.manifest.bbox
        for lon, lat in (p[:2] for p in points):
            if not box.contains(lat, lon):
                raise MappingError(
                    "outside_district", f"location {lat},{lon} (lat,lon) is outside the "
                    f"district's bounding box {box.lat_min}–{box.lat_max} N, "
                    f"{box.lon_min}–{box.lon_max} E", "location")
    lat = sum(p[1] for p in points) / len(points)
    lon = sum(p[0] for p in points) / len(points)
    return {"lat": round(lat, 7), "lon": round(lon, 7)}

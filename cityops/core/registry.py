"""Site registry: zones, footfall counters, car parks and air-quality stations of a district.

Loaded from versioned YAML files in ``Settings.registry_dir`` and validated at start-up, so
another district can run cityops on its own files without code changes. Any failure raises
``RegistryError`` naming the file, the entry and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cityops.core.exceptions import RegistryError


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{2,64}$")
    approximate: bool = False
    external_ids: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(
        (), description="ids other systems give this site (an NGSI-LD entity id, refDevice "
        "or refPointOfInterest URN); unique across the registry")


class _Sited(_Entry):
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    lat: float = Field(ge=-90, le=90, description="WGS-84 latitude")
    lon: float = Field(ge=-180, le=180, description="WGS-84 longitude")


class Zone(_Sited):
    """A pedestrian zone; density = persons present / walkable area."""

    area_m2: float = Field(gt=0, le=1_000_000)
    kind: Literal["plaza", "street", "stairs_and_terraces", "mall", "station"] = "street"
    density_warning_ppm2: float | None = Field(None, gt=0, le=10)
    density_critical_ppm2: float | None = Field(None, gt=0, le=10)


class Counter(_Entry):
    """A footfall counter reporting entries/exits of one zone."""

    zone_id: str
    technology: Literal["camera", "infrared", "wifi_probe", "manual"] = "camera"
    cadence_s: int = Field(30, ge=1, le=3600)
    towards: Literal["entry", "exit"] | None = Field(
        None, description="what a person moving towards the device does to the zone "
        "(NGSI-LD peopleCountTowards); peopleCountAway is the other one")
    inbound: Literal["entry", "exit"] | None = Field(
        None, description="what travel in the walkway's inbound direction (towards the city "
        "centre) does to the zone; reads an undirected peopleCount by the entity's direction")


class CarPark(_Sited):
    """An off-street car park; ``ring_road`` if reached from the underground ring road."""

    capacity: int = Field(gt=0, le=20_000)
    ring_road: bool = False
    cadence_s: int = Field(60, ge=1, le=3600)
    neighbours: tuple[str, ...] = ()


class Station(_Sited):
    """An air-quality station: ``national`` publishes hourly, ``micro`` per minute."""

    kind: Literal["national", "micro"]
    cadence_s: int = Field(ge=1, le=86_400)
    zone_id: str | None = None


class BBox(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.lat_min <= lat <= self.lat_max and self.lon_min <= lon <= self.lon_max


class District(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    name_zh: str
    name_en: str
    city: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    registry_version: str = Field(min_length=1)
    district: District
    timezone: str
    bbox: BBox
    files: tuple[str, ...]

    @model_validator(mode="after")
    def _bbox_ordered(self) -> Manifest:
        if self.bbox.lat_min >= self.bbox.lat_max or self.bbox.lon_min >= self.bbox.lon_max:
            raise ValueError("bbox minimum must be below maximum")
        return self


_SECTIONS: dict[str, type[_Entry]] = {
    "zones": Zone, "counters": Counter, "carparks": CarPark, "stations": Station,
}


class Registry(BaseModel):
    """The validated registry; lookups by id are dictionaries."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: Manifest
    zones: dict[str, Zone]
    counters: dict[str, Counter]
    carparks: dict[str, CarPark]
    stations: dict[str, Station]
    source_dir: Path

    @property
    def version(self) -> str:
        return self.manifest.registry_version

    @cached_property
    def counters_by_zone(self) -> dict[str, list[Counter]]:
        out: dict[str, list[Counter]] = {z: [] for z in self.zones}
        for c in self.counters.values():
            out[c.zone_id].append(c)
        return out

    @cached_property
    def external_ids(self) -> dict[str, tuple[str, str]]:
        """External id → (section, registry id), from every entry's ``external_ids``."""
        out: dict[str, tuple[str, str]] = {}
        for section in _SECTIONS:
            for entry in getattr(self, section).values():
                for ext in entry.external_ids:
                    out[ext] = (section, entry.id)
        return out

    def site_ids(self, feed: str) -> set[str]:
        """Known source ids of a feed (counters, car parks, stations, zones for incidents)."""
        sites: dict[str, Mapping[str, object]] = {
            "footfall": self.counters, "parking": self.carparks, "air": self.stations,
            "incidents": self.zones,
        }
        return set(sites[feed])


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(path.name, "-", "file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RegistryError(path.name, "-", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(path.name, "-", "top level must be a mapping")
    return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def load_registry(directory: Path) -> Registry:
    """Load and cross-check every registry file in ``directory``."""
    directory = Path(directory)
    manifest_data = _read_yaml(directory / "registry.yaml")
    try:
        manifest = Manifest.model_validate(manifest_data)
    except ValidationError as exc:
        raise RegistryError("registry.yaml", "manifest", _first_error(exc)) from None

    found: dict[str, dict[str, _Entry]] = {name: {} for name in _SECTIONS}
    external: dict[str, str] = {}  # external id → "section[id]" that claimed it first
    for fname in manifest.files:
        data = _read_yaml(directory / fname)
        for section, items in data.items():
            model = _SECTIONS.get(section)
            if model is None:
                raise RegistryError(fname, section,
                                    f"unknown section (allowed: {sorted(_SECTIONS)})")
            if not isinstance(items, list):
                raise RegistryError(fname, section, "must be a list of entries")
            for i, raw in enumerate(items):
                label = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"
                try:
                    entry = model.model_validate(raw)
                except ValidationError as exc:
                    raise RegistryError(fname, f"{section}[{label}]", _first_error(exc)) from None
                if entry.id in found[section]:
                    raise RegistryError(fname, f"{section}[{label}]", "duplicate id")
                if isinstance(entry, _Sited) and not manifest.bbox.contains(entry.lat, entry.lon):
                    raise RegistryError(fname, f"{section}[{label}]",
                                        f"position {entry.lat},{entry.lon} outside district bbox")
                for ext in entry.external_ids:
                    if ext in external:
                        raise RegistryError(fname, f"{section}[{label}]", f"external id {ext!r} "
                                            f"already maps to {external[ext]}")
                    external[ext] = f"{section}[{entry.id}]"
                found[section][entry.id] = entry
    reg = Registry(manifest=manifest, source_dir=directory, **found)
    _cross_check(reg)
    return reg


def _cross_check(reg: Registry) -> None:
    if not reg.zones:
        raise RegistryError("zones", "-", "at least one zone is required")
    for c in reg.counters.values():
        if c.zone_id not in reg.zones:
            raise RegistryError("counters", c.id, f"unknown zone_id {c.zone_id!r}")
    for cp in reg.carparks.values():
        for n in cp.neighbours:
            if n not in reg.carparks or n == cp.id:
                raise RegistryError("carparks", cp.id, f"bad neighbour {n!r}")
    for st in reg.stations.values():
        if st.zone_id is not None and st.zone_id not in reg.zones:
            raise RegistryError("stations", st.id, f"unknown zone_id {st.zone_id!r}")
    for z in reg.zones.values():
        warn, crit = z.density_warning_ppm2, z.density_critical_ppm2
        if warn is not None and crit is not None and warn >= crit:
            raise RegistryError("zones", z.id, "density_warning_ppm2 must be below critical")

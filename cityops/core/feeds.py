"""Feed contracts: pydantic v2 models for the four feeds on one common envelope.

The wire format is JSON, one event per Kafka message, UTF-8, keyed by ``source``. Checks that
need the site registry or the clock (known ids, capacity, clock skew) read them from the
validation context built by ``ValidationContext``; without one, only the self-contained rules
apply. ``docs/feeds.md`` is the human-readable reference of the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cityops.core.geo import gcj02_to_wgs84
from cityops.core.registry import Registry
from cityops.core.settings import Settings

SCHEMA_VERSION: Literal[1] = 1
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
SiteId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Count = Annotated[int, Field(ge=0, le=100_000, strict=True)]


@dataclass(frozen=True)
class ValidationContext:
    """What contract checks need beyond the event itself.

    Build it with ``from_settings`` so the limits are the configured ones; the defaults are
    the settings' own defaults, for checks without a configuration.
    """

    registry: Registry | None = None
    now: datetime | None = None  # None: the wall clock at validation time
    max_clock_skew_s: float = Settings.model_fields["max_clock_skew_s"].default
    occupancy_tolerance: float = Settings.model_fields["occupancy_tolerance"].default
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry | None = None, *,
                      now: datetime | None = None) -> ValidationContext:
        """The context of a configured process: its registry, clock skew and tolerance."""
        return cls(registry=registry, now=now, max_clock_skew_s=settings.max_clock_skew_s,
                   occupancy_tolerance=settings.occupancy_tolerance)

    def as_dict(self) -> dict[str, Any]:
        return {"ctx": self}


_NO_CONTEXT = ValidationContext()


def _ctx(info: ValidationInfo) -> ValidationContext | None:
    data = info.context or {}
    return data.get("ctx")


class Crs(StrEnum):
    WGS84 = "WGS84"  # GPS, OpenStreetMap, Grafana geomap: what we store
    GCJ02 = "GCJ02"  # Chinese web maps ("Mars coordinates"): converted at the edge


class Position(BaseModel):
    """A point; GCJ-02 input is converted to WGS-84 on validation, so models always hold WGS-84."""

    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90, strict=True)
    lon: float = Field(ge=-180, le=180, strict=True)
    crs: Crs = Crs.WGS84

    @model_validator(mode="after")
    def _to_wgs84(self) -> Position:
        if self.crs is Crs.GCJ02:
            lat, lon = gcj02_to_wgs84(self.lat, self.lon)
            object.__setattr__(self, "lat", round(lat, 7))
            object.__setattr__(self, "lon", round(lon, 7))
            object.__setattr__(self, "crs", Crs.WGS84)
        return self


class Envelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    feed: ClassVar[str] = ""

    event_id: EventId
    schema_version: Literal[1] = SCHEMA_VERSION
    source: SiteId = Field(description="sensor / site id; also the Kafka message key")
    event_time: AwareDatetime
    position: Position | None = None

    @field_validator("event_time", mode="before")
    @classmethod
    def _iso_text_only(cls, value: Any) -> Any:
        # pydantic would read 1700000000 or "1700000000" as epoch seconds; the contract is
        # ISO-8601 text with an offset, so a sensor sending epochs is told so
        if isinstance(value, str) and _ISO_DATE.match(value):
            return value
        if isinstance(value, datetime):
            return value
        raise PydanticCustomError(
            "bad_timestamp", "event_time {value} is not ISO-8601 text", {"value": repr(value)})

    @field_validator("event_time")
    @classmethod
    def _not_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        ctx = _ctx(info) or _NO_CONTEXT
        skew = ctx.max_clock_skew_s
        now = ctx.now or datetime.now(UTC)
        if value - now > timedelta(seconds=skew):
            raise PydanticCustomError(
                "future_event",
                "event_time is {ahead} s ahead of now (max clock skew {skew} s)",
                {"ahead": f"{(value - now).total_seconds():.0f}", "skew": f"{skew:.0f}"},
            )
        if value.year < 2000:
            raise PydanticCustomError("out_of_range", "event_time before 2000", {})
        return value

    def key(self) -> bytes:
        """Kafka message key: the source id keeps one sensor's events in one partition."""
        return self.source.encode()

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def _registry(self, info: ValidationInfo) -> Registry | None:
        ctx = _ctx(info)
        return ctx.registry if ctx else None


def _unknown(kind: str, value: str) -> PydanticCustomError:
    return PydanticCustomError(f"unknown_{kind}", "unknown {kind} id {value}",
                               {"kind": kind, "value": repr(value)})


class FootfallObserved(Envelope):
    """People counted entering / leaving a zone by one counter over ``interval_s`` seconds."""

    feed: ClassVar[str] = "footfall"

    zone_id: SiteId
    entries: Count
    exits: Count
    interval_s: int = Field(ge=1, le=3600, strict=True)
    dwell_s: float | None = Field(None, ge=0, le=86_400, strict=True)
    density_ppm2: float | None = Field(None, ge=0, le=10, strict=True,
                                       description="persons per m²")

    @model_validator(mode="after")
    def _known_sites(self, info: ValidationInfo) -> FootfallObserved:
        reg = self._registry(info)
        if reg is not None:
            if self.zone_id not in reg.zones:
                raise _unknown("zone", self.zone_id)
            counter = reg.counters.get(self.source)
            if counter is None:
                raise _unknown("counter", self.source)
            if counter.zone_id != self.zone_id:
                raise PydanticCustomError(
                    "zone_mismatch", "counter {c} belongs to zone {z}, not {given}",
                    {"c": self.source, "z": counter.zone_id, "given": self.zone_id})
        return self


class ParkingStatus(StrEnum):
    OPEN = "open"  # accepting cars
    ALMOST_FULL = "almost_full"  # few spaces left
    FULL = "full"  # no space; guidance sends drivers to neighbours
    CLOSED = "closed"  # not accepting cars
    UNKNOWN = "unknown"  # sensor cannot tell


class ParkingObserved(Envelope):
    """Occupancy of one off-street car park (cf. FIWARE OffStreetParking)."""

    feed: ClassVar[str] = "parking"

    carpark_id: SiteId
    capacity: int = Field(gt=0, le=20_000, strict=True)
    occupied: Count
    free: Count | None = None
    status: ParkingStatus = ParkingStatus.OPEN

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ParkingObserved:
        tol = (_ctx(info) or _NO_CONTEXT).occupancy_tolerance
        limit = self.capacity * (1 + tol)
        if self.occupied > limit:
            raise PydanticCustomError(
                "over_capacity", "occupied {o} exceeds capacity {c} (+{t} tolerance)",
                {"o": self.occupied, "c": self.capacity, "t": f"{tol:.0%}"})
        if self.free is not None and abs(self.free + self.occupied - self.capacity) > max(
            2, self.capacity * tol
        ):
            raise PydanticCustomError(
                "inconsistent_counts", "occupied {o} + free {f} != capacity {c}",
                {"o": self.occupied, "f": self.free, "c": self.capacity})
        reg = self._registry(info)
        if reg is not None and self.carpark_id not in reg.carparks:
            raise _unknown("carpark", self.carpark_id)
        return self

    @property
    def occupancy_rate(self) -> float:
        return min(self.occupied / self.capacity, 1.0 + 1e-9)


def _pollutant(upper: float, unit: str) -> Any:
    # strict: a JSON number only — "35" or true must not pass as a concentration
    return Field(None, ge=0, le=upper, strict=True,
                 description=f"{unit}; physical upper bound {upper}")


class AirQualityObserved(Envelope):
    """Pollutant concentrations at one station (cf. FIWARE AirQualityObserved).

    Gases and particles in µg/m³, CO in mg/m³, as China's HJ 633-2012 tables use them.
    ``averaging_s`` says over what period the values are means (60 for micro-stations,
    3600 for the national station's hourly values).
    """

    feed: ClassVar[str] = "air"

    station_id: SiteId
    averaging_s: int = Field(3600, ge=1, le=86_400, strict=True)
    pm25_ugm3: float | None = _pollutant(2000, "µg/m³")
    pm10_ugm3: float | None = _pollutant(3000, "µg/m³")
    o3_ugm3: float | None = _pollutant(2000, "µg/m³")
    no2_ugm3: float | None = _pollutant(4000, "µg/m³")
    so2_ugm3: float | None = _pollutant(5000, "µg/m³")
    co_mgm3: float | None = _pollutant(200, "mg/m³")
    temperature_c: float | None = Field(None, ge=-30, le=50, strict=True)
    humidity_pct: float | None = Field(None, ge=0, le=100, strict=True)

    POLLUTANTS: ClassVar[tuple[str, ...]] = (
        "pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")

    @model_validator(mode="after")
    def _some_pollutant(self, info: ValidationInfo) -> AirQualityObserved:
        if all(getattr(self, p) is None for p in self.POLLUTANTS):
            raise PydanticCustomError("no_measurement", "no pollutant value in the event", {})
        reg = self._registry(info)
        if reg is not None and self.station_id not in reg.stations:
            raise _unknown("station", self.station_id)
        return self


class IncidentType(StrEnum):
    CROWD_CRUSH_RISK = "crowd_crush_risk"  # density near dangerous levels
    MEDICAL = "medical"  # illness or injury
    FALL = "fall"  # fall on stairs or escalators
    ESCALATOR_FAULT = "escalator_fault"  # hill-city escalators and lifts
    FIRE = "fire"
    FIGHT = "fight"
    THEFT = "theft"
    LOST_PERSON = "lost_person"
    TRAFFIC = "traffic"  # incl. the underground ring road
    OTHER = "other"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class IncidentStatus(StrEnum):
    REPORTED = "reported"  # first report received
    DISPATCHED = "dispatched"  # a team was sent
    ON_SCENE = "on_scene"  # the team arrived
    RESOLVED = "resolved"  # closed with an outcome
    CANCELLED = "cancelled"  # false alarm / duplicate report


INCIDENT_ORDER = {
    IncidentStatus.REPORTED: 0, IncidentStatus.DISPATCHED: 1, IncidentStatus.ON_SCENE: 2,
    IncidentStatus.RESOLVED: 3, IncidentStatus.CANCELLED: 3,
}


class IncidentReported(Envelope):
    """One status update of a safety incident; the lifecycle is several events, one id."""

    feed: ClassVar[str] = "incidents"

    incident_id: SiteId
    incident_type: IncidentType
    severity: Severity
    zone_id: SiteId
    status: IncidentStatus
    description: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _known_zone(self, info: ValidationInfo) -> IncidentReported:
        reg = self._registry(info)
        if reg is not None and self.zone_id not in reg.zones:
            raise _unknown("zone", self.zone_id)
        return self


FEED_MODELS: dict[str, type[Envelope]] = {
    "footfall": FootfallObserved,
    "parking": ParkingObserved,
    "air": AirQualityObserved,
    "incidents": IncidentReported,
}

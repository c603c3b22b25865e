"""Records the stream processors emit on derived topics; the warehouse stores each in a table.

These are the contract between ``streams/`` (which produces them) and ``warehouse/`` (which
stores them, importing this module from its left). JSON on the wire, keyed by ``key()``.
Times are timezone-aware; the warehouse stores them as DateTime64 in the district's zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field

from cityops.core import topics
from cityops.core.deadletter import DeadLetter
from cityops.core.deadletter import DerivedRecord as _Record


class FootfallWindow(_Record):
    """Footfall of one zone over one event-time window (tumbling 1 min or hopping 5 min)."""

    topic: ClassVar[str] = topics.agg("footfall")
    table: ClassVar[str] = "footfall_windows"

    zone_id: str
    window: Literal["tumbling_1m", "hopping_5m"]
    window_start: AwareDatetime
    window_end: AwareDatetime
    entries: int = Field(ge=0)
    exits: int = Field(ge=0)
    events: int = Field(ge=0, description="counter reports aggregated")
    net_presence: float = Field(description="estimated persons present at window end")
    density_ppm2: float = Field(ge=0, description="net_presence / zone walkable area")
    revision: int = Field(0, ge=0, description="bumped each time a late event updates it")
    emitted_at: AwareDatetime

    def record_id(self) -> str:
        return self.id_of(self.zone_id, self.window, self.window_start.isoformat())

    def key(self) -> bytes:
        return self.zone_id.encode()

    @staticmethod
    def id_of(zone_id: str, window: str, start_iso: str) -> str:
        """The record id from its parts (a ``Pending`` revision has it before the model)."""
        return f"{zone_id}:{window}:{start_iso}"

    #: the window whose density the ``crowd_density`` rule watches
    OBSERVED_WINDOW: ClassVar[str] = "tumbling_1m"

    @staticmethod
    def observes(zone_id: str, window: str, density: float,
                 end_s: float) -> tuple[str, str, float, float] | None:
        """The alert observation a window makes, ``(kind, subject, value, ts)``: the 1-minute
        window's density for the ``crowd_density`` rule, at its end (POSIX seconds)."""
        if window != FootfallWindow.OBSERVED_WINDOW:
            return None
        return ("crowd_density", zone_id, density, end_s)


class ParkingState(_Record):
    """Derived state of one car park after an observation."""

    topic: ClassVar[str] = topics.agg("parking")
    table: ClassVar[str] = "parking_states"

    carpark_id: str
    event_time: AwareDatetime
    capacity: int
    occupied: int
    occupancy_rate: float = Field(ge=0)
    trend_per_min: float = Field(description="change of occupied spaces per minute")
    minutes_to_full: float | None = Field(None, ge=0, description="None when not filling")
    emitted_at: AwareDatetime

    def record_id(self) -> str:
        return f"{self.carpark_id}:{self.event_time.isoformat()}"

    def key(self) -> bytes:
        return self.carpark_id.encode()


class AirQualityIndex(_Record):
    """AQI of one station for one hour per HJ 633-2012 (see ``streams/aqi.py``)."""

    topic: ClassVar[str] = topics.agg("air")
    table: ClassVar[str] = "air_quality_index"

    station_id: str
    hour_start: AwareDatetime
    averaging: Literal["1h", "24h"]
    pm25_ugm3: float | None = None
    pm10_ugm3: float | None = None
    o3_1h_ugm3: float | None = None
    o3_8h_ugm3: float | None = None
    no2_ugm3: float | None = None
    so2_ugm3: float | None = None
    co_mgm3: float | None = None
    iaqi: dict[str, int] = Field(default_factory=dict)
    aqi: int | None = None
    primary_pollutants: list[str] = Field(default_factory=list)
    category: str = Field("", description="优 / 良 / 轻度污染 / 中度污染 / 重度污染 / 严重污染")
    samples: int = Field(0, ge=0)
    revision: int = 0
    emitted_at: AwareDatetime

    def record_id(self) -> str:
        return self.id_of(self.station_id, self.averaging, self.hour_start)

    @staticmethod
    def id_of(station_id: str, averaging: str, hour_start: datetime) -> str:
        """The record id from its parts (a ``Pending`` revision has it before the model)."""
        return f"{station_id}:{averaging}:{hour_start.isoformat()}"

    def key(self) -> bytes:
        return self.station_id.encode()


class IncidentStats(_Record):
    """Open incidents of one zone after a status update, with the response time if known."""

    topic: ClassVar[str] = topics.agg("incidents")
    table: ClassVar[str] = "incident_stats"

    zone_id: str
    event_time: AwareDatetime
    incident_id: str
    status: str
    open_count: int = Field(ge=0)
    response_s: float | None = Field(None, ge=0, description="reported → on scene, seconds")
    emitted_at: AwareDatetime

    def record_id(self) -> str:
        return f"{self.incident_id}:{self.status}"

    def key(self) -> bytes:
        return self.zone_id.encode()


class AlertState(StrEnum):
    ACTIVE_UNACK = "active_unack"  # firing, nobody has acknowledged it yet
    ACTIVE_ACK = "active_ack"  # firing, an operator owns it
    CLEARED_UNACK = "cleared_unack"  # condition ended before anyone acknowledged
    CLEARED_ACK = "cleared_ack"  # ended and acknowledged, or never sent (history): closed


class AlertEventKind(StrEnum):
    FIRED = "fired"  # a new alert for (rule, subject)
    SEVERITY_CHANGED = "severity_changed"  # same alert, new severity
    ACKNOWLEDGED = "acknowledged"  # an operator took it
    ESCALATED = "escalated"  # unacknowledged too long: next level notified
    REMINDED = "reminded"  # fired in replayed history, still active on current data: sent once
    CLEARED = "cleared"  # the condition ended (after hysteresis + min duration)


class AlertEvent(_Record):
    """One lifecycle event of an alert; ``alert_id`` is stable for the alert's whole life."""

    topic: ClassVar[str] = topics.ALERTS
    table: ClassVar[str] = "alerts"

    alert_id: str
    rule_id: str
    rule_version: str
    subject: str = Field(description="zone / car park / station / sensor id")
    kind: AlertEventKind
    state: AlertState
    severity: Literal["info", "warning", "major", "critical"]
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    escalation_level: int = 0
    actor: str | None = Field(None, description="who acknowledged, for acknowledged events")
    event_time: AwareDatetime
    emitted_at: AwareDatetime
    seq: int = Field(0, ge=0, description="event number within the alert")

    def record_id(self) -> str:
        return f"{self.alert_id}:{self.seq}"

    def key(self) -> bytes:
        return f"{self.rule_id}:{self.subject}".encode()


class LateEvent(_Record):
    """A valid event that arrived after its window's allowed lateness: kept, counted, routed."""

    topic: ClassVar[str] = topics.LATE
    table: ClassVar[str] = "late_events"

    feed: str
    event_id: str
    source: str
    event_time: AwareDatetime
    watermark: AwareDatetime
    lateness_s: float
    payload_json: str
    received_at: AwareDatetime

    def record_id(self) -> str:
        return f"{self.feed}:{self.event_id}"

    def key(self) -> bytes:
        return self.source.encode()


DERIVED_RECORDS: tuple[type[_Record], ...] = (
    FootfallWindow, ParkingState, AirQualityIndex, IncidentStats, AlertEvent, DeadLetter,
    LateEvent,
)


class Pending:
    """A revision of a derived record whose model is built only if the step publishes it.

    While a backlog is read, a step re-fires a zone's windows once per counter report: in a
    60,000-event drain the worker built 128,066 ``FootfallWindow`` models for 37,800 reports,
    and ``latest_revisions`` then published 21,169 of them. A pending revision carries what
    the step needs before that choice (the record's type, id and revision, and the alert
    observation it makes, as ``(kind, subject, value, ts)``, ``ts`` in POSIX seconds) and
    builds the model on demand, from values fixed when it was made.
    """

    __slots__ = ("_make", "kind", "observes", "revision", "rid")

    def __init__(self, kind: type[_Record], rid: str, revision: int,
                 make: Callable[[], _Record],
                 observes: tuple[str, str, float, float] | None = None) -> None:
        self.kind = kind
        self.rid = rid
        self.revision = revision
        self.observes = observes
        self._make = make

    def record_id(self) -> str:
        return self.rid

    def build(self) -> _Record:
        return self._make()

    def __repr__(self) -> str:
        return f"<pending {self.kind.__name__} {self.rid} r{self.revision}>"


def built(records: Iterable[Any]) -> list[Any]:
    """The records with every pending one built (``Pending.build``), in order."""
    return [r.build() if isinstance(r, Pending) else r for r in records]


def _revised(rec: Any) -> bool:
    """Whether the record carries a revision. A model's fields say so: looking up an
    attribute a pydantic model lacks raises and catches inside pydantic, 2.9 µs a car park's
    state against 0.15."""
    fields = getattr(type(rec), "__pydantic_fields__", None)
    if fields is not None and "revision" not in fields:
        return False
    return getattr(rec, "revision", None) is not None


def latest_revisions(records: Iterable[Any]) -> list[Any]:
    """Records with only the newest revision of each revised record (by ``record_id``) kept,
    pending ones built.

    Windows and hourly indexes are re-published with ``revision`` + 1 each time an allowed-late
    event changes them, and the warehouse keeps only the highest revision. While a backlog is
    read, one step re-publishes the same 1-minute and 5-minute windows many times (each
    counter of a zone fires them again), so the step publishes the last one only, and builds
    only that one when it is ``Pending``. Records without a revision (observations,
    incidents) are all kept; order is kept, a revised record taking the place of its last
    revision.
    """
    latest: dict[Any, Any] = {}
    for i, rec in enumerate(records):
        if isinstance(rec, Pending):
            rid: Any = (rec.kind, rec.rid)
        elif not _revised(rec):
            latest[i] = rec
            continue
        else:
            rid = (type(rec), rec.record_id())
        latest.pop(rid, None)
        latest[rid] = rec
    return built(latest.values())

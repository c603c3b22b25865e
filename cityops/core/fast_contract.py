"""The feed contract's fast path: a usual record accepted in a few microseconds, or left alone.

``core.contract.decode_event`` judges a record with strict JSON and the pydantic models of
``core.feeds``: about 40 µs of CPU per record, most of the worker's validation step. Nearly
every record a sensor sends is plain: UTF-8 without escapes, every field once, known ids, an
ISO-8601 time with seconds and an offset. ``fast_decode`` reads such a record with msgspec
into a struct mirroring the contract and checks the same rules; it returns ``None`` for
anything else, and the caller then runs the exact decoder, so every rejection, with its
reason code and detail, comes from ``decode_event`` as before.

The fast path may only *accept* a record ``decode_event`` accepts, with the same values, and
its clean JSON (``to_json``) is byte for byte the model's ``model_dump_json(exclude_none=
True)``: ``tests/unit/core/test_fast_contract.py`` checks both on the simulator's records,
every bad input of the contract tests and mutations of good records. What it leaves to the
exact decoder: any backslash (escapes, lone surrogates; msgspec itself refuses bytes that are
not UTF-8 and a byte-order mark), a key written twice or an explicit ``null``, GCJ-02
positions (converted there), times without seconds, with a space or with more than six
decimals, and every record that breaks a rule.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import msgspec.structs

from cityops.core.feeds import (
    IncidentStatus,
    IncidentType,
    ParkingStatus,
    Severity,
    ValidationContext,
)

# ``\Z``, not ``$``: msgspec matches with Python's ``re.search``, where ``$`` also matches
# before a final newline (pydantic's regex engine does not)
# The ids' character sets are checked after decoding (``_ids_valid``), not by msgspec: its
# pattern check cost 0.55 µs a field, three fields a record (1.65 of a footfall record's
# 2.1 µs to decode); a regex called once for the event id and a set of site ids already
# matched cost 0.5 µs in all
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]+")
SITE_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
#: site ids (sensors, zones, car parks, stations, incidents) that matched ``SITE_ID_PATTERN``: a
#: district's few hundred, looked up instead of matched again; emptied when it grows large
_GOOD_SITES: set[str] = set()
_GOOD_SITES_MAX = 10_000
Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]

#: the event times both parsers read the same way (``datetime.fromisoformat`` does the rest)
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")
_KEY_END = re.compile(rb'"\s*:')
#: a quote followed by whitespace: only then can a key end be other than ``":`` itself
_QUOTE_SPACE = re.compile(rb'"\s')
#: an event time this close to the clock-skew limit is left to the exact decoder (its
#: datetime arithmetic decides; the float seconds here are exact to about a microsecond)
_SKEW_MARGIN_S = 0.001
_DAY = timedelta(hours=24)


class FastPosition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True,
                   omit_defaults=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    crs: Literal["WGS84", "GCJ02"] | None = None


class FastEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Envelope fields, in the models' order (their JSON has the same key order).

    Optional fields default to ``None`` and are left out of the JSON, as the models'
    ``exclude_none``; the contract's own defaults are filled in after decoding."""

    feed: ClassVar[str] = ""

    event_id: EventId
    schema_version: Literal[1] | None = None
    source: SiteId
    event_time: Any  # text when decoded, checked, then the aware datetime
    position: FastPosition | None = None

    def unit(self) -> str:
        """The aggregation key (``streams.pipeline.aggregation_key`` of the model)."""
        return self.source

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def _defaults(self) -> None:
        self.schema_version = 1

    def _valid(self, ctx: ValidationContext) -> bool:
        return True


class FastFootfall(FastEvent, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    feed: ClassVar[str] = "footfall"

    zone_id: SiteId
    entries: Count
    exits: Count
    interval_s: Annotated[int, msgspec.Meta(ge=1, le=3600)]
    dwell_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] | None = None
    density_ppm2: Annotated[float, msgspec.Meta(ge=0, le=10)] | None = None

    def unit(self) -> str:
        return self.zone_id

    def _valid(self, ctx: ValidationContext) -> bool:
        reg = ctx.registry
        if reg is None:
            return True
        counter = reg.counters.get(self.source)
        return self.zone_id in reg.zones and counter is not None and (
            counter.zone_id == self.zone_id)


class FastParking(FastEvent, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    feed: ClassVar[str] = "parking"

    carpark_id: SiteId
    capacity: Annotated[int, msgspec.Meta(gt=0, le=20_000)]
    occupied: Count
    free: Count | None = None
    status: ParkingStatus | None = None

    def unit(self) -> str:
        return self.carpark_id

    def _defaults(self) -> None:
        self.schema_version = 1
        if self.status is None:
            self.status = ParkingStatus.OPEN

    def _valid(self, ctx: ValidationContext) -> bool:
        tol = ctx.occupancy_tolerance
        if self.occupied > self.capacity * (1 + tol):
            return False
        if self.free is not None and abs(self.free + self.occupied - self.capacity) > max(
                2, self.capacity * tol):
            return False
        return ctx.registry is None or self.carpark_id in ctx.registry.carparks


class FastAir(FastEvent, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    feed: ClassVar[str] = "air"

    station_id: SiteId
    averaging_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None
    pm25_ugm3: Annotated[float, msgspec.Meta(ge=0, le=2000)] | None = None
    pm10_ugm3: Annotated[float, msgspec.Meta(ge=0, le=3000)] | None = None
    o3_ugm3: Annotated[float, msgspec.Meta(ge=0, le=2000)] | None = None
    no2_ugm3: Annotated[float, msgspec.Meta(ge=0, le=4000)] | None = None
    so2_ugm3: Annotated[float, msgspec.Meta(ge=0, le=5000)] | None = None
    co_mgm3: Annotated[float, msgspec.Meta(ge=0, le=200)] | None = None
    temperature_c: Annotated[float, msgspec.Meta(ge=-30, le=50)] | None = None
    humidity_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None

    def unit(self) -> str:
        return self.station_id

    def _defaults(self) -> None:
        self.schema_version = 1
        if self.averaging_s is None:
            self.averaging_s = 3600

    def _valid(self, ctx: ValidationContext) -> bool:
        if (self.pm25_ugm3 is None and self.pm10_ugm3 is None and self.o3_ugm3 is None
                and self.no2_ugm3 is None and self.so2_ugm3 is None and self.co_mgm3 is None):
            return False
        return ctx.registry is None or self.station_id in ctx.registry.stations


class FastIncident(FastEvent, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    feed: ClassVar[str] = "incidents"

    incident_id: SiteId
    incident_type: IncidentType
    severity: Severity
    zone_id: SiteId
    status: IncidentStatus
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None

    def unit(self) -> str:
        return self.zone_id

    def _valid(self, ctx: ValidationContext) -> bool:
        return ctx.registry is None or self.zone_id in ctx.registry.zones


FAST_TYPES: dict[str, type[FastEvent]] = {
    t.feed: t for t in (FastFootfall, FastParking, FastAir, FastIncident)}
_DECODERS = {feed: msgspec.json.Decoder(t) for feed, t in FAST_TYPES.items()}
#: struct → its site-id fields (typed ``SiteId``), whose characters ``_ids_valid`` checks
SITE_FIELDS: dict[type[FastEvent], tuple[str, ...]] = {
    t: tuple(f.name for f in msgspec.structs.fields(t) if f.type == SiteId)
    for t in FAST_TYPES.values()}


def _ids_valid(ev: FastEvent) -> bool:
    """Whether the event id and every site id hold only their allowed characters (the
    models' patterns; the lengths msgspec checked)."""
    if EVENT_ID_PATTERN.fullmatch(ev.event_id) is None:
        return False
    for name in SITE_FIELDS[type(ev)]:
        site = getattr(ev, name)
        if site not in _GOOD_SITES:
            if SITE_ID_PATTERN.fullmatch(site) is None:
                return False
            if len(_GOOD_SITES) >= _GOOD_SITES_MAX:
                _GOOD_SITES.clear()
            _GOOD_SITES.add(site)
    return True


def _present(ev: FastEvent) -> int:
    """Keys the record wrote (nested ones too): None fields were absent (or null: the count
    then differs and the exact decoder decides)."""
    values = msgspec.structs.astuple(ev)
    n = len(values) - values.count(None)
    pos = ev.position
    if pos is not None:
        n += 2 if pos.crs is None else 3
    return n


def _keys_written(raw: bytes) -> int:
    """How many keys ``raw`` writes: ``len(_KEY_END.findall(raw))``, for any bytes.

    Without a quote followed by whitespace, every match of ``_KEY_END`` is ``":`` itself,
    counted by ``bytes.count``: the regex's scan of every position, and a string per match,
    cost a sixth of ``fast_decode``."""
    if _QUOTE_SPACE.search(raw) is None:
        return raw.count(b'":')
    return len(_KEY_END.findall(raw))


def fast_decode(feed: str, raw: bytes, ctx: ValidationContext, *,
                max_bytes: int) -> FastEvent | None:
    """The record as a fast struct when it is a plain, valid one; ``None``: use
    ``decode_event`` (it may be valid or not)."""
    decoder = _DECODERS.get(feed)
    # no check for integers beyond 64 bits (strict JSON's ``bad_number``): every number of the
    # contract has bounds far inside them, so msgspec refuses such a value by its bounds
    # ``find``, not ``in``: ``bytes.__contains__`` first tries its argument as an integer,
    # and makes and clears a TypeError with its message every time
    if decoder is None or len(raw) > max_bytes or raw.find(b"\\") >= 0:
        return None
    try:
        ev = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    text = ev.event_time
    if not isinstance(text, str) or _TIME.match(text) is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = when.utcoffset()
    if offset is None or abs(offset) >= _DAY or when.year < 2000:
        return None
    # in float seconds, as ``decode_clean``: a timedelta per record cost 0.8 µs
    now_s = ctx.now.timestamp() if ctx.now is not None else time.time()
    if when.timestamp() - now_s >= ctx.max_clock_skew_s - _SKEW_MARGIN_S:
        return None
    pos = ev.position
    if pos is not None and pos.crs == "GCJ02":
        return None
    if _keys_written(raw) != _present(ev) or not _ids_valid(ev) or not ev._valid(ctx):
        return None
    ev.event_time = when
    if pos is not None:
        pos.crs = "WGS84"
    ev._defaults()
    return ev


def clean_context(max_clock_skew_s: float) -> ValidationContext:
    """How a record of ``clean.<feed>`` is read again: the self-contained rules only (no
    registry: a site retired since was valid when validated) and the configured clock skew
    (the event is no further ahead now than when it was validated)."""
    return ValidationContext(max_clock_skew_s=max_clock_skew_s)


def decode_clean(feed: str, raw: bytes, ctx: ValidationContext) -> FastEvent | None:
    """A record of ``clean.<feed>`` as a fast struct; ``None``: read it with the model's
    ``model_validate_json`` and ``ctx`` (``clean_context``), which also says why a record
    is refused.

    Clean records were judged by the validation step, and their JSON is the one ``to_json``
    (or the model's ``model_dump_json``) wrote: so they are read trusting that form, without
    the checks ``fast_decode`` runs to leave unusual JSON to the exact decoder (the time's
    format, a key written twice or an explicit null): 2 µs instead of 6 per record, in the
    aggregation step and the sink. Types, bounds, unknown and missing fields (msgspec), the
    ids' characters (``_ids_valid``), an aware time within the clock skew, the cross-field
    rules and WGS-84 positions are still checked; a record that fails any is left to the
    model.
    ``tests/unit/core/test_fast_contract.py`` compares both on every record ``fast_decode``
    accepts."""
    decoder = _DECODERS.get(feed)
    if decoder is None or raw.find(b"\\") >= 0:
        return None
    try:
        ev = decoder.decode(raw)
        when = datetime.fromisoformat(ev.event_time)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError):
        return None
    offset = when.utcoffset()
    if offset is None or abs(offset) >= _DAY or when.year < 2000:
        return None
    # in float seconds (exact to a microsecond at today's timestamps): a datetime difference
    # and a timedelta per record took a fifth of this read
    now_s = ctx.now.timestamp() if ctx.now is not None else time.time()
    if when.timestamp() - now_s >= ctx.max_clock_skew_s:
        return None
    pos = ev.position
    if pos is not None:
        if pos.crs == "GCJ02":
            return None
        pos.crs = "WGS84"
    if not _ids_valid(ev) or not ev._valid(ctx):
        return None
    ev.event_time = when
    ev._defaults()
    return ev

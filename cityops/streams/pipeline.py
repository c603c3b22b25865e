"""Faust-free steps of the agent chains: judge a raw record, enrich it, guard against replays.

The Faust agents in ``cityops.streams.app`` are thin loops around these functions, so the
decisions (dead-letter or publish, duplicate or replay, apply or skip) are unit-testable
without a broker.

Replay safety, in short (see docs/streams.md):

* stage 1 (``raw.<feed>`` → ``clean.<feed>``) remembers, per raw partition, the highest
  offset it decided and which offsets were duplicates (``streams.partition_dedup``). A record
  at or below that offset again is a replay after a restart (offsets not yet committed): it
  is re-published, or dead-lettered again if it was a duplicate. A new record with a known
  ``event_id`` is a duplicate: dead-lettered with reason ``duplicate``.
* stage 2 (``clean.<feed>`` → aggregates) keeps, per aggregation key and inside the same
  record as the key's window state, the highest raw offset applied per raw partition.
  Clean records carry their raw origin in a header; one applied already is skipped. A step's
  state (whole, or its change: ``streams.state_chain``) and high-water marks are written in
  one changelog message, after the outputs they caused were acknowledged by the broker — so a
  replay never double-counts and never loses output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from cityops.core.contract import Rejection, decode_event
from cityops.core.fast_contract import FastEvent
from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
    ValidationContext,
)
from cityops.core.registry import Registry
from cityops.streams.records import DeadLetter

ORIGIN_HEADER = "cityops-origin"
ENRICH_HEADER = "cityops-enrich"


class Origin(NamedTuple):
    """Where a record was read: topic, partition, offset (one per record read: a named
    tuple is made in a third of a frozen dataclass's time)."""

    topic: str
    partition: int
    offset: int

    def header(self) -> bytes:
        return f"{self.partition}:{self.offset}".encode()

    @staticmethod
    def parse_header(value: bytes | str | None) -> tuple[int, int] | None:
        if not value:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        part, _, off = text.partition(":")
        try:
            return int(part), int(off)
        except ValueError:
            return None


def aggregation_key(event: Envelope | FastEvent) -> str:
    """The key of ``clean.<feed>``: what stage 2 aggregates by (zone, car park, station)."""
    if isinstance(event, FastEvent):  # the contract's fast path knows its own
        return event.unit()
    if isinstance(event, FootfallObserved | IncidentReported):
        return event.zone_id
    if isinstance(event, ParkingObserved):
        return event.carpark_id
    if isinstance(event, AirQualityObserved):
        return event.station_id
    return event.source


def enrichment(event: Envelope, registry: Registry) -> dict[str, Any]:
    """Registry facts stage 2 and the warehouse need: zone area, capacity, station type."""
    return enrichment_of(event.feed, aggregation_key(event), registry)


def enrichment_of(feed: str, unit: str, registry: Registry) -> dict[str, Any]:
    """``enrichment`` by the feed and its aggregation key (the validation step's fast path
    has no model to look at)."""
    if feed in ("footfall", "incidents"):
        zone = registry.zones.get(unit)
        if zone is None:
            return {}
        return {"zone_area_m2": zone.area_m2, "zone_kind": zone.kind,
                "density_warning_ppm2": zone.density_warning_ppm2,
                "density_critical_ppm2": zone.density_critical_ppm2}
    if feed == "parking":
        cp = registry.carparks.get(unit)
        if cp is None:
            return {}
        return {"registry_capacity": cp.capacity, "ring_road": cp.ring_road}
    if feed == "air":
        st = registry.stations.get(unit)
        if st is None:
            return {}
        return {"station_kind": st.kind, "station_zone_id": st.zone_id,
                "station_cadence_s": st.cadence_s}
    return {}


@dataclass
class Judged:
    """Stage-1 verdict on one raw record: an event to publish, or a dead letter."""

    event: Envelope | None = None
    dead: DeadLetter | None = None


def judge(feed: str, raw: bytes, key: bytes | None, origin: Origin, ctx: ValidationContext,
          *, max_bytes: int, received_at: datetime) -> Judged:
    """Validate one raw record against the feed contract; never raises on bad input."""
    result = decode_event(feed, raw, ctx, max_bytes=max_bytes)
    if isinstance(result, Rejection):
        return Judged(dead=dead_letter(feed, raw, key, origin, result.reason, result.detail,
                                       result.field, received_at))
    return Judged(event=result)


#: bytes of an oversized record its dead letter keeps (the whole record could not be produced
#: to the dead-letter topic, base64 making it a third larger still)
DEAD_LETTER_KEEP_BYTES = 65_536


def kept_bytes(raw: bytes, detail: str) -> tuple[bytes, str]:
    """``raw`` and ``detail``, or the head of a large record with its length and SHA-256."""
    if len(raw) <= DEAD_LETTER_KEEP_BYTES:
        return raw, detail
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:DEAD_LETTER_KEEP_BYTES], (f"{detail}; first {DEAD_LETTER_KEEP_BYTES} of "
                                          f"{len(raw)} bytes kept, sha256 {digest}")


def dead_letter(feed: str, raw: bytes, key: bytes | None, origin: Origin, reason: str,
                detail: str, field_name: str, received_at: datetime) -> DeadLetter:
    key_text = None
    if key is not None:
        key_text = key.decode("utf-8", errors="replace")[:256]
    if reason in ("oversized", "invalid"):  # too big to produce whole / internal errors
        raw, detail = kept_bytes(raw, detail)
    return DeadLetter.from_bytes(
        raw, feed=feed, reason=reason, detail=detail[:2000], field=field_name,
        source_topic=origin.topic, source_partition=origin.partition,
        source_offset=origin.offset, key_text=key_text, received_at=received_at,
        stage="stream")


@dataclass
class ReplayGuard:
    """Highest raw offset applied per raw partition, for one aggregation key.

    ``is_new(origin)`` says whether a clean record, identified by its raw ``(partition,
    offset)`` origin, is new; ``mark(origin)`` records it as applied. Validation publishes
    one raw partition's records in offset order, so within a key anything at or below the
    high-water mark was applied before.
    """

    hw: dict[str, int] = field(default_factory=dict)

    def is_new(self, origin: tuple[int, int] | None) -> bool:
        if origin is None:  # no header: cannot tell; treat as new
            return True
        part, off = origin
        return off > self.hw.get(str(part), -1)

    def mark(self, origin: tuple[int, int] | None) -> None:
        if origin is None:
            return
        part, off = origin
        if off > self.hw.get(str(part), -1):
            self.hw[str(part)] = off

    def to_state(self) -> dict[str, int]:
        return dict(self.hw)

    @classmethod
    def from_state(cls, state: dict[str, int] | None) -> ReplayGuard:
        return cls(hw={str(k): int(v) for k, v in (state or {}).items()})


def enrich_header(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def parse_enrich(value: bytes | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def header_value(headers: Any, name: str) -> bytes | None:
    """A header from Faust's message headers (a list of pairs or a mapping)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v if isinstance(v, bytes) or v is None else str(v).encode()
    return None

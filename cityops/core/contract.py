"""Decode raw message bytes into a feed model, or a ``Rejection`` with a stable reason code.

Every consumer of raw input (the validate command, replay, HTTP intake, the Faust agents)
goes through ``decode_event`` so a record is judged the same way everywhere, and a rejected
one carries the same reason code into the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cityops.core.feeds import FEED_MODELS, Envelope, ValidationContext
from cityops.core.strictjson import StrictJSONError, loads_strict

#: Reason codes, each with a one-line meaning (documented in docs/feeds.md).
REASONS: dict[str, str] = {
    "oversized": "message larger than CITYOPS_MAX_MESSAGE_BYTES",
    "bad_encoding": "bytes are not UTF-8",
    "bad_json": "not parseable JSON",
    "duplicate_key": "an object names the same key twice (parsers disagree which one wins)",
    "non_finite_number": "NaN or Infinity, or a number that overflows a double",
    "bad_number": "an integer outside the 64-bit range (parsers disagree on its value)",
    "not_an_object": "JSON value is not an object",
    "unknown_feed": "no such feed",
    "missing_field": "a required field is absent",
    "unexpected_field": "a field the contract does not define",
    "wrong_type": "a field has the wrong JSON type",
    "negative_count": "a count is below zero",
    "out_of_range": "a value is outside its allowed range",
    "bad_format": "a string does not match its pattern",
    "unknown_enum": "a value not in the allowed set",
    "unsupported_schema_version": "schema_version is not one this build reads",
    "naive_timestamp": "event_time has no UTC offset",
    "bad_timestamp": "event_time is not ISO-8601",
    "future_event": "event_time further in the future than the allowed clock skew",
    "over_capacity": "occupied exceeds capacity beyond the tolerance",
    "inconsistent_counts": "occupied + free differs from capacity",
    "no_measurement": "an air-quality event without any pollutant",
    "unknown_zone": "zone id not in the site registry",
    "unknown_counter": "counter id not in the site registry",
    "unknown_carpark": "car-park id not in the site registry",
    "unknown_station": "station id not in the site registry",
    "zone_mismatch": "counter reports for a zone it does not belong to",
    "duplicate": "event_id already seen within the dedup horizon",
    "late": "event time older than the window's allowed lateness",
    "invalid": "any other contract violation",
}

_TYPE_ERRORS = {
    "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "string_type",
    "bool_type", "bool_parsing", "model_type", "model_attributes_type", "dict_type",
    "list_type", "datetime_type", "is_instance_of",
}
_COUNT_FIELDS = {"entries", "exits", "occupied", "free"}


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: a reason code from ``REASONS``, the field and a detail."""

    reason: str
    detail: str
    field: str = ""

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.reason}{where}: {self.detail}"


def _reason_for(err: Mapping[str, Any]) -> str:
    etype: str = err["type"]
    loc = err.get("loc") or ()
    fname = str(loc[-1]) if loc else ""
    if etype in REASONS:
        return etype
    if etype == "missing":
        return "missing_field"
    if etype == "extra_forbidden":
        return "unexpected_field"
    if etype in _TYPE_ERRORS:
        return "wrong_type"
    if etype == "literal_error" and fname == "schema_version":
        return "unsupported_schema_version"
    if etype in ("literal_error", "enum"):
        return "unknown_enum"
    if etype in ("greater_than_equal", "greater_than") and fname in _COUNT_FIELDS:
        return "negative_count"
    if etype in ("greater_than_equal", "greater_than", "less_than_equal", "less_than",
                 "finite_number", "string_too_long", "string_too_short"):
        return "out_of_range"
    if etype == "string_pattern_mismatch":
        return "bad_format"
    if etype in ("timezone_aware",):
        return "naive_timestamp"
    if etype.startswith("datetime"):
        return "bad_timestamp"
    return "invalid"


def rejection_from(exc: ValidationError) -> Rejection:
    """The first error of a pydantic ``ValidationError`` as a ``Rejection``."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc") or ())
    return Rejection(_reason_for(err), err.get("msg", "invalid"), loc)


def decode_event(
    feed: str, raw: bytes | str, ctx: ValidationContext | None = None, *,
    max_bytes: int = 1_000_000,
) -> Envelope | Rejection:
    """Parse and validate one wire record of ``feed``; never raises on bad input."""
    model = FEED_MODELS.get(feed)
    if model is None:
        return Rejection("unknown_feed", f"{feed!r} (allowed: {', '.join(FEED_MODELS)})")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogateescape")
    if len(raw) > max_bytes:
        return Rejection("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("bad_encoding", f"not UTF-8 at byte {exc.start}")
    try:
        data = loads_strict(raw)
    except StrictJSONError as exc:
        return Rejection(exc.reason, exc.detail)
    if not isinstance(data, dict):
        return Rejection("not_an_object", f"got JSON {type(data).__name__}")
    try:
        return model.model_validate(data, context=(ctx or ValidationContext()).as_dict())
    except ValidationError as exc:
        return rejection_from(exc)

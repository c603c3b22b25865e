"""Observation times of NGSI-LD entities.

The forms read, each covered by a test:

- an instant with an offset or ``Z`` (``2016-03-15T11:00:00Z``, ``…+08:00``), with or without
  fractional seconds;
- an instant without an offset: **UTC**, because the Smart Data Models define ``dateObserved``
  and its kin as "ISO8601 UTC" (the host's zone is never assumed);
- an ISO 8601 interval ``start/end``: the observation ends at ``end`` and covers
  ``end − start`` seconds;
- any of these wrapped as ``{"@type": "DateTime", "@value": …}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cityops.ingest.exceptions import MappingError


@dataclass(frozen=True)
class Observed:
    """When an observation ended and, for an interval, how long it covered."""

    end: datetime
    span_s: int | None = None

    def iso(self) -> str:
        return self.end.isoformat()


def _instant(text: str, attribute: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("bad_timestamp", f"{attribute}: {text!r} is not an ISO-8601 time",
                           attribute) from None
    if moment.tzinfo is None:  # the data models define these times as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_time(value: Any, attribute: str) -> Observed:
    """An ``Observed`` from an instant or an interval (``MappingError`` names the attribute)."""
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    if not isinstance(value, str) or not value.strip():
        raise MappingError("bad_timestamp", f"{attribute}: {value!r} is not ISO-8601 text",
                           attribute)
    if "/" in value:
        start_text, _, end_text = value.partition("/")
        start, end = _instant(start_text, attribute), _instant(end_text, attribute)
        span = (end - start).total_seconds()
        if span <= 0:
            raise MappingError("bad_interval", f"{attribute}: interval {value!r} does not end "
                               "after it starts", attribute)
        return Observed(end, int(span))
    return Observed(_instant(value, attribute))

"""Feed events and derived records as warehouse rows: ``(table, {column: value})``.

The streams sink (``warehouse/sink*.py``) turns every message into a row with these two
functions and hands batches to ``Warehouse.insert``. Raw tables hold the feed models of
``cityops/core/feeds.py`` flattened (``position`` → ``lat`` / ``lon``) plus ``ingested_at``;
derived tables hold the records of ``cityops/streams/records.py`` plus their ``record_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
)
from cityops.streams.records import DERIVED_RECORDS, _Record
from cityops.warehouse.exceptions import SchemaError

#: feed model → raw table
EVENT_TABLES: dict[type[Envelope], str] = {
    FootfallObserved: "footfall_observed",
    ParkingObserved: "parking_observed",
    AirQualityObserved: "air_quality_observed",
    IncidentReported: "incidents_reported",
}
#: feed name → raw table
FEED_TABLES: dict[str, str] = {model.feed: table for model, table in EVENT_TABLES.items()}
#: derived record class → table (the record's ``table`` ClassVar)
RECORD_TABLES: dict[type[_Record], str] = {cls: cls.table for cls in DERIVED_RECORDS}


#: values a row keeps as they are (most of them: checked first, before the isinstance chain)
_SCALARS = (str, int, float, bool, type(None), datetime)


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def event_row(event: Envelope, *, ingested_at: datetime | None = None) -> tuple[str, dict]:
    """The raw-table row of a validated feed event."""
    table = EVENT_TABLES.get(type(event))
    if table is None:
        raise SchemaError(f"no raw table for {type(event).__name__}", code="unknown_event")
    row = {k: _plain(v) for k, v in event.model_dump(mode="python", exclude={"position"}).items()}
    pos = event.position
    row["lat"] = pos.lat if pos is not None else None
    row["lon"] = pos.lon if pos is not None else None
    row["ingested_at"] = ingested_at or datetime.now(UTC)
    return table, row


def record_row(record: _Record) -> tuple[str, dict]:
    """The derived-table row of a stream record, with its stable ``record_id``."""
    table = RECORD_TABLES.get(type(record))
    if table is None:
        raise SchemaError(f"no table for record {type(record).__name__}", code="unknown_record")
    row = {k: _plain(v) for k, v in record.model_dump(mode="python").items()}
    row["record_id"] = record.record_id()
    return table, row

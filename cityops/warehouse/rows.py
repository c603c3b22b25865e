"""Feed events and derived records as warehouse rows: ``(table, {column: value})``.

The streams sink (``warehouse/sink*.py``) turns every message into a row with these two
functions and hands batches to ``Warehouse.insert``. Raw tables hold the feed models of
``cityops/core/feeds.py`` flattened (``position`` → ``lat`` / ``lon``) plus ``ingested_at``;
derived tables hold the records of ``cityops/streams/records.py`` plus their ``record_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any, get_args

import msgspec.structs
from pydantic import BaseModel

from cityops.core.fast_contract import FastEvent
from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
)
from cityops.streams.records import DERIVED_RECORDS, _Record
from cityops.warehouse.exceptions import SchemaError
from cityops.warehouse.fast_records import decode_record

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


def _enum_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a flat model whose values are enum members (optional or not): a row
    holds their values."""
    out = []
    for name, info in model.model_fields.items():
        args = get_args(info.annotation) or (info.annotation,)
        if any(isinstance(a, type) and issubclass(a, Enum) for a in args):
            out.append(name)
    return tuple(out)


#: model → its enum fields, for the rows of ``event_row`` and ``record_row``
_ENUMS: dict[type[BaseModel], tuple[str, ...]] = {
    model: _enum_fields(model) for model in [*EVENT_TABLES, *RECORD_TABLES]}


def _row_of(model: BaseModel) -> dict[str, Any]:
    """The row ``model_dump`` gave, with enum members as their values, in a fraction of the
    CPU: a copy of the model's own values. The models stored here are flat (no extras, no
    computed fields; scalars, enums, lists and dicts of scalars, and a feed's ``position``,
    which ``event_row`` flattens); a list or dict is the model's own, not a copy.
    ``tests/unit/warehouse/test_rows_without_dump.py`` checks both on every model."""
    return _with_enum_values(model.__dict__.copy(), _ENUMS[type(model)])


def _with_enum_values(row: dict[str, Any], enums: tuple[str, ...]) -> dict[str, Any]:
    """``row`` with the enum members of fields ``enums`` replaced by their values."""
    for name in enums:
        value = row[name]
        if value is not None:
            row[name] = value.value
    return row


def _raw_row(row: dict[str, Any], ingested_at: datetime | None) -> dict[str, Any]:
    """An event's fields as its raw table holds them: ``position`` as ``lat`` / ``lon``, and
    ``ingested_at``."""
    pos = row.pop("position")
    row["lat"] = pos.lat if pos is not None else None
    row["lon"] = pos.lon if pos is not None else None
    row["ingested_at"] = ingested_at or datetime.now(UTC)
    return row


def event_row(event: Envelope, *, ingested_at: datetime | None = None) -> tuple[str, dict]:
    """The raw-table row of a validated feed event."""
    table = EVENT_TABLES.get(type(event))
    if table is None:
        raise SchemaError(f"no raw table for {type(event).__name__}", code="unknown_event")
    return table, _raw_row(_row_of(event), ingested_at)


#: feed → (raw table, the enum fields of its model)
_FAST_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    model.feed: (table, _ENUMS[model]) for model, table in EVENT_TABLES.items()}


def fast_event_row(event: FastEvent, *, ingested_at: datetime | None = None
                   ) -> tuple[str, dict]:
    """The raw-table row of a clean record read as a fast struct (``decode_clean``): the row
    ``event_row`` gives for the model of the same record, without building the model (the
    sink's convert took 6 µs a clean record through the model, 3 this way).
    ``tests/unit/warehouse/test_rows_without_dump.py`` compares both."""
    table, enums = _FAST_TABLES[event.feed]
    return table, _raw_row(_with_enum_values(msgspec.structs.asdict(event), enums), ingested_at)


def fast_record_row(cls: type[_Record], raw: bytes) -> tuple[str, dict] | None:
    """The derived-table row of a record of ``cls`` read from its JSON as a msgspec struct
    (``fast_records.decode_record``): the row ``record_row`` gives for the model, a microsecond
    or two sooner (4.5 µs a car-park state against 5.5); None: read the record with the model.
    ``tests/unit/warehouse/test_rows_without_dump.py`` compares both."""
    table = RECORD_TABLES.get(cls)
    if table is None:
        return None
    record = decode_record(cls, raw)
    if record is None:
        return None
    row = _with_enum_values(msgspec.structs.asdict(record), _ENUMS[cls])
    row["record_id"] = record.record_id()
    return table, row


def record_row(record: _Record) -> tuple[str, dict]:
    """The derived-table row of a stream record, with its stable ``record_id``."""
    table = RECORD_TABLES.get(type(record))
    if table is None:
        raise SchemaError(f"no table for record {type(record).__name__}", code="unknown_record")
    row = _row_of(record)
    row["record_id"] = record.record_id()
    return table, row

"""Warehouse rows are the models' own values: the rows ``model_dump`` gave, for less CPU.

``rows.event_row`` and ``rows.record_row`` copy a model's values instead of calling
``model_dump`` (about 2 µs of the sink's CPU per row). That holds only for flat models, so
every stored model is checked for flatness, and the rows of the simulator's events and of
every derived record the aggregators, the alert engine and the pipeline make from them,
read back from their JSON as the sink reads them, are compared with ``model_dump``'s.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import pytest
from pydantic import AwareDatetime, BaseModel

from cityops.core.fast_contract import clean_context, decode_clean
from cityops.core.feeds import FEED_MODELS, Position
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan
from cityops.streams.feed_aggregators import aggregator_for
from cityops.streams.pipeline import Origin, aggregation_key, dead_letter
from cityops.streams.records import (
    AlertEvent,
    AlertEventKind,
    AlertState,
    FootfallWindow,
    LateEvent,
    ParkingState,
    _Record,
    built,
)
from cityops.warehouse.fast_records import decoder_for
from cityops.warehouse.rows import (
    EVENT_TABLES,
    RECORD_TABLES,
    event_row,
    fast_event_row,
    fast_record_row,
    record_row,
)

START = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
EMITTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SCALARS = (str, int, float, bool, type(None), datetime, AwareDatetime)


def _plain(value: Any) -> Any:
    """What the rows held before: ``model_dump``'s values with enums as their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _dumped(model: BaseModel, **drop: bool) -> dict[str, Any]:
    return {k: _plain(v) for k, v in model.model_dump(mode="python").items() if k not in drop}


def _flat(annotation: Any) -> bool:
    """A scalar, an enum, a literal, an optional one, or a list or dict of scalars."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is typing.Annotated:  # the type, then its constraints
        return _flat(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_flat(a) for a in typing.get_args(annotation))
    if origin in (list, dict):
        return all(a in SCALARS for a in typing.get_args(annotation))
    return annotation in SCALARS or (isinstance(annotation, type) and issubclass(annotation,
                                                                                Enum))


@pytest.mark.parametrize("model", [*EVENT_TABLES, *RECORD_TABLES], ids=lambda m: m.__name__)
def test_every_stored_model_is_flat(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert not model.model_computed_fields
    nested = {name: info.annotation for name, info in model.model_fields.items()
              if not _flat(info.annotation)}
    assert nested == ({"position": Position | None} if model in EVENT_TABLES else {})


def _stream_records(registry: Registry, settings: Settings) -> list[BaseModel]:
    """A few simulated hours of the four feeds (with faults) and what the stream makes of
    them: windows, car-park states, AQI, incident stats, alert events, dead letters, late
    events."""
    faults = FaultPlan(duplicates=0.02, late=0.03, out_of_order=0.05)
    events = [FEED_MODELS[rec.feed].model_validate_json(rec.value)
              for rec in wire_records(registry, seed=11, start=START,
                                      end=START + timedelta(hours=4), faults=faults)]
    out: list[BaseModel] = list(events)
    for feed in FEEDS:
        aggregator = aggregator_for(feed, settings, registry)
        for ev in (e for e in events if e.feed == feed):
            unit = aggregator.unit(aggregation_key(ev), 0)
            out.extend(built(aggregator.add(unit, ev, EMITTED).records))
    for n, kind in enumerate(AlertEventKind):
        out.append(AlertEvent(alert_id=f"a{n}", rule_id="crowd_density", rule_version="3",
                              subject="jfb_square", kind=kind, state=list(AlertState)[n % 4],
                              severity="major", value=4.2 if n % 2 else None, threshold=4.0,
                              actor="duty officer Li" if kind == "acknowledged" else None,
                              event_time=START, emitted_at=EMITTED, seq=n))
    out.append(dead_letter("footfall", b'{"x": 1', b"fc_1", Origin("raw.footfall", 2, 7),
                           "bad_json", "unterminated", "", EMITTED))
    out.append(LateEvent(feed="footfall", event_id="e1", source="fc_1", event_time=START,
                         watermark=START + timedelta(minutes=9), lateness_s=540.0,
                         payload_json="{}", received_at=EMITTED))
    return out


def test_rows_are_the_rows_model_dump_gave(registry: Registry, settings: Settings) -> None:
    seen: set[type[BaseModel]] = set()
    for original in _stream_records(registry, settings):
        cls = type(original)
        assert original.to_json() == original.model_dump_json(
            exclude_none=cls in EVENT_TABLES).encode()
        model = cls.model_validate_json(original.to_json())  # as the sink reads it
        seen.add(cls)
        if cls in EVENT_TABLES:
            table, row = event_row(model, ingested_at=EMITTED)
            pos = model.position
            want = {**_dumped(model, position=True), "lat": pos and pos.lat,
                    "lon": pos and pos.lon, "ingested_at": EMITTED}
        else:
            assert isinstance(model, _Record)
            table, row = record_row(model)
            want = {**_dumped(model), "record_id": model.record_id()}
        assert (table, row) == ((EVENT_TABLES | RECORD_TABLES)[cls], want), model
        assert list(row) == list(want), "columns in the model's order"
        assert not any(isinstance(v, Enum) for v in row.values()), row
    assert seen == set(EVENT_TABLES) | set(RECORD_TABLES)


def test_clean_records_read_as_fast_structs_give_the_models_rows(
        registry: Registry, settings: Settings) -> None:
    """The sink reads a clean record as a fast struct (``decode_clean``) and makes the row
    from it: the same row as from the model, column for column, and every simulated record
    but GCJ-02 positions (converted by the model) and escaped text takes that way."""
    ctx = clean_context(settings.max_clock_skew_s)
    fast = total = 0
    for original in _stream_records(registry, settings):
        if type(original) not in EVENT_TABLES:
            continue
        total += 1
        clean = original.to_json()
        struct = decode_clean(original.feed, clean, ctx)
        if struct is None:
            continue
        fast += 1
        model = type(original).model_validate_json(clean, context=ctx.as_dict())
        want = event_row(model, ingested_at=EMITTED)
        got = fast_event_row(struct, ingested_at=EMITTED)
        assert got == want, clean
        assert list(got[1]) == list(want[1]), "columns in the model's order"
        assert got[1]["event_time"].utcoffset() == want[1]["event_time"].utcoffset()
        assert not any(isinstance(v, Enum) for v in got[1].values()), got
    assert total > 1000
    assert fast == total, f"only {fast} of {total} clean records read as fast structs"


def _same_rows(got: tuple[str, dict[str, Any]], want: tuple[str, dict[str, Any]]) -> None:
    """Equal rows, columns in the same order, every time in the same zone offset."""
    assert got == want
    assert list(got[1]) == list(want[1]), "columns in the model's order"
    for name, value in want[1].items():
        if isinstance(value, datetime):
            assert got[1][name].utcoffset() == value.utcoffset(), name
    assert not any(isinstance(v, Enum) for v in got[1].values()), got


@pytest.mark.parametrize("model", list(RECORD_TABLES), ids=lambda m: m.__name__)
def test_every_derived_record_has_a_fast_reader(model: type[_Record]) -> None:
    assert decoder_for(model) is not None, f"{model.__name__}'s fields are not mirrored"


def test_derived_records_read_as_structs_give_the_models_rows(
        registry: Registry, settings: Settings) -> None:
    """The sink reads a derived record as a msgspec struct made from its model
    (``rows.fast_record_row``): the row ``record_row`` gives for the model, and every record
    the stream made takes that way but those whose JSON holds a backslash."""
    fast: dict[type, int] = {}
    for original in _stream_records(registry, settings):
        cls = type(original)
        if cls not in RECORD_TABLES:
            continue
        raw = original.to_json()
        got = fast_record_row(cls, raw)
        if got is None:
            assert b"\\" in raw, raw
            continue
        fast[cls] = fast.get(cls, 0) + 1
        _same_rows(got, record_row(cls.model_validate_json(raw)))
    assert set(fast) == set(RECORD_TABLES)
    assert fast[FootfallWindow] > 1000 and fast[ParkingState] > 100, fast


#: values put in place of a field's: wrong types, lax forms pydantic takes and msgspec does
#: not, bounds, times in forms both or only one read, and a time with seven decimals
_ODD_VALUES: list[Any] = [
    None, "", "x", -1, 0, 1, 1.0, 1.5, -0.0, "5", "1.5", True, [], {}, ["a"], {"a": 1},
    {"a": 1.0}, 10 ** 20, 1e308, "2026-11-20T16:00:00Z", "2026-11-20T16:00:00.1234567Z",
    "2026-11-20T16:00:00.123456789+08:00", "2026-11-20T16:00Z", "2026-11-20T16:00:00",
    "2026-11-20 16:00:00+08:00", "2026-11-20t16:00:00z", "2026-11-20T16:00:00,5Z",
    "2026-11-20T16:00:00+0800", "2026-11-20T16:00:00+08", "2026-11-20", 1763654400,
    "tumbling_1m", "hopping_5m", "1h", "fired", "active_unack", "major", "stream", "\u00e9",
]
#: raw JSON text put in place of a field's value (tokens json.dumps does not write)
_ODD_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1E2", b"-0", b"0.0e0",
               b'"\\u0041"', b'"\\ud800"']


def _mutations(raw: bytes) -> list[bytes]:
    """The record's JSON with each field replaced, dropped, repeated or joined by another."""
    fields = json.loads(raw)
    out: list[bytes] = [raw + b" ", b" " + raw, raw[:-1] + b',"extra":1}']
    for name in fields:
        out.append(json.dumps({k: v for k, v in fields.items() if k != name}).encode())
        out.append(raw[:-1] + b',"' + name.encode() + b'":' + json.dumps(
            fields[name]).encode() + b"}")  # the field twice: the last one counts
        for value in _ODD_VALUES:
            out.append(json.dumps({**fields, name: value}).encode())
        for token in _ODD_TOKENS:
            out.append(json.dumps({**fields, name: "@@"}).encode().replace(b'"@@"', token))
    return out


def test_the_fast_reader_accepts_only_what_the_model_accepts_with_its_values(
        registry: Registry, settings: Settings) -> None:
    """Every mutation of a record of each kind: the fast reader gives no row, or the row
    the model gives (never one the model refuses, never other values)."""
    samples: dict[type, list[BaseModel]] = {}
    for original in _stream_records(registry, settings):
        if type(original) in RECORD_TABLES and len(samples.setdefault(type(original), [])) < 3:
            samples[type(original)].append(original)
    fast = refused = 0
    for cls, originals in samples.items():
        for original in originals:
            for raw in _mutations(original.to_json()):
                got = fast_record_row(cls, raw)
                try:
                    want = record_row(cls.model_validate_json(raw))
                except ValueError:
                    assert got is None, raw
                    refused += 1
                    continue
                if got is not None:
                    fast += 1
                    _same_rows(got, want)
    assert fast > 500 and refused > 500, (fast, refused)

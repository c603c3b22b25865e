"""Warehouse rows are the models' own values: the rows ``model_dump`` gave, for less CPU.

``rows.event_row`` and ``rows.record_row`` copy a model's values instead of calling
``model_dump`` (about 2 µs of the sink's CPU per row). That holds only for flat models, so
every stored model is checked for flatness, and the rows of the simulator's events and of
every derived record the aggregators, the alert engine and the pipeline make from them,
read back from their JSON as the sink reads them, are compared with ``model_dump``'s.
"""

from __future__ import annotations

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
    LateEvent,
    _Record,
    built,
)
from cityops.warehouse.rows import (
    EVENT_TABLES,
    RECORD_TABLES,
    event_row,
    fast_event_row,
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

"""The aggregation step takes back the clean events its own validation step wrote.

The premise: a struct the validation step accepted is exactly what ``decode_clean`` gives for
the record it published, so taking it instead of decoding changes nothing downstream.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cityops.core.fast_contract import FastEvent, clean_context, decode_clean, fast_decode
from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan
from cityops.streams.aggregation import AggregationStage
from cityops.streams.app import Outbox, declare_topics, make_app
from cityops.streams.partition_dedup import PartitionDedup
from cityops.streams.pipeline import ORIGIN_HEADER, Origin
from cityops.streams.records import built
from cityops.streams.validation import ValidationStage
from cityops.streams.written import WrittenEvents

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _accepted(registry: Registry, hours: float = 3) -> list[tuple[str, FastEvent]]:
    """The simulator's records of all four feeds that the validation step's fast path
    accepts, as it accepts them (the registry's context)."""
    ctx = ValidationContext(registry=registry, now=NOW)
    start = NOW - timedelta(hours=hours + 1)
    out = []
    for rec in wire_records(registry, seed=5, start=start, end=start + timedelta(hours=hours),
                            faults=FaultPlan(duplicates=0.02, late=0.03, out_of_order=0.05)):
        ev = fast_decode(rec.feed, rec.value, ctx, max_bytes=1_000_000)
        if ev is not None:
            out.append((rec.feed, ev))
    return out


def test_an_accepted_event_is_exactly_what_its_clean_record_decodes_to(
        registry: Registry) -> None:
    accepted = _accepted(registry)
    assert {feed for feed, _ in accepted} == {"footfall", "parking", "air", "incidents"}
    clean = clean_context(300.0)
    for feed, ev in accepted:
        again = decode_clean(feed, ev.to_json(), clean)
        assert type(again) is type(ev)
        assert again == ev, ev.to_json()
        assert again.event_time.utcoffset() == ev.event_time.utcoffset()
        assert again.to_json() == ev.to_json()


def test_a_full_map_keeps_what_it_holds_and_refuses_newer_events(
        registry: Registry) -> None:
    events = [ev for _, ev in _accepted(registry, hours=0.2)][:4]
    written = WrittenEvents(3)
    written.keys.update(ev.unit() for ev in events)
    assert [written.put(ev.to_json(), ev, ev.unit()) for ev in events] == [
        True, True, True, False]
    assert written.take(events[3].to_json()) is None  # refused: the reader decodes it
    assert written.take(events[0].to_json()) is events[0]  # the oldest, read next, kept
    assert written.take(events[0].to_json()) is None  # taken once
    assert written.put(events[3].to_json(), events[3], events[3].unit())  # room again
    assert written.take(None) is None  # type: ignore[arg-type]  # a tombstone is decoded


def test_only_events_of_keys_read_here_are_kept_until_a_rebalance(
        registry: Registry) -> None:
    ev = _accepted(registry, hours=0.2)[0][1]
    written = WrittenEvents(10)
    assert not written.put(ev.to_json(), ev, ev.unit())  # its partition may be elsewhere
    written.keys.add(ev.unit())
    assert written.put(ev.to_json(), ev, ev.unit())
    written.clear()
    assert written.take(ev.to_json()) is None and not written.keys
    off = WrittenEvents(0)
    off.keys.add(ev.unit())
    assert not off.put(ev.to_json(), ev, ev.unit())


def test_the_validation_step_keeps_each_event_it_publishes(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    s = settings.model_copy(update={"data_dir": tmp_path})
    app = make_app(s)
    written = WrittenEvents(100)
    written.keys.add("jfb_square")  # this worker's aggregation step reads that zone
    stage = ValidationStage("footfall", s, registry, app, declare_topics(app, s),
                            written=written)
    stage.dedups[0] = PartitionDedup(s.stream_dedup_horizon_s, s.stream_dedup_bucket_s)
    now = datetime.now(UTC).replace(microsecond=0)
    raw = (b'{"event_id":"fc_jfb_square_01:1","source":"fc_jfb_square_01","event_time":"'
           + now.isoformat().encode() + b'","zone_id":"jfb_square","entries":4,"exits":1,'
           b'"interval_s":30}')
    out = Outbox()
    stage.handle(raw, b"fc_jfb_square_01", Origin("raw", 0, 7), stage.ctx(), out, now)
    (_topic, _key, value, _headers), = out.items
    ev = written.take(value)
    assert isinstance(ev, FastEvent) and ev.event_id == "fc_jfb_square_01:1"


def _stage(settings: Settings, registry: Registry, tmp_path: Path,
           written: WrittenEvents | None) -> tuple[AggregationStage, list[Any]]:
    s = settings.model_copy(update={"data_dir": tmp_path})
    app = make_app(s)
    stage = AggregationStage("footfall", s, registry, app, declare_topics(app, s),
                             written=written)
    applied: list[Any] = []

    async def publish(out: Any) -> None:
        applied.append(out)

    stage.publish = publish  # type: ignore[method-assign]
    stage.snaps = {p: {} for p in range(6)}  # nothing to restore: no state log read
    return stage, applied


def _dumps(records: list[Any]) -> list[dict[str, Any]]:
    """Records without the wall-clock times of the step that emitted them."""
    return [r.model_dump(exclude={"emitted_at", "received_at"}) for r in records]


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_aggregation_step_gives_the_same_outputs_with_taken_and_decoded_events(
        settings: Settings, registry: Registry, tmp_path: Path, share: float) -> None:
    footfall = [ev for feed, ev in _accepted(registry) if feed == "footfall"]
    assert len(footfall) > 500
    written = WrittenEvents(len(footfall))
    taking, taken_out = _stage(settings, registry, tmp_path / "a", written)
    decoding, decoded_out = _stage(settings, registry, tmp_path / "b", None)
    batches: list[list[Any]] = [[]]
    for i, ev in enumerate(footfall):
        msg = SimpleNamespace(topic=taking.clean_topic, partition=i % 6, offset=i // 6,
                              key=ev.unit().encode(),
                              headers=[(ORIGIN_HEADER, f"{i % 6}:{i // 6}".encode())])
        batches[-1].append(SimpleNamespace(message=msg, value=ev.to_json(), ev=ev, i=i))
        if len(batches[-1]) == 50:
            batches.append([])
    kept = 0
    for batch in batches:
        # written by this worker's validation step just before: a duplicate in the batch is
        # the same bytes, kept (and taken) once
        kept += len({record.value for record in batch if record.i % 100 < share * 100
                     and written.put(record.value, record.ev, record.ev.unit())})
        asyncio.run(taking.step(batch))
        asyncio.run(decoding.step(batch))
    assert taking.counts["reused"] == kept and len(written) == 0  # each kept event taken
    assert kept >= share * len(footfall) * 0.9
    assert decoding.counts["reused"] == 0
    for a, b in zip(taken_out, decoded_out, strict=True):
        assert _dumps(built(a.records)) == _dumps(built(b.records))
        assert _dumps(a.late) == _dumps(b.late)
        assert a.observations == b.observations and a.dirty == b.dirty and a.dead == b.dead
    assert sum(len(out.records) for out in taken_out) > 0
    assert taking.partitions == decoding.partitions and taking.partitions
    for unit in taking.partitions:
        assert taking.aggregator.to_state(unit) == decoding.aggregator.to_state(unit)

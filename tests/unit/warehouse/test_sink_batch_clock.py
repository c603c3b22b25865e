"""The sink's batch clock: a live batch is due ``batch_s`` after its first record was written
(not before the last flush began), a backlog batch gathers for the whole ``batch_s``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from cityops.core.settings import Settings, load_settings
from cityops.warehouse.sink import Batch, WarehouseSink


@dataclass
class Rec:
    timestamp: int | None  # broker timestamp, ms


@pytest.fixture
def sink() -> WarehouseSink:
    return WarehouseSink(load_settings(sink_batch_s=1.0), warehouse=None)  # type: ignore[arg-type]


def written(ago_s: float) -> Rec:
    return Rec(int((time.time() - ago_s) * 1000))


def test_a_record_written_during_the_last_flush_starts_the_batch_when_it_was_written(
        sink: WarehouseSink) -> None:
    sink._flush_started = time.monotonic() - 0.5  # a flush began 0.5 s ago (and is over)
    since = sink._waiting_since(written(0.3))
    assert time.monotonic() - since == pytest.approx(0.3, abs=0.05)


def test_the_clock_never_starts_before_the_last_flush_began(sink: WarehouseSink) -> None:
    sink._flush_started = time.monotonic() - 0.2
    since = sink._waiting_since(written(0.6))  # it waited for the flush, not longer
    assert since == sink._flush_started


def test_a_backlog_record_gathers_a_whole_batch(sink: WarehouseSink) -> None:
    before = time.monotonic()
    assert sink._waiting_since(written(3600)) >= before
    assert sink._waiting_since(Rec(None)) >= before  # no timestamp: now
    assert sink._waiting_since(Rec(-1)) >= before


def test_the_first_record_sets_a_batch_s_clock_and_later_ones_do_not() -> None:
    batch = Batch()
    batch.add_offset("t", 0, 10, since=100.0)
    batch.add_offset("t", 0, 11, since=200.0)
    assert batch.started == 100.0
    assert batch.ranges == {("t", 0): [10, 11]}


def test_a_live_row_waits_at_most_half_a_second_for_its_batch_by_default() -> None:
    """The default batch age: at 1,000 events/s, 1.0 s gave a median of about 0.7 s produced →
    visible and 0.5 s gave 0.36–0.39 s (``BENCHMARKS.md``, run N); a live record's batch is
    due half a second after it was written."""
    default = Settings.model_fields["sink_batch_s"].default  # whatever the environment says
    sink = WarehouseSink(load_settings(sink_batch_s=default),
                         warehouse=None)  # type: ignore[arg-type]
    sink._flush_started = time.monotonic() - 5.0  # no flush in the way
    since = sink._waiting_since(written(0.1))
    assert since + sink.batch_s - time.monotonic() == pytest.approx(0.4, abs=0.05)


def _backlog_sink(backlog_batch_s: float = 2.0) -> WarehouseSink:
    return WarehouseSink(load_settings(sink_batch_s=0.5, sink_batch_rows=5000,
                                       sink_backlog_batch_s=backlog_batch_s,
                                       sink_backlog_batch_rows=20_000),
                         warehouse=None)  # type: ignore[arg-type]


def test_a_record_that_waited_the_backlog_age_starts_a_backlog_batch() -> None:
    sink = _backlog_sink()
    assert sink._backlogged(written(2.5)) and sink._backlogged(written(3600))
    assert not sink._backlogged(written(0.3))  # live
    assert not sink._backlogged(Rec(None)) and not sink._backlogged(Rec(-1))
    assert not _backlog_sink(0.5)._backlogged(written(3600))  # not above the live age: off
    assert not _backlog_sink(0.0)._backlogged(written(3600))


def test_a_backlog_batch_gathers_longer_and_larger_than_a_live_one() -> None:
    sink = _backlog_sink()
    live, backlog = Batch(), Batch(backlog=True)
    for batch in (live, backlog):
        batch.add_offset("t", 0, 1, since=time.monotonic() - 1.0)  # started 1 s ago
        batch.n_rows = 100
    assert sink._due(live, sink.batch_s) and not sink._due(backlog, sink.batch_s)
    assert (sink._ms_left(live, sink.batch_s), sink._ms_left(backlog, sink.batch_s)) == (0, 100)
    backlog.n_rows = 6000  # past the live batch's rows, short of the backlog's
    assert not sink._due(backlog, sink.batch_s)
    backlog.n_rows = 20_000
    assert sink._due(backlog, sink.batch_s)
    backlog.n_rows, backlog.started = 100, time.monotonic() - 2.1
    assert sink._due(backlog, sink.batch_s)


def test_a_fast_live_stream_is_batched_by_age_not_by_rows() -> None:
    """Behind a validation worker draining a backlog (about 16,000 events/s) half a second
    is 8,000 rows. Each embedded insert and stored-ids query costs 10–60 ms whatever its size,
    so the default rows must not cut that batch short: with 5,000 the sink wrote three
    batches a second and spent 48–50 µs of CPU per event in 1 M-event drains, 38–41 with
    20,000 (``BENCHMARKS.md``, run AA)."""
    fields = Settings.model_fields
    sink = WarehouseSink(load_settings(sink_batch_s=fields["sink_batch_s"].default,
                                       sink_batch_rows=fields["sink_batch_rows"].default),
                         warehouse=None)  # type: ignore[arg-type]
    batch = Batch()
    batch.add_offset("t", 0, 1, since=time.monotonic() - 0.25)
    batch.n_rows = 8_000
    assert not sink._due(batch, sink.batch_s)  # young: it gathers on
    batch.started = time.monotonic() - sink.batch_s
    assert sink._due(batch, sink.batch_s)  # its age ends it
    batch.started, batch.n_rows = time.monotonic(), sink.batch_rows
    assert sink._due(batch, sink.batch_s)  # the rows still bound memory

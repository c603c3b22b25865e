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

"""The sink's batch clock: a live batch is due ``batch_s`` after its first record was written
(not before the last flush began), a backlog batch gathers for the whole ``batch_s``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from cityops.core.settings import load_settings
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

"""Pacing by event time on an injectable clock (shared by simulations and replays)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cityops.core.feeds import ValidationContext
from cityops.ingest.pacing import Pacer
from cityops.ingest.replay.sending import _judged_when_due


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_first_event_is_the_origin_and_later_ones_wait_event_time_over_speed() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait(5_000.0)  # the origin: due at once
    assert clock.now == 100.0 and clock.slept == []
    pacer.wait(5_020.0)  # 20 s of event time at speed 10: 2 s later
    assert clock.now == pytest.approx(102.0)
    assert max(clock.slept) <= 0.2  # in steps, so a stop is noticed
    pacer.wait(5_010.0)  # already past: no wait
    assert clock.now == pytest.approx(102.0)
    assert pacer.offset_s(5_030.0) == pytest.approx(3.0)


def test_stop_and_deadline_end_the_wait() -> None:
    clock = FakeClock()
    stop = threading.Event()
    stop.set()
    Pacer(1, origin=0.0, stop=stop, clock=clock, sleep=clock.sleep).wait(60.0)
    assert clock.now == 100.0
    Pacer(1, origin=0.0, deadline=101.0, clock=clock, sleep=clock.sleep).wait(60.0)
    assert 100.8 <= clock.now <= 101.0
    with pytest.raises(ValueError):
        Pacer(0)


def test_paced_rebased_records_are_judged_by_the_clock_when_due() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    judge_at = _judged_when_due(ValidationContext(now=start), pacer)
    assert judge_at(start.isoformat()).now == start
    later = (start + timedelta(seconds=10)).isoformat()
    assert judge_at(later).now == start + timedelta(seconds=5)
    assert judge_at("not a time").now == start

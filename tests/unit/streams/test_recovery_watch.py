"""A table recovery that receives nothing makes the worker leave for a restart; a slow one
that still receives changelog records does not (``streams.recovery_watch``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from cityops.streams.recovery_watch import silent_for, watch


def _recovery(in_recovery: bool, started: float | None, received: dict[str, float]
              ) -> SimpleNamespace:
    return SimpleNamespace(in_recovery=in_recovery, _recovery_started_at=started,
                           _active_events_received_at=received)


def test_silence_counts_from_the_start_until_a_first_event() -> None:
    assert silent_for(_recovery(True, 100.0, {}), 130.0) == 30.0


def test_silence_counts_from_the_newest_event_of_any_active_partition() -> None:
    rec = _recovery(True, 100.0, {"state-footfall/3": 150.0, "seen-air/4": 170.0})
    assert silent_for(rec, 200.0) == 30.0


def test_no_recovery_running_is_never_a_stall() -> None:
    assert silent_for(_recovery(False, 100.0, {}), 10_000.0) is None
    assert silent_for(_recovery(True, None, {}), 10_000.0) is None


def test_the_watch_acts_once_silence_passes_the_limit_and_not_while_records_arrive() -> None:
    now = [0.0]
    rec = _recovery(True, 0.0, {})
    stalls: list[float] = []

    async def run() -> None:
        task = asyncio.ensure_future(watch(rec, 120.0, stalls.append, every_s=0.001,
                                           clock=lambda: now[0]))
        for t in range(0, 600, 10):  # records keep arriving: alive for ten minutes
            now[0] = float(t)
            rec._active_events_received_at["state-footfall/3"] = float(t)
            await asyncio.sleep(0.003)
        assert stalls == []
        now[0] = 590.0 + 121.0  # then 121 s without one
        await asyncio.wait_for(task, 1.0)

    asyncio.run(run())
    assert stalls == [121.0]


"""A worker whose table recovery receives nothing leaves for a supervised restart.

After a rebalance, Faust (faust-streaming 0.15.3) restores the tables of the partitions it
was given from their changelogs before any stage runs. With several workers it sometimes
receives nothing at all: "No event received for active tp ... since recovery start", for
as long as anyone watched (11 minutes and more), while the fetch loop waits for records and
no stage runs. The cause inside Faust is not known (``kill -USR1`` on the worker prints its
tasks, offsets and flow state for the next time). Nothing is lost meanwhile, but the
worker's partitions stand still. The one dump taken with the partitions' detail showed the
consumer's flow active, the changelog partitions active and none paused, and the fetch loop
waiting for records. A recovery that has received no event for ``CITYOPS_WORKER_RECOVERY_STALL_S``
leaves (uncommitted, as after an offset gap), and the supervisor starts it again: the new
member's rebalance starts the recovery afresh.

A recovery that is slow but alive (a long changelog read on a busy host) receives events,
so only silence counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def silent_for(recovery: Any, now: float) -> float | None:
    """Seconds the running recovery has gone without an event of an active changelog
    partition (since it started when it has had none); None when no recovery runs."""
    if not getattr(recovery, "in_recovery", False):
        return None
    started = getattr(recovery, "_recovery_started_at", None)
    if started is None:
        return None
    received = getattr(recovery, "_active_events_received_at", None) or {}
    return now - max([started, *received.values()])


async def watch(recovery: Any, limit_s: float, on_stall: Callable[[float], None],
                every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
    """Call ``on_stall(seconds)`` once the recovery has been silent longer than ``limit_s``."""
    while True:
        await asyncio.sleep(every_s)
        silent = silent_for(recovery, clock())
        if silent is not None and silent > limit_s:
            on_stall(silent)
            return

"""Pacing: release records at their event time divided by a speed, on an injectable clock.

Simulations (``ingest.run``) and file replays (``ingest.replay``) both pace this way, so the
two behave alike and tests drive either with a fake clock instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Pacer:
    """Maps event time (epoch seconds) to wall time: ``origin`` happens at the start, and
    every later second of event time ``1 / speed`` wall seconds after it.

    Without an ``origin`` the first event time asked about becomes it. ``wait`` returns early
    when ``stop`` is set or when waiting would pass ``deadline`` (a wall time on ``clock``).
    """

    def __init__(self, speed: float, *, origin: float | None = None,
                 stop: threading.Event | None = None, deadline: float | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                 step_s: float = 0.2) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed
        self.origin = origin
        self.stop = stop
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.step_s = step_s
        self.started = clock()

    def due(self, event_s: float) -> float:
        """The wall time (on ``clock``) at which the event at ``event_s`` is due."""
        if self.origin is None:
            self.origin = event_s
        return self.started + (event_s - self.origin) / self.speed

    def offset_s(self, event_s: float) -> float:
        """How long after the start the event is due (wall seconds)."""
        return self.due(event_s) - self.started

    def wait(self, event_s: float) -> None:
        """Sleep until the event is due, in steps so a stop or the deadline is noticed."""
        due = self.due(event_s)
        while True:
            left = due - self.clock()
            if left <= 0:
                return
            step = min(left, self.step_s)
            if self.deadline is not None and self.clock() + step > self.deadline:
                return
            if self.stop is not None and self.stop.is_set():
                return
            self.sleep(step)

"""Duplicate detection by ``event_id`` within an event-time horizon, over any mutable mapping.

Producers retry and at-least-once delivery replays, so the same ``event_id`` can arrive more
than once; remembering every id forever would grow without bound, so ids are forgotten once
their event time is more than ``horizon_s`` behind the newest event time seen. The store is a
plain dict in tests and a Faust table (changelog-backed) in the worker; values are the event
times as POSIX seconds (floats), nothing else.
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping
from datetime import datetime


class Deduplicator:
    """``seen_before(event_id, event_time)`` answers True for an id already seen in horizon."""

    def __init__(self, horizon_s: float, store: MutableMapping[str, float],
                 evict_every: int = 1000) -> None:
        if horizon_s <= 0:
            raise ValueError("horizon_s must be > 0")
        self.horizon_s = horizon_s
        self.store = store
        self.evict_every = max(1, evict_every)
        self._calls = 0
        self._max_ts: float | None = None  # rebuilt lazily from the store after a restart
        # (event time, id) in time order, so eviction pops the oldest instead of scanning
        # the whole store (millions of ids at city rates); rebuilt lazily like _max_ts
        self._by_time: list[tuple[float, str]] | None = None
        self.evicted = 0

    @staticmethod
    def _ts(event_time: datetime | float) -> float:
        return event_time.timestamp() if isinstance(event_time, datetime) else float(event_time)

    def _newest(self) -> float | None:
        if self._max_ts is None and len(self.store):
            self._max_ts = max(float(v) for v in self.store.values())
        return self._max_ts

    def seen_before(self, event_id: str, event_time: datetime | float) -> bool:
        """True if ``event_id`` was seen within the horizon; otherwise remember it."""
        ts = self._ts(event_time)
        newest = self._newest()
        if event_id in self.store:
            return True
        if newest is not None and ts < newest - self.horizon_s:
            # older than the horizon: its first copy (if any) was already forgotten; the
            # event is far behind any window anyway and the caller routes it as late
            return False
        self.store[event_id] = ts
        heapq.heappush(self._heap(), (ts, event_id))
        self._max_ts = ts if newest is None else max(newest, ts)
        self._calls += 1
        if self._calls % self.evict_every == 0:
            self.evict()
        return False

    def _heap(self) -> list[tuple[float, str]]:
        if self._by_time is None:
            self._by_time = [(float(v), k) for k, v in self.store.items()]
            heapq.heapify(self._by_time)
        return self._by_time

    def evict(self, now_s: float | None = None) -> int:
        """Forget ids whose event time is older than newest (or ``now_s``) − horizon."""
        newest = self._newest() if now_s is None else now_s
        if newest is None:
            return 0
        cutoff = newest - self.horizon_s
        heap = self._heap()
        n = 0
        while heap and heap[0][0] < cutoff:
            _ts, key = heapq.heappop(heap)
            if key in self.store and float(self.store[key]) < cutoff:
                del self.store[key]
                n += 1
        self.evicted += n
        return n

"""Which partitions of a topic to hold back so that a backlog is read in write order.

A zone's counters are keyed to different raw partitions, and a zone's windows stay open
until its slowest counter has caught up (the per-source watermarks of
``streams.windows``). A consumer draining a backlog reads whatever each partition's fetch
returned (megabytes per partition, hours of event time), so one partition ran far ahead
of another and the zones' open windows, and their snapshots, grew with the distance: a
zone's snapshot reached 2.5 MB in a 1 M-event drain.

This is the rule mature stream processors use (Kafka Streams picks the partition with the
oldest head record; Flink's watermark alignment pauses splits that run ahead): among a
topic's partitions that still hold unread records, the one whose last delivered record is
oldest sets the floor; a record more than ``drift_ms`` of record time past the floor is
held back (with the rest of its partition, which is paused) until the floor catches up.
Record time is the broker timestamp (the producer's clock when the record was written), so
a backlog is read in about the order it was written; live, every partition is caught up
and nothing is held. A partition behind with nothing delivered yet counts as the oldest:
a fetch hands over one partition's buffer after another, and without that the first
partition would be read to its end before the others started.

A partition is behind only while it is not live: its last delivered record was written
more than ``live_ms`` (wall clock) ago. Records a few seconds old are the live stream, where
each partition is read up to its end at every fetch, and nothing is held. Counted in
records alone (``streams.dispatch.FAR_BEHIND``), a live footfall partition at 1,000
events/s was "behind" after any slow second (a garbage collection, a longer step) and the
partitions then held each other back in turn: the worker's median delay went from 0.2 s to
2–3.5 s and stayed there (4 of 7 latency runs). Live partitions may therefore run seconds
apart; in a replay at speed (``make run``'s ×60–×300) that is minutes of event time, which
the event-time parts absorb: a zone's windows wait for each of its counters
(``streams.windows``), and the alert engine measures a sensor's silence on its own
partition's clock (``AlertEngine``, ``silence_by_feed``).

It never stalls a stream: the floor's own partition is always admitted, partitions the
consumer paused for its own reasons are left out, and a floor that has not taken a record
for ``stall_s`` while the others waited for it releases them until it moves (a fetch
failing on that partition must not stop the others). A floor whose fetched records wait
their turn in the client (``PartitionView.queued``) is not failing: a fetch hands over the
buffered partitions one after another (``streams.fair_fetch``), and with a few thousand
records a call, each a step of a second on a slow host, its turn came after 10-13 s in
the bench's drains, which then let every partition run and a zone wait days of event time
for a counter (a 2.3 MB snapshot). Such a floor is given ``queued_stall_s`` instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

TP = Hashable  # a topic partition: anything with .topic (tests use plain tuples)


#: a partition whose last delivered record was written less than this long ago (ms, wall
#: clock) is live, never behind: the stuck delays were 2–3.5 s, and a backlog is older
#: (the default of ``CITYOPS_WORKER_ALIGN_LIVE_MS``)
LIVE_MS = 5_000


@dataclass(frozen=True)
class PartitionView:
    """One partition as the consumer sees it now."""

    topic: str
    lagging: bool  # records past the last one delivered are known to exist
    held_elsewhere: bool = False  # paused by the consumer itself (e.g. a rebalance)
    queued: bool = False  # records of it were fetched and wait their turn in the client


@dataclass
class PartitionAligner:
    """Record-time alignment of the partitions of some topics (pure: no Kafka here)."""

    drift_ms: int
    stall_s: float = 10.0
    #: how long a floor whose fetched records wait their turn in the client may take none
    #: before the others are let run: its records are there, so only a fault keeps them
    queued_stall_s: float = 60.0
    live_ms: int = LIVE_MS
    last_ts: dict[TP, int] = field(default_factory=dict)  # last delivered record time (ms)
    paused: set[TP] = field(default_factory=set)  # what this aligner paused
    _taken: dict[TP, int] = field(default_factory=dict)  # records delivered, per partition
    _floors: dict[str, tuple[TP, int, float]] = field(default_factory=dict)
    _behind: dict[str, list[TP]] = field(default_factory=dict)  # per topic, at the last floors()
    heads: dict[TP, int] = field(default_factory=dict)  # time of the first record held back
    stalled: set[str] = field(default_factory=set)  # topics whose floor stalled (all run)
    _limits: dict[str, float] = field(default_factory=dict)  # per stalled topic, the limit

    def stalled_floor(self, topic: str) -> tuple[TP, int, float, float] | None:
        """The floor a stalled topic waits for: (its partition, records delivered from it,
        when it last moved on the clock ``floors`` is given, the limit it went past:
        ``stall_s`` or ``queued_stall_s``), or None."""
        floor = self._floors.get(topic)
        if floor is None or topic not in self.stalled:
            return None
        return (*floor, self._limits.get(topic, self.stall_s))

    def at(self, tp: TP) -> int:
        """Where a partition stands: its first record held back, else its last delivered
        (-1: nothing known yet, which counts as the oldest)."""
        head = self.heads.get(tp)
        return head if head is not None else self.last_ts.get(tp, -1)

    def delivered(self, tp: TP, ts_ms: int) -> None:
        """A record of ``tp`` with broker timestamp ``ts_ms`` was handed over."""
        self._taken[tp] = self._taken.get(tp, 0) + 1
        if ts_ms > self.last_ts.get(tp, -1):
            self.last_ts[tp] = ts_ms

    def live(self, tp: TP, now_ms: int) -> bool:
        """Was the partition's last delivered record written less than ``live_ms`` before
        ``now_ms`` (wall clock)? A live partition is never behind, whatever its unread
        records; one with nothing delivered yet is not live."""
        ts = self.last_ts.get(tp)
        return ts is not None and ts >= 0 and now_ms - ts < self.live_ms

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions gone or sought elsewhere: their positions are no longer known."""
        for tp in tps:
            self.last_ts.pop(tp, None)
            self.heads.pop(tp, None)
            self._taken.pop(tp, None)
            self.paused.discard(tp)

    def floors(self, views: dict[TP, PartitionView], now_s: float
               ) -> dict[str, tuple[TP, int]]:
        """Per aligned topic with partitions behind: (the floor's partition, the newest
        record time admitted, floor + ``drift_ms``). A topic absent is not held back."""
        for tp in [tp for tp in self.paused if tp not in views or views[tp].held_elsewhere]:
            self.paused.discard(tp)  # revoked, or the consumer took it over: not ours now
        by_topic: dict[str, list[TP]] = {}
        for tp, view in views.items():
            by_topic.setdefault(view.topic, []).append(tp)
        out: dict[str, tuple[TP, int]] = {}
        for topic, tps in by_topic.items():
            floor = self._floor(topic, tps, views, now_s)
            if floor is not None:
                out[topic] = (floor[1], floor[0] + self.drift_ms)
        return out

    def admits(self, tp: TP, topic: str, ts_ms: int,
               floors: dict[str, tuple[TP, int]]) -> bool:
        """May a record of ``tp`` at ``ts_ms`` be handed over now? Past the bound, a record
        of the floor's own partition makes the floor the oldest of it and the others behind
        (so the floor always moves, and never runs ahead of the others by more than the
        drift); it is admitted if still within that floor's bound."""
        bound = floors.get(topic)
        if bound is None or ts_ms <= bound[1]:
            return True
        if tp != bound[0]:
            return False
        low, low_tp = ts_ms, tp
        for other in self._behind.get(topic, ()):
            ts = self.at(other)
            if other != tp and ts < low:
                low, low_tp = ts, other
        floors[topic] = (low_tp, low + self.drift_ms)
        return ts_ms <= low + self.drift_ms

    def plan(self, views: dict[TP, PartitionView], floors: dict[str, tuple[TP, int]],
             holding: set[TP]) -> tuple[set[TP], set[TP]]:
        """(partitions to pause now, partitions to resume now): those holding records back,
        and those whose last record is past their topic's bound. Only partitions this
        aligner paused are resumed."""
        want: set[TP] = set()  # the views' own keys (equal keys of another type do not do)
        for tp, view in views.items():
            if view.held_elsewhere:
                continue
            bound = floors.get(view.topic)
            ts = self.last_ts.get(tp)
            if tp in holding or (bound is not None and ts is not None and tp != bound[0]
                                 and ts > bound[1] and view.lagging):
                want.add(tp)
        pause = want - self.paused
        resume = self.paused - want
        self.paused = want
        return pause, resume

    def _floor(self, topic: str, tps: list[TP], views: dict[TP, PartitionView],
               now_s: float) -> tuple[int, TP] | None:
        """(oldest last-delivered time, its partition) of the topic's partitions still
        behind, or None (nothing behind, or the floor stalled)."""
        behind = [(self.at(tp), tp) for tp in tps
                  if views[tp].lagging and not views[tp].held_elsewhere]
        self._behind[topic] = [tp for _, tp in behind]
        if not behind:
            self._floors.pop(topic, None)
            return None
        ts, tp = min(behind, key=lambda x: x[0])
        taken = self._taken.get(tp, 0)
        holding = any(views[p].topic == topic for p in self.paused if p in views)
        seen = self._floors.get(topic)
        if seen is not None and seen[0] == tp and seen[1] == taken and topic in self.stalled:
            return None  # still stalled: every partition keeps running until it moves
        self.stalled.discard(topic)
        if not holding or seen is None or seen[0] != tp or seen[1] != taken:
            # the stall clock runs only while others wait for the floor: before that, the
            # floor's partition may just be waiting its turn behind their fetched records
            self._floors[topic] = (tp, taken, now_s)
        elif now_s - seen[2] > (limit := self.queued_stall_s if views[tp].queued
                                else self.stall_s):
            self.stalled.add(topic)
            self._limits[topic] = limit
            return None  # the floor has not moved while the others waited: let all run
        return ts, tp

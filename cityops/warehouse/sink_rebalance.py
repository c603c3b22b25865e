"""What the sink does when a rebalance takes partitions away while it holds a batch.

A sink's batch gathers across many polls (a backlog batch for seconds). When another sink
joins or leaves the group, partitions move, and their new owner reads them again from the
last commit. Had the old owner gone on to write what it had gathered of them, both sinks
would write the same events at about the same time: each asks the warehouse which ids it
already holds before the other's insert lands, and the rollup views, which count on insert,
count those events twice (``tests/integration/warehouse/test_sinks_rebalance_exactly_once.py``
showed 400 reports in the rollups for 300 events).

So the sink gives back everything it holds when partitions are revoked: it drops the
batches, notes the first offset it had taken of each partition (``Rewind``), and once the
group has settled moves each partition it still owns back to that offset. Nothing is lost:
what it held was neither written nor committed. A partition it keeps is read again, a
partition it lost is read by its new owner.

kafka-python calls the listener (``RebalanceWatch``) on its own network thread while the
sink's thread waits in ``poll``, the only place a rebalance starts. A listener that wrote or
committed there would hold up the heartbeats and wait on the very loop it blocks, so it only
counts what happened; the sink's thread acts on it when ``poll`` returns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from kafka import ConsumerRebalanceListener, TopicPartition


class HeldRecord(Protocol):
    offset: int


class RebalanceWatch(ConsumerRebalanceListener):
    """Counts revocations and assignments; the sink reads the counts after each ``poll``.

    The consumer keeps kafka-python's default eager protocol: every rebalance first revokes
    all of a member's partitions, then assigns the new set (``on_partitions_assigned`` is
    called even when that set is empty), so "settled" is an assignment after the last
    revocation. A forced eviction (``on_partitions_lost``) counts as a revocation.
    """

    def __init__(self) -> None:
        self._events = 0
        self._revoked_at = 0
        self._assigned_at = 0
        self._seen = 0

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if revoked:
            self._events += 1
            self._revoked_at = self._events

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._events += 1
        self._assigned_at = self._events

    def take_revocation(self) -> bool:
        """Whether partitions were revoked since the last call (each revocation once)."""
        if self._revoked_at > self._seen:
            self._seen = self._revoked_at
            return True
        return False

    @property
    def settled(self) -> bool:
        """Whether the group has assigned partitions again since the last revocation."""
        return self._assigned_at > self._revoked_at


class Rewind:
    """The first offset the sink had taken, and gave back, of each partition."""

    def __init__(self) -> None:
        self.offsets: dict[TopicPartition, int] = {}
        self.records = 0

    def _note(self, tp: TopicPartition, offset: int) -> None:
        held = self.offsets.get(tp)
        self.offsets[tp] = offset if held is None else min(held, offset)

    def give_back_batch(self, ranges: Mapping[tuple[str, int], Sequence[int]],
                        records: int) -> None:
        """A batch: its ranges ((topic, partition) → [first, last] offset) and records."""
        for (topic, partition), (first, _last) in ranges.items():
            self._note(TopicPartition(topic, partition), first)
        self.records += records

    def give_back_polled(self, polled: Mapping[TopicPartition, Sequence[HeldRecord]]) -> None:
        """What one ``poll`` returned."""
        for tp, msgs in polled.items():
            if msgs:
                self._note(tp, min(m.offset for m in msgs))
                self.records += len(msgs)

    def targets(self, owned: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to move each partition the sink still owns; a partition it lost is read by
        its new owner from the last commit."""
        return {tp: offset for tp, offset in sorted(self.offsets.items()) if tp in owned}

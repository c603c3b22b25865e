"""What keeps a step's effects whole: the offset-gap guard and the exit for a replay."""

from __future__ import annotations

from collections.abc import Callable

import structlog


class OffsetGapGuard:
    """Stops the worker when Faust hands an agent a record past a gap in a partition.

    Platform topics are neither compacted nor transactional, so their offsets are contiguous
    and an agent must see every one. After a rebalance, Faust can receive a stale prefetched
    batch from beyond the position it just seeked to; its consumer then records the skipped
    range as a "gap", counts it as acknowledged and drops the real records when they come —
    the next commit would silently skip them. The only safe answer inside this process is to
    stop before acknowledging anything past the gap: ``on_gap`` (``os._exit`` in the worker)
    runs before the record is processed, no commit includes the gap, and the supervised
    restart replays from the last commit. Going back (a seek to a committed offset, a replay)
    is normal and only moves the expectation. Expectations survive a rebalance for the
    partitions this worker keeps (the stale batch arrives right after one); a partition newly
    assigned to this worker is ``forget``-ten first, because another worker may have advanced
    it meanwhile: without that, every partition coming back after a move cost a spurious
    restart, and with several workers the restarts' own rebalances kept causing more.
    """

    def __init__(self, name: str, on_gap: Callable[[str, int, int, int], None]) -> None:
        self.name = name
        self.on_gap = on_gap
        self.last: dict[tuple[str, int], int] = {}

    def check(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        last = self.last.get(key)
        if last is not None and offset > last + 1:
            self.on_gap(topic, partition, last, offset)
        self.last[key] = offset

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the expectations of (topic, partition)s newly assigned to this worker."""
        for key in partitions:
            self.last.pop(key, None)



#: exit status of a worker that stopped itself to replay records Faust skipped (EX_TEMPFAIL);
#: ``cityops worker`` restarts it
EXIT_REPLAY = 75


def stop_for_replay(topic: str, partition: int, last: int, offset: int) -> None:
    """``OffsetGapGuard`` action: leave now, uncommitted, so the restart replays the gap."""
    import os
    import sys

    structlog.get_logger(__name__).critical(
        "stream.offset_gap", topic=topic, partition=partition, last=last, offset=offset,
        action="exit for replay")
    sys.stderr.flush()
    os._exit(EXIT_REPLAY)

"""Faust tables written with delivery futures (see ``DurableTable``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:  # Faust types only: this module does not need Faust at run time
    from faust.types import TableT


class DurableTable(MutableMapping[str, Any]):
    """A Faust table written with delivery futures, to a chosen changelog partition.

    Faust's own table writes go through a producer buffer whose flush before an offset
    commit gives up after 0.1 s without a send (``ProducerBuffer.flush_atmost``), so a
    commit can overtake the changelog write it depends on and a SIGKILL then loses state
    whose input offsets were already committed. Here every write returns (and collects) the
    changelog delivery future; agents ``await drain()`` before their events are acknowledged,
    so a committed offset always has its state in the changelog. Reads and recovery are
    Faust's (in-memory store rebuilt from the changelog at start).
    """

    def __init__(self, table: TableT) -> None:
        self.table = table
        self.partition: int | None = None  # where the next writes go (set per record)
        self.pending: list[Any] = []

    @property
    def _store(self) -> MutableMapping[Any, Any]:
        return self.table.data

    def set_at(self, key: str, value: Any, partition: int) -> None:
        self._store[key] = value
        self.pending.append(self.table.send_changelog(partition, key, value))

    def delete_at(self, key: str, partition: int) -> None:
        self._store.pop(key, None)
        self.pending.append(self.table.send_changelog(partition, key, None,
                                                      value_serializer="raw"))

    def __setitem__(self, key: str, value: Any) -> None:
        if self.partition is None:
            raise RuntimeError("DurableTable.partition is not set")
        self.set_at(key, value, self.partition)

    def __delitem__(self, key: str) -> None:
        if key not in self._store:
            raise KeyError(key)
        if self.partition is None:
            raise RuntimeError("DurableTable.partition is not set")
        self.delete_at(key, self.partition)

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._store.keys()))

    def __len__(self) -> int:
        return len(self._store)

    async def drain(self) -> None:
        """Wait until every write so far is in the changelog (raises on a send failure)."""
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)


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

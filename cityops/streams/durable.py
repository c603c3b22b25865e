"""Faust tables written with delivery futures (see ``DurableTable``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from typing import Any


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

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition: int | None = None  # where the next writes go (set per record)
        self.pending: list[Any] = []

    @property
    def _store(self) -> Any:
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

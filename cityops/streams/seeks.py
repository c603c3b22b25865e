"""After a rebalance, a partition with no committed offset starts again from its beginning.

Faust (faust-streaming 0.15.3) seeks every assigned partition to its committed offset after a
rebalance (``Consumer.perform_seek``), having dropped the records it had fetched but not yet
delivered. aiokafka's ``seek_to_committed`` only seeks a partition whose committed offset is
above 0: a partition with none (nothing committed yet: the first seconds of a new topic,
or of a worker group) keeps the position its fetcher had reached. The dropped records then
come back to no one. Seen in the several-workers test: the first 28 records of two raw
partitions were fetched by a worker that kept the partitions through the start-up
rebalance; it went on from offset 28, committed from there, and the 28 events were never
validated nor stored.

``perform_seek`` here seeks such partitions to their beginning, as the consumer's
``auto_offset_reset="earliest"`` promises, and makes their first offset the one expected
next, so that a batch fetched before the seek is dropped as stale (``streams.dispatch``)
rather than taken as where the partition starts: the next commit would skip what lies
before it (seen too: the first 26 records of a partition). Anything re-read that was
already handled is a replay (``partition_dedup``, ``pipeline.ReplayGuard``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def without_position(committed: Mapping[Any, int | None]) -> list[Any]:
    """The partitions ``seek_to_committed`` left where they were (no committed offset > 0)."""
    return [tp for tp, offset in committed.items() if not (offset and offset > 0)]


async def _perform_seek(self: Any) -> None:
    """``Consumer.perform_seek`` that also rewinds partitions without a committed offset."""
    from faust.transport.consumer import ensure_TP

    read_offset = self._read_offset
    committed = await self.seek_to_committed()
    rewind = without_position(committed)
    starts: dict[Any, int] = {}
    if rewind:
        await self._thread.seek_to_beginning(*rewind)
        starts = dict(await self._thread.earliest_offsets(*rewind))
    # the rest as Faust's own
    read_offset.update({tp: offset if offset is not None and offset >= 0 else None
                        for tp, offset in committed.items()})
    # a rewound partition expects its first offset next: a batch fetched before this seek
    # (beyond it) is then recognised as stale by ``streams.dispatch``, not taken as the start
    read_offset.update({ensure_TP(tp): start for tp, start in starts.items()})
    self._committed_offset.update({ensure_TP(tp): offset if offset else None
                                   for tp, offset in committed.items() if offset is not None})


def install() -> None:
    """Put ``_perform_seek`` in Faust's consumer (idempotent)."""
    from faust.transport import consumer as fconsumer

    fconsumer.Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]

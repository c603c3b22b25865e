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

**A fetch cancelled by a rebalance must end before the rebalance's seek.** Faust's
consumer thread runs a fetch (``AIOKafkaConsumerThread._fetch_records``, a long poll of up
to a second) and the seeks side by side. When a rebalance cancels the delivery waiting on a
fetch, the fetch itself goes on in the thread; if the rebalance's seek to the committed
offsets happened meanwhile, the fetch then returned the records right after the committed
offset, which moved the partition's position past them, and its result was thrown away
(nobody awaited it). Those records were never handled nor committed, and came back only at
the next rebalance or restart, while the worker looked healthy. Seen in the several-workers
test (``kill -USR1``: committed 1009, position 1010, nothing acknowledged or pending; a
rebalance forced with SIGSTOP lost the next one the same way). Here ``getmany`` keeps the
fetches it started (a cancelled caller leaves one running to its end) and ``perform_seek``
waits for them before seeking, so the seek rewinds whatever it took. The wait is on the event
loop, not in the consumer thread: a lock there (tried first) held both of the thread's
method-queue workers (a fetch waiting for a reassignment, a seek waiting for the fetch) and
a rebalance then waited for ever for a third call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def without_position(committed: Mapping[Any, int | None]) -> list[Any]:
    """The partitions ``seek_to_committed`` left where they were (no committed offset > 0)."""
    return [tp for tp, offset in committed.items() if not (offset and offset > 0)]


async def _perform_seek(self: Any) -> None:
    """``Consumer.perform_seek`` that first waits for fetches in flight, and also rewinds
    partitions without a committed offset."""
    from faust.transport.consumer import ensure_TP

    read_offset = self._read_offset
    if not await wait_for_fetches(self._thread):  # what a cancelled fetch took is rewound below
        log.warning("stream.seek_without_fetch_end", waited_s=FETCH_WAIT_S)
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


#: longest ``perform_seek`` waits for a fetch in flight (a long poll is at most a second)
FETCH_WAIT_S = 10.0


def keep_fetch(getmany: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``AIOKafkaConsumerThread.getmany`` whose fetch outlives a cancelled caller, and is
    remembered until it ends (``wait_for_fetches``)."""

    async def _getmany(self: Any, *args: Any, **kwargs: Any) -> Any:
        fetch = asyncio.ensure_future(getmany(self, *args, **kwargs))
        fetches = _fetches(self)
        fetches.add(fetch)
        fetch.add_done_callback(fetches.discard)
        fetch.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen by the caller
        return await asyncio.shield(fetch)

    _getmany._cityops_kept = True  # type: ignore[attr-defined]
    return _getmany


def _fetches(thread: Any) -> set[asyncio.Future[Any]]:
    fetches: set[asyncio.Future[Any]] | None = getattr(thread, "_cityops_fetches", None)
    if fetches is None:
        fetches = set()
        thread._cityops_fetches = fetches
    return fetches


async def wait_for_fetches(thread: Any, timeout_s: float = FETCH_WAIT_S) -> bool:
    """Wait (bounded) for the consumer thread's fetches in flight; False if one did not end."""
    pending = [f for f in _fetches(thread) if not f.done()]
    if not pending:
        return True
    _done, left = await asyncio.wait(pending, timeout=timeout_s)
    return not left


def install() -> None:
    """Put ``_perform_seek`` in Faust's consumer, and ``keep_fetch`` in its consumer thread
    (idempotent)."""
    from faust.transport import consumer as fconsumer
    from faust.transport.drivers import aiokafka as fdriver

    fconsumer.Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    thread = fdriver.AIOKafkaConsumerThread
    if not getattr(thread.getmany, "_cityops_kept", False):
        thread.getmany = keep_fetch(thread.getmany)  # type: ignore[method-assign,assignment]

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

**A fetch cancelled by a rebalance must end before the rebalance's seek.** Faust's consumer
thread runs a fetch (``AIOKafkaConsumerThread._fetch_records``, a long poll of up to a
second) and the seeks on two workers of one method queue, so they interleave. When a
rebalance cancels the delivery waiting on a fetch, the fetch itself goes on in the thread;
if the rebalance's seek to the committed offsets happens meanwhile, the fetch then returns
the records right after the committed offset, which moves the partition's position past
them, and its result is thrown away (nobody awaits it). Those records are then never
handled nor committed, and come back only at the next rebalance or restart, while the
worker looks healthy. Seen in the several-workers test (``kill -USR1``: committed 1009,
position 1010, nothing acknowledged or pending; a rebalance forced with SIGSTOP lost the
next one the same way). Here the fetch and the seeks that move positions
(``seek_to_committed``, ``seek_to_beginning``) hold one lock in the consumer thread, so a
seek waits for a fetch in flight and then rewinds what it took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
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


def thread_lock(thread: Any) -> asyncio.Lock:
    """The lock of fetches and seeks, in the consumer thread (made there, on first use)."""
    lock: asyncio.Lock | None = getattr(thread, "_cityops_fetch_lock", None)
    if lock is None:
        lock = asyncio.Lock()
        thread._cityops_fetch_lock = lock
    return lock


def fetch_under_lock(fetch: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``_fetch_records`` that holds the thread's lock while it polls."""

    async def _fetch_records(self: Any, *args: Any, **kwargs: Any) -> Any:
        async with thread_lock(self):
            return await fetch(self, *args, **kwargs)

    _fetch_records._cityops_locked = True  # type: ignore[attr-defined]
    return _fetch_records


async def _locked(thread: Any, method: Callable[..., Any], *args: Any) -> Any:
    """Run a consumer method in the consumer thread once no fetch is in flight."""
    async with thread_lock(thread):
        result = method(*args)
        return await result if asyncio.iscoroutine(result) else result


async def _seek_to_committed(self: Any) -> Mapping[Any, int]:
    return await self.call_thread(_locked, self, self._ensure_consumer().seek_to_committed)


async def _seek_to_beginning(self: Any, *partitions: Any) -> None:
    await self.call_thread(_locked, self, self._ensure_consumer().seek_to_beginning,
                           *partitions)


def install() -> None:
    """Put ``_perform_seek`` in Faust's consumer and the fetch/seek lock in its consumer
    thread (idempotent)."""
    from faust.transport import consumer as fconsumer
    from faust.transport.drivers import aiokafka as fdriver

    fconsumer.Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    thread = fdriver.AIOKafkaConsumerThread
    if not getattr(thread._fetch_records, "_cityops_locked", False):
        thread._fetch_records = fetch_under_lock(  # type: ignore[method-assign,assignment]
            thread._fetch_records)
    thread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    thread.seek_to_beginning = _seek_to_beginning  # type: ignore[method-assign]

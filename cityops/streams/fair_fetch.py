"""Fetched partitions served in turn, so one partition's large buffer never starves another.

aiokafka keeps each partition's fetched records (up to ``max_partition_fetch_bytes`` of
them: thousands of compressed records) in one ordered buffer, and a ``getmany`` with
``max_records`` (``CITYOPS_WORKER_POLL_RECORDS``) takes them from its first partitions on,
stopping when it has enough. A partition placed behind a few large buffers gets nothing until
they are used up, however many calls that takes; its own fetch, meanwhile, is not sent again,
since its records are still buffered.

Seen in split drains: the alignment floor of ``raw.footfall`` (its oldest partition,
``streams.alignment``) sat behind four ``raw.parking`` buffers, each served 2,000 records a
call, and took no record for more than 10 s while the other footfall partitions waited for
it. The aligner then let every partition run (``stream.align_floor_stalled``), and one zone
waited for a counter hours of event time behind: its state, written to the state log at every
step, grew to 651 KB–3.6 MB in 10 of 11 split drains of 300,000–1,000,000 events in one
morning.

After each ``getmany`` here, the partitions it took records from go to the back of the
buffer's order: the next call starts with those that were not served. Nothing else changes:
which records a call returns from a partition, positions, pauses and fetches are aiokafka's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any


def serve_in_turn(buffered: MutableMapping[Any, Any], served: Iterable[Any]) -> None:
    """Move the ``served`` partitions' buffers (those still there) behind the others, in
    the order served."""
    for tp in served:
        result = buffered.pop(tp, None)
        if result is not None:
            buffered[tp] = result


def in_turn(fetch: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``AIOKafkaConsumerThread._fetch_records`` (Faust's call into aiokafka, run in the
    consumer's thread beside aiokafka's fetches) followed by ``serve_in_turn``."""

    async def _fetch_records(self: Any, consumer: Any, active_partitions: Any,
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        records = await fetch(self, consumer, active_partitions, timeout=timeout,
                              max_records=max_records)
        buffered = getattr(consumer._fetcher, "_records", None)  # aiokafka's, pinned
        if records and isinstance(buffered, MutableMapping):
            serve_in_turn(buffered, records)
        return records

    _fetch_records._cityops_in_turn = True  # type: ignore[attr-defined]
    return _fetch_records


def install() -> None:
    """Serve the worker's fetched partitions in turn (idempotent)."""
    from faust.transport.drivers import aiokafka as fdriver

    thread = fdriver.AIOKafkaConsumerThread
    if not getattr(thread._fetch_records, "_cityops_in_turn", False):
        thread._fetch_records = in_turn(  # type: ignore[method-assign,assignment]
            thread._fetch_records)

"""A partition with no committed offset is rewound after a rebalance (``streams.seeks``):
aiokafka's ``seek_to_committed`` leaves it where its fetcher was, past records Faust dropped.
And the rebalance's seek comes after any fetch in flight in Faust's consumer thread."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from cityops.streams.seeks import without_position


def test_partitions_without_a_committed_offset_above_zero_are_the_ones_to_rewind() -> None:
    committed = {("raw", 0): 120, ("raw", 1): None, ("raw", 2): 0, ("raw", 3): 1}
    assert without_position(committed) == [("raw", 1), ("raw", 2)]



def test_a_fetch_whose_caller_is_cancelled_runs_on_and_the_seek_waits_for_it() -> None:
    """A rebalance cancels the delivery waiting on a fetch; the fetch goes on in the consumer
    thread and may take records after the rebalance's seek. ``keep_fetch`` keeps it, and
    ``wait_for_fetches`` (the first thing ``perform_seek`` does) waits until it ended, so
    the seek comes after it and rewinds what it took."""
    from cityops.streams import seeks

    async def main() -> list[str]:
        order: list[str] = []
        release = asyncio.Event()
        thread = SimpleNamespace()

        async def getmany(_self: Any, *_a: Any, **_kw: Any) -> dict[str, Any]:
            order.append("fetch started")
            await release.wait()
            order.append("fetch ended (its records thrown away)")
            return {"records": 1}

        caller = asyncio.ensure_future(seeks.keep_fetch(getmany)(thread))
        await asyncio.sleep(0)
        caller.cancel()  # the rebalance
        with pytest.raises(asyncio.CancelledError):
            await caller

        async def rebalance_seek() -> None:
            assert await seeks.wait_for_fetches(thread, timeout_s=5)
            order.append("seek to committed")

        seeking = asyncio.ensure_future(rebalance_seek())
        await asyncio.sleep(0.05)
        assert order == ["fetch started"]  # the fetch outlived its caller; the seek waits
        release.set()
        await seeking
        assert await seeks.wait_for_fetches(thread)  # nothing left in flight
        return order

    assert asyncio.run(main()) == ["fetch started", "fetch ended (its records thrown away)",
                                   "seek to committed"]


def test_the_wait_for_a_fetch_is_bounded() -> None:
    from cityops.streams import seeks

    async def main() -> bool:
        thread = SimpleNamespace()

        async def getmany(_self: Any) -> None:
            await asyncio.sleep(60)

        caller = asyncio.ensure_future(seeks.keep_fetch(getmany)(thread))
        await asyncio.sleep(0)
        ended = await seeks.wait_for_fetches(thread, timeout_s=0.05)
        caller.cancel()
        return ended

    assert asyncio.run(main()) is False


def test_install_keeps_the_fetches_of_fausts_consumer_thread() -> None:
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from cityops.streams import seeks

    seeks.install()
    seeks.install()  # idempotent: getmany is wrapped once
    getmany = AIOKafkaConsumerThread.getmany
    assert getattr(getmany, "_cityops_kept", False)
    assert Consumer.perform_seek is seeks._perform_seek

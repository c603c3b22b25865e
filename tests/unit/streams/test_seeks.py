"""A partition with no committed offset is rewound after a rebalance (``streams.seeks``):
aiokafka's ``seek_to_committed`` leaves it where its fetcher was, past records Faust dropped.
And a seek never lands in the middle of a fetch in Faust's consumer thread."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from cityops.streams.seeks import without_position


def test_partitions_without_a_committed_offset_above_zero_are_the_ones_to_rewind() -> None:
    committed = {("raw", 0): 120, ("raw", 1): None, ("raw", 2): 0, ("raw", 3): 1}
    assert without_position(committed) == [("raw", 1), ("raw", 2)]



def test_a_seek_waits_for_the_fetch_in_flight_and_a_fetch_for_the_seek() -> None:
    """The rebalance's seek must not land in the middle of a fetch whose result will be
    thrown away: it would rewind, then the fetch would move the position past records
    nobody handles. Seek and fetch take turns in the consumer thread."""
    from cityops.streams import seeks

    async def main() -> list[str]:
        order: list[str] = []
        release = asyncio.Event()
        thread = SimpleNamespace()

        async def fetch(_self: Any, *_a: Any, **_kw: Any) -> dict[str, Any]:
            order.append("fetch started")
            await release.wait()
            order.append("fetch ended")
            return {}

        async def seek_to_committed() -> dict[str, int]:
            order.append("seek")
            return {}

        fetching = asyncio.ensure_future(seeks.fetch_under_lock(fetch)(thread))
        await asyncio.sleep(0)
        seeking = asyncio.ensure_future(seeks._locked(thread, seek_to_committed))
        later = asyncio.ensure_future(seeks.fetch_under_lock(fetch)(thread))
        await asyncio.sleep(0.05)
        assert order == ["fetch started"]  # the seek waits for the fetch in flight
        release.set()
        await asyncio.gather(fetching, seeking, later)
        return order

    assert asyncio.run(main()) == ["fetch started", "fetch ended", "seek", "fetch started",
                                   "fetch ended"]


def test_install_puts_the_lock_in_fausts_consumer_thread() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from cityops.streams import seeks

    seeks.install()
    seeks.install()  # idempotent: the fetch is wrapped once
    fetch = AIOKafkaConsumerThread._fetch_records
    assert getattr(fetch, "_cityops_locked", False)
    assert AIOKafkaConsumerThread.seek_to_committed is seeks._seek_to_committed
    assert AIOKafkaConsumerThread.seek_to_beginning is seeks._seek_to_beginning

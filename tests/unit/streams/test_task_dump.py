"""``kill -USR1`` on a worker prints where each asyncio task waits, innermost await included."""

from __future__ import annotations

import asyncio

import pytest

from cityops.streams.worker import _await_chain, dump_tasks


async def _inner_wait(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer_step(gate: asyncio.Event) -> None:
    await _inner_wait(gate)


def test_a_stuck_task_shows_every_coroutine_it_waits_in(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    async def main() -> list[str]:
        gate = asyncio.Event()
        task = asyncio.create_task(_outer_step(gate), name="stuck-step")
        await asyncio.sleep(0.01)
        chain = _await_chain(task.get_coro())
        dump_tasks()
        gate.set()
        await task
        return chain

    chain = asyncio.run(main())
    names = [line.rsplit(" ", 1)[-1] for line in chain]
    assert names[:3] == ["_outer_step", "_inner_wait", "wait"]
    err = capsys.readouterr().err
    assert "--- stuck-step" in err and "_inner_wait" in err and "asyncio tasks (SIGUSR1)" in err


def test_the_offsets_report_shows_why_a_commit_does_not_move() -> None:
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP
    from intervaltree import IntervalTree

    from cityops.streams.worker import offsets_report

    tp = TP("raw.air", 1)
    waiting = SimpleNamespace(tp=tp, offset=900)
    consumer = SimpleNamespace(
        assignment=lambda: {tp}, _acked={tp: [762, 761, 761]}, _gap=defaultdict(IntervalTree),
        _committed_offset={tp: 761}, _read_offset={tp: 4999}, _unacked_messages=[waiting])
    lines = offsets_report(consumer)
    assert lines[1] == ("raw.air/1 761 4999 acked(3, [761, 761, 762], [(761, 761)]) gaps [] "
                        "unacked(1, [900]) False fetch(? AttributeError)")


def test_the_offsets_report_lists_the_records_of_a_step_in_flight() -> None:
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP
    from intervaltree import IntervalTree

    from cityops.streams.dispatch import InFlight
    from cityops.streams.worker import offsets_report

    tp = TP("raw.footfall", 0)
    step = InFlight([SimpleNamespace(tp=tp, offset=o) for o in (41, 40, 42)])
    consumer = SimpleNamespace(
        assignment=lambda: {tp}, _acked={tp: []}, _gap=defaultdict(IntervalTree),
        _committed_offset={tp: 40}, _read_offset={tp: 42}, _unacked_messages=[step])
    assert "unacked(3, [40, 41, 42])" in offsets_report(consumer)[1]


def test_the_producer_report_shows_batches_queued_and_the_sender_state() -> None:
    """A real aiokafka producer (not started: no broker needed) with a batch queued for
    each of two partitions, the way ``app.publish_many`` hands them over."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    from cityops.streams.worker import producer_report

    async def main() -> list[str]:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", linger_ms=5)
        for partition, n in ((3, 2), (1, 1)):
            batch = producer.create_batch()
            for i in range(n):
                batch.append(key=b"z", value=b"%d" % i, timestamp=None)
            await producer._message_accumulator.add_batch(
                batch, TopicPartition("clean.footfall", partition), timeout=1)
        return producer_report(producer)

    lines = asyncio.run(main())
    assert lines[0] == ("=== producer: sender not started, requests in flight to nodes [], "
                        "0 partitions in them, linger 5 ms")
    queued = [line.split(" age=")[0] for line in lines if line.startswith("queued")]
    assert queued == ["queued clean.footfall/3 records=2", "queued clean.footfall/1 records=1"]
    assert "sent, not answered: 0 batches; queued: 2" in lines


def test_the_producer_report_never_fails() -> None:
    from types import SimpleNamespace

    from cityops.streams.worker import producer_report

    assert producer_report(None) == ["=== producer: not started"]
    broken = producer_report(SimpleNamespace())
    assert len(broken) == 1 and broken[0].startswith("=== producer: ? AttributeError")

"""The steps of a delivery (``dispatch.StepChain``): a topic's steps in order, other topics'
alongside, acknowledged only when delivered, each standing in Faust's unacknowledged set
while it runs, and never cut short by a cancelled caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from weakref import WeakSet

from cityops.streams.batches import Delivered
from cityops.streams.dispatch import InFlight, StepChain


@dataclass(eq=False)
class Msg:
    topic: str
    offset: int
    value: bytes = b"{}"


class Gate:
    """A handler whose steps wait until the test opens them, and say what they saw."""

    def __init__(self, log: list[str], topic: str, outcome: Any = True) -> None:
        self.log = log
        self.topic = topic
        self.outcome = outcome
        self.open: dict[int, asyncio.Event] = {}

    async def __call__(self, records: list[Delivered]) -> bool:
        first = records[0].message.offset
        self.log.append(f"{self.topic}{first} start")
        await self.open.setdefault(first, asyncio.Event()).wait()
        self.log.append(f"{self.topic}{first} end")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return bool(self.outcome)

    def release(self, first: int) -> None:
        self.open.setdefault(first, asyncio.Event()).set()


async def _no_flow_control() -> None:
    return None


def _chain(handlers: dict[str, Any], acked: list[int],
           unacked: WeakSet | None = None) -> StepChain:
    return StepChain(handlers, lambda msgs: acked.extend(m.offset for m in msgs),
                     _no_flow_control, unacked if unacked is not None else WeakSet())


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_topics_steps_run_one_after_another_and_another_topics_alongside() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        a, b = Gate(log, "a"), Gate(log, "b")
        chain = _chain({"a": a, "b": b}, [])
        steps = [chain.start("a", [Msg("a", 0), Msg("a", 1)]),
                 chain.start("a", [Msg("a", 2)]),
                 chain.start("b", [Msg("b", 0)])]
        await _settle()
        assert log == ["a0 start", "b0 start"]  # a's second step waits for its first
        b.release(0)
        await _settle()
        assert "b0 end" in log and "a2 start" not in log  # b did not wait for a
        a.release(0)
        a.release(2)
        await chain.finish(steps)
        return log

    log = asyncio.run(main())
    assert log.index("a0 end") < log.index("a2 start")


def test_only_a_step_whose_handler_returned_true_is_acknowledged() -> None:
    async def main() -> list[int]:
        acked: list[int] = []
        log: list[str] = []
        ok, refused, broken = Gate(log, "ok"), Gate(log, "no", False), Gate(
            log, "x", RuntimeError("domain bug"))
        chain = _chain({"ok": ok, "no": refused, "x": broken}, acked)
        steps = [chain.start("x", [Msg("x", 10)]), chain.start("x", [Msg("x", 20)]),
                 chain.start("no", [Msg("no", 30)]), chain.start("ok", [Msg("ok", 40)])]
        for gate, first in ((broken, 10), (broken, 20), (refused, 30), (ok, 40)):
            gate.release(first)
        await chain.finish(steps)
        assert "x20 end" in log  # the topic's next step still ran after the failed one
        return acked

    assert asyncio.run(main()) == [40]


def test_a_running_step_stands_in_fausts_unacknowledged_set() -> None:
    async def main() -> None:
        unacked: WeakSet = WeakSet()
        gate = Gate([], "a")
        chain = _chain({"a": gate}, [], unacked)
        step = chain.start("a", [Msg("a", 0), Msg("a", 1)])
        await _settle()
        (token,) = list(unacked)
        assert isinstance(token, InFlight) and not token.acked
        assert [m.offset for m in token.records] == [0, 1]
        gate.release(0)
        await chain.finish([step])
        assert token.acked and not unacked

    asyncio.run(main())


def test_a_cancelled_wait_for_the_steps_still_lets_them_end_and_be_acknowledged() -> None:
    """What a delivery cancelled by a rebalance does: it waits for its steps, shielded."""
    async def main() -> tuple[list[int], bool]:
        acked: list[int] = []
        gate = Gate([], "a")
        chain = _chain({"a": gate}, acked)
        steps = [chain.start("a", [Msg("a", 0)]), chain.start("a", [Msg("a", 5)])]
        waiter = asyncio.ensure_future(asyncio.shield(chain.finish(steps)))
        await _settle()
        waiter.cancel()
        await _settle()
        assert chain.in_flight()  # the steps outlive the cancelled wait
        gate.release(0)
        gate.release(5)
        await chain.finish(chain.in_flight())
        return acked, waiter.cancelled()

    acked, cancelled = asyncio.run(main())
    assert cancelled and acked == [0, 5]


def test_steps_not_handed_over_when_a_rebalance_comes_never_run() -> None:
    """A step waiting for its topic's previous step, or for flow control (suspended by the
    rebalance), is dropped: after the rebalance it would handle records of partitions
    perhaps gone elsewhere. Its records are fetched again from the committed offsets."""
    async def main() -> tuple[list[str], list[int]]:
        log: list[str] = []
        acked: list[int] = []
        flow = asyncio.Event()
        flow.set()
        a, b = Gate(log, "a"), Gate(log, "b")
        chain = StepChain({"a": a, "b": b}, lambda msgs: acked.extend(m.offset for m in msgs),
                          flow.wait, WeakSet())
        running = chain.start("a", [Msg("a", 0)])
        await _settle()  # handed over: its handler runs
        queued = chain.start("a", [Msg("a", 5)])  # waits for the topic's previous step
        flow.clear()  # the rebalance suspends the flow
        blocked = chain.start("b", [Msg("b", 0)])  # waits for flow control
        await _settle()
        chain.drop_waiting()
        a.release(0)
        # a dropped step would wait for the gate of its own handler, never opened here
        await asyncio.wait_for(chain.finish([running, queued, blocked]), timeout=5)
        flow.set()  # the rebalance is over
        a.release(5)
        b.release(0)
        await _settle()
        assert queued.cancelled() and blocked.cancelled() and not chain.in_flight()
        return log, acked

    log, acked = asyncio.run(main())
    assert log == ["a0 start", "a0 end"] and acked == [0]


def test_a_step_handed_over_is_in_flight_after_the_step_queued_behind_it_was_dropped() -> None:
    """What a twice-cancelled delivery waits for: every step still running, not only each
    topic's newest (dropped, that one ends before the step it waited for)."""
    async def main() -> None:
        gate = Gate([], "a")
        chain = _chain({"a": gate}, [])
        running = chain.start("a", [Msg("a", 0)])
        await _settle()
        queued = chain.start("a", [Msg("a", 5)])
        chain.drop_waiting()
        await _settle()
        assert queued.cancelled() and chain.in_flight() == [running]
        gate.release(0)
        await asyncio.wait_for(chain.finish(chain.in_flight()), timeout=5)
        assert chain.in_flight() == []

    asyncio.run(main())

"""A step that ends in ``CancelledError`` it did not ask for fails like a step whose delivery
failed (the worker stops for a replay), instead of leaving its batch unacknowledged while the
worker goes on; a step whose own task is cancelled (a shutdown) is no failure.

A ``CancelledError`` escapes ``except Exception``, and ``streams.dispatch`` then forgot the
batch without acknowledging it: its partition's commit stood still while the worker looked
healthy. That is one way to the stall the several-workers test once showed (a clean
partition's last record and two alert inputs uncommitted for minutes, no error logged); the
test now prints each worker's dump when it happens again.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from cityops.streams import dispatch
from cityops.streams.batches import run_step


def _events() -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(topic="t", partition=2, offset=7))]


def test_a_step_whose_awaited_future_is_cancelled_elsewhere_fails() -> None:
    failures: list[str] = []

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        async def step(_events: list[Any]) -> None:
            await fut  # e.g. a delivery another task cancels

        loop.call_later(0.01, fut.cancel)
        return await run_step(_events(), name="aggregate-footfall", step=step,
                              on_failure=lambda: lambda name, ev: failures.append(name))

    assert asyncio.run(main()) is False
    assert failures == ["aggregate-footfall"]


def test_a_step_whose_own_task_is_cancelled_is_no_failure() -> None:
    failures: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        async def step(_events: list[Any]) -> None:
            started.set()
            await asyncio.sleep(60)

        task = asyncio.ensure_future(run_step(
            _events(), name="validate-footfall", step=step,
            on_failure=lambda: lambda name, ev: failures.append(name)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert failures == []


def test_dispatch_stops_for_a_handler_that_neither_delivered_nor_failed() -> None:
    msgs = {"a": [SimpleNamespace(partition=0, offset=3)],
            "b": [SimpleNamespace(partition=1, offset=9)]}
    acked: list[Any] = []
    forgotten: list[Any] = []
    broken: list[tuple[str, str]] = []
    dispatch._settle(["a", "b"], msgs, [True, asyncio.CancelledError()], acked.append,
                     forgotten.append,
                     lambda topic, ms, exc: broken.append((topic, type(exc).__name__)))
    assert broken == [("b", "CancelledError")]
    assert acked == msgs["a"] and forgotten == msgs["b"]


def test_dispatch_settles_delivered_and_failed_handlers_without_stopping() -> None:
    msgs = {"a": [SimpleNamespace(partition=0, offset=3)],
            "b": [SimpleNamespace(partition=1, offset=9)]}
    acked: list[Any] = []
    forgotten: list[Any] = []
    dispatch._settle(["a", "b"], msgs, [True, False], acked.append, forgotten.append,
                     lambda topic, ms, exc: pytest.fail("no handler was broken"))
    assert acked == msgs["a"] and forgotten == msgs["b"]

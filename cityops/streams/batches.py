"""One shared batch step for every agent: take a batch, handle it, acknowledge it.

Each agent (validation, aggregation, the alert engine) takes records in steps of up to
``CITYOPS_WORKER_BATCH_MAX`` (or what arrived within ``CITYOPS_WORKER_BATCH_S``). A step's
outputs and table writes are awaited (delivered) inside ``step``; only when it returns does
Faust's ``take_events`` acknowledge the batch, so a commit never runs ahead of what the batch
caused. A step that raises calls ``on_failure`` *before* the batch is acknowledged
(``alerting.stop_after_failed_step`` exits the process for a replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from cityops.streams import metrics

log = structlog.get_logger(__name__)

Step = Callable[[list[Any]], Awaitable[None]]
OnFailure = Callable[[str, list[Any]], None]


class BatchStream(Protocol):
    """What a step loop needs of a Faust stream."""

    def take_events(self, max_: int, within: float) -> Any: ...


async def run_step(events: list[Any], *, name: str, step: Step,
                   on_failure: Callable[[], OnFailure], lock: asyncio.Lock | None = None,
                   on_error: Callable[[], None] | None = None,
                   timeout_s: float | None = None) -> bool:
    """Run one step; True if its outputs and state were delivered.

    A step still running after ``timeout_s`` (``CITYOPS_WORKER_STEP_TIMEOUT_S``; the lock
    wait not counted) fails like one whose delivery failed: a send stuck inside the client
    never fails by itself. A failed step calls ``on_failure`` (looked up per failure, so a
    test or the worker can swap it after the agent started) before anything is acknowledged.
    """
    metrics.STEP_RECORDS.labels(agent=name).observe(len(events))
    try:
        if lock is None:
            await asyncio.wait_for(step(events), timeout_s)
        else:
            async with lock:
                await asyncio.wait_for(step(events), timeout_s)
        return True
    except Exception as exc:  # outputs or state not delivered: stop uncommitted
        if on_error is not None:
            on_error()
        metrics.AGENT_ERRORS.labels(agent=name).inc()
        log.exception("stream.step_failed", agent=name, n=len(events),
                      error=f"{type(exc).__name__}: {exc}"[:200])
        on_failure()(name, events)
        return False


async def run_steps(stream: BatchStream, *, name: str, size: int, within_s: float,
                    step: Step, on_failure: Callable[[], OnFailure],
                    lock: asyncio.Lock | None = None,
                    on_error: Callable[[], None] | None = None,
                    timeout_s: float | None = None) -> None:
    """Feed ``stream``'s batches to ``step`` (``run_step``) until the stream ends."""
    async for events in stream.take_events(size, within=within_s):
        await run_step(events, name=name, step=step, on_failure=on_failure, lock=lock,
                       on_error=on_error, timeout_s=timeout_s)


@dataclass(slots=True)
class Delivered:
    """A record handed to a step straight from the consumer (``streams.dispatch``): the
    same two attributes a step reads of a Faust event."""

    message: Any
    value: Any

"""Sending a replay: judged records to the feed's raw topic, refused ones to the dead letters.

One pacing path (``ingest.pacing.Pacer``, the clock simulations use too): each accepted record
is sent when its event time, divided by ``speed``, is due. A re-based run judges each record
by the clock of the moment it is due (the start moment moved on by its offset), so
``--rebase now --speed 1`` accepts a whole file; unpaced, every re-based record is judged
against the start moment (or ``rebase_to`` if later).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from cityops.core import topics
from cityops.core.feeds import ValidationContext
from cityops.core.settings import Settings
from cityops.ingest.deadletters import dead_letter, send_dead_letter
from cityops.ingest.exceptions import IngestError
from cityops.ingest.pacing import Clock, Pacer, Sleep
from cityops.ingest.ports import RecordProducer
from cityops.ingest.replay.judging import JudgeAt, read_records
from cityops.ingest.replay.mapping import RecordMapper
from cityops.ingest.replay.readers import progress_bar


@dataclass
class ReplaySummary:
    read: int = 0
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    delivery_failed: int = 0
    delivery_failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "sent": self.sent, "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
                "dead_lettered": self.dead_lettered, "delivery_failed": self.delivery_failed,
                "delivery_failures": dict(self.delivery_failures),
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


def _epoch_s(value: Any) -> float | None:
    """Epoch seconds of an aware ISO-8601 text or datetime, else None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.timestamp()
    return None


def _judged_when_due(base: ValidationContext, pacer: Pacer) -> JudgeAt:
    """Judge a record by the clock of the moment it will be due: the start moment of
    ``base`` moved on by the record's offset in the paced run."""
    start = base.now
    assert start is not None

    def judge_at(event_time: Any) -> ValidationContext:
        at = _epoch_s(event_time)
        if at is None:
            return base
        return dataclasses.replace(base, now=start + timedelta(seconds=pacer.offset_s(at)))

    return judge_at


def replay_file(path: Path, feed: str, producer: RecordProducer, settings: Settings,
                ctx: ValidationContext, *, fmt: str | None = None,
                mapping: dict[str, str] | None = None, constants: dict[str, Any] | None = None,
                encoding: str = "utf-8", rebase_to: datetime | None = None,
                naive_tz: tzinfo | None = None, speed: float | None = None,
                topic: str | None = None, progress: bool = False,
                stop: threading.Event | None = None, clock: Clock = time.monotonic,
                sleep: Sleep = time.sleep) -> ReplaySummary:
    """Stream ``path`` into ``feed``'s raw topic with ``producer``; refused records go to the
    dead-letter topic. Returns the summary once all are acknowledged."""
    path = Path(path)
    mapper = RecordMapper(feed, mapping, constants, naive_tz, rebase_to)
    if rebase_to is not None and ctx.now is None:
        # re-based events may sit a little ahead of the wall clock; judge them at the target
        ctx = dataclasses.replace(ctx, now=max(rebase_to, datetime.now(UTC)))
    pacer = Pacer(speed, stop=stop, clock=clock, sleep=sleep) if speed else None
    judge_at = (_judged_when_due(ctx, pacer)
                if pacer is not None and rebase_to is not None else None)
    out_topic = topic or settings.raw_topic(feed)
    dlq_topic = settings.topic(topics.DLQ)
    summary = ReplaySummary()
    started = clock()
    bar = progress_bar(path, fmt) if progress else None
    before = (producer.stats.failed, Counter(producer.stats.failures))
    try:
        for item in read_records(path, feed, mapper, ctx, fmt=fmt, encoding=encoding,
                                 max_bytes=settings.max_message_bytes, progress=bar,
                                 judge_at=judge_at):
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
            summary.read += 1
            if item.rejection is not None:
                summary.rejected[item.rejection.reason] += 1
                letter = dead_letter(feed, item.raw, item.rejection, stage="replay",
                                     source=f"replay:{path.name}", offset=item.line)
                try:
                    send_dead_letter(producer, dlq_topic, letter)
                    summary.dead_lettered += 1
                except IngestError:
                    pass  # counted by the producer as a delivery failure
                continue
            if pacer is not None and item.event_time is not None:
                pacer.wait(item.event_time.timestamp())
            assert item.value is not None
            producer.send(out_topic, item.value, item.key)
            summary.sent += 1
    finally:
        if bar is not None:
            bar.close()
        producer.flush()
        summary.seconds = clock() - started
        summary.delivery_failed = producer.stats.failed - before[0]
        summary.delivery_failures = producer.stats.failures - before[1]
    return summary

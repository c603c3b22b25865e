"""Dead letters from the ingest edge (replay, HTTP intake): the same ``DeadLetter`` JSON the
stream processors emit, on ``settings.topic("dlq")``, keyed by feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from cityops.core.contract import Rejection
from cityops.core.deadletter import DeadLetter
from cityops.ingest.ports import RecordSender


def dead_letter(feed: str, raw: bytes, rejection: Rejection, *, stage: Literal[
        "ingest", "replay", "intake"], source: str, offset: int = -1,
        key: bytes | None = None, received_at: datetime | None = None) -> DeadLetter:
    """A dead letter for one refused record; ``source`` names where it came from
    (``replay:<file>``, ``intake:<client>``), ``offset`` its line / index there."""
    return DeadLetter.from_bytes(
        raw, feed=feed, reason=rejection.reason, detail=rejection.detail[:1000],
        field=rejection.field, source_topic=source[:200], source_partition=-1,
        source_offset=offset, key_text=key.decode("utf-8", "replace") if key else None,
        received_at=received_at or datetime.now(UTC), stage=stage)


def send_dead_letter(producer: RecordSender, topic: str, letter: DeadLetter) -> Any:
    """Produce one dead letter (``producer`` is a ``FeedProducer``); returns the future."""
    return producer.send(topic, letter.to_json(), letter.key())

"""One NGSI-LD request, from its body to its answer: parse, map each entity, hand the events
to the intake (which validates, produces and dead-letters them), dead-letter the attributes
refused on their own, and answer in NGSI-LD's shapes.

The intake owns HTTP concerns (reading the body within its bound, backpressure, who may
post); this module sees only the body bytes, the ``Link`` header and the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog

from cityops.core import topics
from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import ValidationContext
from cityops.core.settings import Settings
from cityops.core.strictjson import StrictJSONError, loads_strict
from cityops.ingest.deadletters import dead_letter, send_dead_letter
from cityops.ingest.exceptions import IngestError, MappingError
from cityops.ingest.ngsi_ld.answers import Outcome, answer, problem
from cityops.ingest.ngsi_ld.context import link_context
from cityops.ingest.ngsi_ld.mapping import ENTITY_FEEDS, Mapped, map_entity
from cityops.ingest.ngsi_ld.payload import read_payload
from cityops.ingest.ports import RecordSender

log = structlog.get_logger(__name__)

Item = tuple[str | None, bytes, Rejection | None]
Process = Callable[[list[Item], str], tuple[int, dict[str, Any]]]


class IntakeLike(Protocol):
    """What an NGSI-LD request needs of the intake."""

    settings: Settings

    @property
    def producer(self) -> RecordSender: ...

    def ctx(self) -> ValidationContext: ...

    def process(self, items: list[Item], client: str) -> tuple[int, dict[str, Any]]: ...


def _entity_id(entity: Any) -> str | None:
    if isinstance(entity, dict):
        eid = entity.get("id", entity.get("@id"))
        return eid if isinstance(eid, str) else None
    return None


def feed_of(entity: Any) -> str | None:
    """The feed an entity's type names, for the dead letter of an entity that failed to map."""
    t = entity.get("type") if isinstance(entity, dict) else None
    if isinstance(t, str):
        return ENTITY_FEEDS.get(t.rsplit("/", 1)[-1].rsplit("#", 1)[-1])
    return None


def _refusal_letters(intake: IntakeLike, mapped: list[tuple[int, bytes, Mapped]],
                     client: str) -> None:
    """Dead-letter each attribute refused from an accepted entity, with the raw entity."""
    dlq = intake.settings.topic(topics.DLQ)
    now = datetime.now(UTC)
    for index, raw, m in mapped:
        for r in m.refused:
            letter = dead_letter(m.feed, raw, Rejection(r.reason, r.detail, r.attribute),
                                 stage="intake", source=f"intake:{client}", offset=index,
                                 received_at=now)
            try:
                send_dead_letter(intake.producer, dlq, letter)
            except IngestError as exc:
                log.warning("intake.dead_letter_failed", error=str(exc))


def handle(intake: IntakeLike, body: bytes, *, operation: str, link: str | None,
           client: str, process: Process | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or None, headers) for one NGSI-LD request body. ``process`` judges
    and produces the mapped events (default ``intake.process``; the caller may bind who is
    asking to it)."""
    settings = intake.settings
    process = process or intake.process
    try:  # strict: a duplicated key, NaN or a 65-bit integer is refused (core.strictjson)
        parsed = loads_strict(body.lstrip(b"\xef\xbb\xbf") or b"null")
    except StrictJSONError as exc:
        return 400, problem("InvalidRequest", f"body is not JSON: {exc.detail}", 400,
                            reason=exc.reason), {}
    try:
        payload = read_payload(parsed, link_context(link))
    except MappingError as exc:
        return 400, problem("InvalidRequest", exc.detail, 400, reason=exc.reason), {}
    if len(payload.entities) > settings.intake_max_batch:
        return 413, problem("about:blank", f"{len(payload.entities)} entities > limit "
                            f"{settings.intake_max_batch} per request", 413,
                            title="Payload Too Large", reason="too_many_records"), {}
    ctx = intake.ctx()
    items: list[Item] = []
    ids: list[str | None] = []
    mapped: list[tuple[int, bytes, Mapped]] = []
    for index, entity in enumerate(payload.entities):
        raw = orjson.dumps(entity)
        ids.append(_entity_id(entity))
        try:
            m = map_entity(entity, ctx, payload.context)
        except MappingError as exc:
            items.append((feed_of(entity), raw, Rejection(exc.reason, exc.detail, exc.field)))
            continue
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # a shape the mapping did not foresee: refuse this entity, keep the others
            items.append((feed_of(entity), raw,
                          Rejection("invalid", f"{type(exc).__name__}: {exc}")))
            continue
        wire = orjson.dumps(m.event)
        judged = decode_event(m.feed, wire, ctx, max_bytes=settings.max_message_bytes)
        if isinstance(judged, Rejection):  # dead-lettered as sent, not as mapped
            items.append((m.feed, raw, judged))
            continue
        items.append((m.feed, wire, None))
        mapped.append((index, raw, m))
    status, result = process(items, client)
    if status == 503:
        return 503, problem("about:blank", result.get("detail", "busy"), 503,
                            title="Service Unavailable", reason="busy"), {}
    refused_by_index = {index: m.refused for index, _, m in mapped}
    outcomes = []
    for r in result["results"]:
        i = r["index"]
        outcomes.append(Outcome(ids[i], r["status"], r.get("reason"), r.get("detail"),
                                r.get("field") or None,
                                refused_by_index.get(i, ()) if r["status"] == "accepted"
                                else ()))
    _refusal_letters(intake, [(i, raw, m) for i, raw, m in mapped
                              if outcomes[i].status == "accepted"], client)
    return answer(operation, outcomes)

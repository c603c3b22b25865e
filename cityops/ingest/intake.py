"""HTTP intake for third-party sensor vendors: JSON batches in, per-record answers out.

Endpoints (FastAPI, served by ``cityops intake``):

``POST /v1/feeds/{feed}/events``
    Body: a JSON array of events, ``{"events": [...]}``, or NDJSON (``Content-Type:
    application/x-ndjson``, one event per line). Each record is judged by the feed contract;
    accepted ones are produced to ``raw.<feed>`` and the answer waits for Kafka's ``acks=all``;
    rejected ones are answered with their reason and sent to the dead-letter topic.
``POST /ngsi-ld/v1/entityOperations/{upsert,update,create}``, ``POST /ngsi-ld/v1/entities``,
``POST /ngsi-ld/v1/notify`` (context-broker notifications), each also with a trailing slash
    FIWARE NGSI-LD entities (AirQualityObserved, OffStreetParking, CrowdFlowObserved), mapped
    by ``cityops.ingest.ngsi_ld`` and then judged like any event; answered in NGSI-LD's own
    shapes (``cityops.ingest.ngsi_ld.answers``).
``GET /healthz`` (open, for probes), ``GET /v1/stats``

Every route but ``/healthz`` needs a vendor's API key (``Authorization: Bearer`` or
``X-API-Key``; ``cityops keys``): 401 when it is missing or unknown, 403 naming the scope
(``feed:parking``, ``source:cp-07``) when the batch holds a record the key may not send; nothing
of a refused batch is produced. The lock lives in ``intake_auth``, apart from NGSI-LD parsing:
the NGSI-LD endpoint gets ``Intake.process`` bound to the caller.

Answers: 200 when every record was accepted, 207 when some were rejected or not delivered
(``results`` has one entry per record: ``accepted`` / ``rejected`` / ``failed`` with
``reason``), 400 for a body that is not JSON at all, 413 for a body over
``CITYOPS_INTAKE_MAX_BODY_BYTES`` or a batch over ``CITYOPS_INTAKE_MAX_BATCH`` records, 503 with
``Retry-After`` when ``CITYOPS_INTAKE_MAX_PENDING`` records already await Kafka
acknowledgement (backpressure: a slow broker makes clients wait, not the server's memory grow).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cityops.core import topics
from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import FEED_MODELS, ValidationContext
from cityops.core.keys import LOCAL, Gate, KeyStore, Principal
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.core.strictjson import StrictJSONError, loads_strict
from cityops.ingest.deadletters import dead_letter, send_dead_letter
from cityops.ingest.exceptions import IngestError
from cityops.ingest.intake_auth import (
    Refused,
    caller_dependency,
    check_feed,
    scope_violation,
    scoped_ids,
)
from cityops.ingest.ngsi_ld import endpoint as ngsi_ld_endpoint
from cityops.ingest.ngsi_ld.answers import problem
from cityops.ingest.producer import FeedProducer

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 1
NGSI_LD_ROUTES = {
    "/ngsi-ld/v1/entityOperations/upsert": "upsert",
    "/ngsi-ld/v1/entityOperations/update": "update",
    "/ngsi-ld/v1/entityOperations/create": "create",
    "/ngsi-ld/v1/entities": "entity",
    "/ngsi-ld/v1/notify": "notify",
}


class _TooLarge(Exception):
    pass


def _json(body: dict[str, Any], status: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers,
                    media_type="application/json")


@dataclass
class IntakeStats:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    throttled: int = 0
    pending: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Intake:
    """The intake's state: producer, validation context, the bound on pending records."""

    def __init__(self, settings: Settings, registry: Registry, producer: FeedProducer) -> None:
        self.settings = settings
        self.registry = registry
        self.producer = producer
        self.stats = IntakeStats()
        self._lock = threading.Lock()

    def ctx(self) -> ValidationContext:
        return ValidationContext.from_settings(self.settings, self.registry)

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.stats.pending + n > self.settings.intake_max_pending:
                self.stats.throttled += 1
                return False
            self.stats.pending += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.stats.pending -= n

    def _count(self, status: str, reason: str | None = None) -> None:
        with self._lock:
            setattr(self.stats, status, getattr(self.stats, status) + 1)
            if reason:
                self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1

    # --- the work, in a worker thread -----------------------------------------------------
    def process(self, items: list[tuple[str | None, bytes, Rejection | None]], client: str,
                principal: Principal = LOCAL) -> tuple[int, dict[str, Any]]:
        """Judge, produce and await a batch. ``items``: (feed, wire bytes, early rejection).

        Raises ``Refused`` (403) before producing anything when the key's scope does not
        cover every accepted record."""
        ctx = self.ctx()
        max_bytes = self.settings.max_message_bytes
        results: list[dict[str, Any]] = []
        to_send: list[tuple[int, str, bytes, Any]] = []
        sources: list[tuple[str, tuple[str, ...]]] = []
        for i, (feed, raw, early) in enumerate(items):
            result: Any = early
            if result is None:
                result = decode_event(feed or "", raw, ctx, max_bytes=max_bytes)
            if isinstance(result, Rejection):
                results.append({"index": i, "status": "rejected", "reason": result.reason,
                                "field": result.field, "detail": result.detail})
                continue
            results.append({"index": i, "status": "accepted", "event_id": result.event_id,
                            "feed": result.feed})
            to_send.append((i, result.feed, raw, result.key()))
            sources.append((result.feed, scoped_ids(result)))
        refused = scope_violation(principal, sources)
        if refused is not None:
            raise refused
        if to_send and not self.reserve(len(to_send)):
            return 503, {"error": "busy", "detail": f"more than "
                         f"{self.settings.intake_max_pending} records await Kafka; retry "
                         f"after {RETRY_AFTER_S} s", "pending": self.stats.pending}
        try:
            futures = []
            for i, feed, raw, key in to_send:
                try:
                    futures.append((i, self.producer.send(self.settings.raw_topic(feed), raw,
                                                          key, block=False)))
                except IngestError as exc:
                    results[i] = {"index": i, "status": "failed", "reason": exc.code,
                                  "detail": str(exc)}
            self._dead_letters(items, results, client)
            timeout = self.settings.intake_ack_timeout_s
            for i, fut in futures:
                reason = self.producer.outcome(fut, timeout)
                if reason is not None:
                    results[i] = {"index": i, "status": "failed", "reason": reason,
                                  "detail": "not acknowledged by Kafka"}
        finally:
            if to_send:
                self.release(len(to_send))
        for r in results:
            self._count(r["status"], r.get("reason") if r["status"] != "accepted" else None)
        counts = {s: sum(1 for r in results if r["status"] == s)
                  for s in ("accepted", "rejected", "failed")}
        status = 200 if counts["accepted"] == len(results) else 207
        return status, {**counts, "results": results}

    def _dead_letters(self, items: list[tuple[str | None, bytes, Rejection | None]],
                      results: list[dict[str, Any]], client: str) -> None:
        dlq = self.settings.topic(topics.DLQ)
        now = datetime.now(UTC)
        for r in results:
            if r["status"] != "rejected":
                continue
            feed, raw, _ = items[r["index"]]
            letter = dead_letter(feed or "unknown", raw, Rejection(r["reason"], r["detail"],
                                                                   r.get("field", "")),
                                 stage="intake", source=f"intake:{client}",
                                 offset=r["index"], received_at=now)
            try:
                send_dead_letter(self.producer, dlq, letter)
            except IngestError as exc:
                log.warning("intake.dead_letter_failed", error=str(exc))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _split_records(body: bytes, ndjson: bool, max_bytes: int
                   ) -> list[bytes | Rejection] | Response:
    """Per-record wire bytes (or a per-record rejection) from a batch body."""
    if ndjson:
        out: list[bytes | Rejection] = []
        for line in body.split(b"\n"):
            line = line.strip(b"\r \t")
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if line:
                out.append(line if len(line) <= max_bytes else Rejection(
                    "oversized", f"{len(line)} bytes > limit {max_bytes}"))
        return out
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _json({"error": "bad_encoding",
                               "detail": f"body is not UTF-8 at byte {exc.start}"}, 400)
    try:
        data = loads_strict(body.lstrip(b"\xef\xbb\xbf") or b"null")
    except StrictJSONError as exc:
        return _json({"error": exc.reason, "detail": exc.detail}, 400)
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return _json({"error": "not_an_object",
                               "detail": "expected a JSON array of events, {\"events\": [...]}"
                               " or NDJSON"}, 400)
    return [orjson.dumps(item) for item in data]


def _client(request: Request, principal: Principal) -> str:
    """Who sent a batch, as dead letters record it: the key's name and the peer address."""
    host = request.client.host if request.client else "unknown"
    return f"{principal.name}@{host}" if principal.authenticated else host


def create_app(settings: Settings, registry: Registry, producer: FeedProducer,
               gate: Gate | None = None) -> FastAPI:
    """The intake application; the caller owns (and closes) the producer. ``gate`` defaults
    to the key store of ``settings`` for a bind on ``intake_host``."""
    intake = Intake(settings, registry, producer)
    gate = gate or Gate(KeyStore(settings.keys_path), "intake", settings.intake_host)
    app = FastAPI(title="cityops intake", version="1",
                  description="Sensor-vendor and FIWARE NGSI-LD intake for cityops feeds")
    app.state.intake = intake
    app.state.gate = gate
    caller = caller_dependency(gate)

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Response:
        return _json(exc.body, exc.status, headers=exc.headers)

    def too_large() -> Response:
        return _json({"error": "too_large", "detail": "body larger than "
                               f"{settings.intake_max_body_bytes} bytes"}, 413)

    def answer(status: int, body: dict[str, Any]) -> Response:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return _json(body, status, headers=headers)

    def busy() -> Response | None:
        """503 before reading the body when the pending bound is already reached, so a slow
        Kafka holds clients back instead of their request bodies piling up here."""
        if intake.stats.pending < settings.intake_max_pending:
            return None
        with intake._lock:
            intake.stats.throttled += 1
        return answer(503, {"error": "busy", "detail": f"{intake.stats.pending} records "
                            f"await Kafka; retry after {RETRY_AFTER_S} s",
                            "pending": intake.stats.pending})

    def too_many(n: int) -> Response:
        return _json({"error": "too_many_records", "detail": f"{n} records > limit "
                               f"{settings.intake_max_batch} per request"}, 413)

    @app.post("/v1/feeds/{feed}/events")
    async def post_events(feed: str, request: Request,
                          principal: Principal = Depends(caller)) -> Response:
        with intake._lock:
            intake.stats.requests += 1
        if feed not in FEED_MODELS:
            return _json({"error": "unknown_feed", "detail": f"{feed!r} (allowed: "
                                   f"{', '.join(FEED_MODELS)})"}, 404)
        check_feed(principal, feed)
        refused = busy()
        if refused is not None:
            return refused
        try:
            body = await _read_body(request, settings.intake_max_body_bytes)
        except _TooLarge:
            return too_large()
        ctype = request.headers.get("content-type", "")
        ndjson = "ndjson" in ctype or "jsonlines" in ctype or "json-seq" in ctype
        records = _split_records(body, ndjson, settings.max_message_bytes)
        if isinstance(records, Response):
            return records
        if len(records) > settings.intake_max_batch:
            return too_many(len(records))
        items: list[tuple[str | None, bytes, Rejection | None]] = [
            (feed, b"", r) if isinstance(r, Rejection) else (feed, r, None) for r in records]
        status, payload = await run_in_threadpool(intake.process, items,
                                                  _client(request, principal), principal)
        return answer(status, payload)

    def ngsi_ld_route(operation: str) -> Any:
        async def post_ngsi_ld(request: Request,
                               principal: Principal = Depends(caller)) -> Response:
            with intake._lock:
                intake.stats.requests += 1
            if busy() is not None:
                return ngsi_ld_answer(503, problem(
                    "about:blank", f"{intake.stats.pending} records await Kafka; retry after "
                    f"{RETRY_AFTER_S} s", 503, title="Service Unavailable", reason="busy"), {})
            try:
                body = await _read_body(request, settings.intake_max_body_bytes)
            except _TooLarge:
                return ngsi_ld_answer(413, problem(
                    "about:blank", f"body larger than {settings.intake_max_body_bytes} bytes",
                    413, title="Payload Too Large", reason="too_large"), {})
            status, payload, headers = await run_in_threadpool(
                ngsi_ld_endpoint.handle, intake, body, operation=operation,
                link=request.headers.get("link"), client=_client(request, principal),
                process=functools.partial(intake.process, principal=principal))
            return ngsi_ld_answer(status, payload, headers)

        return post_ngsi_ld

    def ngsi_ld_answer(status: int, body: Any, headers: dict[str, str]) -> Response:
        # only the pending bound passes: an unknown @context (NGSI-LD's 503) never becomes
        # known by asking again, so it gets no Retry-After
        if status == 503 and isinstance(body, dict) and body.get("reason") == "busy":
            headers = {**headers, "Retry-After": str(RETRY_AFTER_S)}
        if body is None:
            return Response(status_code=status, headers=headers)
        return Response(orjson.dumps(body), status, headers=headers,
                        media_type="application/json")

    # the IoT Agents post with a trailing slash (".../upsert/?options=update"): both spellings
    # are answered directly, never with a redirect
    for path, operation in NGSI_LD_ROUTES.items():
        for spelling in (path, path + "/"):
            app.add_api_route(spelling, ngsi_ld_route(operation), methods=["POST"])

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "pending": intake.stats.pending}

    @app.get("/v1/stats", dependencies=[Depends(caller)])
    def stats() -> dict[str, Any]:
        s = intake.stats
        return {"requests": s.requests, "accepted": s.accepted, "rejected": s.rejected,
                "failed": s.failed, "throttled": s.throttled, "pending": s.pending,
                "reasons": dict(s.reasons), "producer": producer.stats.as_dict()}

    return app

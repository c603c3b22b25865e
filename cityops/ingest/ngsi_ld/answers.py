"""NGSI-LD answers (ETSI GS CIM 009): status codes, ``BatchOperationResult``, ProblemDetails.

====================================  ========================================================
request                               answer
====================================  ========================================================
``entityOperations/create``           201 + the array of created entity ids
``entityOperations/upsert|update``    204, no body
``POST /entities`` (one entity)       201 + ``Location: /ngsi-ld/v1/entities/<id>``
notification (``/ngsi-ld/v1/notify``) 200 + ``BatchOperationResult`` (all in ``success``)
any of these with a refused entity    207 + ``BatchOperationResult``: ``success`` (ids
or attribute                          accepted), ``errors`` (``{entityId, error:
                                      ProblemDetails}``); a refused attribute of an accepted
                                      entity is in both, with ``attributeName``
``POST /entities`` refused whole      400 (or 503 if Kafka did not acknowledge) + ProblemDetails
a body that is not JSON               400 ``InvalidRequest``
too large / too many entities         413 ProblemDetails
intake busy                           503 ProblemDetails + ``Retry-After``
====================================  ========================================================

ProblemDetails (RFC 7807, as NGSI-LD uses it) carries ``type`` (an NGSI-LD error type URI),
``title``, ``status``, ``detail`` and, as extension members, cityops' stable ``reason`` code
and the ``attributeName`` concerned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cityops.ingest.ngsi_ld.mapping import Refusal

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
_TITLES = {"InvalidRequest": "Invalid request", "BadRequestData": "Bad request data",
           "LdContextNotAvailable": "@context not available",
           "InternalError": "Internal error"}
# reasons whose NGSI-LD error type is not BadRequestData
_TYPE_OF = {"unknown_context": "LdContextNotAvailable", "bad_json": "InvalidRequest",
            "bad_encoding": "InvalidRequest"}


@dataclass
class Outcome:
    """What became of one entity of a request."""

    entity_id: str | None
    status: str  # accepted | rejected | failed
    reason: str | None = None
    detail: str | None = None
    attribute: str | None = None
    refused: tuple[Refusal, ...] = field(default_factory=tuple)


def problem(error: str, detail: str, status: int, *, reason: str | None = None,
            attribute: str | None = None, title: str | None = None) -> dict[str, Any]:
    """A ProblemDetails body; ``error`` is an NGSI-LD error type name or a full URI."""
    body: dict[str, Any] = {
        "type": error if ":" in error else ERRORS + error,
        "title": title or _TITLES.get(error, error), "status": status, "detail": detail}
    if reason:
        body["reason"] = reason
    if attribute:
        body["attributeName"] = attribute
    return body


def _entity_error(o: Outcome) -> dict[str, Any]:
    if o.status == "failed":
        err = problem("InternalError", o.detail or "not acknowledged by Kafka", 503,
                      reason=o.reason)
    else:
        kind = _TYPE_OF.get(o.reason or "", "BadRequestData")
        err = problem(kind, o.detail or "", 503 if kind == "LdContextNotAvailable" else 400,
                      reason=o.reason, attribute=o.attribute)
    return {"entityId": o.entity_id, "error": err}


def batch_result(outcomes: list[Outcome]) -> dict[str, Any]:
    """``BatchOperationResult``: ids accepted, and one error per refusal."""
    success = [o.entity_id for o in outcomes if o.status == "accepted"]
    errors = [_entity_error(o) for o in outcomes if o.status != "accepted"]
    for o in outcomes:
        if o.status == "accepted":
            errors.extend({"entityId": o.entity_id, "error": problem(
                "BadRequestData", f"attribute refused, rest of the entity accepted: {r.detail}",
                400, reason=r.reason, attribute=r.attribute)} for r in o.refused)
    return {"success": success, "errors": errors}


def answer(operation: str, outcomes: list[Outcome]
           ) -> tuple[int, Any, dict[str, str]]:
    """(status, body or None, headers) for ``operation``: create, upsert, update, entity or
    notify."""
    clean = all(o.status == "accepted" and not o.refused for o in outcomes)
    if operation == "entity" and len(outcomes) == 1 and not clean:
        o = outcomes[0]
        if o.status != "accepted":
            err = _entity_error(o)["error"]
            return err["status"], err, {}
    if not clean:
        return 207, batch_result(outcomes), {}
    if operation == "create":
        return 201, [o.entity_id for o in outcomes], {}
    if operation == "entity" and len(outcomes) == 1:
        return 201, None, {"Location": f"/ngsi-ld/v1/entities/{outcomes[0].entity_id}"}
    if operation == "notify":
        return 200, batch_result(outcomes), {}
    return 204, None, {}

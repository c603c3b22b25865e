"""NGSI-LD answers: status codes, BatchOperationResult and ProblemDetails per operation."""

from __future__ import annotations

import pytest

from cityops.ingest.ngsi_ld import Refusal
from cityops.ingest.ngsi_ld.answers import ERRORS, Outcome, answer

OK = Outcome("urn:a", "accepted")
BAD = Outcome("urn:b", "rejected", "unknown_site", "no registry stations entry", "id")
LOST = Outcome("urn:c", "failed", "KafkaTimeoutError", "not acknowledged by Kafka")
PARTLY = Outcome("urn:d", "accepted",
                 refused=(Refusal("CO", "out_of_range", "CO 500 mg/m³ is impossible"),))


@pytest.mark.parametrize(("operation", "status", "body", "headers"), [
    ("create", 201, ["urn:a"], {}),
    ("upsert", 204, None, {}),
    ("update", 204, None, {}),
    ("entity", 201, None, {"Location": "/ngsi-ld/v1/entities/urn:a"}),
    ("notify", 200, {"success": ["urn:a"], "errors": []}, {}),
])
def test_all_accepted(operation, status, body, headers):
    assert answer(operation, [OK]) == (status, body, headers)


def test_batch_with_refusals_is_207_batch_operation_result():
    status, body, _ = answer("upsert", [OK, BAD, LOST, PARTLY])
    assert status == 207
    assert body["success"] == ["urn:a", "urn:d"]
    errors = {(e["entityId"], e["error"]["reason"]): e["error"] for e in body["errors"]}
    assert set(errors) == {("urn:b", "unknown_site"), ("urn:c", "KafkaTimeoutError"),
                           ("urn:d", "out_of_range")}
    bad = errors[("urn:b", "unknown_site")]
    assert bad["type"] == ERRORS + "BadRequestData" and bad["status"] == 400
    assert bad["attributeName"] == "id" and bad["detail"] and bad["title"]
    assert errors[("urn:c", "KafkaTimeoutError")]["type"] == ERRORS + "InternalError"
    co = errors[("urn:d", "out_of_range")]
    assert co["attributeName"] == "CO" and "rest of the entity accepted" in co["detail"]


def test_single_entity_refused_is_problem_details():
    status, body, _ = answer("entity", [BAD])
    assert status == 400 and body["type"] == ERRORS + "BadRequestData"
    status, body, _ = answer("entity", [Outcome("urn:e", "rejected", "unknown_context", "x")])
    assert status == 503 and body["type"] == ERRORS + "LdContextNotAvailable"
    assert answer("entity", [PARTLY])[0] == 207

"""The NGSI-LD intake against the real broker, as FIWARE clients meet it: context-broker
notifications, IoT Agent paths, the Smart Data Models examples, NGSI-LD answers."""

from __future__ import annotations

from collections import Counter

import httpx
import orjson
import pytest

from cityops.core.deadletter import DeadLetter
from cityops.core.settings import load_settings
from cityops.ingest.producer import FeedProducer

pytestmark = pytest.mark.integration
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
SDM_LINK = ('<https://smartdatamodels.org/context.jsonld>; '
            'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')
EXAMPLES = ["air-quality-normalized", "air-quality-key-values", "off-street-parking-normalized",
            "off-street-parking-key-values", "crowd-flow-normalized", "crowd-flow-key-values"]


def _settings(isolated_settings, **extra):
    return load_settings(**{**isolated_settings.model_dump(
        include={"data_dir", "kafka_port", "topic_prefix"}), **extra})


def _letters(consume, bootstrap, settings, n) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value)
            for r in consume(bootstrap, settings.topic("dlq"), n)]


def test_notification_of_three_entities_one_bad(isolated_settings, kafka_broker,
                                                example_registry, ngsi_ld_example, consume,
                                                serve_intake):
    settings = _settings(isolated_settings)
    parking = ngsi_ld_example("off-street-parking-key-values")
    crowd = ngsi_ld_example("crowd-flow-normalized")
    wrong_size = {**ngsi_ld_example("off-street-parking-normalized"),
                  "id": "urn:ngsi-ld:OffStreetParking:cp_wfc",
                  "totalSpotNumber": {"type": "Property", "value": 414}}  # cp_wfc has 650
    entities = [parking, wrong_size, crowd]
    for e in entities:  # Orion-LD sends the context in the Link header, not in the entities
        e.pop("@context")
    notification = {"id": "urn:ngsi-ld:Notification:5f1c7e2a", "type": "Notification",
                    "subscriptionId": "urn:ngsi-ld:Subscription:cityops-parking",
                    "notifiedAt": "2021-03-11T15:51:03.120Z", "data": entities}
    with FeedProducer(settings, client_id="it-ngsi-notify") as producer, \
            serve_intake(settings, example_registry, producer) as url, \
            httpx.Client(timeout=60) as http:
        r = http.post(f"{url}/ngsi-ld/v1/notify", content=orjson.dumps(notification),
                      headers={"content-type": "application/json", "link": SDM_LINK})
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [parking["id"], crowd["id"]]
    [error] = body["errors"]
    assert error["entityId"] == "urn:ngsi-ld:OffStreetParking:cp_wfc"
    problem = error["error"]
    assert problem["type"] == ERRORS + "BadRequestData" and problem["status"] == 400
    assert problem["reason"] == "capacity_mismatch" and problem["attributeName"] == (
        "totalSpotNumber")
    assert "totalSpotNumber 414" in problem["detail"] and "650" in problem["detail"]
    # two events on the raw topics, exactly as mapped
    [park] = [orjson.loads(m.value) for m in consume(kafka_broker,
                                                     settings.raw_topic("parking"), 1)]
    assert (park["carpark_id"], park["capacity"], park["occupied"], park["free"]) == (
        "cp_example_trindade", 414, 282, 132)
    assert park["event_time"] == "2021-03-11T15:51:02+00:00"
    [flow] = [orjson.loads(m.value) for m in consume(kafka_broker,
                                                     settings.raw_topic("footfall"), 1)]
    assert (flow["source"], flow["zone_id"], flow["entries"], flow["exits"],
            flow["interval_s"]) == ("fc_minzu_road_01", "minzu_road", 100, 0, 300)
    # the bad one, explained in the dead-letter topic with the entity as sent
    [letter] = _letters(consume, kafka_broker, settings, 1)
    assert (letter.reason, letter.field, letter.stage) == (
        "capacity_mismatch", "totalSpotNumber", "intake")
    assert orjson.loads(letter.raw)["id"] == "urn:ngsi-ld:OffStreetParking:cp_wfc"


def test_examples_through_the_iot_agent_path(isolated_settings, kafka_broker,
                                             example_registry, ngsi_ld_example, consume,
                                             serve_intake):
    settings = _settings(isolated_settings)
    entities = [ngsi_ld_example(name) for name in EXAMPLES]
    with FeedProducer(settings, client_id="it-ngsi-examples") as producer, \
            serve_intake(settings, example_registry, producer) as url, \
            httpx.Client(timeout=60) as http:
        # the IoT Agent's spelling: trailing slash and ?options=update, answered directly
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert/?options=update",
                      content=orjson.dumps(entities),
                      headers={"content-type": "application/ld+json"})
        assert r.status_code == 207, r.text  # every entity stored, one attribute refused
        body = r.json()
        assert body["success"] == [e["id"] for e in entities]
        [error] = body["errors"]
        assert error["entityId"] == entities[0]["id"]
        assert (error["error"]["attributeName"], error["error"]["reason"]) == (
            "CO", "out_of_range")
        # without the refused attribute, the same path answers 204
        clean = [e for e in entities[1:]]
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert/", json=clean)
        assert r.status_code == 204 and r.content == b""
    air = [orjson.loads(m.value) for m in consume(kafka_broker, settings.raw_topic("air"), 3)]
    assert sorted((a["event_time"], a.get("co_mgm3")) for a in air) == [
        ("2016-03-15T11:00:00+00:00", 0.5), ("2016-03-15T11:00:00+00:00", 0.5),
        ("2016-03-15T12:00:00+00:00", None)]
    assert all((a["no2_ugm3"], a["so2_ugm3"], a["humidity_pct"]) == (69.0, 11.0, 54.0)
               for a in air)
    parking = consume(kafka_broker, settings.raw_topic("parking"), 4)
    footfall = consume(kafka_broker, settings.raw_topic("footfall"), 4)
    assert len(parking) == len(footfall) == 4
    [letter] = _letters(consume, kafka_broker, settings, 1)
    assert (letter.reason, letter.field) == ("out_of_range", "CO")
    assert "500 mg/m³" in letter.detail


def test_ngsi_ld_answers_and_bounds(isolated_settings, kafka_broker, example_registry,
                                    ngsi_ld_example, consume, serve_intake):
    settings = _settings(isolated_settings, intake_max_batch=3, intake_max_body_bytes=20_000)
    parking = ngsi_ld_example("off-street-parking-key-values")
    crowd = ngsi_ld_example("crowd-flow-key-values")
    with FeedProducer(settings, client_id="it-ngsi-answers") as producer, \
            serve_intake(settings, example_registry, producer) as url, \
            httpx.Client(timeout=60) as http:
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/create", json=[parking, crowd])
        assert r.status_code == 201 and r.json() == [parking["id"], crowd["id"]]
        r = http.post(f"{url}/ngsi-ld/v1/entities/", json=parking)
        assert r.status_code == 201
        assert r.headers["location"] == f"/ngsi-ld/v1/entities/{parking['id']}"
        # one entity refused whole: ProblemDetails
        r = http.post(f"{url}/ngsi-ld/v1/entities", json={**parking, "id": "urn:x:nowhere"})
        assert r.status_code == 400
        assert r.json()["type"] == ERRORS + "BadRequestData"
        assert r.json()["reason"] == "unknown_site" and "urn:x:nowhere" in r.json()["detail"]
        r = http.post(f"{url}/ngsi-ld/v1/entities", json={**parking, "occupiedSpotNumber": 900})
        assert r.status_code == 400 and r.json()["reason"] == "over_capacity"
        r = http.post(f"{url}/ngsi-ld/v1/entities",
                      json={**parking, "@context": "https://vendor.example/ctx.jsonld"})
        assert r.status_code == 503 and r.json()["type"] == ERRORS + "LdContextNotAvailable"
        assert "retry-after" not in r.headers  # asking again cannot make the context known
        # whole-request errors, still under the intake's bounds
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert", content=b"[{")
        assert r.status_code == 400 and r.json()["type"] == ERRORS + "InvalidRequest"
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert", json=[crowd] * 4)
        assert r.status_code == 413 and r.json()["reason"] == "too_many_records"
        r = http.post(f"{url}/ngsi-ld/v1/notify/",
                      content=b'{"type": "Notification", "data": [' + b" " * 21_000 + b"]}")
        assert r.status_code == 413 and r.json()["status"] == 413
        assert r.json()["reason"] == "too_large"
        # no 307 for any spelling
        for path in ("entityOperations/update/", "notify", "entities/"):
            assert http.post(f"{url}/ngsi-ld/v1/{path}", json=[]).status_code != 307
    raw = consume(kafka_broker, settings.raw_topic("parking"), 2)
    assert len(raw) == 2
    letters = _letters(consume, kafka_broker, settings, 3)
    assert Counter(d.reason for d in letters) == {"unknown_site": 1, "unknown_context": 1,
                                                  "over_capacity": 1}
    # each as the client sent it (the NGSI-LD entity, not the mapped event), under its feed
    assert all(orjson.loads(d.raw)["type"] == "OffStreetParking" for d in letters)
    assert {d.feed for d in letters} == {"parking"}

"""Intake doors: per-vendor keys scoped to feeds and sources, on the real app and broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from cityops.core.keys import KeyStore
from cityops.core.settings import load_settings
from cityops.ingest.producer import FeedProducer
from cityops.ingest.simulate import Simulation

pytestmark = pytest.mark.integration
START = datetime(2025, 10, 3, 20, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_intake_keys_and_scopes(tmp_path, isolated_settings, kafka_broker, registry, consume,
                                serve_intake):
    settings = load_settings(**isolated_settings.model_dump(
        include={"data_dir", "kafka_port", "topic_prefix"}), keys_file=tmp_path / "keys.json")
    store = KeyStore(settings.keys_path)
    _, acme = store.add("acme", "intake", feeds=("parking",), sources=("cp_w*", "cp_deyi"))
    _, every = store.add("city", "intake", feeds=("*",), sources=("*",))
    _, revoked = store.add("old", "intake", feeds=("*",), sources=("*",))
    store.revoke("old")
    _, worker_token = store.add("wall", "worker", roles=("analyst",))
    evs = list(Simulation(registry, seed=3, start=START, end=START + timedelta(minutes=5),
                          feeds=("parking", "air")).events())
    park = {e.source: orjson.loads(e.to_json()) for e in evs if e.feed == "parking"}
    air = [orjson.loads(e.to_json()) for e in evs if e.feed == "air"][:2]
    mine = [park["cp_wfc"], park["cp_deyi"]]
    with FeedProducer(settings, client_id="it-auth") as producer, \
            serve_intake(settings, registry, producer) as url, httpx.Client(timeout=60) as http:
        def post(feed: str, body: object, key: str | None, header: str = "authorization"):
            headers = {} if key is None else {
                header: f"Bearer {key}" if header == "authorization" else key}
            return http.post(f"{url}/v1/feeds/{feed}/events", json=body, headers=headers)

        r = post("parking", mine, None)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        for bad in ("cty.0000000000.guess", revoked, worker_token, acme[:-2]):
            assert post("parking", mine, bad).status_code == 401
        r = post("air", air, acme)
        assert r.status_code == 403 and r.json()["scope"] == "feed:air"
        r = post("parking", [*mine, park["cp_guotai"]], acme)
        assert r.status_code == 403 and r.json()["scope"] == "source:cp_guotai"
        # another car park's state under a source the key covers: the car park is checked too
        spoof = {**park["cp_guotai"], "source": "cp_deyi"}
        r = post("parking", [spoof], acme)
        assert r.status_code == 403 and r.json()["scope"] == "source:cp_guotai"
        assert http.get(f"{url}/v1/stats").status_code == 401
        assert http.get(f"{url}/healthz").status_code == 200      # probes stay open
        r = post("parking", mine, acme)
        assert r.status_code == 200 and r.json()["accepted"] == 2
        r = post("air", air, every, header="x-api-key")
        assert r.status_code == 200 and r.json()["accepted"] == len(air)
        # a rejected record of an authorised vendor is dead-lettered with the vendor's name
        r = post("parking", [{**park["cp_wfc"], "occupied": -1}], acme)
        assert r.status_code == 207
        stats = http.get(f"{url}/v1/stats", headers={"x-api-key": every}).json()
    got = consume(kafka_broker, settings.raw_topic("parking"), 2, idle_s=3)
    assert sorted(orjson.loads(m.value)["source"] for m in got) == ["cp_deyi", "cp_wfc"]
    dead = consume(kafka_broker, settings.topic("dlq"), 1, idle_s=3)
    assert len(dead) == 1 and b"acme@127.0.0.1" in dead[0].value
    assert stats["accepted"] == 2 + len(air)  # refused batches produced nothing


def test_ngsi_ld_routes_take_the_same_keys(tmp_path, isolated_settings, kafka_broker,
                                           example_registry, ngsi_ld_example, serve_intake):
    settings = load_settings(**isolated_settings.model_dump(
        include={"data_dir", "kafka_port", "topic_prefix"}), keys_file=tmp_path / "keys.json")
    _, parking_key = KeyStore(settings.keys_path).add("garage-co", "intake",
                                                     feeds=("parking",), sources=("*",))
    upsert = "/ngsi-ld/v1/entityOperations/upsert"
    air = [ngsi_ld_example("air-quality-normalized")]
    park = [ngsi_ld_example("off-street-parking-normalized")]
    auth = {"authorization": f"Bearer {parking_key}", "content-type": "application/ld+json"}
    with FeedProducer(settings, client_id="it-auth-ngsi") as producer, \
            serve_intake(settings, example_registry, producer) as url, \
            httpx.Client(timeout=60) as http:
        assert http.post(url + upsert, json=park).status_code == 401
        r = http.post(url + upsert, content=orjson.dumps(air), headers=auth)
        assert r.status_code == 403 and r.json()["scope"] == "feed:air"
        r = http.post(url + upsert, content=orjson.dumps(park), headers=auth)
        assert r.status_code < 300, r.text
        dup = orjson.dumps(park)[:-2] + b', "type": "OffStreetParking"}]'
        r = http.post(url + upsert, content=dup, headers=auth)
        assert r.status_code == 400 and r.json()["reason"] == "duplicate_key"

"""A broker stopped mid-run: failures are counted (never silent), the producer applies
backpressure, the intake answers 503 instead of buffering. Uses its OWN broker instance (another
port and data dir), so the shared session broker keeps running."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from ports import free_port_pair

from cityops.core.settings import load_settings
from cityops.deploy.kafka_local import LocalKafka
from cityops.ingest.exceptions import BackpressureTimeoutError
from cityops.ingest.producer import FeedProducer
from cityops.ingest.simulate import Simulation

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def own_broker(tmp_path, settings):
    own = load_settings(kafka_port=free_port_pair(), data_dir=tmp_path / "outage",
                        cache_dir=settings.cache_dir, ingest_delivery_timeout_ms=6000,
                        ingest_max_block_ms=3000, intake_max_pending=10,
                        intake_ack_timeout_s=20)
    broker = LocalKafka(own)
    broker.up()
    try:
        yield own, broker
    finally:
        broker.down()


def test_broker_stopped_mid_run(own_broker, registry, consume, serve_intake):
    settings, broker = own_broker
    start = datetime(2025, 10, 4, 20, tzinfo=TZ)
    recs = list(Simulation(registry, seed=31, start=start, end=start + timedelta(hours=1),
                           feeds=("footfall",)).wire())
    assert len(recs) == 2400
    topic = settings.raw_topic("footfall")
    main = FeedProducer(settings, client_id="it-outage", max_in_flight=5000)
    tight = FeedProducer(settings, client_id="it-tight", max_in_flight=20)
    for_intake = FeedProducer(settings, client_id="it-intake-outage")
    for p in (tight, for_intake):  # connected and with metadata before the outage
        p.send(topic, recs[0].value, recs[0].key).get(timeout=30)

    first, second = recs[:1200], recs[1200:2000]
    for rec in first:
        main.send(topic, rec.value, rec.key)
    main.flush()
    assert main.stats.acked == len(first) and main.stats.failed == 0

    broker.down()

    for rec in second:  # accepted into the buffer; never acknowledged
        main.send(topic, rec.value, rec.key)

    # the producer's in-flight bound turns a dead broker into backpressure, then an error
    with pytest.raises(BackpressureTimeoutError):
        for rec in recs[2000:2100]:
            tight.send(topic, rec.value, rec.key)
    assert tight.stats.failures["BackpressureTimeout"] == 1

    # the intake: one batch waits for acks; the next is refused with 503 + Retry-After
    with serve_intake(settings, registry, for_intake) as url, httpx.Client(timeout=60) as http:
        batch = [r.value.decode() for r in recs[2100:2108]]
        body = ("[" + ",".join(batch) + "]").encode()
        answer: dict = {}

        def post() -> None:
            answer["r"] = http.post(f"{url}/v1/feeds/footfall/events", content=body)

        waiting = threading.Thread(target=post)
        waiting.start()
        while http.get(f"{url}/v1/stats").json()["pending"] == 0:
            assert waiting.is_alive()
            time.sleep(0.05)
        refused = http.post(f"{url}/v1/feeds/footfall/events", content=body)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        # the NGSI-LD endpoints too (8 pending + 3 > the bound of 10), with ProblemDetails
        entity = {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
                  "availableSpotNumber": 12, "dateObserved": "2025-10-04T12:00:00Z"}
        refused = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert/", json=[entity] * 3)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["status"] == 503 and refused.json()["reason"] == "busy"
        waiting.join()
        r = answer["r"]
        assert r.status_code == 207
        assert {x["status"] for x in r.json()["results"]} == {"failed"}
        stats = http.get(f"{url}/v1/stats").json()
        assert stats["failed"] == 8 and stats["throttled"] == 2 and stats["pending"] == 0

    closed = main.close()
    assert closed.sent == len(first) + len(second)
    assert closed.sent == closed.acked + closed.failed  # nothing silently dropped
    assert closed.acked == len(first) and closed.failed == len(second)
    assert sum(closed.failures.values()) == len(second)
    tight.close()
    assert tight.stats.sent == tight.stats.acked + tight.stats.failed
    for_intake.close()

    # restarted, the broker holds exactly what was acknowledged
    broker.up()
    got = consume(broker.bootstrap, topic, None, idle_s=6)
    warm_up = [recs[0].value] * 2  # the two connection checks before the outage
    assert sorted(r.value for r in got) == sorted([x.value for x in first] + warm_up)

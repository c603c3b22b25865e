"""Replay files and the HTTP intake against the real broker: good records reach the raw
topic, bad ones are answered / summarised with their reason and land in the dead-letter topic."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson
import pandas as pd
import pytest

from cityops.core.deadletter import DeadLetter
from cityops.core.settings import load_settings
from cityops.ingest.producer import FeedProducer
from cityops.ingest.replay import replay_file
from cityops.ingest.simulate import FaultPlan, Simulation

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 10, 3, 20, tzinfo=TZ)


def _dead_letters(consume, bootstrap, settings, n) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value)
            for r in consume(bootstrap, settings.topic("dlq"), n)]


def test_replay_jsonl_with_faults(tmp_path, isolated_settings, kafka_broker, registry, vctx,
                                  consume):
    settings = isolated_settings
    sim = Simulation(registry, seed=8, start=START, end=START + timedelta(minutes=30),
                     feeds=("footfall",), faults=FaultPlan(malformed=0.03))
    recs = list(sim.wire())
    path = tmp_path / "footfall.jsonl"
    path.write_bytes(b"\n".join(r.value for r in recs) + b"\n")
    bad = sum(1 for r in recs if r.malformed)
    with FeedProducer(settings, client_id="it-replay") as producer:
        summary = replay_file(path, "footfall", producer, settings, vctx)
    assert summary.read == len(recs)
    assert summary.sent == len(recs) - bad
    assert sum(summary.rejected.values()) == bad > 10
    assert summary.dead_lettered == bad and summary.delivery_failed == 0
    raw = consume(kafka_broker, settings.raw_topic("footfall"), summary.sent)
    assert len(raw) == summary.sent
    assert {r.value for r in raw} == {r.value for r in recs if not r.malformed}
    letters = _dead_letters(consume, kafka_broker, settings, bad)
    assert len(letters) == bad
    assert Counter(d.reason for d in letters) == summary.rejected
    by_line = {d.source_offset: d for d in letters}
    for lineno, rec in enumerate(recs, start=1):
        if rec.malformed:
            d = by_line[lineno]
            assert d.stage == "replay" and d.source_topic == "replay:footfall.jsonl"
            assert d.raw == rec.value and d.feed == "footfall"


def test_replay_csv_mapped_rebased(tmp_path, isolated_settings, kafka_broker, registry, vctx,
                                   consume):
    settings = isolated_settings
    evs = list(Simulation(registry, seed=8, start=START, end=START + timedelta(minutes=20),
                          feeds=("parking",)).events())
    rows = [{"park": e.carpark_id, "time": e.event_time.isoformat(), "cap": e.capacity,
             "used": e.occupied, "state": e.status.value} for e in evs]
    rows[3]["used"] = "lots"  # wrong type
    rows[4]["park"] = "cp_unknown"  # not in the registry
    rows[5]["time"] = "2025-10-03 20:00"  # no offset
    path = tmp_path / "parking.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    target = datetime.now(TZ).replace(microsecond=0) - timedelta(hours=1)
    with FeedProducer(settings) as producer:
        summary = replay_file(
            path, "parking", producer, settings, vctx, rebase_to=target,
            mapping={"carpark_id": "park", "event_time": "time", "capacity": "cap",
                     "occupied": "used", "status": "state"})
    assert summary.rejected == {"wrong_type": 1, "unknown_carpark": 1, "naive_timestamp": 1}
    assert summary.sent == len(rows) - 3
    raw = consume(kafka_broker, settings.raw_topic("parking"), summary.sent)
    times = sorted(datetime.fromisoformat(orjson.loads(r.value)["event_time"]) for r in raw)
    assert times[0] == target
    assert times[-1] - times[0] == evs[-1].event_time - evs[0].event_time
    assert {r.key for r in raw} <= {cp.encode() for cp in registry.carparks}


def test_intake_batches(isolated_settings, kafka_broker, registry, consume, serve_intake):
    settings = load_settings(**{**isolated_settings.model_dump(
        include={"data_dir", "kafka_port", "topic_prefix"}), "intake_max_batch": 500,
        "intake_max_body_bytes": 2_000_000, "max_message_bytes": 50_000})
    evs = list(Simulation(registry, seed=12, start=START, end=START + timedelta(minutes=10),
                          feeds=("air", "parking")).events())
    air = [orjson.loads(e.to_json()) for e in evs if e.feed == "air"]
    parking = [orjson.loads(e.to_json()) for e in evs if e.feed == "parking"]
    with FeedProducer(settings, client_id="it-intake") as producer, \
            serve_intake(settings, registry, producer) as url, httpx.Client(timeout=60) as http:
        # all good: 200, every record acknowledged by Kafka
        r = http.post(f"{url}/v1/feeds/air/events", json=air)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(air)
        # mixed: per-record reasons, index by index
        batch = [parking[0], {**parking[1], "occupied": -3}, {"event_id": "x"},
                 {**parking[2], "carpark_id": "cp_nowhere"}, parking[3],
                 {**parking[4], "event_time": "2025-10-03T20:00:00"}]
        r = http.post(f"{url}/v1/feeds/parking/events", json={"events": batch})
        assert r.status_code == 207
        body = r.json()
        assert [x["status"] for x in body["results"]] == [
            "accepted", "rejected", "rejected", "rejected", "accepted", "rejected"]
        assert [x.get("reason") for x in body["results"]] == [
            None, "negative_count", "missing_field", "unknown_carpark", None, "naive_timestamp"]
        # NDJSON with a huge line, a broken line and a non-UTF-8 line
        huge = b'{"event_id": "y", "source": ' + b"9" * 60_000 + b"}"
        not_utf8 = orjson.dumps(parking[6]).replace(b'"carpark_id":"', b'"carpark_id":"\xff')
        lines = [orjson.dumps(parking[5]), huge, b"{broken", not_utf8, orjson.dumps(parking[7])]
        r = http.post(f"{url}/v1/feeds/parking/events", content=b"\n".join(lines),
                      headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 207
        assert [x.get("reason") for x in r.json()["results"]] == [
            None, "oversized", "bad_json", "bad_encoding", None]
        # whole-request errors
        assert http.post(f"{url}/v1/feeds/parking/events", content=b"[{").status_code == 400
        r = http.post(f"{url}/v1/feeds/parking/events", content=b'[{"a": "\xff"}]')
        assert r.status_code == 400 and r.json()["error"] == "bad_encoding"
        assert http.post(f"{url}/v1/feeds/parking/events", content=b"42").status_code == 400
        assert http.post(f"{url}/v1/feeds/weather/events", json=[]).status_code == 404
        r = http.post(f"{url}/v1/feeds/air/events", json=[air[0]] * 501)
        assert r.status_code == 413 and r.json()["error"] == "too_many_records"
        r = http.post(f"{url}/v1/feeds/air/events", content=b"[" + b" " * 2_100_000 + b"]")
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        # FIWARE NGSI-LD batch upsert
        entities = [
            {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
             "totalSpotNumber": {"type": "Property", "value": 650},
             "availableSpotNumber": {"type": "Property", "value": 0,
                                     "observedAt": "2025-10-03T20:30:00+08:00"},
             "status": {"type": "Property", "value": "full"}},
            {"id": "urn:ngsi-ld:Alert:1", "type": "Alert"},
        ]
        r = http.post(f"{url}/ngsi-ld/v1/entityOperations/upsert", json=entities)
        assert r.status_code == 207  # NGSI-LD BatchOperationResult
        assert r.json()["success"] == ["urn:ngsi-ld:OffStreetParking:cp_wfc"]
        assert [(e["entityId"], e["error"]["reason"]) for e in r.json()["errors"]] == [
            ("urn:ngsi-ld:Alert:1", "unknown_feed")]
        stats = http.get(f"{url}/v1/stats").json()
    assert stats["pending"] == 0 and stats["throttled"] == 0
    assert stats["accepted"] == len(air) + 2 + 2 + 1
    raw_air = consume(kafka_broker, settings.raw_topic("air"), len(air))
    assert {r.value for r in raw_air} == {orjson.dumps(a) for a in air}
    raw_parking = consume(kafka_broker, settings.raw_topic("parking"), 5)
    assert len(raw_parking) == 5
    ngsi = [orjson.loads(r.value) for r in raw_parking
            if r.value.startswith(b'{"event_id":"cp_wfc:1759494600"')]
    assert len(ngsi) == 1 and ngsi[0]["occupied"] == 650 and ngsi[0]["free"] == 0
    assert ngsi[0]["status"] == "full"
    letters = _dead_letters(consume, kafka_broker, settings, 4 + 3 + 1)
    assert Counter(d.reason for d in letters) == {
        "negative_count": 1, "missing_field": 1, "unknown_carpark": 1, "naive_timestamp": 1,
        "oversized": 1, "bad_json": 1, "bad_encoding": 1, "unknown_feed": 1}
    assert all(d.stage == "intake" for d in letters)


def test_replay_csv_rebased_now_paced(tmp_path, isolated_settings, kafka_broker, registry,
                                      consume):
    """--rebase now --speed 1: each row is judged when it is due, so rows ahead of the start
    by more than the clock skew are still accepted (they used to be future_event)."""
    from cityops.core.feeds import ValidationContext

    settings = isolated_settings
    ev = next(iter(Simulation(registry, seed=8, start=START, end=START + timedelta(minutes=5),
                              feeds=("parking",)).events()))
    rows = [{"park": ev.carpark_id, "time": (START + timedelta(seconds=i)).isoformat(),
             "cap": ev.capacity, "used": ev.occupied, "state": ev.status.value}
            for i in range(4)]
    path = tmp_path / "parking.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    ctx = ValidationContext(registry=registry, max_clock_skew_s=0.5)
    target = datetime.now(TZ)
    with FeedProducer(settings) as producer:
        summary = replay_file(
            path, "parking", producer, settings, ctx, rebase_to=target, speed=1,
            mapping={"carpark_id": "park", "event_time": "time", "capacity": "cap",
                     "occupied": "used", "status": "state"})
    assert summary.rejected == {} and summary.dead_lettered == 0
    assert summary.sent == 4 and summary.seconds >= 2.9
    raw = consume(kafka_broker, settings.raw_topic("parking"), 4)
    times = sorted(datetime.fromisoformat(orjson.loads(r.value)["event_time"]) for r in raw)
    assert [(t - times[0]).total_seconds() for t in times] == [0, 1, 2, 3]


def test_replay_unpaced_rebase_refuses_records_ahead_of_start(tmp_path, isolated_settings,
                                                              kafka_broker, registry, consume):
    """Without --speed, re-based records are judged against the start moment: those further
    ahead than the clock skew are refused as future_event (documented behaviour)."""
    from cityops.core.feeds import ValidationContext

    settings = isolated_settings
    ev = orjson.loads(next(iter(Simulation(
        registry, seed=9, start=START, end=START + timedelta(minutes=5),
        feeds=("parking",)).events())).to_json())
    lines = [orjson.dumps(dict(ev, event_time=(START + timedelta(minutes=m)).isoformat(),
                               event_id=f"{ev['source']}:fast{m}")) for m in (0, 10, 30, 60)]
    path = tmp_path / "parking.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with FeedProducer(settings) as producer:
        summary = replay_file(path, "parking", producer, settings,
                              ValidationContext(registry=registry), rebase_to=datetime.now(TZ))
    assert summary.sent == 1 and summary.rejected == {"future_event": 3}
    assert summary.dead_lettered == 3
    assert len(consume(kafka_broker, settings.raw_topic("parking"), 1)) == 1

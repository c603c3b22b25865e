"""The Faust-free steps of the agent chains: judging raw records, replay vs duplicate, guards."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.alerting import incident_observation, observations_from
from cityops.streams.pipeline import (
    Origin,
    ReplayGuard,
    aggregation_key,
    enrichment,
    header_value,
    judge,
)
from cityops.streams.records import FootfallWindow, IncidentStats, ParkingState
from cityops.streams.web import remote_sql_url, worker_endpoint, write_endpoint
from cityops.warehouse.sink import Batch, batch_token

NOW = datetime.now(UTC).replace(microsecond=0)
ORIGIN = Origin("cityops.raw.footfall", 2, 41)


def _footfall(**kw: object) -> bytes:
    ev = {"event_id": "e1", "source": "fc_jfb_square_01", "zone_id": "jfb_square",
          "entries": 3, "exits": 1, "interval_s": 30,
          "event_time": (NOW - timedelta(minutes=1)).isoformat()}
    ev.update(kw)
    return json.dumps(ev).encode()


def test_invalid_record_becomes_dead_letter_with_reason_bytes_and_origin(
        vctx: ValidationContext) -> None:
    raw = _footfall(entries=-4)
    judged = judge("footfall", raw, b"fc_jfb_square_01", ORIGIN, vctx, max_bytes=10_000,
                   received_at=NOW)
    assert judged.event is None and judged.dead is not None
    dead = judged.dead
    assert (dead.reason, dead.field, dead.raw) == ("negative_count", "entries", raw)
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == (
        "cityops.raw.footfall", 2, 41)
    assert dead.key_text == "fc_jfb_square_01" and dead.stage == "stream"
    assert dead.record_id() == "cityops.raw.footfall:2:41"


def test_valid_record_is_keyed_by_zone_and_enriched_with_area(
        vctx: ValidationContext, registry: Registry) -> None:
    judged = judge("footfall", _footfall(), None, ORIGIN, vctx, max_bytes=10_000,
                   received_at=NOW)
    assert judged.dead is None and judged.event is not None
    assert aggregation_key(judged.event) == "jfb_square"
    assert enrichment(judged.event, registry)["zone_area_m2"] == registry.zones[
        "jfb_square"].area_m2


def test_replay_guard_skips_what_a_key_already_applied_per_raw_partition() -> None:
    guard = ReplayGuard()
    assert guard.is_new((0, 5))
    guard.mark((0, 5))
    guard.mark((1, 2))
    assert not guard.is_new((0, 5)) and not guard.is_new((0, 4))
    assert guard.is_new((0, 6)) and guard.is_new((2, 0))
    restored = ReplayGuard.from_state(json.loads(json.dumps(guard.to_state())))
    assert not restored.is_new((1, 2)) and restored.is_new((1, 3))
    assert guard.is_new(None)  # a record without origin header cannot be judged: apply


def test_origin_header_round_trip_and_header_lookup() -> None:
    assert Origin.parse_header(ORIGIN.header()) == (2, 41)
    assert Origin.parse_header(b"garbage") is None and Origin.parse_header(None) is None
    assert header_value([("a", b"1"), ("cityops-origin", b"2:41")], "cityops-origin") == b"2:41"
    assert header_value({"a": b"1"}, "b") is None


def test_alert_observations_come_from_minute_windows_parking_and_open_incidents() -> None:
    start = NOW.replace(second=0)
    window = FootfallWindow(zone_id="jfb_square", window="tumbling_1m", window_start=start,
                            window_end=start + timedelta(minutes=1), entries=1, exits=0,
                            events=1, net_presence=24000, density_ppm2=2.0, emitted_at=NOW)
    hopping = window.model_copy(update={"window": "hopping_5m"})
    parking = ParkingState(carpark_id="cp_wfc", event_time=NOW, capacity=650, occupied=640,
                           occupancy_rate=0.984615, trend_per_min=1, emitted_at=NOW)
    obs = observations_from([window, hopping, parking])
    assert [(o["kind"], o["subject"], o["value"]) for o in obs] == [
        ("crowd_density", "jfb_square", 2.0), ("carpark_occupancy", "cp_wfc", 0.984615)]
    stats = IncidentStats(zone_id="jfb_square", event_time=NOW, incident_id="inc-9",
                          status="on_scene", open_count=1, emitted_at=NOW)
    assert incident_observation(stats, "high")["value"] == 2.0
    closed = stats.model_copy(update={"status": "resolved"})
    assert incident_observation(closed, "critical")["value"] == 0.0


def test_batch_token_names_the_kafka_ranges_and_table() -> None:
    b = Batch()
    for off in (7, 5, 6):
        b.add_offset("t.clean.footfall", 1, off)
    b.add_offset("t.dlq", 0, 3)
    assert b.ranges == {("t.clean.footfall", 1): [5, 7], ("t.dlq", 0): [3, 3]}
    same = Batch()
    same.add_offset("t.dlq", 0, 3)
    for off in (5, 6, 7):
        same.add_offset("t.clean.footfall", 1, off)
    assert batch_token(b.ranges, "x") == batch_token(same.ranges, "x")
    assert batch_token(b.ranges, "x") != batch_token(b.ranges, "y")
    same.add_offset("t.dlq", 0, 4)
    assert batch_token(b.ranges, "x") != batch_token(same.ranges, "x")


def test_worker_endpoint_file_is_ignored_once_its_process_is_gone(tmp_path: object) -> None:
    settings = Settings(data_dir=tmp_path)  # type: ignore[arg-type]
    path = write_endpoint(settings, embedded_warehouse=True)
    ep = worker_endpoint(settings)
    assert ep is not None and ep["pid"] == os.getpid()
    assert remote_sql_url(settings) == f"{ep['url']}/sql"
    data = json.loads(path.read_text())
    data["pid"] = 2**22 + 12345  # no such process
    path.write_text(json.dumps(data))
    assert worker_endpoint(settings) is None and remote_sql_url(settings) is None

"""A deterministic scenario through the real broker, the Faust worker and chdb: the warehouse
holds exactly the aggregates worked out by hand below, and every malformed, duplicate and
late record is counted and routed where the contract says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streams_harness import Producer, WorkerProc, wait_until

pytestmark = pytest.mark.integration

ZONE, C1, C2 = "jfb_square", "fc_jfb_square_01", "fc_jfb_square_02"
ZONE_AREA = 12000.0  # registry: jfb_square walkable area
CARPARK, CAPACITY = "cp_chaotianmen", 420
STATION = "aq_jiefangbei"
HALF_LIFE = 6 * 3600  # FootfallAggregator default presence half-life


def _t0() -> datetime:
    """A 5-minute-aligned time about two hours ago (10:xx–12:xx Shanghai, no 05:00 reset)."""
    now = datetime.now(UTC) - timedelta(hours=2)
    base = now.replace(second=0, microsecond=0)
    return base - timedelta(minutes=base.minute % 5)


T0 = _t0()


def ff(eid: str, counter: str, sec: int, entries: int, exits: int,
       zone: str = ZONE) -> dict[str, Any]:
    return {"event_id": eid, "source": counter, "zone_id": zone, "entries": entries,
            "exits": exits, "interval_s": 10,  # each report's interval inside one minute
            "event_time": (T0 + timedelta(seconds=sec)).isoformat()}


# (id, counter, seconds after T0, entries, exits)
PHASE1 = [("e1", C1, 10, 10, 2), ("e2", C2, 20, 5, 1), ("e3", C1, 70, 8, 4),
          ("e4", C2, 130, 6, 6), ("e5", C1, 190, 4, 0)]
PHASE2 = [("e6", C1, 270, 3, 2),
          ("e7", C1, 200, 2, 1)]  # 70 s behind the zone's newest: within the 120 s lateness
FLUSH = ("flush", C1, 900, 0, 0)  # moves the zone's event time on: all earlier windows fire
TOO_LATE = ("e9", C1, 100, 1, 1)  # 800 s behind: beyond the lateness → late topic


def _count(worker: WorkerProc, stage: str, feed: str, key: str) -> int:
    return worker.health()[stage][feed][key]


@pytest.fixture(scope="module")
def scenario(make_worker: Any, kafka_broker: str) -> WorkerProc:
    worker = make_worker()
    prod = Producer(kafka_broker, worker.prefix)
    # phase 1: both counters (two partitions): one at a time, so the order is the test's
    for n, e in enumerate(PHASE1, start=1):
        prod.send("footfall", ff(*e))
        prod.flush()
        wait_until(lambda n=n: _count(worker, "aggregate", "footfall", "in") >= n,
                   what=f"phase 1 event {n}")
    for e in PHASE2:  # one counter: one partition, in order
        prod.send("footfall", ff(*e))
    prod.flush()
    wait_until(lambda: _count(worker, "aggregate", "footfall", "in") >= 7, what="phase 2")
    prod.send("footfall", ff(*FLUSH))
    prod.send("footfall", ff(*TOO_LATE))
    prod.send("footfall", ff("e3", C1, 70, 8, 4))  # a producer retry: duplicate event_id
    prod.send("footfall", b"{oops", key=C1)  # not JSON
    prod.send("footfall", ff("bad-zone", C1, 300, 1, 0, zone="nowhere"))  # unknown zone
    # parking: 100 → 110 → 120 occupied, one minute apart
    for i, occ in enumerate((100, 110, 120)):
        prod.send("parking", {
            "event_id": f"p{i}", "source": CARPARK, "carpark_id": CARPARK,
            "capacity": CAPACITY, "occupied": occ,
            "event_time": (T0 + timedelta(seconds=60 * i)).isoformat()})
    # air: the national station's hourly value published at the top of the hour
    prod.send("air", {"event_id": "a1", "source": STATION, "station_id": STATION,
                      "averaging_s": 3600, "pm25_ugm3": 80.0,
                      "event_time": (T0.replace(minute=0)).isoformat()})
    # incidents: reported → on scene 5 min later → resolved
    for status, sec in (("reported", 0), ("on_scene", 300), ("resolved", 600)):
        prod.send("incidents", {
            "event_id": f"i-{status}", "source": ZONE, "incident_id": "inc-1",
            "incident_type": "fall", "severity": "medium", "zone_id": ZONE,
            "status": status, "event_time": (T0 + timedelta(seconds=sec)).isoformat()})
    prod.flush()
    prod.close()

    def settled() -> bool:
        return (worker.scalar("SELECT count() FROM footfall_windows FINAL") == 16
                and worker.scalar("SELECT count() FROM dead_letters FINAL") == 3
                and worker.scalar("SELECT count() FROM late_events FINAL") == 1
                and worker.scalar("SELECT count() FROM parking_states FINAL") == 3
                and worker.scalar("SELECT count() FROM incident_stats FINAL") == 3
                and worker.scalar("SELECT count() FROM air_quality_index FINAL") == 1
                and worker.scalar("SELECT count() FROM footfall_observed FINAL") == 9)

    wait_until(settled, timeout=60, what="scenario rows in the warehouse")
    return worker


def _windows(worker: WorkerProc, window: str) -> dict[int, tuple[int, int, int, int]]:
    rows = worker.sql(
        "SELECT toUnixTimestamp(window_start), entries, exits, events, revision "
        f"FROM footfall_windows FINAL WHERE zone_id = '{ZONE}' AND window = '{window}' "
        "ORDER BY window_start")
    t0 = int(T0.timestamp())
    return {int(r[0]) - t0: (r[1], r[2], r[3], r[4]) for r in rows}


def test_tumbling_minute_windows_hold_exact_counts_and_late_revision(scenario: WorkerProc,
                                                                     ) -> None:
    # start offset: (entries, exits, reports, revision); e7 re-opened [180, 240) → rev 1
    assert _windows(scenario, "tumbling_1m") == {
        0: (15, 3, 2, 0), 60: (8, 4, 1, 0), 120: (6, 6, 1, 0), 180: (6, 1, 2, 1),
        240: (3, 2, 1, 0),
        840: (0, 0, 1, 0)}  # the flush report covers 890–900 s: its window ends at 900, fires


def test_hopping_five_minute_windows_hold_exact_counts(scenario: WorkerProc) -> None:
    assert _windows(scenario, "hopping_5m") == {
        -240: (15, 3, 2, 0), -180: (23, 7, 3, 0), -120: (29, 13, 4, 0),
        -60: (35, 14, 6, 1), 0: (38, 16, 7, 0), 60: (23, 13, 5, 0), 120: (15, 9, 4, 0),
        180: (9, 3, 3, 0), 240: (3, 2, 1, 0), 600: (0, 0, 1, 0)}


def test_presence_and_density_follow_the_decayed_running_balance(scenario: WorkerProc,
                                                                 ) -> None:
    def decay(dt: float) -> float:
        return 0.5 ** (dt / HALF_LIFE)

    p1 = 10 - 2                               # e1 at 10 s
    p2 = p1 * decay(10) + 5 - 1               # e2 at 20 s   → window [0, 60)
    p3 = p2 * decay(50) + 8 - 4               # e3 at 70 s   → window [60, 120)
    p4 = p3 * decay(60) + 6 - 6               # e4 at 130 s  → window [120, 180)
    t0 = int(T0.timestamp())
    rows = scenario.sql(
        "SELECT toUnixTimestamp(window_start), net_presence, density_ppm2 "
        f"FROM footfall_windows FINAL WHERE window = 'tumbling_1m' AND zone_id = '{ZONE}' "
        "ORDER BY window_start")
    rows = [[r[0] - t0, r[1], r[2]] for r in rows]
    got = {r[0]: (r[1], r[2]) for r in rows}
    for start, p in ((0, p2), (60, p3), (120, p4)):
        assert got[start][0] == pytest.approx(round(p, 3), abs=1e-9)
        assert got[start][1] == pytest.approx(round(round(p, 3) / ZONE_AREA, 6), abs=1e-12)


def test_malformed_duplicate_and_unknown_records_are_dead_lettered_with_origin(
        scenario: WorkerProc) -> None:
    rows = scenario.sql(
        "SELECT reason, source_topic, source_partition >= 0, source_offset >= 0, "
        "length(raw_b64) > 0 FROM dead_letters FINAL ORDER BY reason")
    topic = scenario.topic("raw.footfall")
    assert rows == [["bad_json", topic, True, True, True],
                    ["duplicate", topic, True, True, True],
                    ["unknown_zone", topic, True, True, True]]
    health = scenario.health()["validate"]["footfall"]
    assert (health["dead"], health["duplicate"]) == (2, 1)


def test_event_beyond_allowed_lateness_goes_to_late_topic_and_is_counted(
        scenario: WorkerProc) -> None:
    rows = scenario.sql("SELECT feed, event_id, lateness_s FROM late_events FINAL")
    # the zone's newest event is at 900 s, so the watermark is 900 − 120 s lateness − 30 s
    # (the zone's counters report every 30 s) = 750 s; e9's interval starts at 90 s
    assert rows == [["footfall", "e9", 660.0]]
    assert scenario.health()["aggregate"]["footfall"]["late"] == 1


def test_validated_raw_events_land_once_each(scenario: WorkerProc) -> None:
    rows = scenario.sql("SELECT event_id, count() FROM footfall_observed FINAL "
                        "GROUP BY event_id ORDER BY event_id")
    # the late event is valid (stored raw, routed late); the duplicate is stored once
    assert rows == [[e, 1] for e in sorted(
        ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e9", "flush"])]


def test_parking_occupancy_trend_and_minutes_to_full(scenario: WorkerProc) -> None:
    rows = scenario.sql(
        "SELECT occupied, occupancy_rate, trend_per_min, minutes_to_full "
        f"FROM parking_states FINAL WHERE carpark_id = '{CARPARK}' ORDER BY event_time")
    assert rows == [
        [100, round(100 / 420, 6), 0.0, None],            # one point: no trend yet
        [110, round(110 / 420, 6), 10.0, 31.0],           # +10/min; 310 free → 31 min
        [120, round(120 / 420, 6), 10.0, 30.0],           # least squares of 3 points: 10/min
    ]


def test_hourly_aqi_per_hj_633(scenario: WorkerProc) -> None:
    rows = scenario.sql(
        "SELECT averaging, toUnixTimestamp(hour_start), pm25_ugm3, aqi, category, "
        f"primary_pollutants FROM air_quality_index FINAL WHERE station_id = '{STATION}'")
    hour_start = int(T0.replace(minute=0).timestamp()) - 3600  # value of the previous hour
    # PM2.5 80 µg/m³: IAQI = 50 + (100−50)/(75−35)·(80−35) = 106.25 → rounded up to 107
    assert rows == [["1h", hour_start, 80.0, 107, "轻度污染", ["pm25"]]]


def test_incident_open_count_and_response_time(scenario: WorkerProc) -> None:
    rows = scenario.sql(
        "SELECT status, open_count, response_s FROM incident_stats FINAL "
        "WHERE incident_id = 'inc-1' ORDER BY event_time")
    assert rows == [["reported", 1, None], ["on_scene", 1, 300.0], ["resolved", 0, 300.0]]


def test_cityops_sql_reads_through_the_worker_holding_the_embedded_warehouse(
        scenario: WorkerProc) -> None:
    import subprocess

    from streams_harness import CITYOPS

    done = subprocess.run(
        [CITYOPS, "sql", "SELECT count() AS n FROM incident_stats FINAL", "--format", "csv"],
        env=scenario.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3"
    refused = subprocess.run([CITYOPS, "sql", "DROP TABLE alerts"], env=scenario.env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0 and "read" in (refused.stderr + refused.stdout).lower()

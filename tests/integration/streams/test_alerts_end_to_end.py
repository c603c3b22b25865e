"""An alert scenario end to end: parking events through Kafka and the worker's aggregation and
alert engine into the warehouse ``alerts`` table — a rise fires once, flapping around the
threshold fires nothing more, ``cityops alerts ack`` acknowledges through the worker's HTTP
API with an operator's token (recorded as who acknowledged), and the clear arrives once."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from streams_harness import CITYOPS, Producer, WorkerProc, wait_until

from cityops.core.keys import KeyStore

pytestmark = pytest.mark.integration

CARPARK, CAPACITY = "cp_wfc", 650
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)

# seconds after T0 → occupied spaces (rate = occupied / 650); rule carpark_full fires at
# ≥ 0.95 held 120 s and clears below 0.90 held 300 s (streams/alerts/rules.yaml)
RISE = [(0, 520), (60, 624), (120, 631), (180, 624)]  # 0.80, 0.96, 0.971, 0.96 → fire at 180
FLAP = [(240, 605), (300, 624), (360, 598), (420, 618)]  # 0.931 ↔ 0.96: stays one alert
CLEAR = [(480 + 60 * i, 546) for i in range(6)]  # 0.84 from 480 to 780 s → clear at 780


class Receiver:
    """A real HTTP server standing in for a generic JSON webhook and a WeCom bot."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append((self.path, json.loads(body)))
                reply = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_kinds(self) -> list[str]:
        return [b["kind"] for p, b in self.posts
                if p == "/json" and b.get("rule_id") == "carpark_full"]

    def wecom_texts(self) -> list[str]:
        return [b["markdown"]["content"] for p, b in self.posts
                if p == "/wecom" and CARPARK in b["markdown"]["content"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _send(prod: Producer, points: list[tuple[int, int]], t0: datetime = T0) -> None:
    for sec, occ in points:
        prod.send("parking", {
            "event_id": f"{CARPARK}-{sec}", "source": CARPARK, "carpark_id": CARPARK,
            "capacity": CAPACITY, "occupied": occ,
            "event_time": (t0 + timedelta(seconds=sec)).isoformat()})
    prod.flush()


def _alert_rows(worker: WorkerProc) -> list[list[Any]]:
    return worker.sql(
        "SELECT seq, kind, state, severity, actor FROM alerts FINAL "
        f"WHERE rule_id = 'carpark_full' AND subject = '{CARPARK}' ORDER BY seq")


def _cli(worker: WorkerProc, *args: str, token: str | None = None
         ) -> subprocess.CompletedProcess:
    env = worker.env if token is None else {**worker.env, "CITYOPS_WORKER_TOKEN": token}
    return subprocess.run([CITYOPS, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_rise_flap_ack_clear_produce_each_alert_event_once(make_worker: Any,
                                                           kafka_broker: str,
                                                           receiver: Receiver,
                                                           tmp_path: Path) -> None:
    hooks = json.dumps([f"json+{receiver.url}/json", f"wecom+{receiver.url}/wecom"])
    store = KeyStore(tmp_path / "keys.json")
    _, wall = store.add("video-wall", "worker", roles=("viewer", "analyst"))
    _, officer = store.add("duty-officer-07", "worker", roles=("operator",))
    worker: WorkerProc = make_worker(CITYOPS_ALERT_TICK_S="0.5",
                                     CITYOPS_ALERT_WEBHOOK_URLS=hooks,
                                     # T0 is an hour before the module's import: send all
                                     CITYOPS_ALERT_WEBHOOK_MAX_AGE_S="0",
                                     CITYOPS_KEYS_FILE=str(store.path),
                                     CITYOPS_WORKER_TOKEN=wall)
    prod = Producer(kafka_broker, worker.prefix)

    _send(prod, RISE)
    wait_until(lambda: len(_alert_rows(worker)) >= 1, timeout=60, what="the alert to fire")
    listed = _cli(worker, "alerts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [a for a in json.loads(listed.stdout)
            if a["rule_id"] == "carpark_full" and a["subject"] == CARPARK]
    assert len(mine) == 1 and mine[0]["state"] == "active_unack"
    alert_id = mine[0]["alert_id"]

    _send(prod, FLAP)
    wait_until(lambda: worker.health()["aggregate"]["parking"]["in"] >= 8, what="flapping")
    refused = _cli(worker, "alerts", "ack", alert_id)  # the wall's token may only look
    assert refused.returncode == 1 and "lacks the operator role" in refused.stderr
    ack = _cli(worker, "alerts", "ack", alert_id, token=officer)
    assert ack.returncode == 0, ack.stderr + ack.stdout
    assert "acknowledged" in ack.stdout
    again = _cli(worker, "alerts", "ack", alert_id, token=officer)
    assert again.returncode == 0 and "already acknowledged" in again.stdout

    _send(prod, CLEAR)
    wait_until(lambda: len(_alert_rows(worker)) >= 3, timeout=60, what="the clear")
    prod.close()
    wait_until(lambda: worker.health()["aggregate"]["parking"]["in"] >= 14, what="all in")

    assert _alert_rows(worker) == [
        [0, "fired", "active_unack", "warning", None],
        [1, "acknowledged", "active_ack", "warning", "duty-officer-07"],
        [2, "cleared", "cleared_ack", "warning", None],
    ]
    assert worker.scalar(
        "SELECT count(DISTINCT alert_id) FROM alerts FINAL WHERE rule_id = 'carpark_full'") == 1
    fired_at = worker.scalar(
        "SELECT toUnixTimestamp(event_time) FROM alerts FINAL "
        "WHERE rule_id = 'carpark_full' AND kind = 'fired'")
    assert fired_at == int((T0 + timedelta(seconds=180)).timestamp())
    # both webhooks got each event of the alert exactly once, in order
    wait_until(lambda: len(receiver.wecom_texts()) >= 3, what="webhook deliveries")
    assert receiver.json_kinds() == ["fired", "acknowledged", "cleared"]
    assert len(receiver.wecom_texts()) == 3
    # the closed alert is no longer listed; an unknown id is a clear error
    assert all(a["alert_id"] != alert_id for a in httpx_alerts(worker))
    missing = _cli(worker, "alerts", "ack", "no-such-alert", token=officer)
    assert missing.returncode == 1 and "no-such-alert" in missing.stderr


def httpx_alerts(worker: WorkerProc) -> list[dict[str, Any]]:
    import httpx

    return httpx.get(f"{worker.url}/alerts", timeout=10, headers=worker.headers
                     ).json()["alerts"]


def test_an_alert_replayed_from_hours_ago_is_stored_but_not_paged(make_worker: Any,
                                                                 kafka_broker: str,
                                                                 receiver: Receiver) -> None:
    """A backfill replays history through the alert engine: its alerts reach the warehouse,
    while the webhooks (default ``CITYOPS_ALERT_WEBHOOK_MAX_AGE_S``, an hour) count them as
    too old instead of paging the on-call."""
    hooks = json.dumps([f"json+{receiver.url}/json"])
    worker: WorkerProc = make_worker(CITYOPS_ALERT_TICK_S="0.5", CITYOPS_ALERT_CLOCK="event",
                                     CITYOPS_ALERT_WEBHOOK_URLS=hooks)
    prod = Producer(kafka_broker, worker.prefix)
    _send(prod, RISE, t0=(datetime.now(UTC) - timedelta(hours=3)).replace(second=0,
                                                                          microsecond=0))
    wait_until(lambda: len(_alert_rows(worker)) >= 1, timeout=60, what="the alert to fire")
    assert _alert_rows(worker)[0][1] == "fired"
    stats = worker.health()["webhooks"]
    assert [s["too_old"] for s in stats.values()] == [1]
    assert [s["delivered"] + s["dropped"] + s["failed"] for s in stats.values()] == [0]
    assert receiver.json_kinds() == []


def _incident(prod: Producer, incident_id: str, status: str, at: datetime) -> None:
    prod.send("incidents", {
        "event_id": f"{incident_id}:{status}", "source": "jfb_square",
        "event_time": at.isoformat(), "incident_id": incident_id,
        "incident_type": "crowd_crush_risk", "severity": "critical", "zone_id": "jfb_square",
        "status": status}, key=incident_id)


def test_a_catch_up_after_an_outage_pages_only_what_is_still_going_on(
        make_worker: Any, kafka_broker: str, receiver: Receiver) -> None:
    """A worker on the default wall clock reads three hours of backlog in two parts, ticking
    between them. Before, it found the car park silent at the first tick (its newest report
    read was an hour old) and paged a dead sensor whose backlog reports then could not clear
    it, and escalated the open incident twice at once, dated now, though its firing was sent
    to no one. Now the car park is judged by how far its lane has been read; the incident
    over two hours ago is left for review unsent; the open one is sent once, as a reminder."""
    hooks = json.dumps([f"json+{receiver.url}/json"])
    worker: WorkerProc = make_worker(CITYOPS_ALERT_TICK_S="0.5", CITYOPS_ALERT_CLOCK="wall",
                                     CITYOPS_ALERT_WEBHOOK_URLS=hooks)
    prod = Producer(kafka_broker, worker.prefix)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=3)
    _incident(prod, "inc_over", "reported", start + timedelta(minutes=20))
    _incident(prod, "inc_over", "resolved", start + timedelta(minutes=50))
    _incident(prod, "inc_open", "reported", now - timedelta(hours=2))
    first = [(30 * i, 300) for i in range(240)]  # every 30 s, until an hour ago
    _send(prod, first, t0=start)
    wait_until(lambda: worker.health()["aggregate"]["parking"]["in"] >= len(first),
               timeout=90, what="the first part of the backlog")
    ticks = worker.health()["alerts"]["inputs"]
    wait_until(lambda: worker.health()["alerts"]["inputs"] >= ticks + 4, what="ticks")
    _send(prod, [(30 * i, 300) for i in range(240, 358)], t0=start)  # to a minute ago
    wait_until(lambda: [b["kind"] for p, b in receiver.posts
                        if b.get("subject") == "inc_open"] == ["reminded"], timeout=90,
               what="the reminder of the open incident")
    wait_until(lambda: worker.health()["alerts"]["inputs"] >= ticks + 12, what="more ticks")
    sent = [(b["rule_id"], b["subject"], b["kind"]) for p, b in receiver.posts
            if b.get("subject") in (CARPARK, "inc_over", "inc_open")]
    assert sent == [("severe_incident", "inc_open", "reminded")]
    reminder = next(b for p, b in receiver.posts if b.get("subject") == "inc_open")
    assert re.search(r"still active; fired 2 h( \d+ min)? before in replayed history",
                     reminder["message"]), reminder["message"]
    listed = {(a["rule_id"], a["subject"]): a["state"] for a in httpx_alerts(worker)}
    assert listed.get(("dead_sensor", CARPARK)) is None
    assert listed[("severe_incident", "inc_over")] == "cleared_unack"  # for the shift's review
    assert listed[("severe_incident", "inc_open")] == "active_unack"

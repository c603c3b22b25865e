"""Planted secrets: a distinctive value in every secret setting, then every CLI output, log
line and HTTP answer of a real worker, intake and CLI session is searched for it: no hit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from streams_harness import CITYOPS, Producer, WorkerProc, free_port, wait_until

from cityops.core.keys import KeyStore

pytestmark = pytest.mark.integration

PLANTED = "PLANTEDzq7Secret"
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def _run(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([CITYOPS, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    return f"$ cityops {' '.join(args)} → {proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_no_secret_in_any_output(make_worker: Any, kafka_broker: str, tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("ops", "worker", roles=("viewer", "operator", "analyst"))
    _, vendor = store.add("vendor", "intake", feeds=("*",), sources=("*",))
    (tmp_path / "grafana").write_text(PLANTED + "-file\n")
    secrets = [PLANTED, token, vendor]
    hook = f"wecom+http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key={PLANTED}"
    worker: WorkerProc = make_worker(
        CITYOPS_KEYS_FILE=str(store.path), CITYOPS_WORKER_TOKEN=token,
        CITYOPS_WAREHOUSE_PASSWORD=PLANTED, CITYOPS_GRAFANA_TOKEN_FILE=str(tmp_path / "grafana"),
        CITYOPS_KAFKA_SASL_PASSWORD=PLANTED, CITYOPS_KAFKA_SASL_USERNAME="cityops",
        CITYOPS_ALERT_WEBHOOK_URLS=json.dumps([hook]), CITYOPS_ALERT_TICK_S="0.5",
        CITYOPS_ALERT_WEBHOOK_MAX_AGE_S="0",  # T0 is an hour before the import: send all
        CITYOPS_ALERT_WEBHOOK_ATTEMPTS="2", CITYOPS_ALERT_WEBHOOK_TIMEOUT_S="1",
        CITYOPS_LOG_LEVEL="DEBUG")
    env = worker.env
    texts: list[str] = []

    # a car park fills up: the alert fires and its webhook delivery fails (logged)
    prod = Producer(kafka_broker, worker.prefix)
    for sec, occ in [(0, 520), (60, 624), (120, 631), (180, 624), (240, 640)]:
        prod.send("parking", {"event_id": f"cp_wfc-{sec}", "source": "cp_wfc",
                              "carpark_id": "cp_wfc", "capacity": 650, "occupied": occ,
                              "event_time": (T0 + timedelta(seconds=sec)).isoformat()})
    prod.send("parking", b'{"event_id": "x", "event_id": "y"}')
    prod.close()
    wait_until(lambda: worker.health().get("webhooks", {}) and any(
        s["failed"] for s in worker.health()["webhooks"].values()), timeout=90,
        what="the webhook failure")

    auth = {"Authorization": f"Bearer {token}"}
    for method, path, body in [("GET", "/health", None), ("GET", "/metrics", None),
                               ("GET", "/alerts?all=1", None), ("GET", "/", None),
                               ("POST", "/sql", {"sql": "SELECT * FROM system.settings "
                                                 "WHERE name LIKE '%password%'"}),
                               ("POST", "/sql", {"sql": "SELEC broken"})]:
        r = httpx.request(method, worker.url + path, json=body, headers=auth, timeout=30)
        texts.append(f"{method} {path} {r.status_code} {dict(r.headers)}\n{r.text}")
    texts.append(httpx.get(worker.url + "/alerts", timeout=10,
                           headers={"Authorization": f"Bearer {PLANTED}"}).text)

    # the CLI: settings, alerts, sql through the worker, a server warehouse refusing the
    # password, a bad value in a secret variable, keys list
    texts.append(_run(env, "settings"))
    texts.append(_run(env, "alerts", "list"))
    texts.append(_run(env, "sql", "SELECT 1"))
    texts.append(_run(env, "keys", "list", "--all"))
    server = {**env, "CITYOPS_WAREHOUSE_URL":
              f"clickhouse://cityops:{PLANTED}@127.0.0.1:{free_port()}/cityops",
              "CITYOPS_WAREHOUSE_PASSWORD": "", "CITYOPS_WORKER_SQL_URL": ""}
    texts.append(_run(server, "warehouse", "status"))
    texts.append(_run(server, "warehouse", "migrate"))
    texts.append(_run(server, "settings"))
    texts.append(_run({**env, "CITYOPS_WAREHOUSE_URL": f"postgres://u:{PLANTED}@h/db"},
                      "settings"))
    texts.append(_run({**env, "CITYOPS_ALERT_WEBHOOK_URLS": f"[{PLANTED}"}, "settings"))
    grafana = {**env, "CITYOPS_GRAFANA_URL": f"http://admin:{PLANTED}@127.0.0.1:{free_port()}"}
    texts.append(_run(grafana, "settings"))
    texts.append(_run(grafana, "dashboards", "push"))
    texts.append(_run({**env, "CITYOPS_KAFKA_SASL_PASSWORD": PLANTED,
                       "CITYOPS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "grafana")},
                      "settings"))

    # the intake: answers to a good key, no key, a wrong key and bad records; its log
    port = free_port()
    intake_log = tmp_path / "intake.log"
    with open(intake_log, "wb") as log:
        intake = subprocess.Popen([CITYOPS, "intake", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
                   what="the intake")
        for headers in ({}, {"x-api-key": PLANTED}, {"x-api-key": vendor}):
            r = httpx.post(f"{url}/v1/feeds/parking/events", headers=headers, timeout=30,
                           content=b'[{"event_id": "a", "occupied": NaN}]')
            texts.append(f"{r.status_code} {r.text}")
            r = httpx.get(f"{url}/v1/stats", headers=headers, timeout=30)
            texts.append(f"{r.status_code} {r.text}")
    finally:
        os.killpg(intake.pid, signal.SIGTERM)
        intake.wait(30)
    time.sleep(0.5)
    texts.append(intake_log.read_text(errors="replace"))
    worker.stop()
    texts.append(worker.log_path.read_text(errors="replace"))
    for log in (Path(env["CITYOPS_DATA_DIR"]) / "logs").glob("*"):
        texts.append(log.read_text(errors="replace"))

    everything = "\n".join(texts)
    assert "webhook_failed" in everything          # the failure was logged …
    assert "wecom:http://127.0.0.1" in everything  # … naming the webhook by its label
    assert "(set, hidden)" in everything
    for secret in secrets:
        hits = [t[:300] for t in texts if secret in t]
        assert not hits, f"secret found in: {hits}"

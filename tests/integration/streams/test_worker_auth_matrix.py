"""Worker doors: every endpoint × {no token, wrong token, each role} on a real worker."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from streams_harness import CITYOPS, WorkerProc, free_port

from cityops.core.keys import KeyStore

pytestmark = pytest.mark.integration

# endpoint → (method, path, body, status when allowed)
ENDPOINTS: dict[str, tuple[str, str, Any, int]] = {
    "health": ("GET", "/health", None, 200),
    "metrics": ("GET", "/metrics", None, 200),
    "alerts": ("GET", "/alerts", None, 200),
    "ack": ("POST", "/alerts/no-such-alert/ack", {"by": "x"}, 404),
    "sql": ("POST", "/sql", {"sql": "SELECT 1"}, 200),
}
ALLOWED = {
    "viewer": {"health", "metrics", "alerts"},
    "operator": {"health", "metrics", "alerts", "ack"},
    "analyst": {"health", "metrics", "alerts", "sql"},
}


def _status(url: str, endpoint: str, token: str | None) -> int:
    method, path, body, _ = ENDPOINTS[endpoint]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, url + path, json=body, headers=headers, timeout=30).status_code


def test_auth_matrix(make_worker: Any, tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    tokens = {role: store.add(f"{role}-1", "worker", roles=(role,))[1] for role in ALLOWED}
    _, intake_key = store.add("vendor", "intake", feeds=("*",), sources=("*",))
    worker: WorkerProc = make_worker(CITYOPS_KEYS_FILE=str(store.path),
                                     CITYOPS_WORKER_TOKEN=tokens["viewer"])
    wrong = tokens["viewer"][:-3] + "abc"
    got: dict[tuple[str, str], int] = {}
    want: dict[tuple[str, str], int] = {}
    for endpoint, (_, _, _, ok) in ENDPOINTS.items():
        for who, token in [("none", None), ("wrong", wrong), ("intake key", intake_key),
                           *tokens.items()]:
            got[endpoint, who] = _status(worker.url, endpoint, token)
            want[endpoint, who] = (ok if endpoint in ALLOWED.get(who, set())
                                   else 403 if who in ALLOWED else 401)
    assert got == want
    # Faust's own pages are not served (they would have no lock)
    for path in ("/router/", "/table/", "/graph/", "/stats/"):
        assert httpx.get(worker.url + path, timeout=10).status_code == 404
    # a revoked token is refused from the next request on, without a restart
    store.revoke("analyst-1")
    assert _status(worker.url, "sql", tokens["analyst"]) == 401


def test_open_probes_setting(make_worker: Any, tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, viewer = store.add("wall", "worker", roles=("viewer",))
    worker: WorkerProc = make_worker(CITYOPS_KEYS_FILE=str(store.path),
                                     CITYOPS_WORKER_TOKEN=viewer,
                                     CITYOPS_WORKER_WEB_OPEN_PROBES="true")
    assert _status(worker.url, "health", None) == 200
    assert _status(worker.url, "metrics", None) == 200
    assert _status(worker.url, "alerts", None) == 401
    assert _status(worker.url, "sql", None) == 401


def test_refuses_public_bind_without_tokens(make_worker: Any, tmp_path: Path) -> None:
    worker: WorkerProc = make_worker(start=False, CITYOPS_WORKER_WEB_HOST="0.0.0.0",
                                     CITYOPS_WORKER_WEB_PORT=str(free_port()),
                                     CITYOPS_KEYS_FILE=str(tmp_path / "none.json"))
    proc = subprocess.run([CITYOPS, "worker", "--no-supervise"], env=worker.env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to start the worker web server on 0.0.0.0" in lines[0]

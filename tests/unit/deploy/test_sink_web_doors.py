"""``cityops sink``'s web doors are the worker's: a token with the endpoint's role, the probes
open only when ``CITYOPS_WORKER_WEB_OPEN_PROBES`` says so, and a sink that would serve a
locked door nobody can open refuses to start. Before, its /health and /metrics answered anyone
on any address."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from asgi_server import serving

from cityops.cli.sink_cmd import _web_app, check_door
from cityops.core.exceptions import AuthError
from cityops.core.keys import KeyStore, bearer_headers
from cityops.core.settings import load_settings


def _sink() -> SimpleNamespace:
    """What the endpoints read of a running sink: its thread's state and counters."""
    stats = SimpleNamespace(batches=3, rows=120, messages=121, errors=0, skipped=1)
    return SimpleNamespace(alive=True, error=None, stats=stats)


@contextlib.contextmanager
def _client(tmp_path: Path, host: str, open_probes: bool = False,
            roles: tuple[str, ...] | None = ("viewer",)
            ) -> Iterator[tuple[httpx.Client, str | None]]:
    """The sink's real web app under uvicorn on a free loopback port, its doors built for a
    bind on ``host`` (what the gate judges by)."""
    settings = load_settings(data_dir=tmp_path, worker_web_host=host,
                             worker_web_open_probes=open_probes)
    token = None
    if roles is not None:
        _, token = KeyStore(settings.keys_path).add("wall", "worker", roles=roles)
    sql = (lambda text, req: {"rows": [[1]], "sql": text})  # noqa: E731
    with serving(_web_app(_sink(), settings, sql), "sink's web server") as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        yield client, token


def test_on_another_address_every_door_needs_a_token_with_its_role(tmp_path: Path) -> None:
    with _client(tmp_path, "0.0.0.0") as (client, token):
        _every_door_needs_a_token(client, token)


def _every_door_needs_a_token(client: httpx.Client, token: str | None) -> None:
    assert token is not None
    for path in ("/health", "/metrics"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get(path, headers=bearer_headers("cty.nosuch.key")).status_code == 401
        assert client.get(path, headers=bearer_headers(token)).status_code == 200, path
    health = client.get("/health", headers=bearer_headers(token)).json()
    assert health["ok"] is True and health["rows"] == 120
    assert client.post("/sql", json={"sql": "SELECT 1"}).status_code == 401
    forbidden = client.post("/sql", json={"sql": "SELECT 1"}, headers=bearer_headers(token))
    assert forbidden.status_code == 403 and forbidden.json()["scope"] == "role:analyst"


def test_open_probes_open_health_and_metrics_and_nothing_else(tmp_path: Path) -> None:
    with _client(tmp_path, "0.0.0.0", open_probes=True) as (client, _):
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "cityops_" in metrics.text
        assert client.post("/sql", json={"sql": "SELECT 1"}).status_code == 401


def test_an_analyst_token_queries_the_sql_door(tmp_path: Path) -> None:
    with _client(tmp_path, "0.0.0.0", roles=("analyst",)) as (client, token):
        assert token is not None
        answer = client.post("/sql", json={"sql": "SELECT 1"},
                             headers=bearer_headers(token))
        assert answer.status_code == 200 and answer.json()["sql"] == "SELECT 1"


def test_loopback_with_no_worker_key_is_open_as_on_a_laptop(tmp_path: Path) -> None:
    with _client(tmp_path, "127.0.0.1", roles=None) as (client, _):
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(("open_probes", "sql", "refused"), [
    (False, False, True),   # locked probes, no key to open them
    (True, True, True),     # /sql of the embedded warehouse is never open on 0.0.0.0
    (True, False, False),   # a server warehouse, open probes: nothing locked (Kubernetes)
])
def test_a_sink_on_another_address_with_no_worker_key_refuses_to_start(
        tmp_path: Path, open_probes: bool, sql: bool, refused: bool) -> None:
    settings = load_settings(data_dir=tmp_path, worker_web_host="0.0.0.0",
                             worker_web_open_probes=open_probes)
    if refused:
        with pytest.raises(AuthError, match=re.escape(
                "refusing to start the sink's web server on 0.0.0.0: no worker key")):
            check_door(settings, sql=sql)
        KeyStore(settings.keys_path).add("wall", "worker", roles=("viewer",))
    check_door(settings, sql=sql)  # with a key (or nothing locked) it starts

"""Endpoints the worker adds to Faust's web server (aiohttp).

    GET  /health                 200 when every part runs, 503 otherwise (JSON details)
    GET  /metrics                Prometheus text exposition (``streams.metrics``)
    POST /sql                    read-only SELECT on the embedded warehouse (``cityops sql``
                                 uses it while this worker holds the chdb session); body
                                 ``{"sql": "...", "format": "json"}``; 404 in server mode
    GET  /alerts                 current alerts of the engine (``?all=1`` includes cleared)
    POST /alerts/{alert_id}/ack  body ``{"by": "name"}``: acknowledge an alert

Every endpoint needs a bearer token (``cityops keys add NAME --role …``) with a role that
allows it: ``viewer`` reads ``/alerts``, ``/health`` and ``/metrics``; ``operator`` also
acknowledges; ``analyst`` also queries ``/sql``. 401 without a valid token, 403 naming the
missing role. ``CITYOPS_WORKER_WEB_OPEN_PROBES`` leaves ``/health`` and ``/metrics`` open; a
loopback bind with no worker token in the key store is open (a laptop's ``cityops run``). An
acknowledgement records the token's name.

The worker also writes ``<data_dir>/worker-web.json`` (URL, pid, warehouse URL) while it runs,
so commands on the same machine find it (``worker_endpoint``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import faust
from faust.web import Request, Response

from cityops.core.exceptions import AuthError
from cityops.core.keys import LOCAL, Gate, KeyStore, Principal
from cityops.core.settings import Settings
from cityops.streams import metrics

ENDPOINT_FILE = "worker-web.json"

SqlHandler = Callable[[str, dict[str, Any]], dict[str, Any]]


def endpoint_file(settings: Settings) -> Path:
    return settings.data_dir.resolve() / ENDPOINT_FILE


def write_endpoint(settings: Settings, embedded_warehouse: bool) -> Path:
    path = endpoint_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"url": f"http://{settings.worker_web_host}:{settings.worker_web_port}",
            "pid": os.getpid(), "warehouse_url": settings.effective_warehouse_url,
            "embedded": embedded_warehouse, "worker_id": settings.worker_id}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def remove_endpoint(settings: Settings) -> None:
    path = endpoint_file(settings)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if data.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def worker_endpoint(settings: Settings) -> dict[str, Any] | None:
    """The running worker's web endpoint on this machine, or None (none, or it died).

    ``{"url", "pid", "warehouse_url", "embedded", "worker_id"}``; a file left behind by a
    killed worker is ignored (its pid is gone).
    """
    try:
        data = json.loads(endpoint_file(settings).read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return data


def remote_sql_url(settings: Settings) -> str | None:
    """URL of ``/sql`` on a worker holding the embedded warehouse of these settings."""
    ep = worker_endpoint(settings)
    if ep is None or not ep.get("embedded"):
        return None
    if ep.get("warehouse_url") != settings.effective_warehouse_url:
        return None
    return f"{ep['url']}/sql"


#: permission each endpoint needs (``core.keys.ROLES`` says which role grants it)
NEEDS = {"health": "read", "metrics": "read", "alerts": "read", "ack": "ack", "sql": "sql"}
ROLE_FOR = {"read": "viewer", "ack": "operator", "sql": "analyst"}


def worker_gate(settings: Settings) -> Gate:
    return Gate(KeyStore(settings.keys_path), "worker", settings.worker_web_host)


#: the endpoints ``CITYOPS_WORKER_WEB_OPEN_PROBES`` leaves open (health checks, scrapers)
PROBES = ("health", "metrics")


def admit(gate: Gate, request: Any, what: str, settings: Settings
          ) -> tuple[Principal | None, tuple[dict[str, Any], int, dict[str, str]] | None]:
    """``authorize`` for endpoint ``what`` (a key of ``NEEDS``), the probes open when the
    settings say so: the one rule of the worker's and the sink's doors."""
    return authorize(gate, request, NEEDS[what],
                     settings.worker_web_open_probes and what in PROBES)


def authorize(gate: Gate, request: Any, permission: str, open_probe: bool = False
              ) -> tuple[Principal | None, tuple[dict[str, Any], int, dict[str, str]] | None]:
    """(principal, None) when allowed, else (None, (body, status, headers)) to answer."""
    if open_probe:
        return LOCAL, None
    try:
        principal = gate.principal(request.headers.get("Authorization"))
    except AuthError as exc:
        return None, ({"error": "auth", "detail": str(exc)}, 500, {})
    if principal is None:
        return None, ({"error": "unauthorized", "detail": "missing or unknown bearer token "
                       "(CITYOPS_WORKER_TOKEN; `cityops keys add NAME --role …`)"}, 401,
                      {"WWW-Authenticate": 'Bearer realm="cityops-worker"'})
    if not principal.may(permission):
        role = ROLE_FOR[permission]
        return None, ({"error": "forbidden", "scope": f"role:{role}",
                       "detail": f"token {principal.name!r} lacks the {role} role"}, 403, {})
    return principal, None


class WorkerViews(Protocol):
    """What the endpoints need of the worker (``streams.worker.StreamsWorker``)."""

    sql_handler: SqlHandler | None
    settings: Settings

    def health(self) -> dict[str, Any]: ...

    def refresh_gauges(self) -> None: ...

    async def list_alerts(self, include_all: bool = False) -> list[dict[str, Any]]: ...

    async def acknowledge(self, alert_id: str, actor: str) -> tuple[int, dict[str, Any]]: ...


def register_views(app: faust.App, worker: WorkerViews) -> None:
    """Add the endpoints; ``worker`` is the ``StreamsWorker`` (health, alerts, sql)."""
    settings: Settings = worker.settings
    gate = worker_gate(settings)

    def guard(view: Any, request: Any, what: str) -> tuple[Principal | None, Any]:
        principal, refusal = admit(gate, request, what, settings)
        if refusal is None:
            return principal, None
        body, status, headers = refusal
        return None, view.json(body, status=status, headers=headers)

    @app.page("/health")
    class Health(faust.web.View):
        async def get(self, request: Request) -> Response:
            _, refused = guard(self, request, "health")
            if refused is not None:
                return refused
            report = worker.health()
            return self.json(report, status=200 if report["status"] == "ok" else 503)

    @app.page("/metrics")
    class Metrics(faust.web.View):
        async def get(self, request: Request) -> Response:
            _, refused = guard(self, request, "metrics")
            if refused is not None:
                return refused
            worker.refresh_gauges()
            body, ctype = metrics.exposition()
            return self.bytes(body, content_type=ctype.split(";")[0])

    @app.page("/sql")
    class Sql(faust.web.View):
        async def post(self, request: Request) -> Response:
            _, refused = guard(self, request, "sql")
            if refused is not None:
                return refused
            handler: SqlHandler | None = worker.sql_handler
            if handler is None:
                return self.json({"error": "no embedded warehouse in this worker"},
                                 status=404)
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": "body must be JSON {\"sql\": ...}"}, status=400)
            sql = body.get("sql") if isinstance(body, dict) else None
            if not isinstance(sql, str) or not sql.strip():
                return self.json({"error": "missing 'sql'"}, status=400)
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(None, handler, sql, body)
            except Exception as exc:  # converted warehouse errors carry a code
                code = getattr(exc, "code", "error")
                status = 400 if code != "transient" else 503
                return self.json({"error": str(exc), "code": code}, status=status)
            return self.json(result)

    @app.page("/alerts")
    class Alerts(faust.web.View):
        async def get(self, request: Request) -> Response:
            _, refused = guard(self, request, "alerts")
            if refused is not None:
                return refused
            include_all = request.query.get("all") in ("1", "true", "yes")
            return self.json({"alerts": await worker.list_alerts(include_all)})

    @app.page("/alerts/{alert_id}/ack")
    class Ack(faust.web.View):
        async def post(self, request: Request, alert_id: str) -> Response:
            principal, refused = guard(self, request, "ack")
            if refused is not None:
                return refused
            assert principal is not None
            try:
                body = await request.json()
            except ValueError:
                body = {}
            by = (body or {}).get("by") if isinstance(body, dict) else None
            by = by.strip() if isinstance(by, str) else ""
            if principal.authenticated:  # the token says who; a differing `by` is kept too
                actor = principal.name if by in ("", principal.name) else \
                    f"{by} (token {principal.name})"
            elif by:
                actor = by
            else:
                return self.json({"error": "missing 'by' (who acknowledges)"}, status=400)
            status, result = await worker.acknowledge(alert_id, actor)
            return self.json(result, status=status)

"""``cityops sink``: the warehouse sink as its own process, beside workers run with --no-sink.

The same ``WarehouseSink`` that runs inside ``cityops worker``, plus the two endpoints a
container orchestrator needs on ``CITYOPS_WORKER_WEB_HOST:CITYOPS_WORKER_WEB_PORT``:
``/health`` (200 while the sink thread runs without error, else 503) and ``/metrics``; with
the embedded warehouse also ``POST /sql`` (read-only, role ``analyst`` like the worker's),
because this process then holds the only chdb session. Several sink processes share the
partitions of their consumer group (``<worker id>.sink``) when the warehouse is a server.

The doors are the worker's (``streams.web.admit``): a bearer token with the role each endpoint
needs, ``CITYOPS_WORKER_WEB_OPEN_PROBES`` leaving ``/health`` and ``/metrics`` open, and only a
loopback bind with no worker key open to all. A sink that would serve a locked door on another
address with no worker key to open it refuses to start, as the worker does.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from cityops.cli.common import console, fail, settings_or_exit


def check_door(settings: Any, sql: bool) -> None:
    """Refuse (``AuthError``) a non-loopback bind whose doors no worker key could open: the
    probes when they are not left open, ``/sql`` (embedded warehouse) always."""
    from cityops.streams.web import worker_gate

    if sql or not settings.worker_web_open_probes:
        worker_gate(settings).check_startup("the sink's web server")


def _web_app(sink: Any, settings: Any, sql: Any = None) -> Any:
    import asyncio

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from cityops.streams import metrics
    from cityops.streams.web import admit, worker_gate

    app = FastAPI(title="cityops sink", docs_url=None, redoc_url=None, openapi_url=None)
    gate = worker_gate(settings)

    def refused(request: Any, what: str) -> JSONResponse | None:
        _, refusal = admit(gate, request, what, settings)
        if refusal is None:
            return None
        body, status, headers = refusal
        return JSONResponse(body, status_code=status, headers=headers)

    # plain Starlette routes, as ``/sql``: each reads its request's Authorization header
    def health(request: Any) -> JSONResponse:
        if (answer := refused(request, "health")) is not None:
            return answer
        ok = sink.alive and sink.error is None
        st = sink.stats
        body = {"ok": ok, "batches": st.batches, "rows": st.rows, "messages": st.messages,
                "errors": st.errors, "skipped": st.skipped,
                "error": None if sink.error is None else type(sink.error).__name__}
        return JSONResponse(body, status_code=200 if ok else 503)

    def prometheus(request: Any) -> Response:
        if (answer := refused(request, "metrics")) is not None:
            return answer
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.router.add_route("/health", health, methods=["GET"])
    app.router.add_route("/metrics", prometheus, methods=["GET"])

    if sql is not None:
        async def query(request: Any) -> JSONResponse:  # a plain Starlette route
            if (answer := refused(request, "sql")) is not None:
                return answer
            try:
                req = await request.json()
            except ValueError:
                return JSONResponse({"error": "body must be JSON {\"sql\": ...}"},
                                    status_code=400)
            text = req.get("sql") if isinstance(req, dict) else None
            if not isinstance(text, str) or not text.strip():
                return JSONResponse({"error": "missing 'sql'"}, status_code=400)
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, sql, text, req)
            except Exception as exc:  # converted warehouse errors carry a code
                code = getattr(exc, "code", "error")
                return JSONResponse({"error": str(exc), "code": code},
                                    status_code=400 if code != "transient" else 503)
            return JSONResponse(result)

        app.router.add_route("/sql", query, methods=["POST"])

    return app


def sink_command() -> None:
    """Run the warehouse sink alone: Kafka clean/derived topics → ClickHouse, /health."""
    import uvicorn

    from cityops.cli.common import registry_or_exit
    from cityops.exceptions import CityopsError
    from cityops.warehouse.access import open_warehouse, sql_handler
    from cityops.warehouse.sink import WarehouseSink

    settings = settings_or_exit()
    embedded = settings.effective_warehouse_url.startswith("chdb:")
    try:
        check_door(settings, sql=embedded)
    except CityopsError as exc:
        fail(str(exc))
    from cityops.deploy.exceptions import BrokerUnreachable
    from cityops.deploy.kafka_local import ensure_topics

    try:
        # the topics exist before the sink subscribes, whichever of it and the workers starts
        # first: a sink that subscribed to missing topics once left one partition unread
        ensure_topics(settings)
    except BrokerUnreachable as exc:
        fail(f"{exc}; start it with `cityops kafka up`")
    except CityopsError as exc:
        fail(str(exc))
    try:
        wh = open_warehouse(settings, registry_or_exit(settings))
    except CityopsError as exc:
        fail(f"cannot open the warehouse: {exc}")
    sink = WarehouseSink(settings, wh)
    from cityops.core import gc_tuning

    gc_tuning.tune(settings.gc_gen0_threshold)
    sink.start()
    web = _web_app(sink, settings, sql_handler(wh, settings) if embedded else None)
    server = uvicorn.Server(uvicorn.Config(
        web, host=settings.worker_web_host, port=settings.worker_web_port,
        log_level="warning", access_log=False))
    stopping = threading.Event()

    def watch() -> None:  # a crashed sink ends the process, so the orchestrator restarts it
        while not stopping.wait(1.0):
            if not sink.alive:
                server.should_exit = True
                return

    threading.Thread(target=watch, name="sink-watch", daemon=True).start()
    console.print(f"sink: {len(sink.topics)} topics → {wh.url}; health on "
                  f"{settings.worker_web_host}:{settings.worker_web_port}", highlight=False)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        stopping.set()
        sink.stop()
        wh.close()
    if sink.error is not None:
        fail(f"sink stopped: {type(sink.error).__name__}: {sink.error}", code=1)


def register(app: typer.Typer) -> None:
    app.command("sink")(sink_command)

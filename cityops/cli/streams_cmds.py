"""Streams subcommands: ``aqi`` (HJ 633-2012 calculator), ``worker`` (the Faust pipeline with
the warehouse sink, supervised) and ``alerts`` (list, acknowledge)."""

from __future__ import annotations

import json
import math
import os

import typer

from cityops.cli.common import console, err_console, fail

# ============================================================================================
# aqi — HJ 633-2012 calculator
# ============================================================================================

AQI_ARGS: tuple[str, ...] = ("pm25", "pm10", "o3_1h", "o3_8h", "no2", "so2", "co", "so2_24h")


def _parse_concentrations(pairs: list[str]) -> dict[str, float]:
    """``name=value`` tokens as floats; unknown names or bad numbers are one-line errors."""
    out: dict[str, float] = {}
    for token in pairs:
        name, sep, raw = token.partition("=")
        name = name.strip().lower().replace(".", "").replace("-", "_")
        if not sep or name not in AQI_ARGS:
            fail(f"{token!r}: expected NAME=VALUE with NAME one of {', '.join(AQI_ARGS)}")
        try:
            value = float(raw)
        except ValueError:
            fail(f"{token!r}: {raw!r} is not a number")
        if not math.isfinite(value):  # inf and nan parse as floats
            fail(f"{token!r}: {raw!r} is not a finite number")
        if not value >= 0:
            fail(f"{token!r}: concentration must be ≥ 0")
        if name in out:
            fail(f"{token!r}: {name} given twice")
        out[name] = value
    return out


def aqi_command(
    concentrations: list[str] = typer.Argument(
        None, help="NAME=VALUE pairs: pm25 pm10 o3_1h o3_8h no2 so2 (µg/m³), co (mg/m³), "
        "so2_24h (hourly mode, used when so2 > 800)."),
    averaging: str = typer.Option("1h", "--averaging", "-a",
                                  help="1h: hourly real-time report; 24h: daily report."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compute China's AQI (HJ 633-2012) from pollutant concentrations."""
    from cityops.streams.aqi import POLLUTANT_LABELS, compute_aqi

    if averaging not in ("1h", "24h"):
        fail(f"--averaging must be 1h or 24h, got {averaging!r}")
    values = _parse_concentrations(concentrations or [])
    if not values:
        fail("give at least one concentration, e.g. cityops aqi pm25=80 o3_1h=120")
    result = compute_aqi(**values, averaging=averaging)  # type: ignore[arg-type]
    if result.aqi is None:  # e.g. only so2_24h in hourly mode, or O3 8 h above 800 alone
        notes = "; ".join(result.notes)
        fail(f"no AQI: none of {', '.join(values)} is indexed with --averaging {averaging}"
             + (f" ({notes})" if notes else ""))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, sort_keys=True))
        return
    primary = ", ".join(POLLUTANT_LABELS[p] for p in result.primary_pollutants) or "—"
    console.print(f"AQI ({averaging}): {result.aqi}  {result.category_zh} "
                  f"({result.category_en}, level {result.level}, {result.colour})",
                  highlight=False)
    console.print(f"primary pollutant: {primary}", highlight=False)
    for name, value in result.iaqi.items():
        console.print(f"  IAQI {POLLUTANT_LABELS[name]}: {value}", highlight=False)
    for note in result.notes:
        console.print(f"  note: {note}", highlight=False)


def _register_aqi(app: typer.Typer) -> None:
    app.command("aqi")(aqi_command)


# ============================================================================================
# end of the aqi block
# ============================================================================================


# ============================================================================================
# worker, alerts — the Faust pipeline with the warehouse sink; alert listing and acks
# ============================================================================================


def _supervise(args: list[str], command: list[str] | None = None) -> int:
    """Run the worker as a child; restart it when it exits for a replay (status 75).
    ``command``: the child to run instead of the worker (tests)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from cityops.streams.durable import EXIT_REPLAY

    exe = Path(sys.executable).with_name("cityops")
    cmd = command or [str(exe) if exe.exists() else "cityops", "worker", "--no-supervise",
                      *args]
    stopping = False
    child: subprocess.Popen | None = None

    def relay(signum: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)  # e.g. kill -USR1 on the supervisor: the worker's dump

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        # a hang-up (the terminal closed, or `kill -HUP`) stops the worker cleanly: it left
        # the supervisor gone and the worker running on, holding its port and warehouse
        relay(signal.SIGTERM if signum == signal.SIGHUP else signum, frame)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGUSR1, relay)
    restarts = 0
    while True:
        child = subprocess.Popen(cmd)
        rc = child.wait()
        if rc < 0:  # killed by a signal (e.g. SIGKILL when out of memory): say so, and exit
            # as a shell would (128 + the signal), not with Python's negative status
            name = signal.Signals(-rc).name
            if not stopping:
                err_console.print(f"error: the worker was killed by {name}", highlight=False)
            return 128 - rc
        if stopping or rc != EXIT_REPLAY:
            return rc
        restarts += 1
        console.print(f"worker stopped itself to replay skipped records; restart {restarts}",
                      highlight=False)
        time.sleep(min(5.0, 0.5 * restarts))


def worker_command(
    sink: bool | None = typer.Option(None, "--sink/--no-sink",
                                     help="Run the warehouse sink in this process (default: "
                                     "CITYOPS_WORKER_SINK); --no-sink beside `cityops sink`."),
    supervise: bool = typer.Option(True, "--supervise/--no-supervise",
                                   help="Restart the worker when it stops itself for a "
                                   "replay (exit status 75)."),
    stages: str | None = typer.Option(None, "--stages",
                                      help="all, validation or aggregation (default: "
                                      "CITYOPS_WORKER_STAGES, all): run one kind of step, "
                                      "beside workers running the other."),
) -> None:
    """Run the streams worker: Faust agents, alert engine, warehouse sink, web endpoints.

    The warehouse is CITYOPS_WAREHOUSE_URL (embedded chdb under the data dir by default).
    Web: /health, /metrics, /sql (embedded mode), /alerts, /alerts/{id}/ack on
    CITYOPS_WORKER_WEB_HOST:CITYOPS_WORKER_WEB_PORT. SIGTERM / Ctrl-C stop it cleanly.
    """
    from cityops.cli.common import registry_or_exit, settings_or_exit
    from cityops.exceptions import CityopsError

    if stages is not None:  # through the environment, so a supervised child has it too
        from typing import get_args

        from cityops.core.settings import WorkerStages

        *others, last = kinds = get_args(WorkerStages)
        if stages not in kinds:
            fail(f"--stages {stages!r}: {', '.join(others)} or {last}")
        os.environ["CITYOPS_WORKER_STAGES"] = stages
    if supervise:
        raise typer.Exit(_supervise([] if sink is None else ["--sink" if sink else "--no-sink"]))
    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    try:
        from cityops.streams.web import worker_gate

        worker_gate(settings).check_startup("the worker web server")
    except CityopsError as exc:
        fail(str(exc))
    from cityops.deploy.exceptions import BrokerUnreachable
    from cityops.deploy.kafka_local import ensure_topics

    try:
        ensure_topics(settings)  # subscribe to existing topics, with the configured partitions
    except BrokerUnreachable as exc:
        fail(f"{exc}; start it with `cityops kafka up`")
    except CityopsError as exc:  # BrokerError, or the broker refused our password: one line
        fail(str(exc))
    try:
        from cityops.cli.assembly import build_worker
        from cityops.streams.layouts import prepare_group

        prepare_group(settings)  # one layout at a time; after a switch, start where it stopped
        worker = build_worker(settings, registry,
                              with_sink=settings.worker_sink if sink is None else sink)
        worker.check_port()
    except CityopsError as exc:
        fail(str(exc))
    worker.run()


alerts_app = typer.Typer(help="List and acknowledge alerts.", no_args_is_help=True)


def _worker_url() -> str | None:
    from cityops.cli.common import settings_or_exit
    from cityops.streams.web import worker_endpoint

    ep = worker_endpoint(settings_or_exit())
    return ep["url"] if ep else None


def _auth() -> dict[str, str]:
    """The bearer header of ``CITYOPS_WORKER_TOKEN`` (none when unset: an open local worker)."""
    from cityops.cli.common import settings_or_exit
    from cityops.core.keys import bearer_headers

    return bearer_headers(settings_or_exit().worker_token.get_secret_value())


def _refused(resp: object) -> None:
    """One line for 401 / 403 (which role is missing), then exit."""
    status = getattr(resp, "status_code", 0)
    if status not in (401, 403):
        return
    try:
        body = resp.json()  # type: ignore[attr-defined]
    except ValueError:
        body = {}
    if status == 401:
        from cityops.cli.common import settings_or_exit

        if settings_or_exit().worker_token.get_secret_value():
            fail("the worker does not know the token in CITYOPS_WORKER_TOKEN (revoked, or "
                 "from another key file): `cityops keys list --all` shows the keys", code=1)
        fail("the worker wants a token: set CITYOPS_WORKER_TOKEN (`cityops keys add NAME "
             "--role …`)", code=1)
    fail(f"the worker refused this token: {body.get('detail', body.get('scope', ''))}", code=1)


@alerts_app.command("list")
def alerts_list(
    include_all: bool = typer.Option(False, "--all", help="Include closed alerts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Current alerts: from the running worker, else the latest state in the warehouse."""
    import httpx
    from rich.table import Table

    url = _worker_url()
    if url is not None:
        try:
            resp = httpx.get(f"{url}/alerts", params={"all": int(include_all)}, timeout=10,
                             headers=_auth())
            _refused(resp)
            resp.raise_for_status()
            alerts = resp.json()["alerts"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            fail(f"worker at {url} did not answer: {exc}")
    else:
        alerts = _alerts_from_warehouse(include_all)
    if as_json:
        typer.echo(json.dumps(alerts, ensure_ascii=False, default=str))
        return
    # wrapped, never cut: the id is what `alerts ack` takes ("dead_sen…" was no use)
    table = Table()
    for name in ("rule", "subject", "severity", "state", "value", "since", "alert_id"):
        table.add_column(name, overflow="fold")
    for a in alerts:
        table.add_row(str(a.get("rule_id", "")), str(a.get("subject", "")),
                      str(a.get("severity", "")), str(a.get("state", "")),
                      str(a.get("value", "")), str(a.get("fired_at", a.get("event_time", ""))),
                      str(a.get("alert_id")))
    console.print(table)
    console.print(f"{len(alerts)} alert(s)" + ("" if url else " (from the warehouse; "
                                                "no worker running)"), highlight=False)


def _alerts_from_warehouse(include_all: bool) -> list[dict]:
    from cityops.cli.common import settings_or_exit
    from cityops.exceptions import CityopsError

    try:
        from cityops.warehouse.access import latest_alerts

        return latest_alerts(settings_or_exit(), include_all)
    except CityopsError as exc:
        fail(f"no worker running and the warehouse could not be read: {exc}")


@alerts_app.command("ack")
def alerts_ack(
    alert_id: str = typer.Argument(..., help="The alert's id (see `cityops alerts list`)."),
    by: str = typer.Option("", "--by", help="Who acknowledges (name or staff id); with a "
                           "token, the worker records the token's name (and this, if it "
                           "differs)."),
) -> None:
    """Acknowledge an alert through the running worker (its engine owns alert state)."""
    import httpx

    from cityops.cli.common import settings_or_exit

    if not by.strip() and not settings_or_exit().worker_token.get_secret_value():
        fail("say who acknowledges: --by NAME (or set CITYOPS_WORKER_TOKEN to your own key, "
             "whose name the worker records)")
    url = _worker_url()
    if url is None:
        fail("no running worker found (start one with `cityops worker`)")
    try:
        resp = httpx.post(f"{url}/alerts/{alert_id}/ack", json={"by": by}, timeout=40,
                          headers=_auth())
    except httpx.HTTPError as exc:
        fail(f"worker at {url} did not answer: {exc}")
    _refused(resp)
    body = resp.json() if resp.headers.get("content-type", "").startswith(
        "application/json") else {"error": resp.text}
    if resp.status_code == 404:
        fail(body.get("error", f"no open alert {alert_id}"), code=1)
    if resp.status_code >= 400:
        fail(body.get("error", resp.text))
    console.print(f"{alert_id}: {body.get('status')}", highlight=False)


def _register_worker(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
    app.add_typer(alerts_app, name="alerts")


# ============================================================================================
# end of the worker / alerts block
# ============================================================================================


def register(app: typer.Typer) -> None:
    """Add this module's subcommands to the root app."""
    _register_aqi(app)
    _register_worker(app)

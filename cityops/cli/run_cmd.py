"""``cityops run``: the whole local pipeline on the embedded defaults, with a live summary.

1. the local Kafka broker (``deploy.kafka_local.LocalKafka``; reused if already running);
2. the warehouse schema (``warehouse.migrate``) in the embedded chdb database;
3. the streams worker (``cityops worker``: Faust agents, alert engine, warehouse sink);
4. the simulator (``cityops simulate``): the last ``--hours`` replayed at ``--speed``×, then
   real time;
5. the command-centre board every ``--every`` seconds (``CITYOPS_BOARD_REFRESH_S``): the
   overview board's own panel queries over the worker's read-only ``/sql``
   (``dashboards.terminal``), under a one-line pipeline summary from ``/health``.

Ctrl-C stops the simulator, then the worker (SIGTERM: it flushes and commits), then the
broker if this command started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from cityops.cli.common import console, fail, registry_or_exit, settings_or_exit


def _cityops() -> str:
    exe = Path(sys.executable).with_name("cityops")
    return str(exe) if exe.exists() else "cityops"


def _stop(proc: subprocess.Popen | None, name: str, timeout: float = 60.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    console.print(f"stopping {name} …", highlight=False)
    proc.send_signal(signal.SIGINT if name == "simulator" else signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _summary(url: str, started: float, headers: dict[str, str], board: Any = None,
             runner: Any = None, tz: Any = None) -> Any:
    """The live view: one pipeline line from ``/health``, then the command-centre board."""
    import httpx
    from rich.console import Group

    try:
        resp = httpx.get(f"{url}/health", timeout=5, headers=headers)
        if resp.status_code in (401, 403):
            return f"[red]worker refused the token ({resp.status_code}): set " \
                   "CITYOPS_WORKER_TOKEN to a viewer token[/red]"
        health = resp.json()
    except (httpx.HTTPError, ValueError):
        return "[yellow]worker not answering yet …[/yellow]"
    validate = health.get("validate", {})
    sink = health.get("sink", {})
    line = (f"cityops — {time.monotonic() - started:,.0f} s, worker {health.get('status')}; "
            + ", ".join(f"{feed} {v['in']:,} in / {v['dead']:,} dead" for feed, v in
                        validate.items())
            + f"; warehouse {sink.get('rows', 0):,} rows in {sink.get('batches', 0):,} batches")
    if board is None or runner is None:
        return line
    from datetime import datetime

    from cityops.dashboards.terminal import frame

    return Group(line, frame(runner, board, datetime.now(tz)))


def run(
    speed: float = typer.Option(60.0, "--speed", help="Simulated seconds per wall second "
                                "while replaying the recent past."),
    hours: float = typer.Option(6.0, "--hours", help="How much of the recent past to replay "
                                "(then the simulator continues in real time)."),
    faults: str = typer.Option(
        "dup=0.01,malformed=0.005,late=0.002,dead=1", "--faults",
        help="Simulator faults (see `cityops simulate --help`): by default a few duplicates, "
             "malformed and late records (dead letters, late events) and one sensor that "
             "goes silent (a dead-sensor alert), so the demo shows every path."),
    every: float = typer.Option(0.0, "--every", help="Seconds between board refreshes "
                                "(default CITYOPS_BOARD_REFRESH_S)."),
) -> None:
    """Run the whole local pipeline: broker, warehouse, worker, simulator; Ctrl-C stops."""
    from datetime import datetime

    from rich.live import Live

    from cityops.core.keys import bearer_headers
    from cityops.deploy.exceptions import BrokerError
    from cityops.deploy.kafka_local import LocalKafka, ensure_topics
    from cityops.exceptions import CityopsError
    from cityops.streams.web import worker_gate

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    gate = worker_gate(settings)
    try:
        gate.check_startup("the worker web server")
    except CityopsError as exc:
        fail(str(exc))
    token = settings.worker_token.get_secret_value()
    session_key = None
    if gate.enforced and not token:
        # worker tokens exist but none is configured here: a token for this run only
        session_key, token = gate.store.add("cityops-run", "worker",
                                            roles=("viewer", "operator", "analyst"))
    headers = bearer_headers(token)
    broker = LocalKafka(settings)
    started_broker = False
    if not settings.kafka_bootstrap_servers:
        was_running = broker.pid() is not None and broker.answering()
        try:
            broker.up()
        except BrokerError as exc:
            fail(str(exc))
        started_broker = not was_running
        console.print(f"broker at {broker.bootstrap}"
                      + (" (started)" if started_broker else " (already running)"))
    try:
        ensure_topics(settings)
    except BrokerError as exc:
        fail(str(exc))
    try:
        from cityops.warehouse.sink_runner import open_warehouse

        wh = open_warehouse(settings, registry)
        wh.close()
    except CityopsError as exc:
        fail(f"warehouse {settings.effective_warehouse_url}: {exc}")
    console.print(f"warehouse {settings.effective_warehouse_url} migrated")

    env = dict(os.environ)
    if token:
        env["CITYOPS_WORKER_TOKEN"] = token  # `cityops sql` / alerts from this environment
    # replaying the past at speed: alert time (dead sensors, durations) follows event time
    env.setdefault("CITYOPS_ALERT_CLOCK", "event")
    logs = settings.data_dir.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log = open(logs / "worker.log", "ab")  # noqa: SIM115 - the child's stdout
    sim_log = open(logs / "simulate.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen([_cityops(), "worker"], env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{settings.worker_web_host}:{settings.worker_web_port}"
    now = datetime.now(settings.tz)
    start = (now - timedelta(hours=hours)).replace(microsecond=0)
    sim_cmd = [_cityops(), "simulate", "--quiet", "--start", start.isoformat(),
               "--end", now.replace(microsecond=0).isoformat(), "--speed", str(speed)]
    if faults:
        sim_cmd += ["--faults", faults]
    sim: subprocess.Popen | None = None
    realtime = False
    console.print(f"worker log {logs / 'worker.log'}; simulator log {logs / 'simulate.log'}; "
                  f"web {url} (/health /metrics /alerts /sql)", highlight=False)
    from cityops.dashboards.boards import overview
    from cityops.dashboards.terminal import WorkerSql
    from cityops.streams.alerts.rules import load_rules

    board = overview(load_rules(settings.alert_rules), registry,
                     f"{settings.board_refresh_s}s")
    runner = WorkerSql(f"{url}/sql", settings.worker_token.get_secret_value())
    every = every or float(settings.board_refresh_s)
    t0 = time.monotonic()
    try:
        with Live(_summary(url, t0, headers), console=console, refresh_per_second=1) as live:
            while True:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}; see "
                                       f"{logs / 'worker.log'}")
                if sim is None and _ready(url, headers):
                    sim = subprocess.Popen(sim_cmd, env=env, stdout=sim_log,
                                           stderr=subprocess.STDOUT)
                elif sim is not None and sim.poll() is not None and not realtime:
                    realtime = True  # caught up with now: continue in real time
                    sim = subprocess.Popen([_cityops(), "simulate", "--quiet", "--speed", "1"],
                                           env=env, stdout=sim_log, stderr=subprocess.STDOUT)
                live.update(_summary(url, t0, headers, board, runner, settings.tz))
                time.sleep(every)
    except KeyboardInterrupt:
        console.print("Ctrl-C: shutting down")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
    finally:
        _stop(sim, "simulator")
        _stop(worker, "worker")
        if session_key is not None:
            gate.store.revoke(session_key.key_id)
        if started_broker:
            console.print("stopping the broker …")
            broker.down()
        worker_log.close()
        sim_log.close()


def _ready(url: str, headers: dict[str, str]) -> bool:
    import httpx

    try:
        return bool(httpx.get(f"{url}/health", timeout=2, headers=headers).json()
                    .get("running"))
    except (httpx.HTTPError, ValueError):
        return False


def register(app: typer.Typer) -> None:
    """Add ``cityops run``."""
    app.command("run")(run)

"""``cityops run``: the whole local pipeline on the embedded defaults, with a live summary.

1. the local Kafka broker(s) (``deploy.kafka_local.LocalKafkaCluster``; reused if running);
2. the warehouse schema (``warehouse.migrate``) in the embedded chdb database;
3. the streams worker (``cityops worker``: Faust agents, alert engine, warehouse sink);
4. the simulator (``cityops simulate``): the last ``--hours`` replayed at ``--speed``×, then
   real time;
5. a terminal summary every ``--every`` seconds: events in / out per feed, dead letters, late
   events, warehouse rows, sink batches, active alerts.

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


def _summary(url: str, started: float) -> Any:
    import httpx
    from rich.table import Table

    try:
        health = httpx.get(f"{url}/health", timeout=5).json()
        alerts = httpx.get(f"{url}/alerts", timeout=5).json().get("alerts", [])
    except (httpx.HTTPError, ValueError):
        return "[yellow]worker not answering yet …[/yellow]"
    table = Table(title=f"cityops — {time.monotonic() - started:,.0f} s, worker "
                  f"{health.get('status')}", expand=False)
    for col in ("feed", "raw in", "clean", "dead letters", "duplicates", "aggregated",
                "records out", "late"):
        table.add_column(col, justify="right" if col != "feed" else "left")
    for feed, v in health.get("validate", {}).items():
        a = health.get("aggregate", {}).get(feed, {})
        table.add_row(feed, f"{v['in']:,}", f"{v['clean']:,}", f"{v['dead']:,}",
                      f"{v['duplicate']:,}", f"{a.get('in', 0):,}", f"{a.get('records', 0):,}",
                      f"{a.get('late', 0):,}")
    sink = health.get("sink", {})
    out = Table.grid(padding=(0, 2))
    out.add_row(table)
    out.add_row(f"warehouse: {sink.get('rows', 0):,} rows in {sink.get('batches', 0):,} "
                f"batches (last {sink.get('last_batch_s', 0)} s); alert engine "
                f"{health.get('alerts', {}).get('events', 0):,} events, {len(alerts)} open")
    for a in sorted(alerts, key=lambda x: str(x.get("severity")))[:8]:
        out.add_row(f"  [bold]{a.get('severity')}[/bold] {a.get('rule_id')} "
                    f"{a.get('subject')} = {a.get('value')} ({a.get('state')}) "
                    f"id {a.get('alert_id')}")
    return out


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
    every: float = typer.Option(3.0, "--every", help="Seconds between summaries."),
) -> None:
    """Run the whole local pipeline: broker, warehouse, worker, simulator; Ctrl-C stops."""
    from datetime import datetime

    from rich.live import Live

    from cityops.deploy.exceptions import BrokerError
    from cityops.deploy.kafka_local import LocalKafkaCluster, ensure_topics
    from cityops.exceptions import CityopsError

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    broker = LocalKafkaCluster(settings)  # CITYOPS_KAFKA_LOCAL_BROKERS nodes
    started_broker = False
    if not settings.kafka_bootstrap_servers:
        was_running = all(n.pid() is not None for n in broker.nodes) and \
            broker.nodes[0].answering()
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
    t0 = time.monotonic()
    try:
        with Live(_summary(url, t0), console=console, refresh_per_second=1) as live:
            while True:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}; see "
                                       f"{logs / 'worker.log'}")
                if sim is None and _ready(url):
                    sim = subprocess.Popen(sim_cmd, env=env, stdout=sim_log,
                                           stderr=subprocess.STDOUT)
                elif sim is not None and sim.poll() is not None and not realtime:
                    realtime = True  # caught up with now: continue in real time
                    sim = subprocess.Popen([_cityops(), "simulate", "--quiet", "--speed", "1"],
                                           env=env, stdout=sim_log, stderr=subprocess.STDOUT)
                live.update(_summary(url, t0))
                time.sleep(every)
    except KeyboardInterrupt:
        console.print("Ctrl-C: shutting down")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
    finally:
        _stop(sim, "simulator")
        _stop(worker, "worker")
        if started_broker:
            console.print("stopping the broker …")
            broker.down()
        worker_log.close()
        sim_log.close()


def _ready(url: str) -> bool:
    import httpx

    try:
        return bool(httpx.get(f"{url}/health", timeout=2).json().get("running"))
    except (httpx.HTTPError, ValueError):
        return False


def register(app: typer.Typer) -> None:
    """Add ``cityops run``."""
    app.command("run")(run)

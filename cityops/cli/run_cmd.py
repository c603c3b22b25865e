"""``cityops run``: the whole local pipeline on the embedded defaults, with a live summary.

1. the local Kafka broker (``deploy.kafka_local.LocalKafka``; reused if already running);
2. the warehouse schema (``warehouse.migrate``) in the embedded chdb database;
3. the streams worker (``cityops worker``: Faust agents, alert engine, warehouse sink);
4. the simulator (``cityops simulate``): the last ``--hours`` replayed at ``--speed``×, then
   real time. A second run on the same data carries on after the newest event time in the
   warehouse or the raw topics (the streams' dedup store, alert state and event clock stand
   there), catching up
   to now in the same wall time a first run would take; ``--fresh`` wipes the local data
   (after asking) and starts over. Each catch-up ends where the next phase starts, so the
   simulated clock never jumps (a jump would look like silent sensors to the alert engine);
5. the command-centre board every ``--every`` seconds (``CITYOPS_BOARD_REFRESH_S``): the
   overview board's own panel queries over the worker's read-only ``/sql``
   (``dashboards.terminal``), under a one-line pipeline summary from ``/health``.

Ctrl-C, SIGTERM and SIGHUP (the terminal closed) each stop the simulator, then the worker
(SIGTERM: it flushes and commits), then the broker if this command started it. A closed
terminal stops the run even when no SIGHUP reaches it (``make`` leading the terminal's session,
as in ``ssh -t host make run``), and so does an output pipe whose reader is gone (``| tee``,
``ssh host make run`` without a terminal): a thread watches for both. Started with SIGHUP
ignored (``nohup``), the run outlives its terminal. A terminal that stops reading (Ctrl-S, a
frozen ssh link) holds neither the run nor its stop: its output is queued, and the oldest
beyond a bound dropped (``cli.unblocked_output``). The pids of what it started are in
``$CITYOPS_DATA_DIR/logs/run.json`` while it runs.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from cityops.cli.common import console, err_console, fail, registry_or_exit, settings_or_exit
from cityops.cli.unblocked_output import unblocked_terminal


def _cityops() -> str:
    exe = Path(sys.executable).with_name("cityops")
    return str(exe) if exe.exists() else "cityops"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(proc: subprocess.Popen | None, name: str, timeout: float = 60.0,
          group: bool = False) -> None:
    """Stop one child; with ``group`` (a child started in its own session, like the worker and
    its supervised process) wait for the whole process group, and SIGKILL the group on
    timeout, so no grandchild outlives the run."""
    if proc is None or (proc.poll() is not None and not (group and _group_alive(proc.pid))):
        return
    console.print(f"stopping {name} …", highlight=False)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if name == "simulator" else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    try:
        proc.wait(timeout)
        while group and _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    except subprocess.TimeoutExpired:
        pass
    if group and _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    elif proc.poll() is None:
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
    from cityops.dashboards.terminal import frame

    return Group(line, frame(runner, board, datetime.now(tz)))


#: a catch-up phase this close to now hands over to real time
REALTIME_WITHIN = timedelta(seconds=30)
#: raw tables whose newest event time says where the previous run stopped
RESUME_TABLES = ("footfall_observed", "parking_observed", "air_quality_observed",
                 "incidents_reported")


class _Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP) turned into an exception, like Ctrl-C.

    A ``BaseException``, as ``KeyboardInterrupt`` is: the board catches ``Exception`` per panel
    (one bad panel must not blank the wall), and a signal arriving mid-query must still stop
    the run."""


def _on_signal(signum: int, _frame: Any) -> None:
    for sig in STOP_SIGNALS:  # one stop: a second signal (the shell's SIGHUP beside the
        signal.signal(sig, signal.SIG_IGN)  # terminal watch's) must not cut the cleanup
    if signum == signal.SIGHUP:  # the terminal (EIO) or the output's reader (EPIPE) is gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):  # our prints and the libraries' logs during the cleanup
            os.dup2(devnull, fd)
        console.file = open(os.devnull, "w")  # noqa: SIM115 - until the process exits
    raise _Stopped(signal.Signals(signum).name)


#: the signals that stop a run (Ctrl-C is Python's KeyboardInterrupt)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: how often the watch looks for a hung-up terminal or a closed output pipe
HANGUP_POLL_S = 0.5


def catch_stop_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into ``_Stopped`` and watch the standard streams
    (``watch_hangup``); the previous handlers.

    A SIGHUP ignored on entry (``nohup make run``) stays ignored, and nothing is watched: the
    user asked the run to outlive the terminal. SIGTERM always stops the run."""
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, _on_signal)
    if previous[signal.SIGHUP] != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _on_signal)
        watch_hangup()
    return previous


def watched_streams() -> list[int]:
    """The standard streams whose far end going away stops the run: any that is a terminal,
    and an output that is a pipe or a socket (``make run | tee run.log``, or
    ``ssh host make run`` without a terminal, whose output goes back through sshd). An input
    pipe is not watched: ``echo | make run`` closes it at once."""
    fds = []
    for fd in (0, 1, 2):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:  # closed
            continue
        if os.isatty(fd) or (fd > 0 and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))):
            fds.append(fd)
    return fds


def watch_hangup() -> threading.Thread | None:
    """SIGHUP this process when its terminal hangs up or its output's reader is gone (a
    thread; None when no standard stream is watched, ``watched_streams``).

    On a hang-up the kernel signals only the terminal's session leader, and the foreground
    group once that leader exits. ``make run`` as the leader (``ssh -t host make run``) takes
    the SIGHUP and waits for its recipe, which would run on with no terminal. An output pipe
    whose reader exits only fails the next write, in the board's refresh thread. A hung-up
    terminal polls as ``POLLHUP`` and a pipe without a reader as ``POLLERR``, whatever
    events were asked for; the poll has a timeout because the hang-up's own wake-up only
    reaches pollers of input or output. It polls copies of the streams: a failed write
    elsewhere may put ``/dev/null`` in their place."""
    fds = [os.dup(fd) for fd in watched_streams()]
    if not fds:
        return None
    pid = os.getpid()

    def watch() -> None:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, 0)  # no events: only POLLHUP, POLLERR and POLLNVAL report
        while not poller.poll(HANGUP_POLL_S * 1000):
            pass
        os.kill(pid, signal.SIGHUP)

    thread = threading.Thread(target=watch, name="hangup-watch", daemon=True)
    thread.start()
    return thread


def newest_event_time(wh: Any) -> datetime | None:
    """Newest event time over the raw feed tables (None when the warehouse is empty)."""
    newest: datetime | None = None
    for table in RESUME_TABLES:
        value = wh.query(f"SELECT maxOrNull(event_time) FROM {table}")[0][0]
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest


def plan_start(now: datetime, newest: datetime | None, hours: float,
               speed: float) -> tuple[datetime, float]:
    """Where the simulator starts and how fast it catches up to ``now``.

    A fresh warehouse starts ``hours`` back at ``speed``. Otherwise the run resumes one second
    after the newest event stored or produced (``newest``: its report was sent; the next one is
    new), at a speed that
    catches up in no more wall time than a first run takes (``hours / speed``).
    """
    if newest is None or newest >= now:
        return (now - timedelta(hours=hours)).replace(microsecond=0), speed
    start = newest.replace(microsecond=0) + timedelta(seconds=1)
    budget_s = max(hours * 3600 / speed, 1.0)
    return start, max(speed, (now - start).total_seconds() / budget_s)


def _wipe(settings: Any, broker: Any, yes: bool) -> None:
    data = settings.data_dir.resolve()
    if not data.exists():
        return
    if not yes and not typer.confirm(f"Delete everything under {data} (broker data, "
                                     "warehouse, logs)?", default=False):
        fail("nothing deleted", code=1)
    if broker.pid() is not None:
        broker.down()
    for child in data.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    console.print(f"wiped {data}")


def _write_pids(path: Path, procs: dict[str, int | None]) -> None:
    path.write_text(json.dumps({"run": os.getpid(), **procs}), encoding="utf-8")


def run(
    speed: float = typer.Option(60.0, "--speed", help="Simulated seconds per wall second "
                                "while replaying the recent past."),
    hours: float = typer.Option(6.0, "--hours", help="How much of the recent past to replay "
                                "on a fresh warehouse (then the simulator continues in real "
                                "time); a later run carries on where the last one stopped."),
    faults: str = typer.Option(
        "dup=0.01,malformed=0.005,late=0.002,dead=1", "--faults",
        help="Simulator faults (see `cityops simulate --help`): by default a few duplicates, "
             "malformed and late records (dead letters, late events) and one sensor that "
             "goes silent (a dead-sensor alert), so the demo shows every path."),
    every: float = typer.Option(0.0, "--every", help="Seconds between board refreshes "
                                "(default CITYOPS_BOARD_REFRESH_S)."),
    fresh: bool = typer.Option(False, "--fresh", help="Wipe the local data (broker, "
                               "warehouse, logs under CITYOPS_DATA_DIR) first, after asking."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --fresh wipes."),
) -> None:
    """Run the whole local pipeline: broker, warehouse, worker, simulator; Ctrl-C stops."""
    # a terminal that stops reading must not hold the run, nor its stop (``unblocked_output``)
    with unblocked_terminal(console, err_console):
        _run(speed, hours, faults, every, fresh, yes)


def _run(speed: float, hours: float, faults: str, every: float, fresh: bool,
         yes: bool) -> None:
    from rich.live import Live

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
    broker = LocalKafka(settings)
    if fresh:
        _wipe(settings, broker, yes)
    previous = catch_stop_signals()
    token = settings.worker_token.get_secret_value()
    session_key = None
    if gate.enforced and not token:
        # worker tokens exist but none is configured here: a token for this run only
        session_key, token = gate.store.add("cityops-run", "worker",
                                            roles=("viewer", "operator", "analyst"))
    started_broker = False
    running: dict[str, subprocess.Popen | None] = {"simulator": None, "worker": None}
    logs = settings.data_dir.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pids = logs / "run.json"
    worker_log = open(logs / "worker.log", "ab")  # noqa: SIM115 - the child's stdout
    sim_log = open(logs / "simulate.log", "ab")  # noqa: SIM115
    try:
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
            from cityops.warehouse.access import open_warehouse

            wh = open_warehouse(settings, registry)
            try:
                newest = newest_event_time(wh)
            finally:
                wh.close()
        except CityopsError as exc:
            fail(f"warehouse {settings.effective_warehouse_url}: {exc}")
        console.print(f"warehouse {settings.effective_warehouse_url} migrated")
        from cityops.ingest.resume import newest_raw_event_time

        produced = newest_raw_event_time(settings)  # ahead of the warehouse if it lagged
        if produced is not None and (newest is None or produced > newest):
            newest = produced
        _supervise(settings, registry, token, broker, newest, hours, speed, faults, every,
                   logs, pids, worker_log, sim_log, Live, started_broker, running)
    except KeyboardInterrupt:
        console.print("Ctrl-C: shutting down")
    except _Stopped as exc:
        console.print(f"{exc}: shutting down")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup
        try:
            _shutdown(running, broker, started_broker)
        finally:
            if session_key is not None:
                gate.store.revoke(session_key.key_id)
        pids.unlink(missing_ok=True)
        worker_log.close()
        sim_log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _shutdown(running: dict[str, subprocess.Popen | None], broker: Any,
              started_broker: bool) -> None:
    try:
        _stop(running.get("simulator"), "simulator")
        _stop(running.get("worker"), "worker", group=True)
    finally:
        if started_broker:
            console.print("stopping the broker …")
            broker.down()


def _supervise(settings: Any, registry: Any, token: str, broker: Any, newest: datetime | None,
               hours: float,
               speed: float, faults: str, every: float, logs: Path, pids: Path,
               worker_log: Any, sim_log: Any, live_cls: Any, started_broker: bool,
               running: dict[str, subprocess.Popen | None]) -> None:
    """Start the worker, then the simulator phases; returns only by an exception."""
    from cityops.core.keys import bearer_headers
    from cityops.dashboards.boards import overview
    from cityops.dashboards.terminal import WorkerSql
    from cityops.streams.alerts.rules import load_rules

    env = dict(os.environ)
    if token:
        env["CITYOPS_WORKER_TOKEN"] = token  # `cityops sql` / alerts from this environment
    headers = bearer_headers(token)
    # replaying the past at speed: alert time (dead sensors, durations) follows event time
    env.setdefault("CITYOPS_ALERT_CLOCK", "event")
    # the whole pipeline in one worker, whatever a shell exported for a split deployment
    env["CITYOPS_WORKER_STAGES"] = "all"
    worker = subprocess.Popen([_cityops(), "worker"], env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    running["worker"] = worker
    broker_pid = broker.pid() if started_broker else None
    _write_pids(pids, {"broker": broker_pid, "worker": worker.pid, "simulator": None})
    url = f"http://{settings.worker_web_host}:{settings.worker_web_port}"
    now = datetime.now(settings.tz).replace(microsecond=0)
    start, pace = plan_start(now, newest, hours, speed)
    console.print(("carrying on after " + newest.isoformat() if newest is not None and
                   start > now - timedelta(hours=hours) else "starting")
                  + f": simulating from {start.isoformat()} at ×{pace:,.0f}", highlight=False)
    phase_end = now
    extra = ["--faults", faults] if faults else []

    def launch(args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([_cityops(), "simulate", "--quiet", *args, *extra], env=env,
                                stdout=sim_log, stderr=subprocess.STDOUT)
        running["simulator"] = proc
        _write_pids(pids, {"broker": broker_pid, "worker": worker.pid, "simulator": proc.pid})
        return proc

    sim: subprocess.Popen | None = None
    realtime = False
    console.print(f"worker log {logs / 'worker.log'}; simulator log {logs / 'simulate.log'}; "
                  f"web {url} (/health /metrics /alerts /sql)", highlight=False)
    board = overview(load_rules(settings.alert_rules), registry,
                     f"{settings.board_refresh_s}s", settings.incident_expire_after_s)
    runner = WorkerSql(f"{url}/sql", token)
    every = every or float(settings.board_refresh_s)
    t0 = time.monotonic()
    with live_cls(_summary(url, t0, headers), console=console, refresh_per_second=1) as live:
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see "
                                   f"{logs / 'worker.log'}")
            if sim is None and _ready(url, headers):
                sim = launch(["--start", start.isoformat(), "--end", phase_end.isoformat(),
                              "--speed", f"{pace:g}"])
            elif sim is not None and sim.poll() is not None and not realtime:
                # the phase reached its end: catch up again, or carry on in real time from it
                now = datetime.now(settings.tz).replace(microsecond=0)
                if now - phase_end > REALTIME_WITHIN:
                    start, phase_end = phase_end, now
                    sim = launch(["--start", start.isoformat(), "--end", now.isoformat(),
                                  "--speed", f"{max(pace, 1.0):g}"])
                else:
                    realtime = True
                    sim = launch(["--start", phase_end.isoformat(), "--speed", "1"])
            live.update(_summary(url, t0, headers, board, runner, settings.tz))
            time.sleep(every)


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

"""``cityops run`` (what ``make run`` starts) twice on one data directory, with its own real
broker: the second run carries on after the first (new rows, no duplicate storm, no
dead-sensor alert for healthy sensors), SIGTERM and SIGHUP stop every process it started, and
a terminal that reads nothing holds neither the run nor its stop."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from ports import free_port, free_port_pair

pytestmark = pytest.mark.integration
CITYOPS = str(Path(sys.executable).with_name("cityops"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (httpx.HTTPError, KeyError, ValueError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; last {last!r}")


class Run:
    def __init__(self, env: dict[str, str], log: Path, terminal: int | None = None) -> None:
        """``cityops run`` writing to ``log``, or to the ``terminal`` descriptor when given."""
        self.env, self.log = env, log
        self.url = f"http://127.0.0.1:{env['CITYOPS_WORKER_WEB_PORT']}"
        self.pids_file = Path(env["CITYOPS_DATA_DIR"]) / "logs" / "run.json"
        with log.open("ab") as out:
            # SIGHUP at its default, as a terminal's shell starts it: the suite may run with
            # SIGHUP ignored (`nohup make test`), and a run started so outlives its terminal
            self.proc = subprocess.Popen(
                [CITYOPS, "run", "--hours", "0.5", "--speed", "300", "--faults", "",
                 "--every", "1"], env=env,
                stdout=out if terminal is None else terminal, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL if terminal is None else terminal,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/sql", json={"sql": query}, timeout=30)
        r.raise_for_status()
        return r.json()["rows"]

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def pids(self) -> dict[str, int]:
        data = json.loads(self.pids_file.read_text())
        return {k: v for k, v in data.items() if v}

    def stop(self, sig: int, timeout: float = 180) -> list[int]:
        """Signal `cityops run` only (not its group); the pids that outlived it."""
        pids = self.pids()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        time.sleep(1)
        left = [p for p in pids.values() if _alive(p)]
        try:  # the worker leads its own process group (its supervised child is in it)
            os.killpg(pids["worker"], 0)
            left.append(-pids["worker"])
        except ProcessLookupError:
            pass
        return left

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def report(self) -> str:
        """The run's output and the tail of its worker's log, for a failure message."""
        worker_log = Path(self.env["CITYOPS_DATA_DIR"]) / "logs" / "worker.log"
        tail = (worker_log.read_text(errors="replace").splitlines()[-40:]
                if worker_log.exists() else ["(no worker log)"])
        return self.text() + "\n--- worker log (tail) ---\n" + "\n".join(tail)

    def kill_all(self) -> None:
        """Leave nothing behind after a failure: the run's group, every process it recorded
        (the worker leads its own group) and its broker."""
        try:
            recorded = list(self.pids().values())
        except (OSError, ValueError):
            recorded = []
        for pid in [self.proc.pid, *recorded]:
            try:  # still ours (a pid is never reused this fast, but never kill a stranger)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"cityops" not in cmdline and b"kafka" not in cmdline:
                continue
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        subprocess.run([CITYOPS, "kafka", "down"], env=self.env, capture_output=True,
                       timeout=120, check=False)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """The test's runs; whatever they left running is killed at the end, pass or fail."""
    started: list[Run] = []
    yield started
    for run in started:
        run.kill_all()


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    env.update(CITYOPS_DATA_DIR=str(tmp_path / "data"), CITYOPS_KAFKA_PORT=str(free_port_pair()),
               CITYOPS_WORKER_WEB_PORT=str(free_port()), CITYOPS_LOG_LEVEL="WARNING",
               CITYOPS_SINK_BATCH_S="0.5")
    return env


def test_make_run_twice_carries_on_and_signals_stop_everything(
        run_env: dict[str, str], tmp_path: Path, runs: list[Run]) -> None:
    first = Run(run_env, tmp_path / "run1.log")
    runs.append(first)
    try:
        _wait(lambda: first.sql("SELECT count() FROM footfall_observed")[0][0] > 500, 240,
              "first run's footfall rows")
        _wait(lambda: "simulator" in first.pids(), 30, "the simulator's pid")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{first.report()}") from None
    left = first.stop(signal.SIGTERM)
    assert left == [], (left, first.text())
    assert "SIGTERM: shutting down" in first.text()

    started_ms = int(time.time() * 1000)
    # a shell left with a split deployment's setting: `cityops run` still runs every step
    second = Run({**run_env, "CITYOPS_WORKER_STAGES": "validation"}, tmp_path / "run2.log")
    runs.append(second)
    try:
        _wait(lambda: "carrying on after" in second.text(), 120, "the resume message")
        # real time after the catch-up: counters report every 30 s, so 40 s adds reports
        _wait(lambda: second.health()["validate"]["footfall"]["in"] > 100, 180,
              "the second run's events")
        time.sleep(40)
        health = second.health()["validate"]["footfall"]
        aggregated = second.health()["aggregate"].get("footfall", {}).get("in", 0)
        newest_first, added, first_new = second.sql(
            f"SELECT maxIf(event_time, toUnixTimestamp64Milli(ingested_at) < {started_ms}), "
            f"countIf(toUnixTimestamp64Milli(ingested_at) >= {started_ms}), "
            f"minIf(event_time, toUnixTimestamp64Milli(ingested_at) >= {started_ms}) "
            "FROM footfall_observed")[0]
        dead = second.sql("SELECT count() FROM alerts WHERE rule_id = 'dead_sensor' "
                          "AND kind = 'fired'")[0][0]
        dup_rows = second.sql("SELECT count() - uniqExact(event_id) FROM footfall_observed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{second.report()}") from None
    left = second.stop(signal.SIGHUP)
    assert left == [], (left, second.text())
    assert added > 100, second.text()
    assert aggregated > 0, "the run's worker did not aggregate"
    # the simulator carried on after the first run's newest report (no replayed evening);
    # rows ingested now but older than it are the first run's backlog, left in Kafka at stop
    resumed = re.search(r"simulating from (\S+) at", second.text()).group(1)
    assert datetime.fromisoformat(resumed) > datetime.fromisoformat(newest_first)
    assert datetime.fromisoformat(first_new) > datetime.fromisoformat(newest_first) - \
        timedelta(minutes=5)
    assert health["duplicate"] <= max(2, health["in"] // 100), health  # no duplicate storm
    assert dead == 0  # no faults injected: every sensor is healthy
    assert dup_rows == [[0]]


def _terminal_nobody_reads() -> tuple[int, int]:
    """A pseudo-terminal (master, slave) whose output nobody reads, its buffer already full:
    every write to it blocks, as on a terminal stopped with Ctrl-S or a frozen ssh link."""
    master, slave = pty.openpty()
    filler = os.open(os.ttyname(slave), os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            os.write(filler, b"x" * 1024)
    except BlockingIOError:
        pass
    finally:
        os.close(filler)
    return master, slave


def test_run_runs_and_sigterm_stops_everything_while_its_terminal_reads_nothing(
        run_env: dict[str, str], tmp_path: Path, runs: list[Run]) -> None:
    """Before, the run's first message blocked it (it started nothing more); a run whose
    terminal stopped reading later could not be stopped: the stop's own message blocked."""
    master, slave = _terminal_nobody_reads()
    try:
        run = Run(run_env, tmp_path / "unused.log", terminal=slave)
        runs.append(run)
        try:
            _wait(lambda: "simulator" in run.pids(), 240, "the simulator's pid")
            _wait(lambda: run.health()["validate"]["footfall"]["in"] > 0, 120,
                  "the worker's first events")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{run.report()}") from None
        left = run.stop(signal.SIGTERM, timeout=120)
        assert left == [], left
    finally:
        os.close(master)
        os.close(slave)

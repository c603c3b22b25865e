"""How ``cityops run`` learns that it must stop: its stop signals; its terminal's hang-up
when ``make`` leads the terminal's session (``ssh -t host make run``), so the run's own
process is never sent a SIGHUP; and its output pipe's reader going away."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityops.cli import run_cmd

#: the recipe's process: `cityops run`'s signal set-up, then waiting to be stopped
RECIPE = """
import os, sys, time
from pathlib import Path
from cityops.cli.run_cmd import catch_stop_signals
out = Path(sys.argv[1])
catch_stop_signals()
(out.parent / "ready").write_text(str(os.getpid()))
try:
    while True:
        time.sleep(0.1)
except BaseException as exc:
    out.write_text(type(exc).__name__ + " " + str(exc))
"""


def _as_from_a_terminal() -> None:
    """SIGHUP at its default, as a terminal's shell starts a command: the suite itself may run
    with SIGHUP ignored (``nohup make test``), which its children inherit and which a run
    respects (``test_a_run_started_with_sighup_ignored_outlives_its_terminal``)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _wait_for(path: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    return None


def _reap(pid: int, timeout: float) -> int | None:
    """The exit status of a child, or None if it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    return None


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """``make`` as the session leader of a new terminal, its recipe running ``RECIPE``: the
    make pid, the terminal's master side and the recipe's result file. Nothing outlives it."""
    make = shutil.which("make")
    assert make is not None, "make is part of the quick start"
    (tmp_path / "recipe.py").write_text(RECIPE)
    (tmp_path / "Makefile").write_text(
        f"hold:\n\t{sys.executable} {tmp_path / 'recipe.py'} {tmp_path / 'result'}\n")
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader with the new terminal as its controlling one
        try:
            _as_from_a_terminal()
            os.chdir(tmp_path)
            os.execv(make, [make, "hold"])
        finally:  # never back into the suite's own code in a forked copy
            os._exit(127)
    try:
        yield pid, master, tmp_path / "result"
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
        ready = tmp_path / "ready"
        for victim in ([int(ready.read_text())] if ready.exists() else []) + [pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_run_under_make_stops_when_its_terminal_closes(
        make_session: tuple[int, int, Path]) -> None:
    make_pid, master, result = make_session
    assert _wait_for(result.parent / "ready", 30), "the recipe did not start"
    time.sleep(2 * run_cmd.HANGUP_POLL_S)  # a running watch, not one that starts hung up
    assert not result.exists()
    os.close(master)  # the terminal window closes: make, its session leader, gets SIGHUP
    assert _wait_for(result, 10) == "_Stopped SIGHUP"
    # make waited for its recipe, as it does on SIGHUP, and then ended too
    assert _reap(make_pid, 10) is not None


def test_a_run_started_with_sighup_ignored_outlives_its_terminal() -> None:
    """``nohup make run``: SIGHUP stays ignored and no terminal watch starts."""
    before = {sig: signal.getsignal(sig) for sig in run_cmd.STOP_SIGNALS}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        previous = run_cmd.catch_stop_signals()
        assert not any(t.name == "hangup-watch" for t in threading.enumerate())
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is run_cmd._on_signal
        assert previous[signal.SIGHUP] == signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_the_first_stop_signal_ignores_the_next_until_the_cleanup_ends() -> None:
    before = {sig: signal.getsignal(sig) for sig in run_cmd.STOP_SIGNALS}
    try:
        with pytest.raises(run_cmd._Stopped, match="SIGTERM"):
            run_cmd._on_signal(signal.SIGTERM, None)
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in run_cmd.STOP_SIGNALS)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _recipe(tmp_path: Path, **streams: Any) -> subprocess.Popen:
    """``RECIPE`` started with ``streams`` (stdin, stdout, stderr), once it is waiting."""
    (tmp_path / "recipe.py").write_text(RECIPE)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "recipe.py"),
                             str(tmp_path / "result")], preexec_fn=_as_from_a_terminal,
                            **streams)
    if _wait_for(tmp_path / "ready", 30) is None:
        proc.kill()
        raise AssertionError("the recipe did not start")
    return proc


def test_a_run_whose_output_pipe_closes_stops(tmp_path: Path) -> None:
    """``make run | tee run.log`` when tee ends, or ``ssh host make run`` when the
    connection drops: the board's next write would fail in its own thread and the run
    would go on."""
    proc = _recipe(tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    try:
        time.sleep(2 * run_cmd.HANGUP_POLL_S)
        assert proc.poll() is None and not (tmp_path / "result").exists()
        proc.stdout.close()  # type: ignore[union-attr]  # the reader is gone
        assert _wait_for(tmp_path / "result", 10) == "_Stopped SIGHUP"
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait(10)


def test_a_run_whose_input_pipe_closes_runs_on(tmp_path: Path) -> None:
    """``echo | make run``: its input ends at once, and that is no reason to stop."""
    with (tmp_path / "out.log").open("wb") as out:
        proc = _recipe(tmp_path, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        proc.stdin.close()  # type: ignore[union-attr]
        time.sleep(4 * run_cmd.HANGUP_POLL_S)
        assert proc.poll() is None and not (tmp_path / "result").exists()
    finally:
        proc.kill()
        proc.wait(10)


def test_with_output_to_files_nothing_is_watched(tmp_path: Path) -> None:
    """Started by a service manager or with its streams redirected to a log: no watch."""
    with (tmp_path / "out.log").open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", "from cityops.cli.run_cmd import watch_hangup; "
             "print(watch_hangup())"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, timeout=60, check=True, preexec_fn=_as_from_a_terminal)
    assert done.returncode == 0
    assert (tmp_path / "out.log").read_text().strip() == "None"

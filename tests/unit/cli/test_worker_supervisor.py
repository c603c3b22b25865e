"""The worker's supervisor: a hang-up stops the worker with it, and a worker killed by a
signal is named and exits as a shell would say it (128 + the signal)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SUPERVISOR = ("import sys; from cityops.cli.streams_cmds import _supervise; "
              "sys.exit(_supervise([], command=[sys.executable, '-c', sys.argv[1]]))")
# the stand-in worker: says it is up, writes which signal stopped it, exits 0 as the worker does
CHILD = ("import signal, sys, time, pathlib\n"
         "def stop(n, _f):\n"
         "    pathlib.Path({out!r}).write_text(signal.Signals(n).name)\n"
         "    sys.exit(0)\n"
         "signal.signal(signal.SIGTERM, stop)\n"
         "print('up', flush=True)\n"
         "time.sleep(60)\n")


def _start(child: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, child], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def test_a_hang_up_stops_the_worker_cleanly_with_its_supervisor(tmp_path: Path) -> None:
    out = tmp_path / "stopped-by"
    proc = _start(CHILD.format(out=str(out)))
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 0
    assert out.read_text() == "SIGTERM"  # the worker got a clean stop, not left running


def test_a_worker_killed_by_a_signal_is_named_and_exits_137(tmp_path: Path) -> None:
    proc = _start("import os, signal; print('up', flush=True); "
                  "os.kill(os.getpid(), signal.SIGKILL)")
    rc = proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert rc == 137, (rc, err)
    assert "the worker was killed by SIGKILL" in err


def test_a_stop_is_still_forwarded_as_it_is(tmp_path: Path) -> None:
    out = tmp_path / "stopped-by"
    proc = _start(CHILD.format(out=str(out)))
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0 and out.read_text() == "SIGTERM"

"""Helpers of the streams integration tests: a real ``cityops worker`` subprocess, a producer.

Each worker gets its own topic prefix, data dir, chdb warehouse and web port, and talks to the
session's real Kafka broker (``kafka_broker``). The warehouse is read through the worker's
``/sql`` endpoint (the worker process holds the embedded chdb session).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from ports import free_port as free_port  # re-exported: the harness is where tests look

from cityops.deploy.backlog import group_lag

ROOT = Path(__file__).resolve().parents[3]
CITYOPS = str(Path(sys.executable).with_name("cityops"))


def wait_until(pred: Callable[[], Any], timeout: float = 60.0, every: float = 0.3,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class WorkerProc:
    """One ``cityops worker`` (or, with ``command=["sink"]``, ``cityops sink``) subprocess
    with its own environment."""

    def __init__(self, env: dict[str, str], log_path: Path,
                 command: list[str] | None = None) -> None:
        self.command = command or ["worker"]
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{env['CITYOPS_WORKER_WEB_PORT']}"
        self.prefix = env["CITYOPS_TOPIC_PREFIX"]
        self.starts = 0
        token = env.get("CITYOPS_WORKER_TOKEN", "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def start(self, timeout: float = 90.0) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([CITYOPS, *self.command], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        wait_until(self._running, timeout, what=f"worker ready ({self.log_path})")

    def _running(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; see "
                                 f"{self.log_path}:\n{self.log_tail()}")
        r = httpx.get(f"{self.url}/health", timeout=2, headers=self.headers)
        body = r.json()
        return bool(body.get("running", body.get("ok")))  # a worker's, or a sink's health

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commits."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(30)

    # --- reading ------------------------------------------------------------------------
    def dump(self, wait_s: float = 3.0) -> str:
        """The worker's task and offsets dump (SIGUSR1, relayed by its supervisor to the
        worker), read back from its log: where a worker that seems stuck waits."""
        if self.proc is None or self.proc.poll() is not None:
            return f"(worker {self.log_path} not running)"
        try:
            before = self.log_path.stat().st_size
        except OSError:
            before = 0
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait_s)
        with open(self.log_path, "rb") as f:
            f.seek(before)
            return f.read().decode(errors="replace")

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=5, headers=self.headers).json()

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/sql", json={"sql": query}, timeout=60,
                       headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    def scalar(self, query: str) -> Any:
        rows = self.sql(query)
        return rows[0][0] if rows else None

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"


class Producer:
    """kafka-python producer of raw feed records (JSON dicts or raw bytes)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        from kafka import KafkaProducer

        self.prefix = prefix
        # lz4 like the ingest producer (CITYOPS_INGEST_COMPRESSION): the worker must read it
        self.p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                               compression_type="lz4")

    def send(self, feed: str, value: dict[str, Any] | bytes, key: str | None = None) -> None:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        if key is None and isinstance(value, dict):
            key = value.get("source")
        self.p.send(f"{self.prefix}.raw.{feed}", key=key.encode() if key else None, value=data)

    def flush(self) -> None:
        self.p.flush(30)

    def close(self) -> None:
        self.p.close(10)


def uncommitted(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of ``topics`` that consumer group ``group`` has not committed yet (its lag)."""
    return group_lag(bootstrap, group, topics)

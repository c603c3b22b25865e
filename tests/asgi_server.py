"""An app under uvicorn on a free loopback port in a thread, for tests that talk HTTP to the
real app (importable from every test, like ``ports``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from ports import free_port


@contextlib.contextmanager
def serving(app: Any, what: str = "server") -> Iterator[str]:
    """``with serving(app) as base_url:``; stopped (and its thread joined) on the way out."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, f"the {what} did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

"""Free local ports for the tests' own brokers and servers (importable from every test: pytest
puts ``tests/`` on the path for its root ``conftest.py``)."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ``bind(0)`` and outgoing connections (Linux; a usual default)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair() -> int:
    """A port p with p + 1 free too (a local broker's controller listens on p + 1).

    Chosen below the kernel's ephemeral range: a port from there (what ``bind(0)`` returns)
    can be handed to another process's server or outgoing connection between this choice
    and the broker's start, which then refuses the port as in use (seen in a full run).
    """
    lo, _hi = _ephemeral_range()
    top = min(lo, 65000) - 2
    if top > 20000:
        rng = random.Random()
        for _ in range(200):
            port = rng.randrange(20000, top)
            if _bindable(port) and _bindable(port + 1):
                return port
    for _ in range(50):  # no room below the range: any free pair
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port <= 65000 and _bindable(port + 1):
            return port
    raise AssertionError("no free port pair")

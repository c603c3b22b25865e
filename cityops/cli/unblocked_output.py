"""Terminal output that never holds up ``cityops run``.

A terminal that stops reading (Ctrl-S, a frozen ssh link, a multiplexer pane nobody
drains) makes every write to it block once its buffer is full. ``cityops run`` writes to
its terminal from the board's refresh thread, from its logs and from its own messages; a
write blocked there used to hold the main thread too, and a SIGTERM then stopped nothing:
the run, its worker, its simulator and its broker all stayed up (the stop's own "shutting
down" message blocked as well). Here each write is queued, and one thread hands the queue
to the terminal: a run keeps running and stops on a signal, whether or not anyone reads
what it prints. While the terminal does not read, the oldest queued text beyond a bound is
dropped (the board redraws itself every few seconds anyway); a terminal that is gone
(EIO) or a pipe without a reader (EPIPE) drops what it is given.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, TextIO

#: queued text kept for a terminal that does not read (about 100 frames of the board)
QUEUE_LIMIT_BYTES = 1 << 20
#: how long a run's last words may wait for the terminal to take them
DRAIN_S = 3.0


class UnblockedOutput(io.TextIOBase):
    """A text stream over ``stream``'s file descriptor whose writes only queue; a daemon
    thread writes the queue out. ``drain`` waits, with a bound, until it has."""

    def __init__(self, stream: TextIO, limit_bytes: int = QUEUE_LIMIT_BYTES) -> None:
        super().__init__()
        self._stream = stream  # held: its descriptor must stay open while the thread writes
        self._fd = stream.fileno()
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._tty = stream.isatty()
        self._limit = limit_bytes
        self._pending: deque[bytes] = deque()
        self._size = 0
        self._busy = False
        self.dropped_bytes = 0  # text dropped: the terminal did not take it
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, name="terminal-output", daemon=True).start()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # a read-only attribute in io
        return self._encoding

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode(self._encoding, "replace")
        with self._cond:
            self._pending.append(data)
            self._size += len(data)
            while self._size > self._limit and len(self._pending) > 1:
                old = self._pending.popleft()  # whole writes: a frame, a line, a message
                self._size -= len(old)
                self.dropped_bytes += len(old)
            self._cond.notify()
        return len(text)

    def flush(self) -> None:
        """Nothing to wait for: the queue is written out as soon as the terminal reads."""

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is written, at most ``timeout_s``; whether it was."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy,
                                       timeout_s)

    def _pump(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                data = b"".join(self._pending)
                self._pending.clear()
                self._size = 0
                self._busy = True
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError:  # the terminal hung up (EIO) or the pipe lost its reader (EPIPE)
                with self._cond:
                    self.dropped_bytes += len(view)


@contextlib.contextmanager
def unblocked_terminal(*consoles: Any, drain_s: float = DRAIN_S) -> Iterator[None]:
    """While inside: ``consoles`` (rich consoles on stdout or stderr) and the logging
    handlers on the standard streams write through ``UnblockedOutput``. On the way out the
    queues get ``drain_s`` to reach the terminal, and everything is put back."""
    outputs: dict[int, UnblockedOutput] = {}
    restore: list[Any] = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):  # no descriptor
        outputs = {s.fileno(): UnblockedOutput(s) for s in (sys.stdout, sys.stderr)}
    try:
        for console in consoles:
            out = outputs.get(_fd_of(console.file))
            if out is not None:
                restore.append((console, "file", console.file))
                console.file = out
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                out = outputs.get(_fd_of(handler.stream))
                if out is not None:
                    restore.append((handler, "stream", handler.stream))
                    handler.setStream(out)
        yield
    finally:
        for owner, attr, was in reversed(restore):
            if attr == "stream":
                owner.setStream(was)
            else:
                setattr(owner, attr, was)
        deadline = time.monotonic() + drain_s
        for out in outputs.values():
            out.drain(max(0.0, deadline - time.monotonic()))


def _fd_of(stream: Any) -> int:
    """``stream``'s file descriptor, or -1 when it has none (a test's ``StringIO``)."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return -1

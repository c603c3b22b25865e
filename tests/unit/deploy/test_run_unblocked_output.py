"""``cityops run``'s terminal output never holds the run: writes to an output nobody reads
return at once (the oldest text beyond the bound is dropped), everything reaches an output
that reads, in order, and an output with no reader left loses text, not the run."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from rich.console import Console

from cityops.cli.unblocked_output import UnblockedOutput, unblocked_terminal

pytestmark = pytest.mark.timeout(60)  # a write that blocks fails the test by this


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # a test closed it already
            os.close(fd)


def _writer(write_fd: int) -> UnblockedOutput:
    return UnblockedOutput(os.fdopen(write_fd, "w", encoding="utf-8", closefd=False),
                           limit_bytes=256 * 1024)


def _read_to_end(read_fd: int) -> tuple[threading.Thread, list[bytes]]:
    """A reader that reads ``read_fd`` until every writer has closed it."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: os.read(read_fd, 1 << 16),
                                                             b"")))
    reader.start()
    return reader, got


def _finish(write_fd: int, reader: threading.Thread, got: list[bytes]) -> bytes:
    os.close(write_fd)  # the only writing end: the reader sees the end
    reader.join(10)
    assert not reader.is_alive()
    return b"".join(got)


def test_writes_to_an_output_nobody_reads_return_and_keep_a_bounded_queue(
        pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    size = fcntl.fcntl(write_fd, 1032)  # F_GETPIPE_SZ: what the pipe holds before it blocks
    out = _writer(write_fd)
    frame = "x" * 4095 + "\n"
    frames = (size + 4 * 256 * 1024) // len(frame) + 1  # the pipe, then four times the bound
    for _ in range(frames):
        assert out.write(frame) == len(frame)
    assert not out.drain(0.2)  # nobody has read: still queued
    assert out.dropped_bytes > 2 * 256 * 1024  # the oldest beyond the bound, dropped
    reader, got = _read_to_end(read_fd)  # the reader wakes up
    assert out.drain(20)
    data = _finish(write_fd, reader, got)
    assert len(data) + out.dropped_bytes == frames * len(frame)  # nothing else lost
    assert len(data) <= size + 256 * 1024 + 2 * len(frame)  # the pipe, the bound, one write
    assert data == frame.encode() * (len(data) // len(frame))  # whole frames only, none cut


def test_everything_written_reaches_a_reader_in_order(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    out = _writer(write_fd)
    reader, got = _read_to_end(read_fd)
    lines = [f"line {i} — 解放碑\n" for i in range(5000)]
    for line in lines:
        out.write(line)
    assert out.drain(20)
    assert out.dropped_bytes == 0
    assert _finish(write_fd, reader, got).decode() == "".join(lines)


def test_an_output_without_a_reader_drops_text_and_raises_nothing(
        pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    out = _writer(write_fd)
    os.close(read_fd)  # the pipe's reader is gone: every write fails with EPIPE
    out.write("stopping worker …\n")
    assert out.drain(10)
    assert out.dropped_bytes == len("stopping worker …\n".encode())


def test_the_run_writes_through_it_and_puts_every_stream_back() -> None:
    console = Console(file=sys.stdout)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with unblocked_terminal(console):
            assert isinstance(console.file, UnblockedOutput)
            assert console.file.fileno() == sys.stdout.fileno()
            assert isinstance(handler.stream, UnblockedOutput)
            assert handler.stream.fileno() == sys.stderr.fileno()
        assert console.file is sys.stdout
        assert handler.stream is sys.stderr
    finally:
        root.removeHandler(handler)

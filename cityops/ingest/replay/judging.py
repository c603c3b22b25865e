"""Judging replay records: each row read, mapped and checked against its feed contract.

``read_records`` is pure (it sends nothing): it yields one ``ReplayItem`` per record, either
the bytes to send with their key and event time, or the ``Rejection`` for the dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import ValidationContext
from cityops.core.strictjson import StrictJSONError, loads_strict
from cityops.ingest.exceptions import ReplayError
from cityops.ingest.ports import Progress
from cityops.ingest.replay.mapping import RecordMapper
from cityops.ingest.replay.readers import (
    csv_rows,
    detect_format,
    jsonl_lines,
    parquet_frames,
)

#: called with a mapped record's ``event_time`` just before it is judged; returns the
#: context to judge it with (a paced replay judges a record by the clock of when it is due)
JudgeAt = Callable[[Any], ValidationContext]


@dataclass
class ReplayItem:
    """One record of the file after mapping: ``value`` to send, or ``rejection``."""

    line: int
    raw: bytes  # the original bytes (a line, or the row as JSON) for the dead letter
    value: bytes | None = None
    key: bytes | None = None
    event_time: datetime | None = None
    rejection: Rejection | None = None


@dataclass(frozen=True)
class _Judge:
    """What judging one record needs besides the record."""

    feed: str
    ctx: ValidationContext
    max_bytes: int
    judge_at: JudgeAt | None = None

    def record(self, record: dict[str, Any], raw: bytes, lineno: int) -> ReplayItem:
        ctx = self.ctx if self.judge_at is None else self.judge_at(record.get("event_time"))
        try:
            value = orjson.dumps(record)
        except TypeError as exc:
            return ReplayItem(lineno, raw, rejection=Rejection("wrong_type", str(exc)))
        return self.bytes(value, raw, lineno, ctx)

    def bytes(self, value: bytes, raw: bytes, lineno: int,
              ctx: ValidationContext | None = None) -> ReplayItem:
        result = decode_event(self.feed, value, ctx or self.ctx, max_bytes=self.max_bytes)
        if isinstance(result, Rejection):
            return ReplayItem(lineno, raw, rejection=result)
        return ReplayItem(lineno, raw, value=value, key=result.key(),
                          event_time=result.event_time)


def read_records(path: Path, feed: str, mapper: RecordMapper, ctx: ValidationContext, *,
                 fmt: str | None = None, encoding: str = "utf-8", max_bytes: int = 1_000_000,
                 chunk_rows: int = 5000, progress: Progress | None = None,
                 judge_at: JudgeAt | None = None) -> Iterator[ReplayItem]:
    """Every record of the file, mapped and judged (pure: nothing is sent)."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    judge = _Judge(feed, ctx, max_bytes, judge_at)
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        yield from _read_jsonl(path, mapper, judge, encoding, progress)
        return
    if fmt == "csv":
        checked = False
        for lineno, header, row in csv_rows(path, encoding, max_bytes, progress):
            if not checked:
                mapper.check_columns(header)
                checked = True
            yield _row_item(mapper, judge, row, lineno, encoding)
        if not checked:
            raise ReplayError(f"{path.name}: no records")
        return
    first = True
    lineno = 0
    for frame in parquet_frames(path, chunk_rows):
        columns = [str(c) for c in frame.columns]
        if first:
            mapper.check_columns(columns)
            first = False
        for values in frame.itertuples(index=False, name=None):
            lineno += 1
            if progress is not None:
                progress.update(1)
            row = dict(zip(columns, values, strict=True))
            yield _row_item(mapper, judge, row, lineno, encoding)
    if first:
        raise ReplayError(f"{path.name}: no records")


def _has_surrogates(row: dict[str, Any]) -> bool:
    for v in row.values():
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _row_item(mapper: RecordMapper, judge: _Judge, row: dict[str, Any] | Rejection,
              lineno: int, encoding: str) -> ReplayItem:
    if isinstance(row, Rejection):
        return ReplayItem(lineno, b"", rejection=row)
    if _has_surrogates(row):
        raw = orjson.dumps({k: (v.encode("utf-8", "surrogateescape").decode("latin-1")
                                if isinstance(v, str) else v) for k, v in row.items()},
                           default=str)
        return ReplayItem(lineno, raw, rejection=Rejection(
            "bad_encoding", f"row is not valid {encoding}"))
    return judge.record(mapper.map(row), orjson.dumps(row, default=str), lineno)


def _read_jsonl(path: Path, mapper: RecordMapper, judge: _Judge, encoding: str,
                progress: Progress | None) -> Iterator[ReplayItem]:
    utf8 = encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")
    for lineno, line in jsonl_lines(path, judge.max_bytes, progress):
        if isinstance(line, int):
            yield ReplayItem(lineno, b"", rejection=Rejection(
                "oversized", f"line of {line} bytes > limit {judge.max_bytes}"))
            continue
        raw = line
        if not utf8:
            try:
                line = line.decode(encoding).encode("utf-8")
            except (UnicodeDecodeError, LookupError):
                yield ReplayItem(lineno, raw, rejection=Rejection(
                    "bad_encoding", f"line is not valid {encoding}"))
                continue
        if mapper.transforms or not _complete_json(line):
            try:
                data = loads_strict(line)
            except StrictJSONError:
                data = None  # judged below, byte for byte, with its reason
            if isinstance(data, dict):
                yield judge.record(mapper.map(data), raw, lineno)
                continue
        yield judge.bytes(line, raw, lineno)


def _complete_json(line: bytes) -> bool:
    """True when the line already carries an event_id and source (sent byte for byte)."""
    return b'"event_id"' in line and b'"source"' in line

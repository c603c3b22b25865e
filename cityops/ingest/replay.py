"""Replay a file of recorded events (CSV, JSON lines or Parquet) into a raw feed topic.

Each record goes through the same steps:

1. read — JSON lines byte-wise (a line longer than ``max_message_bytes`` is rejected as
   ``oversized`` without being held in memory); CSV row by row with the stdlib reader (all
   columns as text; undecodable bytes kept so that row alone is rejected as ``bad_encoding``;
   a field over the size limit rejects that row as ``oversized``); Parquet in batches with
   pyarrow → pandas;
2. map — ``mapping`` renames file columns to contract fields (``{"event_time": "ts"}``),
   ``constants`` fills fields the file lacks (``{"zone_id": "jfb_square"}``); ``lat`` / ``lon``
   columns become ``position``; CSV text is converted to the contract's numbers; missing
   ``source`` / ``event_id`` are derived (``source`` from the site id, ``event_id`` as
   ``<source>:<epoch s>``, ``<incident_id>:<status>`` for incidents);
3. re-base (optional) — every ``event_time`` shifted by one offset so the first record lands
   on ``rebase_to`` (e.g. now);
4. judge — ``cityops.core.contract.decode_event``; a refused record goes to the dead-letter
   topic with its reason, stage ``replay``, source ``replay:<file name>`` and its line number;
5. send — keyed by ``source``, paced by event time divided by ``speed`` (none: as fast as
   the producer goes).

A re-based, paced run waits for each record *before* judging it, so it is judged against the
clock of the moment it is due (not the start): ``--rebase now --speed 1`` accepts a whole file.
Unpaced, every re-based record is judged against the start moment (or ``rebase_to`` if later).
"""

from __future__ import annotations

import csv
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import orjson

from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import FEED_MODELS, ValidationContext
from cityops.core.settings import Settings
from cityops.core.strictjson import StrictJSONError, loads_strict
from cityops.ingest.deadletters import dead_letter, send_dead_letter
from cityops.ingest.exceptions import IngestError, ReplayError

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
           ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_SITE_FIELD = {"parking": "carpark_id", "air": "station_id", "incidents": "zone_id"}
_INT_RE = re.compile(r"^[+-]?\d+$")
_DERIVABLE = {"event_id", "source", "schema_version"}

# called with a mapped record's event_time just before it is judged; waits until the record
# is due and returns the context to judge it with
Pacer = Callable[[Any], ValidationContext]


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ReplayError(f"unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")
        return fmt
    found = _SUFFIX.get(path.suffix.lower())
    if found is None:
        raise ReplayError(f"{path.name}: cannot tell the format from the suffix; "
                          f"pass --format ({', '.join(FORMATS)})")
    return found


def _field_kinds(feed: str) -> dict[str, type]:
    kinds: dict[str, type] = {}
    for name, f in FEED_MODELS[feed].model_fields.items():
        ann = str(f.annotation)
        if "float" in ann:
            kinds[name] = float
        elif "int" in ann and "Literal" not in ann:
            kinds[name] = int
    kinds["schema_version"] = int
    return kinds


@dataclass
class ReplayItem:
    """One record of the file after mapping: ``value`` to send, or ``rejection``."""

    line: int
    raw: bytes  # the original bytes (a line, or the row as JSON) for the dead letter
    value: bytes | None = None
    key: bytes | None = None
    event_time: datetime | None = None
    rejection: Rejection | None = None


@dataclass
class ReplaySummary:
    read: int = 0
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    delivery_failed: int = 0
    delivery_failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "sent": self.sent, "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
                "dead_lettered": self.dead_lettered, "delivery_failed": self.delivery_failed,
                "delivery_failures": dict(self.delivery_failures),
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


class RecordMapper:
    """Turns a file row (dict) into contract JSON: rename, constants, types, derive, re-base."""

    def __init__(self, feed: str, mapping: dict[str, str] | None = None,
                 constants: dict[str, Any] | None = None, naive_tz: tzinfo | None = None,
                 rebase_to: datetime | None = None) -> None:
        if feed not in FEED_MODELS:
            raise ReplayError(f"unknown feed {feed!r} (allowed: {', '.join(FEED_MODELS)})")
        unknown = [f for f in list(mapping or {}) + list(constants or {})
                   if f not in FEED_MODELS[feed].model_fields and f not in ("lat", "lon", "crs")]
        if unknown:
            raise ReplayError(f"mapping names fields the {feed} contract does not have: "
                              f"{', '.join(unknown)}")
        self.feed = feed
        self.mapping = dict(mapping or {})  # contract field -> file column
        self.constants = dict(constants or {})
        self.kinds = _field_kinds(feed)
        self.naive_tz = naive_tz
        self.rebase_to = rebase_to
        self.offset: timedelta | None = None

    def check_columns(self, columns: list[str]) -> None:
        """Fail early when a required field has no column, mapping or constant."""
        renamed = {col: f for f, col in self.mapping.items()}
        have = {renamed.get(c, c) for c in columns} | set(self.constants)
        model = FEED_MODELS[self.feed]
        required = [n for n, f in model.model_fields.items()
                    if f.is_required() and n not in _DERIVABLE]
        missing = [n for n in required if n not in have]
        if self.feed == "footfall" and "source" not in have:
            missing.insert(0, "source")
        if missing:
            raise ReplayError(
                f"required {self.feed} fields without a column: {', '.join(missing)}; "
                f"file columns: {', '.join(columns) or '(none)'}; map one with "
                f"--map FIELD=COLUMN or set it with --set FIELD=VALUE")

    def _coerce(self, name: str, value: Any) -> Any:
        kind = self.kinds.get(name)
        if isinstance(value, str):
            text = value.strip()
            if kind is int and _INT_RE.match(text):
                return int(text)
            if kind is float:
                try:
                    return float(text)
                except ValueError:
                    return value
            return text
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)  # pandas turns int columns with gaps into floats
        if isinstance(value, datetime):
            if value.tzinfo is None and self.naive_tz is not None:
                value = value.replace(tzinfo=self.naive_tz)
            return value.isoformat()
        if hasattr(value, "item"):  # numpy scalars
            return self._coerce(name, value.item())
        return value

    def map(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        renamed = {col: f for f, col in self.mapping.items()}
        for col, value in row.items():
            if value is None or (isinstance(value, str) and value.strip() == "") or (
                    isinstance(value, float) and value != value):  # NaN
                continue
            name = renamed.get(col, col)
            if name in self.mapping and self.mapping[name] != col:
                continue  # this column's name is a field that maps to another column
            out[name] = self._coerce(name, value)
        for k, v in self.constants.items():
            out.setdefault(k, self._coerce(k, v))
        lat, lon = out.pop("lat", None), out.pop("lon", None)
        crs = out.pop("crs", None)
        if lat is not None and lon is not None and "position" not in out:
            pos = {"lat": _num(lat), "lon": _num(lon)}
            if crs:
                pos["crs"] = str(crs).upper().replace("-", "")
            out["position"] = pos
        self._fix_time(out)
        self._derive(out)
        return out

    def _fix_time(self, out: dict[str, Any]) -> None:
        t = out.get("event_time")
        if not isinstance(t, str):
            return
        try:
            when = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return  # left as is: the contract rejects it with bad_timestamp
        if when.tzinfo is None:
            if self.naive_tz is None:
                return  # naive_timestamp rejection
            when = when.replace(tzinfo=self.naive_tz)
        if self.rebase_to is not None:
            if self.offset is None:
                self.offset = self.rebase_to - when
            when = when + self.offset
        out["event_time"] = when.isoformat()

    def _derive(self, out: dict[str, Any]) -> None:
        site = _SITE_FIELD.get(self.feed)
        if "source" not in out and site and isinstance(out.get(site), str):
            out["source"] = out[site]
        if "event_id" not in out:
            if self.feed == "incidents" and "incident_id" in out and "status" in out:
                out["event_id"] = f"{out['incident_id']}:{out['status']}"
            elif isinstance(out.get("source"), str) and isinstance(out.get("event_time"), str):
                try:
                    epoch = int(datetime.fromisoformat(out["event_time"]).timestamp())
                    out["event_id"] = f"{out['source']}:{epoch}"
                except ValueError:
                    pass


def _num(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# --- readers --------------------------------------------------------------------------------
def _jsonl_lines(path: Path, max_bytes: int, progress: Any) -> Iterator[tuple[int, bytes | int]]:
    """(line number, bytes) per non-empty line; an over-long line yields its size instead."""
    with path.open("rb") as fh:
        lineno = 0
        while True:
            chunk = fh.readline(max_bytes + 2)
            if not chunk:
                return
            lineno += 1
            if progress is not None:
                progress.update(len(chunk))
            if len(chunk) > max_bytes + 1 and not chunk.endswith(b"\n"):
                size = len(chunk)
                while chunk and not chunk.endswith(b"\n"):  # skip the rest of the line
                    chunk = fh.readline(1 << 20)
                    size += len(chunk)
                    if progress is not None:
                        progress.update(len(chunk))
                yield lineno, size
                continue
            line = chunk.rstrip(b"\r\n")
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if line.strip():
                yield lineno, line


def _csv_rows(path: Path, encoding: str, max_bytes: int, progress: Any
              ) -> Iterator[tuple[int, list[str], dict[str, Any] | Rejection]]:
    """(line, header, row or rejection) per CSV row; undecodable bytes are kept as
    surrogates so the row is rejected as ``bad_encoding`` rather than the whole file."""
    csv.field_size_limit(max(max_bytes, 1024))
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        fh = path.open("r", encoding=encoding, errors="surrogateescape", newline="")
    except LookupError:
        raise ReplayError(f"unknown encoding {encoding!r}") from None
    with fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise ReplayError(f"{path.name}: empty file") from None
        except csv.Error as exc:
            raise ReplayError(f"{path.name}: cannot read the CSV header: {exc}") from None
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        header = [h.strip() for h in header]
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, header, Rejection(
                    "oversized" if "field larger" in str(exc) else "bad_format", str(exc))
                continue
            if progress is not None:
                progress.update(1)
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield reader.line_num, header, Rejection(
                    "bad_format", f"{len(values)} values for {len(header)} columns")
                continue
            yield reader.line_num, header, dict(zip(header, values, strict=True))


def _parquet_frames(path: Path, chunk_rows: int) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ReplayError(f"{path.name}: cannot read as parquet: {exc}") from None


def _has_surrogates(row: dict[str, Any]) -> bool:
    for v in row.values():
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def read_records(path: Path, feed: str, mapper: RecordMapper, ctx: ValidationContext, *,
                 fmt: str | None = None, encoding: str = "utf-8", max_bytes: int = 1_000_000,
                 chunk_rows: int = 5000, progress: Any = None,
                 pace: Pacer | None = None) -> Iterator[ReplayItem]:
    """Every record of the file, mapped and judged (pure: nothing is sent). ``pace`` (if
    given) is called with each mapped record's ``event_time`` before it is judged."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        yield from _read_jsonl(path, feed, mapper, ctx, encoding, max_bytes, progress, pace)
        return
    if fmt == "csv":
        checked = False
        for lineno, header, row in _csv_rows(path, encoding, max_bytes, progress):
            if not checked:
                mapper.check_columns(header)
                checked = True
            yield _row_item(feed, mapper, row, lineno, ctx, max_bytes, encoding, pace)
        if not checked:
            raise ReplayError(f"{path.name}: no records")
        return
    first = True
    lineno = 0
    for frame in _parquet_frames(path, chunk_rows):
        columns = [str(c) for c in frame.columns]
        if first:
            mapper.check_columns(columns)
            first = False
        for values in frame.itertuples(index=False, name=None):
            lineno += 1
            if progress is not None:
                progress.update(1)
            row = dict(zip(columns, values, strict=True))
            yield _row_item(feed, mapper, row, lineno, ctx, max_bytes, encoding, pace)
    if first:
        raise ReplayError(f"{path.name}: no records")


def _row_item(feed: str, mapper: RecordMapper, row: dict[str, Any] | Rejection, lineno: int,
              ctx: ValidationContext, max_bytes: int, encoding: str,
              pace: Pacer | None = None) -> ReplayItem:
    if isinstance(row, Rejection):
        return ReplayItem(lineno, b"", rejection=row)
    if _has_surrogates(row):
        raw = orjson.dumps({k: (v.encode("utf-8", "surrogateescape").decode("latin-1")
                                if isinstance(v, str) else v) for k, v in row.items()},
                           default=str)
        return ReplayItem(lineno, raw, rejection=Rejection(
            "bad_encoding", f"row is not valid {encoding}"))
    return _judge(feed, mapper.map(row), orjson.dumps(row, default=str), lineno, ctx,
                  max_bytes, pace)


def _read_jsonl(path: Path, feed: str, mapper: RecordMapper, ctx: ValidationContext,
                encoding: str, max_bytes: int, progress: Any,
                pace: Pacer | None = None) -> Iterator[ReplayItem]:
    transform = bool(mapper.mapping or mapper.constants or mapper.rebase_to or mapper.naive_tz)
    utf8 = encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")
    for lineno, line in _jsonl_lines(path, max_bytes, progress):
        if isinstance(line, int):
            yield ReplayItem(lineno, b"", rejection=Rejection(
                "oversized", f"line of {line} bytes > limit {max_bytes}"))
            continue
        raw = line
        if not utf8:
            try:
                line = line.decode(encoding).encode("utf-8")
            except (UnicodeDecodeError, LookupError):
                yield ReplayItem(lineno, raw, rejection=Rejection(
                    "bad_encoding", f"line is not valid {encoding}"))
                continue
        if transform or not _complete_json(line):
            try:
                data = loads_strict(line)
            except StrictJSONError:
                data = None  # judged below, byte for byte, with its reason
            if isinstance(data, dict):
                yield _judge(feed, mapper.map(data), raw, lineno, ctx, max_bytes, pace)
                continue
        yield _judge_bytes(feed, line, raw, lineno, ctx, max_bytes)


def _complete_json(line: bytes) -> bool:
    """True when the line already carries an event_id and source (sent byte for byte)."""
    return b'"event_id"' in line and b'"source"' in line


def _judge(feed: str, record: dict[str, Any], raw: bytes, lineno: int,
           ctx: ValidationContext, max_bytes: int, pace: Pacer | None = None) -> ReplayItem:
    if pace is not None:
        ctx = pace(record.get("event_time"))
    try:
        value = orjson.dumps(record)
    except TypeError as exc:
        return ReplayItem(lineno, raw, rejection=Rejection("wrong_type", str(exc)))
    return _judge_bytes(feed, value, raw, lineno, ctx, max_bytes)


def _judge_bytes(feed: str, value: bytes, raw: bytes, lineno: int, ctx: ValidationContext,
                 max_bytes: int) -> ReplayItem:
    result = decode_event(feed, value, ctx, max_bytes=max_bytes)
    if isinstance(result, Rejection):
        return ReplayItem(lineno, raw, rejection=result)
    return ReplayItem(lineno, raw, value=value, key=result.key(), event_time=result.event_time)


# --- sending --------------------------------------------------------------------------------
def replay_file(path: Path, feed: str, producer: Any, settings: Settings,
                ctx: ValidationContext, *, fmt: str | None = None,
                mapping: dict[str, str] | None = None, constants: dict[str, Any] | None = None,
                encoding: str = "utf-8", rebase_to: datetime | None = None,
                naive_tz: tzinfo | None = None, speed: float | None = None,
                topic: str | None = None, progress: bool = False,
                stop: threading.Event | None = None) -> ReplaySummary:
    """Stream ``path`` into ``feed``'s raw topic with ``producer`` (a ``FeedProducer``);
    refused records go to the dead-letter topic. Returns the summary once all are acked."""
    path = Path(path)
    mapper = RecordMapper(feed, mapping, constants, naive_tz, rebase_to)
    paced_first = rebase_to is not None and bool(speed)
    if rebase_to is not None and ctx.now is None:
        # re-based events may sit a little ahead of the wall clock; judge them at the target
        ctx = ValidationContext(registry=ctx.registry, now=max(rebase_to, datetime.now(UTC)),
                                max_clock_skew_s=ctx.max_clock_skew_s,
                                occupancy_tolerance=ctx.occupancy_tolerance)
    base_ctx = ctx
    out_topic = topic or settings.raw_topic(feed)
    dlq_topic = settings.topic("dlq")
    summary = ReplaySummary()
    started = time.monotonic()
    bar = _progress(path, fmt) if progress else None
    before = (producer.stats.failed, Counter(producer.stats.failures))
    first_time: datetime | None = None

    def pace(event_time: Any) -> ValidationContext:
        # re-based and paced: wait until the record is due, then judge it by the clock of
        # that moment (the start-time context moved on by the time elapsed since the start)
        nonlocal first_time
        when = _parse_time(event_time)
        if when is not None and speed:
            if first_time is None:
                first_time = when
            _sleep_until(started + (when - first_time).total_seconds() / speed, stop)
        if base_ctx.now is None:
            return base_ctx
        return replace(base_ctx, now=base_ctx.now + timedelta(
            seconds=time.monotonic() - started))

    try:
        for item in read_records(path, feed, mapper, ctx, fmt=fmt, encoding=encoding,
                                 max_bytes=settings.max_message_bytes, progress=bar,
                                 pace=pace if paced_first else None):
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
            summary.read += 1
            if item.rejection is not None:
                summary.rejected[item.rejection.reason] += 1
                letter = dead_letter(feed, item.raw, item.rejection, stage="replay",
                                     source=f"replay:{path.name}", offset=item.line)
                try:
                    send_dead_letter(producer, dlq_topic, letter)
                    summary.dead_lettered += 1
                except IngestError:
                    pass  # counted by the producer as a delivery failure
                continue
            if speed and not paced_first and item.event_time is not None:
                if first_time is None:
                    first_time = item.event_time
                due = started + (item.event_time - first_time).total_seconds() / speed
                _sleep_until(due, stop)
            assert item.value is not None
            producer.send(out_topic, item.value, item.key)
            summary.sent += 1
    finally:
        if bar is not None:
            bar.close()
        producer.flush()
        summary.seconds = time.monotonic() - started
        summary.delivery_failed = producer.stats.failed - before[0]
        summary.delivery_failures = producer.stats.failures - before[1]
    return summary


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _sleep_until(due: float, stop: threading.Event | None) -> None:
    while True:
        left = due - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return
        time.sleep(min(left, 0.25))


def _progress(path: Path, fmt: str | None) -> Any:
    from tqdm import tqdm

    kind = detect_format(path, fmt)
    if kind == "jsonl":
        return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return tqdm(total=pq.ParquetFile(path).metadata.num_rows, unit="rec", desc=path.name)
    return tqdm(unit="rec", desc=path.name)


def parse_assignments(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` → ``{"a": "b", "c": "d"}`` (CLI ``--map`` / ``--set``)."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ReplayError(f"{what} {part!r}: expected FIELD=VALUE")
            out[name.strip()] = value.strip()
    return out

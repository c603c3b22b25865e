"""Reading replay files: the format from the suffix, then JSON lines, CSV or Parquet rows.

Readers yield raw rows only; mapping and judging happen in ``mapping`` and ``judging``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cityops.core.contract import Rejection
from cityops.ingest.exceptions import ReplayError
from cityops.ingest.ports import Progress

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
           ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``fmt`` if given (checked), else the format the file's suffix says."""
    if fmt:
        if fmt not in FORMATS:
            raise ReplayError(f"unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")
        return fmt
    found = _SUFFIX.get(path.suffix.lower())
    if found is None:
        raise ReplayError(f"{path.name}: cannot tell the format from the suffix; "
                          f"pass --format ({', '.join(FORMATS)})")
    return found


def jsonl_lines(path: Path, max_bytes: int, progress: Progress | None
                ) -> Iterator[tuple[int, bytes | int]]:
    """(line number, bytes) per non-empty line; an over-long line yields its size instead,
    without ever being held in memory whole."""
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


def csv_rows(path: Path, encoding: str, max_bytes: int, progress: Progress | None
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


def parquet_frames(path: Path, chunk_rows: int) -> Iterator[Any]:
    """The file in pandas frames of ``chunk_rows`` rows (pyarrow batches)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ReplayError(f"{path.name}: cannot read as parquet: {exc}") from None


def progress_bar(path: Path, fmt: str | None) -> Progress:
    """A tqdm bar sized to the file: bytes for JSON lines, rows for Parquet, open for CSV."""
    from tqdm import tqdm

    kind = detect_format(path, fmt)
    if kind == "jsonl":
        return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return tqdm(total=pq.ParquetFile(path).metadata.num_rows, unit="rec", desc=path.name)
    return tqdm(unit="rec", desc=path.name)

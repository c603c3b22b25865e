"""What raw retention means for a backfill, said before a replay sends anything.

The warehouse counts the raw TTL (``CITYOPS_RAW_TTL_DAYS``) from when a row was *ingested*
(``ingested_at``), not from its event time: history loaded today stays in the raw tables for
the full TTL, and in the rollups (kept without TTL) for good. So a two-year-old backfill is
not deleted at the first merge; it expires with the rest of today's rows. The notice tells the
user which records are older than the TTL by event time, and until when they stay raw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from cityops.core.contract import ValidationContext
from cityops.core.settings import Settings


@dataclass(frozen=True)
class RetentionNotice:
    """How many records of a file are older than the raw TTL, and where they remain."""

    records: int
    outside: int  # records whose event time is older than the TTL today
    oldest: datetime | None
    raw_ttl_days: int
    raw_until: date | None  # loaded today, their raw rows expire after this date

    def message(self) -> str | None:
        """One paragraph for the terminal, or None when nothing is outside the TTL."""
        if not self.outside or self.raw_until is None:
            return None
        return (
            f"{self.outside:,} of {self.records:,} records (oldest "
            f"{self.oldest:%Y-%m-%d}) are older than the raw retention of "
            f"{self.raw_ttl_days} days (CITYOPS_RAW_TTL_DAYS). Raw retention counts from "
            f"ingestion, so they stay in the raw tables until {self.raw_until:%Y-%m-%d} and in "
            "the rollups and analyst views (footfall_zone_1h, night_footfall …) for good.")


def retention_notice(event_times: Iterable[datetime], raw_ttl_days: int,
                     now: datetime) -> RetentionNotice:
    """Count the event times older than ``raw_ttl_days`` before ``now``."""
    records = outside = 0
    oldest: datetime | None = None
    cutoff = now - timedelta(days=raw_ttl_days)
    for t in event_times:
        records += 1
        if oldest is None or t < oldest:
            oldest = t
        if raw_ttl_days > 0 and t < cutoff:
            outside += 1
    until = (now + timedelta(days=raw_ttl_days)).date() if raw_ttl_days > 0 else None
    return RetentionNotice(records, outside, oldest, raw_ttl_days, until)


def file_notice(path: Path, feed: str, settings: Settings, ctx: ValidationContext, *,
                fmt: str | None, mapping: dict[str, str], constants: dict[str, Any],
                encoding: str, naive_tz: tzinfo | None) -> RetentionNotice:
    """Read the file once (nothing is sent) and count its records outside the raw TTL."""
    from cityops.ingest.replay import RecordMapper, read_records

    mapper = RecordMapper(feed, mapping, constants, naive_tz, None)
    times = (item.event_time for item in read_records(
        path, feed, mapper, ctx, fmt=fmt, encoding=encoding,
        max_bytes=settings.max_message_bytes) if item.event_time is not None)
    return retention_notice(times, settings.raw_ttl_days, datetime.now(UTC))

"""The replay's retention notice: how many records are older than the raw TTL, and until when
they stay raw (the TTL counts from ingestion)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cityops.ingest.retention import retention_notice

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_counts_records_older_than_the_ttl() -> None:
    times = [NOW - timedelta(days=d) for d in (800, 730, 401, 399, 1)]
    notice = retention_notice(times, 400, NOW)
    assert (notice.records, notice.outside) == (5, 3)
    assert notice.oldest == NOW - timedelta(days=800)
    assert notice.raw_until == date(2028, 1, 5)  # 1 Dec 2026 + 400 days
    text = notice.message()
    assert text is not None and "3 of 5 records (oldest 2024-09-22)" in text
    assert "until 2028-01-05" in text and "rollups" in text


def test_no_notice_when_everything_is_recent_or_ttl_is_off() -> None:
    assert retention_notice([NOW - timedelta(days=3)], 400, NOW).message() is None
    off = retention_notice([NOW - timedelta(days=3000)], 0, NOW)
    assert off.outside == 0 and off.message() is None

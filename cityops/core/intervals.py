"""Counting intervals spread over time buckets: where a footfall report's people belong.

A report covers ``[event_time − interval_s, event_time)``. Its count is spread over the
buckets that interval overlaps, in proportion to the overlap, as whole numbers: bucket k gets
``floor(n·c_k / L) − floor(n·c_(k−1) / L)``, where ``L`` is the interval and ``c_k`` the part
of it up to the end of bucket k (milliseconds). So the parts of one report sum to its count
exactly, an interval inside one bucket lands whole in it, and the parts of finer buckets add up
to the part of the coarser bucket that contains them (minutes → hours), because the rounding
only depends on the boundary. The warehouse's rollup views
(``warehouse/migrations/0006_interval_buckets.sql``) do the same arithmetic in SQL.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def _parts(count: int, start_ms: int, end_ms: int, first_ms: int,
           size_ms: int) -> list[tuple[int, int]]:
    length = end_ms - start_ms
    out: list[tuple[int, int]] = []
    b = first_ms
    while b < end_ms:
        hi = min(end_ms, b + size_ms) - start_ms
        lo = max(b, start_ms) - start_ms
        out.append((b, count * hi // length - count * lo // length))
        b += size_ms
    return out


def interval_ms(end_ms: int, interval_s: float) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of a report ending at ``end_ms`` (an interval of 0 counts as 1 s,
    like the SQL's ``greatest(interval_s, 1)``)."""
    return end_ms - max(round(interval_s * 1000), 1000), end_ms


def spread_aligned(count: int, start_ms: int, end_ms: int,
                   size_ms: int) -> list[tuple[int, int]]:
    """``(bucket_start_ms, part)`` over epoch-aligned buckets of ``size_ms`` (minutes …)."""
    if end_ms <= start_ms:
        raise ValueError("an interval must end after it starts")
    return _parts(count, start_ms, end_ms, start_ms // size_ms * size_ms, size_ms)


def local_hour_start_ms(ms: int, tz: tzinfo) -> int:
    """Start of the local hour containing ``ms`` in ``tz`` (epoch milliseconds)."""
    local = datetime.fromtimestamp(ms / 1000, tz)
    floor = local.replace(minute=0, second=0, microsecond=0)
    # a local hour with a sub-hour offset change inside it does not exist in real zones;
    # fold keeps the earlier of two repeated wall-clock hours right
    return round(floor.timestamp() * 1000)


def spread_hours(count: int, start_ms: int, end_ms: int,
                 tz: tzinfo) -> list[tuple[int, int]]:
    """``(hour_start_ms, part)`` over the district's local hours (DST changes included)."""
    if end_ms <= start_ms:
        raise ValueError("an interval must end after it starts")
    return _parts(count, start_ms, end_ms, local_hour_start_ms(start_ms, tz), HOUR_MS)


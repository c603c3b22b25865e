"""Deduplicator: ids remembered within the event-time horizon, forgotten after it."""

from __future__ import annotations

from datetime import UTC, datetime

from cityops.streams.dedup import Deduplicator


def test_duplicate_within_horizon() -> None:
    store: dict[str, float] = {}
    d = Deduplicator(600, store)
    assert d.seen_before("e1", 1000.0) is False
    assert d.seen_before("e1", 1000.0) is True
    assert d.seen_before("e2", datetime.fromtimestamp(1001, UTC)) is False
    assert store == {"e1": 1000.0, "e2": 1001.0}


def test_eviction_after_horizon() -> None:
    store: dict[str, float] = {}
    d = Deduplicator(600, store, evict_every=1)
    d.seen_before("old", 1000.0)
    d.seen_before("new", 1700.0)  # 1000 < 1700 − 600: evicted
    assert "old" not in store
    assert d.evicted == 1
    assert d.seen_before("new", 1700.0) is True


def test_older_than_horizon_not_remembered() -> None:
    store: dict[str, float] = {}
    d = Deduplicator(600, store)
    d.seen_before("a", 5000.0)
    assert d.seen_before("ancient", 100.0) is False
    assert "ancient" not in store


def test_restart_rebuilds_newest_from_store() -> None:
    store = {"a": 5000.0}
    d = Deduplicator(600, store)
    assert d.seen_before("a", 5000.0) is True
    assert d.evict() == 0
    assert d.evict(now_s=6000.0) == 1
    assert store == {}

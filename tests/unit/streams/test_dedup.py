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


def test_eviction_with_out_of_order_times_forgets_exactly_the_old_ids() -> None:
    store: dict[str, float] = {}
    d = Deduplicator(100, store, evict_every=1)
    for i, ts in enumerate([1000.0, 1090.0, 1010.0, 1050.0, 1005.0, 1120.0]):
        d.seen_before(f"e{i}", ts)
    # newest 1120 → cutoff 1020: e0 (1000), e2 (1010), e4 (1005) are forgotten
    assert sorted(store) == ["e1", "e3", "e5"]
    assert d.evicted == 3
    assert d.seen_before("e1", 1090.0) is True


def test_restored_store_is_evicted_in_time_order() -> None:
    store = {f"id{i}": 1000.0 + i for i in range(10)}  # as rebuilt from a changelog
    d = Deduplicator(5, store, evict_every=1)
    assert d.seen_before("late_arrival", 1009.0) is False
    assert sorted(store) == ["id4", "id5", "id6", "id7", "id8", "id9", "late_arrival"]  # ≥ 1004

"""The offset a partition may commit, from its acknowledged offsets (``streams.commits``)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from intervaltree import IntervalTree

from cityops.streams.commits import _new_offset, next_commit


def test_a_consecutive_run_from_the_committed_offset_is_committed() -> None:
    assert next_commit([10, 11, 12], 10) == (13, [])


def test_offsets_acknowledged_twice_do_not_break_the_run() -> None:
    """What two workers left after the start-up rebalance: every offset listed twice; Faust
    committed one offset per commit from there on."""
    acked = [760, 761, 761, 762, 762, 763, 763, *range(764, 5000)]
    assert next_commit(acked, 761) == (5000, [])


def test_offsets_below_the_committed_one_never_move_the_commit_back() -> None:
    assert next_commit([100, 101], 761) == (None, [])
    assert next_commit([100, 761, 762], 761) == (763, [])


def test_a_missing_offset_stops_the_commit_before_it() -> None:
    assert next_commit([10, 11, 13, 14], 10) == (12, [13, 14])


def test_nothing_is_committed_while_the_records_after_the_committed_offset_wait() -> None:
    assert next_commit([15, 16], 10) == (None, [15, 16])


def test_the_head_may_start_one_past_the_committed_offset_as_faust_records_gaps() -> None:
    """Faust records a skipped range from one past the offset it seeked to."""
    assert next_commit([11, 12], 10) == (13, [])


def test_a_partition_without_a_committed_offset_commits_its_first_run() -> None:
    assert next_commit([5, 3, 4, 9], None) == (6, [9])
    assert next_commit([], None) == (None, [])


def _consumer(acked: list[int], committed: int | None, gaps: list[tuple[int, int]]) -> Any:
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    return SimpleNamespace(
        _acked=defaultdict(list, {"tp": list(acked)}),
        _acked_index=defaultdict(set, {"tp": set(acked)}),
        _gap=defaultdict(IntervalTree, {"tp": tree}),
        _committed_offset=defaultdict(lambda: None, {"tp": committed}))


def test_the_installed_method_merges_gaps_and_keeps_the_waiting_offsets_indexed() -> None:
    consumer = _consumer([10, 11, 11, 15, 20], 10, [(12, 15)])  # 12–14 skipped by the fetch
    assert _new_offset(consumer, "tp") == 16
    assert consumer._acked["tp"] == [20]
    assert consumer._acked_index["tp"] == {20}
    assert not consumer._gap["tp"]
    assert _new_offset(_consumer([], 10, []), "tp") is None

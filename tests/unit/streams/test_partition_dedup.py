"""PartitionDedup: duplicates by id, replays by offset, per-step deltas, bounded memory."""

from __future__ import annotations

import json

import pytest

from cityops.streams.partition_dedup import Delta, PartitionDedup, Verdict

T0 = 1_796_000_000.0


def _through_changelog(delta: Delta | None) -> Delta:
    """A delta as the worker writes and later reads it back (JSON)."""
    assert delta is not None
    return Delta.from_state(json.loads(json.dumps(delta.to_state())))


def test_first_sighting_is_new_and_a_repeat_at_a_new_offset_is_a_duplicate() -> None:
    d = PartitionDedup(3600)
    assert d.judge(0, "e1", T0) is Verdict.NEW
    assert d.judge(1, "e2", T0 + 1) is Verdict.NEW
    assert d.judge(2, "e1", T0) is Verdict.DUPLICATE
    assert d.judge(3, "e3", T0 + 2) is Verdict.NEW


def test_the_same_offsets_again_are_replays_and_a_replayed_duplicate_stays_one() -> None:
    d = PartitionDedup(3600)
    d.judge(10, "e1", T0)
    d.judge(11, "e1", T0)  # a producer retry
    d.judge(12, "e2", T0)
    # a rebalance seeks back to the committed offset 10: the same three records again
    assert [d.judge(o, e, T0) for o, e in ((10, "e1"), (11, "e1"), (12, "e2"))] == [
        Verdict.REPLAYED, Verdict.DUPLICATE, Verdict.REPLAYED]
    assert d.judge(13, "e2", T0) is Verdict.DUPLICATE


def test_one_delta_per_step_restores_the_same_decisions_after_a_restart() -> None:
    before = PartitionDedup(3600, rollup_steps=1)  # groups of one step
    deltas = []
    for step in range(3):
        for i in range(5):
            off = step * 5 + i
            before.judge(off, f"e{off % 12}", T0 + off)  # offsets 12..14 repeat e0..e2
        deltas.append(_through_changelog(before.take_delta()))
    assert [(x.lo, x.hi) for x in deltas] == [(0, 4), (5, 9), (10, 14)]
    assert deltas[2].dups == [12, 13, 14]
    after = PartitionDedup(3600)
    after.restore(list(reversed(deltas)))  # any order
    assert after.hw == 14 and len(after) == 12
    # the uncommitted tail is replayed after the restart: same verdicts as the first time
    assert [after.judge(o, f"e{o % 12}", T0 + o) for o in range(10, 15)] == [
        Verdict.REPLAYED, Verdict.REPLAYED, Verdict.DUPLICATE, Verdict.DUPLICATE,
        Verdict.DUPLICATE]
    assert after.judge(15, "e5", T0 + 5) is Verdict.DUPLICATE
    assert after.judge(16, "new", T0 + 16) is Verdict.NEW


def test_a_dead_lettered_record_still_moves_the_decided_offset() -> None:
    d = PartitionDedup(3600)
    d.judge(0, "e1", T0)
    d.skip(1)  # invalid JSON at offset 1
    delta = d.take_delta()
    assert delta is not None and (delta.lo, delta.hi) == (0, 1) and d.hw == 1
    assert d.take_delta() is None  # nothing decided since


def test_ids_behind_the_horizon_are_forgotten_and_their_deltas_expire() -> None:
    d = PartitionDedup(600, bucket_s=60, rollup_steps=1)
    d.judge(0, "old", T0)
    first = d.take_delta()
    assert first is not None and d.expired() == []
    d.judge(1, "mid", T0 + 700)
    d.take_delta()
    d.judge(2, "new", T0 + 1000)  # the newest event time moves 1000 s on
    last = d.take_delta()
    assert last is not None
    assert d.expired() == [first.lo]  # "old"'s delta is behind the horizon: delete it
    assert d.judge(3, "old", T0) is Verdict.NEW  # forgotten (and far behind any window)
    assert d.judge(4, "mid", T0 + 700) is Verdict.DUPLICATE  # still inside the horizon
    assert d.judge(5, "ancient", T0 - 5000) is Verdict.NEW
    assert d.judge(6, "ancient", T0 - 5000) is Verdict.NEW  # behind the horizon: not kept


def test_the_newest_delta_is_kept_even_when_quiet_past_the_horizon() -> None:
    d = PartitionDedup(60, bucket_s=60, rollup_steps=1)
    d.judge(0, "a", T0)
    d.take_delta()
    d.skip(1)
    d.take_delta()
    d.newest = T0 + 10_000  # as if time moved on elsewhere
    assert d.expired() == [0]
    restored = PartitionDedup(60)
    restored.restore([Delta(lo=1, hi=1, newest=T0)])
    assert restored.hw == 1 and restored.judge(1, "x", T0) is Verdict.REPLAYED


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PartitionDedup(0)



def _live_log(writes: list[tuple[str, Delta | None]]) -> list[Delta]:
    """What a compacted log keeps of the writes: the latest value per key, tombstones gone."""
    live: dict[str, Delta | None] = {}
    for key, delta in writes:
        live[key] = None if delta is None else _through_changelog(delta)
    return [d for d in live.values() if d is not None]


def _eid(off: int, dup_every: int) -> str:
    return f"e{off - 1}" if dup_every and off and off % dup_every == 0 else f"e{off}"


def _run(d: PartitionDedup, steps: int, per_step: int, dup_every: int = 0, start: int = 0,
         ) -> list[tuple[str, Delta | None]]:
    """Steps of ``per_step`` records, written as the validation stage writes them."""
    writes: list[tuple[str, Delta | None]] = []
    off = start
    for _ in range(steps):
        for _ in range(per_step):
            d.judge(off, _eid(off, dup_every), T0 + off)
            off += 1
        delta = d.take_delta()
        assert delta is not None
        writes.append((delta.key(0), delta))
        writes += [(f"0/{lo}", None) for lo in d.expired()]
    return writes


def test_a_step_writes_its_group_so_far_and_the_compacted_log_restores_the_same_state(
        ) -> None:
    before = PartitionDedup(3600, rollup_steps=4)
    writes = _run(before, steps=10, per_step=5, dup_every=7)
    assert len(writes) == 10  # one record per step
    live = _live_log(writes)
    # steps 0-3 and 4-7 share a record each; steps 8 and 9 the open group's
    assert sorted((d.lo, d.hi) for d in live) == [(0, 19), (20, 39), (40, 49)]
    after = PartitionDedup(3600, rollup_steps=4)
    after.restore(live)
    assert (after.hw, after.dups, len(after)) == (before.hw, before.dups, len(before))
    for off in range(50):  # every record again: the same decisions as before the restart
        assert after.judge(off, _eid(off, 7), T0 + off) is before.judge(off, _eid(off, 7),
                                                                         T0 + off)
    assert after.judge(50, "e3", T0 + 3) is Verdict.DUPLICATE
    assert after.judge(51, "new", T0 + 51) is Verdict.NEW


def test_a_stop_after_any_step_leaves_every_decision_of_its_group_on_the_log() -> None:
    for stop_after in range(1, 10):
        before = PartitionDedup(3600, rollup_steps=4)
        writes = _run(before, steps=stop_after, per_step=5, dup_every=7)
        after = PartitionDedup(3600, rollup_steps=4)
        after.restore(_live_log(writes))
        assert (after.hw, after.dups, len(after)) == (before.hw, before.dups, len(before))


def test_a_group_closes_early_at_its_id_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from cityops.streams import partition_dedup

    monkeypatch.setattr(partition_dedup, "ROLLUP_MAX_IDS", 12)
    d = PartitionDedup(3600, rollup_steps=16)
    writes = _run(d, steps=5, per_step=5)
    assert [k for k, _ in writes] == ["0/0", "0/0", "0/0", "0/15", "0/15"]


def test_groups_expire_behind_the_horizon_and_the_newest_stays() -> None:
    d = PartitionDedup(100, bucket_s=10, rollup_steps=2)
    writes = _run(d, steps=4, per_step=5)  # offsets and event times 0..19 s
    assert [k for k, _ in writes] == ["0/0", "0/0", "0/10", "0/10"]
    writes = _run(d, steps=1, per_step=1, start=500)  # the partition's clock moves 480 s on
    assert writes == [("0/500", writes[0][1]), ("0/0", None), ("0/10", None)]
    assert [k for k, v in _run(d, steps=1, per_step=1, start=600) if v is None] == []


def test_a_groups_record_holds_every_hash_of_its_steps_as_if_encoded_at_once() -> None:
    """A group's hashes are packed as its steps come (not all again at each step): the
    record written after each step is the whole group, and reads back to the same ids."""
    d = PartitionDedup(3600, bucket_s=60.0, rollup_steps=4)
    written = []
    for step in range(4):
        for i in range(30):
            off = step * 30 + i
            # a new bucket in each step, and buckets that grow over several steps
            d.judge(off, f"e{off}", T0 + 60 * step + 2 * i)
        written.append(d.take_delta())
    group = written[-1]
    assert group is not None and all(w is group for w in written)
    again = Delta(lo=group.lo, hi=group.hi, ids={b: list(h) for b, h in group.ids.items()},
                  dups=list(group.dups), newest=group.newest)  # nothing packed
    assert group.to_state() == again.to_state()
    # and packed as they came, so no write converts the group's ids again
    assert {b: len(p) for b, p in group.packed.items()} == {
        b: 8 * len(h) for b, h in group.ids.items()}
    back = _through_changelog(group)
    assert {b: list(h) for b, h in back.ids.items()} == group.ids
    assert sum(len(h) for h in back.ids.values()) == 120

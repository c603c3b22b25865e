"""Record-time alignment of a topic's partitions (``streams.alignment``): the pure rules."""

from __future__ import annotations

from typing import Any

from cityops.streams.alignment import PartitionAligner, PartitionView

T = "raw.footfall"
P0, P1, P2 = (T, 0), (T, 1), (T, 2)


def behind(*tps: tuple[str, int], caught_up: tuple[tuple[str, int], ...] = (),
           elsewhere: tuple[tuple[str, int], ...] = ()) -> dict:
    views = {tp: PartitionView(T, lagging=True, held_elsewhere=tp in elsewhere) for tp in tps}
    views.update({tp: PartitionView(T, lagging=False) for tp in caught_up})
    return views


def test_a_partition_past_the_drift_is_refused_and_paused_until_the_floor_catches_up() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 1_200)
    views = behind(P0, P1)
    floors = al.floors(views, now_s=0.0)
    assert floors[T] == (P0, 1_050)
    assert al.admits(P1, T, 1_201, floors) is False
    assert al.admits(P0, T, 1_010, floors) is True
    pause, resume = al.plan(views, floors, holding=set())
    assert pause == {P1} and resume == set()
    al.delivered(P0, 1_180)  # the floor caught up to within the drift
    floors = al.floors(views, now_s=1.0)
    pause, resume = al.plan(views, floors, holding=set())
    assert pause == set() and resume == {P1}


def test_the_floor_partition_always_moves_but_never_past_the_next_oldest_plus_drift() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 1_100)
    floors = al.floors(behind(P0, P1), now_s=0.0)
    # past its bound (1,050), the floor's record is admitted while within P1 + drift
    assert al.admits(P0, T, 1_120, floors) is True
    al.delivered(P0, 1_120)
    assert floors[T] == (P1, 1_150)  # P1 (1,100) is now the oldest
    assert al.admits(P0, T, 1_151, floors) is False  # would run ahead of P1 by > drift
    assert al.admits(P1, T, 1_140, floors) is True


def test_a_partition_with_nothing_delivered_yet_holds_the_others_back() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 5_000)
    views = behind(P0, P1)  # P1 behind, nothing known of it
    floors = al.floors(views, now_s=0.0)
    assert floors[T][0] == P1
    assert al.admits(P0, T, 5_001, floors) is False
    assert al.admits(P1, T, 4_000, floors) is True  # the unknown one goes first
    pause, _ = al.plan(views, floors, holding=set())
    assert pause == {P0}


def test_a_held_partition_stands_at_its_first_held_record() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 900)
    al.heads[P1] = 2_000  # P1 delivered up to 900 and holds a record of 2,000
    floors = al.floors(behind(P0, P1), now_s=0.0)
    assert floors[T] == (P0, 1_050)


def test_caught_up_partitions_hold_nothing_back_so_a_live_stream_is_never_paused() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 90_000)
    views = behind(caught_up=(P0, P1))
    floors = al.floors(views, now_s=0.0)
    assert floors == {}
    assert al.admits(P1, T, 100_000, floors) is True
    assert al.plan(views, floors, holding=set()) == (set(), set())


def test_partitions_paused_by_the_consumer_are_neither_floor_nor_resumed() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 5_000)
    al.delivered(P2, 5_010)
    views = behind(P0, P1, P2, elsewhere=(P0,))  # P0 paused by Faust (a rebalance)
    floors = al.floors(views, now_s=0.0)
    assert floors[T] == (P1, 5_050)
    pause, resume = al.plan(views, floors, holding={P0})
    assert P0 not in pause and P0 not in resume and P0 not in al.paused


def test_only_partitions_this_aligner_paused_are_resumed_and_revoked_ones_forgotten() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 2_000)
    views = behind(P0, P1)
    pause, _ = al.plan(views, al.floors(views, 0.0), holding=set())
    assert pause == {P1}
    gone = behind(P0)  # P1 revoked
    pause, resume = al.plan(gone, al.floors(gone, 1.0), holding=set())
    assert resume == set() and al.paused == set()


def test_a_stalled_floor_releases_the_others_only_while_they_wait_for_it() -> None:
    al = PartitionAligner(drift_ms=50, stall_s=10.0)
    al.delivered(P0, 1_000)
    al.delivered(P1, 2_000)
    views = behind(P0, P1)
    # nothing paused yet: the stall clock does not run (the floor may be waiting its turn)
    assert al.floors(views, 0.0)[T][0] == P0
    assert al.floors(views, 30.0)[T][0] == P0
    al.plan(views, al.floors(views, 30.0), holding=set())  # P1 paused from now on
    assert al.floors(views, 35.0)[T][0] == P0
    assert T not in al.floors(views, 41.0)  # 11 s without a record of the floor: released
    assert al.stalled == {T}
    assert T not in al.floors(views, 41.5)  # released until the floor moves
    al.delivered(P0, 1_001)  # it moves again: aligned again
    assert al.floors(views, 42.0)[T][0] == P0
    assert al.stalled == set()


def _floor_queued_from_30_s() -> tuple[PartitionAligner, dict[Any, PartitionView]]:
    """P0 the floor with its fetched records queued in the client, P1 paused for it from
    30 s on (the stall clock runs from then)."""
    al = PartitionAligner(drift_ms=50, stall_s=10.0, queued_stall_s=60.0)
    al.delivered(P0, 1_000)
    al.delivered(P1, 2_000)
    queued: dict[Any, PartitionView] = {P0: PartitionView(T, lagging=True, queued=True),
                                        P1: PartitionView(T, lagging=True)}
    al.plan(queued, al.floors(queued, 30.0), holding=set())
    assert al.paused == {P1}
    return al, queued


def test_a_floor_whose_records_wait_their_turn_in_the_client_is_not_stalled_so_soon() -> None:
    al, queued = _floor_queued_from_30_s()
    # fetched and waiting behind other partitions' buffers: its turn comes, no release
    assert al.floors(queued, 41.0)[T][0] == P0
    assert al.floors(queued, 89.0)[T][0] == P0
    assert al.stalled == set()
    assert T not in al.floors(queued, 91.0)  # a minute with its records there: a fault
    assert al.stalled == {T}
    assert al.stalled_floor(T) == (P0, 1, 30.0, 60.0)  # what its warning says


def test_a_floor_with_nothing_fetched_is_stalled_after_stall_s_even_if_it_was_queued() -> None:
    al, queued = _floor_queued_from_30_s()
    assert al.floors(queued, 35.0)[T][0] == P0
    drained = behind(P0, P1)  # its buffer gone and no new fetch: the clock since 30 s counts
    assert T not in al.floors(drained, 41.0)
    assert al.stalled == {T}
    assert al.stalled_floor(T) == (P0, 1, 30.0, 10.0)


def test_records_without_a_timestamp_are_never_held() -> None:
    al = PartitionAligner(drift_ms=50)
    al.delivered(P0, 1_000)
    al.delivered(P1, 3_000)
    floors = al.floors(behind(P0, P1), 0.0)
    assert al.admits(P1, T, -1, floors) is True


def test_a_partition_whose_last_record_is_seconds_old_is_live_and_one_older_is_not() -> None:
    al = PartitionAligner(drift_ms=50, live_ms=5_000)
    now_ms = 1_000_000
    assert al.live(P0, now_ms) is False  # nothing delivered yet: not live
    al.delivered(P0, now_ms - 4_999)
    al.delivered(P1, now_ms - 5_000)
    assert al.live(P0, now_ms) is True
    assert al.live(P1, now_ms) is False
    al.delivered(P2, -1)  # a record without a timestamp says nothing about the partition
    assert al.live(P2, now_ms) is False

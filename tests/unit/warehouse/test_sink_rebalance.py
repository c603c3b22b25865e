"""What a sink gives back when a rebalance revokes partitions, and when it reads it again."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import TopicPartition

from cityops.warehouse.sink_rebalance import RebalanceWatch, Rewind

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


@dataclass
class Msg:
    offset: int


def test_each_revocation_is_taken_once_and_an_empty_one_is_none() -> None:
    watch = RebalanceWatch()
    watch.on_partitions_revoked(set())  # the first join revokes nothing
    watch.on_partitions_assigned({A0})
    assert not watch.take_revocation()
    watch.on_partitions_revoked({A0})
    assert watch.take_revocation()
    assert not watch.take_revocation()


def test_the_group_is_settled_only_by_an_assignment_after_the_last_revocation() -> None:
    watch = RebalanceWatch()
    watch.on_partitions_assigned({A0, A1})
    assert watch.settled
    watch.on_partitions_revoked({A0, A1})
    assert not watch.settled  # the join is still under way
    watch.on_partitions_assigned(set())  # settled with nothing for this sink
    assert watch.settled
    watch.on_partitions_lost({A0})  # an eviction is a revocation
    assert watch.take_revocation() and not watch.settled


def test_a_partition_is_read_again_from_the_first_offset_given_back() -> None:
    rewind = Rewind()
    rewind.give_back_batch({("a", 0): [40, 59], ("a", 1): [7, 7]}, records=21)
    rewind.give_back_batch({("b", 0): [3, 9]}, records=7)
    rewind.give_back_polled({A0: [Msg(60), Msg(61)], A1: [], B0: [Msg(2)]})
    assert rewind.offsets == {A0: 40, A1: 7, B0: 2}
    assert rewind.records == 31


def test_only_the_partitions_still_owned_are_moved_back() -> None:
    rewind = Rewind()
    rewind.give_back_batch({("a", 0): [40, 59], ("a", 1): [7, 9]}, records=23)
    # a/0 is read by its new owner from the last commit
    assert rewind.targets({A1, B0}) == {A1: 7}

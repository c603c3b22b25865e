"""A partition with no committed offset is rewound after a rebalance (``streams.seeks``):
aiokafka's ``seek_to_committed`` leaves it where its fetcher was, past records Faust dropped."""

from __future__ import annotations

from cityops.streams.seeks import without_position


def test_partitions_without_a_committed_offset_above_zero_are_the_ones_to_rewind() -> None:
    committed = {("raw", 0): 120, ("raw", 1): None, ("raw", 2): 0, ("raw", 3): 1}
    assert without_position(committed) == [("raw", 1), ("raw", 2)]


"""Fetched partitions served in turn (``streams.fair_fetch``): the order logic alone."""

from __future__ import annotations

from collections import OrderedDict

from cityops.streams.fair_fetch import serve_in_turn


def test_served_partitions_go_behind_the_others_in_the_order_served() -> None:
    buffered = OrderedDict((tp, f"records of {tp}") for tp in ("a", "b", "c", "d"))
    serve_in_turn(buffered, ["b", "a"])
    assert list(buffered) == ["c", "d", "b", "a"]
    assert buffered["a"] == "records of a"


def test_a_served_partition_whose_buffer_is_gone_stays_gone() -> None:
    buffered = OrderedDict((tp, tp) for tp in ("a", "b"))
    serve_in_turn(buffered, ["x", "a"])  # "x" was used up: aiokafka dropped its buffer
    assert list(buffered) == ["b", "a"]

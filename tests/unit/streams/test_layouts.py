"""One layout at a time; after a switch, each group starts where any layout's group stopped.

``streams.layouts`` names the topics each kind of worker reads, finds a layout running
beside this one on the same topics, and picks, for a group, the partitions where another
layout's group committed further. (On a real broker, with the groups' members and offsets:
``tests/integration/streams/test_layout_switch.py``.)
"""

from __future__ import annotations

from pathlib import Path

from kafka.structs import TopicPartition as TP

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.layouts import (
    layout_groups,
    offsets_to_carry,
    running_beside,
    topics_read,
)
from cityops.streams.worker import StreamsWorker


def test_the_topics_read_are_the_ones_each_kind_of_worker_subscribes(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    for stages in ("all", "validation", "aggregation"):
        s = settings.model_copy(update={"data_dir": tmp_path / stages, "worker_stages": stages})
        worker = StreamsWorker(s, registry)
        subscribed = {t for agent in worker.app.agents.values() for t in agent.channel.topics}
        assert topics_read(settings, stages) == subscribed, stages
    assert topics_read(settings, "all") == (
        topics_read(settings, "validation") | topics_read(settings, "aggregation"))
    assert not topics_read(settings, "validation") & topics_read(settings, "aggregation")


def test_every_layouts_group_is_named() -> None:
    s = Settings(topic_prefix="city", worker_app_id="w")
    assert layout_groups(s) == {"city.w": "all", "city.w.validation": "validation",
                                "city.w.aggregation": "aggregation"}


def test_a_group_takes_the_furthest_offset_another_group_committed() -> None:
    raw0, raw1, clean0, other = TP("raw", 0), TP("raw", 1), TP("clean", 0), TP("x", 0)
    own = {raw0: 50, raw1: 900}
    others = [{raw0: 120, raw1: 800, clean0: 70, other: 5}, {raw0: 300}]
    # raw/0: 300 (the furthest); raw/1: its own 900 stays; clean and x: not read
    assert offsets_to_carry(own, others, {"raw"}) == {raw0: 300}
    assert offsets_to_carry({}, others, {"raw", "clean"}) == {raw0: 300, raw1: 800,
                                                               clean0: 70}
    assert offsets_to_carry(own, [], {"raw"}) == {}
    assert offsets_to_carry({raw0: 300}, others, {"raw"}) == {raw1: 800}


def test_a_layout_running_on_the_same_topics_is_found() -> None:
    s = Settings(topic_prefix="city", worker_app_id="w")
    every, validation, aggregation = "city.w", "city.w.validation", "city.w.aggregation"

    def beside(stages: str, members: dict[str, int]) -> list[str]:
        return running_beside(s.model_copy(update={"worker_stages": stages}), members)

    running = {every: 2, validation: 1, aggregation: 3}
    assert beside("all", running) == [aggregation, validation]
    assert beside("validation", running) == [every]  # not the aggregation: other topics
    assert beside("aggregation", {aggregation: 1, validation: 1}) == []
    assert beside("all", {every: 3}) == []  # its own group: workers of its kind
    idle = {every: 0, validation: 0, aggregation: 0, "other": 4}
    assert beside("all", idle) == beside("validation", idle) == []

"""Switching layouts: each group starts where any layout's group committed furthest.

``streams.layout_offsets`` names the topics each kind of worker reads and picks, for a
group, the partitions where another layout's group committed further. (On a real broker,
with the group's members and state: ``tests/integration/streams/test_layout_switch.py``.)
"""

from __future__ import annotations

from pathlib import Path

from kafka.structs import TopicPartition as TP

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.layout_offsets import layout_groups, offsets_to_carry, topics_read
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

"""One list of topics in core: settings, the worker's declarations and the sink derive from it."""

from __future__ import annotations

from cityops.core import topics
from cityops.core.deadletter import DeadLetter
from cityops.core.settings import load_settings
from cityops.streams.records import DERIVED_RECORDS
from cityops.warehouse.sink import sink_topics


def test_every_topic_in_flow_order() -> None:
    assert topics.ALL == (
        "raw.footfall", "raw.parking", "raw.air", "raw.incidents",
        "clean.footfall", "clean.parking", "clean.air", "clean.incidents",
        "agg.footfall", "agg.parking", "agg.air", "agg.incidents", "alerts", "dlq", "late")
    assert load_settings(topic_prefix="yz").all_topics == [f"yz.{t}" for t in topics.ALL]


def test_the_sink_stores_everything_but_raw_and_every_record_has_a_listed_topic() -> None:
    settings = load_settings()
    assert sink_topics(settings) == [settings.topic(t) for t in topics.ALL
                                     if not t.startswith("raw.")]
    assert {cls.topic for cls in DERIVED_RECORDS} <= set(topics.STORED)
    assert DeadLetter.topic == topics.DLQ


def test_clean_feed_of_a_suffix() -> None:
    assert topics.clean_feed("clean.air") == "air"
    assert topics.clean_feed("agg.air") is None
    assert topics.clean_feed("clean.weather") is None

"""Where a simulator that stopped left off: the newest event time in the raw topics.

A second ``cityops run`` carries on from there. The warehouse alone can lag behind (events
produced, not yet validated or stored when the run stopped): starting after the warehouse's
newest would re-send those events under the same ids, and the streams would rightly call them
duplicates. So the run takes the newest of both.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from cityops.core.settings import FEEDS, Settings

#: last messages read per partition (a late-fault record may be the very last one)
TAIL = 50


def newest_raw_event_time(settings: Settings, timeout_ms: int = 5000) -> datetime | None:
    """Newest ``event_time`` among the last messages of every raw topic partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers.split(","),
                             group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=timeout_ms)
    newest: datetime | None = None
    try:
        parts = [TopicPartition(settings.raw_topic(f), p) for f in FEEDS
                 for p in sorted(consumer.partitions_for_topic(settings.raw_topic(f)) or ())]
        if not parts:
            return None
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        begins = consumer.beginning_offsets(parts)
        todo = {tp: ends[tp] for tp in parts if ends[tp] > begins[tp]}
        for tp in todo:
            consumer.seek(tp, max(begins[tp], ends[tp] - TAIL))
        for msg in consumer:
            tp = TopicPartition(msg.topic, msg.partition)
            try:
                when = datetime.fromisoformat(orjson.loads(msg.value)["event_time"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                when = None  # malformed records are the streams' business, not ours
            if when is not None and when.tzinfo is not None and (newest is None or
                                                                 when > newest):
                newest = when
            if msg.offset + 1 >= todo.get(tp, 0):
                todo.pop(tp, None)
            if not todo:
                break
    finally:
        consumer.close()
    return newest

"""kafka-python consumers with the C record reader (``streams.kafka_fetch``) on the real broker.

Records as the pipeline writes them (aiokafka batches from the workers, kafka-python
producers' uncompressed, gzip and lz4 batches, a topic stamped with the broker's log-append
time) are read by a plain kafka-python consumer and by one with the patch: the same records,
field for field. A consumer group polling a few records at a time with the patch commits
positions that lose and repeat nothing, across consumers taking over each other's work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.streams import kafka_fetch

PARTITIONS = 3
HEADERS = [("origin", b"raw.footfall:0:1"), ("enrich", b'{"district": "yuzhong"}')]


@pytest.fixture
def restore_patch() -> Iterator[None]:
    was = kafka_fetch.installed()
    yield
    kafka_fetch.apply(was)


def _create(bootstrap: str, name: str, **config: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=config)])
    finally:
        admin.close()


def _records(n: int) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i in range(n):
        key = None if i % 17 == 5 else f"zone-{i % 7}".encode()
        value = None if i % 23 == 0 and key is not None else (
            f'{{"i": {i}, "pad": "' + "x" * (i % 400) + '"}').encode()
        out.append((key, value, HEADERS if i % 3 else []))
    return out


def _produce_kafka_python(bootstrap: str, topic: str, compression: str | None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             compression_type=compression)
    for key, value, headers in _records(700):
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def _produce_aiokafka(bootstrap: str, topic: str) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            sent = [await producer.send(topic, key=k, value=v, headers=h)
                    for k, v, h in _records(700)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(run())


def _read_all(bootstrap: str, topic: str, patched: bool) -> list[Any]:
    kafka_fetch.apply(patched)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


@pytest.mark.parametrize("writer", ["aiokafka", "kafka-python", "kafka-python gzip",
                                    "kafka-python lz4", "log append time"])
def test_patched_consumers_read_what_kafka_python_reads(kafka_broker: str,
                                                       restore_patch: None,
                                                       writer: str) -> None:
    topic = f"test.fetch.{uuid.uuid4().hex[:10]}"
    if writer == "log append time":
        _create(kafka_broker, topic, **{"message.timestamp.type": "LogAppendTime"})
        _produce_kafka_python(kafka_broker, topic, None)
    else:
        _create(kafka_broker, topic)
        if writer == "aiokafka":
            _produce_aiokafka(kafka_broker, topic)
        else:
            _produce_kafka_python(kafka_broker, topic, writer.partition(" ")[2] or None)
    own = _read_all(kafka_broker, topic, patched=False)
    fast = _read_all(kafka_broker, topic, patched=True)
    assert len(own) == 700
    assert fast == own
    assert {(r.key, r.value, tuple(r.headers)) for r in fast} == {
        (k, v, tuple(h)) for k, v, h in _records(700)}


def test_a_group_polling_a_few_records_at_a_time_loses_and_repeats_nothing(
        kafka_broker: str, restore_patch: None) -> None:
    """Small polls stop in the middle of batches; each consumer commits what it took and
    the next one, in the same group, goes on from there."""
    topic = f"test.fetch.{uuid.uuid4().hex[:10]}"
    _create(kafka_broker, topic)
    _produce_aiokafka(kafka_broker, topic)
    kafka_fetch.apply(True)
    group = f"test.fetch.{uuid.uuid4().hex[:10]}"
    seen: list[tuple[int, int]] = []
    for _consumer_round in range(200):
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_poll_records=13)
        try:
            took: list[Any] = []
            for _ in range(20):  # until the group has assigned and this consumer took some
                for records in consumer.poll(timeout_ms=500).values():
                    took.extend(records)
                if took:
                    break
            for _ in range(2):  # a few more small polls, then commit and leave
                for records in consumer.poll(timeout_ms=200).values():
                    took.extend(records)
            consumer.commit()
            seen.extend((r.partition, r.offset) for r in took)
        finally:
            consumer.close()
        if not took:
            break
    assert len(seen) == 700
    assert len(set(seen)) == 700

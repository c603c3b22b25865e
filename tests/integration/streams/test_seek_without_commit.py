"""On a real broker: a consumer group member that fetched records of a partition with no
committed offset is not moved back by ``seek_to_committed`` (aiokafka seeks only to offsets
above 0), so records Faust dropped at a rebalance would be skipped; ``streams.seeks`` finds
those partitions and seeks them to their beginning."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.streams.seeks import without_position


def test_a_partition_without_a_commit_keeps_its_position_unless_rewound(
        kafka_broker: str, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        admin.create_topics([NewTopic(topic_name, 1, 1)])
    finally:
        admin.close()
    prod = KafkaProducer(bootstrap_servers=kafka_broker)
    for i in range(30):
        prod.send(topic_name, value=b"%d" % i, partition=0)
    prod.flush()
    prod.close()

    async def run() -> tuple[int, int, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker, group_id=f"g-{topic_name}",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        tp = TopicPartition(topic_name, 0)
        await consumer.start()
        try:
            consumer.assign([tp])
            got = 0
            while got < 30:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                got += sum(len(v) for v in batch.values())
            committed = await consumer.seek_to_committed()  # what Faust does after a rebalance
            left_at = await consumer.position(tp)
            rewind = without_position(committed)
            await consumer.seek_to_beginning(*rewind)
            return left_at, await consumer.position(tp), rewind
        finally:
            await consumer.stop()

    left_at, after, rewind = asyncio.run(run())
    assert left_at == 30  # not moved back: the 30 records would be skipped
    assert rewind == [TopicPartition(topic_name, 0)]
    assert after == 0

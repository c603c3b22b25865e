"""On a real broker: with ``max_records``, aiokafka serves the partitions it buffered from
the first on, so a partition behind a large buffer gets nothing until that buffer is used
up; the worker's ``_fetch_records`` (``streams.fair_fetch.in_turn``) serves them in turn;
and the alignment's view of a partition whose fetched records wait their turn
(``streams.dispatch._queued``) reads that buffer as it is."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.streams.dispatch import _queued
from cityops.streams.fair_fetch import in_turn

PER_PARTITION = 3000
MAX_RECORDS = 200


async def plain_fetch(thread: Any, consumer: Any, active_partitions: Any,
                      timeout: float | None = None, max_records: int | None = None) -> Any:
    """What Faust's ``AIOKafkaConsumerThread._fetch_records`` does, less its flow check."""
    return await consumer._fetcher.fetched_records(active_partitions, timeout=timeout,
                                                   max_records=max_records)


def _served_in_first_calls(bootstrap: str, topic: str, fetch: Any, calls: int) -> list[set[int]]:
    """The partitions each of the first ``calls`` fetches returned records of, once both
    partitions' records are buffered."""

    async def run() -> list[set[int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        tps = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        await consumer.start()
        try:
            consumer.assign(list(tps))
            fetcher = consumer._fetcher
            deadline = time.monotonic() + 30
            while not tps <= set(fetcher._records):  # both partitions' fetches arrived
                assert time.monotonic() < deadline, "the broker sent no records"
                await asyncio.sleep(0.05)
            served = []
            for _ in range(calls):
                records = await fetch(None, consumer, tps, timeout=0, max_records=MAX_RECORDS)
                served.append({tp.partition for tp in records})
            return served
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _topic_with_records(bootstrap: str, topic: str, partitions: int) -> None:
    """``topic`` with ``partitions`` partitions of ``PER_PARTITION`` 200-byte records each."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    for i in range(PER_PARTITION):
        for partition in range(partitions):
            prod.send(topic, value=b"x" * 200 + b"%d" % i, partition=partition)
    prod.flush()
    prod.close()


def test_a_partition_behind_a_large_buffer_is_served_in_turn(
        kafka_broker: str, topic_name: str) -> None:
    _topic_with_records(kafka_broker, topic_name, 2)

    calls = 4
    plain = _served_in_first_calls(kafka_broker, topic_name, plain_fetch, calls)
    # aiokafka alone: one partition's whole buffer first (3,000 records, 200 a call)
    assert all(len(s) == 1 for s in plain) and len(set().union(*plain)) == 1, plain
    fair = _served_in_first_calls(kafka_broker, topic_name, in_turn(plain_fetch), calls)
    assert set().union(*fair[:2]) == {0, 1}, fair  # the other partition's turn comes next
    assert fair[0] != fair[1] and fair[1] != fair[2], fair  # and they alternate


def test_a_partition_is_queued_while_its_fetched_records_wait_and_not_once_handed_over(
        kafka_broker: str, topic_name: str) -> None:
    _topic_with_records(kafka_broker, topic_name, 1)

    async def run() -> tuple[bool, bool, bool, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker, enable_auto_commit=False,
                                    auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        tp = TopicPartition(topic_name, 0)
        await consumer.start()
        try:
            before = _queued(consumer, tp)  # not assigned yet: nothing fetched
            consumer.assign([tp])
            deadline = time.monotonic() + 30
            while tp not in consumer._fetcher._records:
                assert time.monotonic() < deadline, "the broker sent no records"
                await asyncio.sleep(0.05)
            taken = len((await consumer.getmany(tp, max_records=MAX_RECORDS))[tp])
            waiting = _queued(consumer, tp)  # the rest of the buffer waits its turn
            while taken < PER_PARTITION:
                assert time.monotonic() < deadline, f"only {taken} records handed over"
                taken += sum(len(r) for r in (await consumer.getmany(
                    tp, timeout_ms=200, max_records=1000)).values())
            # handed over to its end: nothing of it waits (the next fetch finds no records)
            return before, waiting, _queued(consumer, tp), taken
        finally:
            await consumer.stop()

    before, waiting, after, taken = asyncio.run(run())
    assert before is False
    assert waiting is True
    assert after is False and taken == PER_PARTITION

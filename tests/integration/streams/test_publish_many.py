"""``publish_many`` against the real broker: a step's records as producer batches.

The stages hand a step's records to the producer as one batch per topic and partition. The
aggregation state of a key lives on the clean partition the key maps to, so a batch must
land every record exactly where the producer's own ``send`` would have put it, keep each
partition's order, carry the headers, and cut batches that would grow past the producer's
batch size into several.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.streams.app import publish_many
from cityops.streams.producer_metadata import send_now

PARTITIONS = 6


def _create_topics(bootstrap: str, *names: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        admin.close()


async def _read_all(bootstrap: str, topic: str, n: int) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        out: list = []
        while len(out) < n:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 60)
            for records in batches.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def test_batches_land_where_send_would_keep_order_and_headers(kafka_broker: str,
                                                               topic_name: str) -> None:
    batched, single = f"{topic_name}.batched", f"{topic_name}.single"
    _create_topics(kafka_broker, batched, single)
    keys = [f"zone_{k:02d}".encode() for k in range(11)] + [b"cp_jiefangbei", b"\xe8\xa7\xa3"]
    items = [(batched, keys[i % len(keys)], f'{{"i": {i}}}'.encode(),
              [("cityops-origin", f"{i % 6}:{i}".encode())]) for i in range(600)]

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*await publish_many(producer, items))
            # the same records one by one through the producer's own partitioner
            await asyncio.gather(*[await producer.send(single, v, key=k, headers=h)
                                   for _t, k, v, h in items])
        finally:
            await producer.stop()

    asyncio.run(run())
    got = asyncio.run(_read_all(kafka_broker, batched, len(items)))
    ref = asyncio.run(_read_all(kafka_broker, single, len(items)))
    assert len(got) == len(items)
    where = {r.value: r.partition for r in ref}
    assert {r.value: r.partition for r in got} == where
    by_partition: dict[int, list[int]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        i = int(r.value.decode().split(": ")[1].rstrip("}"))
        by_partition.setdefault(r.partition, []).append(i)
        assert r.key == keys[i % len(keys)]
        assert list(r.headers) == [("cityops-origin", f"{i % 6}:{i}".encode())]
    assert len(by_partition) > 1
    for order in by_partition.values():
        assert order == sorted(order)  # a partition's records in the order they were given


def test_a_step_larger_than_one_batch_is_cut_into_several(kafka_broker: str,
                                                          topic_name: str) -> None:
    _create_topics(kafka_broker, topic_name)
    value = b"x" * 4000
    items = [(topic_name, b"zone_01", value + str(i).encode(), None) for i in range(200)]

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all",
                                    max_batch_size=64 * 1024)
        await producer.start()
        try:
            futures = await publish_many(producer, items)
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    batches = asyncio.run(run())
    assert batches >= 200 * 4000 // (64 * 1024)  # 800 kB in batches of at most 64 kB
    got = asyncio.run(_read_all(kafka_broker, topic_name, len(items)))
    assert [r.value for r in sorted(got, key=lambda r: r.offset)] == [v for _t, _k, v, _h in items]
    assert {r.partition for r in got} == {got[0].partition}


def test_nothing_to_send_sends_nothing() -> None:
    assert asyncio.run(publish_many(None, [])) == []


def test_a_batch_queued_when_another_topic_is_first_tracked_is_still_delivered(
        kafka_broker: str, topic_name: str) -> None:
    """A producer first reads the metadata of every topic; once it tracks a topic of its
    own (a state log the worker creates after it started), each refresh asks only for the
    topics it tracks, and a topic it never tracked leaves its metadata. A batch queued for
    such a topic then had no leader: the sender waited for metadata that never named the
    topic, and the step waiting on the batch hung until the step timeout (a bench drain,
    2026-12-03: three batches of ``agg.air`` queued for 351 s, the topic gone from the
    producer's metadata, no request in flight). ``publish_many`` now hands its batches over
    closed, sent at once rather than after the linger, so the tracking is also asserted
    directly; a record queued by ``send`` lingers a second here across the refresh."""
    outputs, created_later = f"{topic_name}.outputs", f"{topic_name}.created-later"
    _create_topics(kafka_broker, outputs)

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all",
                                    linger_ms=1000, request_timeout_ms=60_000)
        await producer.start()
        try:
            # the metadata of every topic, this one untracked (a new topic may take a
            # moment to show in it)
            for _ in range(100):
                if producer.client.cluster.partitions_for_topic(outputs):
                    break
                await producer.client.force_metadata_update()
                await asyncio.sleep(0.1)
            assert outputs not in producer.client._topics
            futures = await publish_many(producer, [(outputs, b"zone", b"{}", None)])
            assert outputs in producer.client._topics  # tracked by publish_many
            futures.append(await producer.send(outputs, b"{}", key=b"zone"))  # lingers
            _create_topics(kafka_broker, created_later)
            await producer.client._wait_on_metadata(created_later)  # as a first `send`
            assert producer.client.cluster.partitions_for_topic(outputs)
            await asyncio.wait_for(asyncio.gather(*futures), 15)
        finally:
            await producer.stop()

    asyncio.run(run())


def test_a_steps_records_leave_without_waiting_for_the_linger(kafka_broker: str,
                                                              topic_name: str) -> None:
    """A step awaits its records as soon as it has queued them, so the producer's linger
    only delayed the acknowledgements it waits for: in a drained backlog the aggregation
    worker waited about 10 ms of each step, twice (outputs, then state). ``publish_many``
    hands its batches over closed, and ``send_now`` (the state logs' ``drain``) closes one
    topic's open batches; another topic's batch keeps lingering. The linger here is two
    minutes: a record held back by it is not acknowledged within the seconds waited."""
    outputs, state, other = (f"{topic_name}.outputs", f"{topic_name}.state",
                             f"{topic_name}.other")
    _create_topics(kafka_broker, outputs, state, other)

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all",
                                    linger_ms=120_000, request_timeout_ms=60_000)
        await producer.start()
        try:
            items = [(outputs, f"zone_{i % 7}".encode(), b"{}", None) for i in range(50)]
            await asyncio.wait_for(asyncio.gather(*await publish_many(producer, items)), 20)
            held = await producer.send(other, b"{}", key=b"zone", partition=0)
            queued = [await producer.send(state, b"{}", key=b"zone", partition=p)
                      for p in range(PARTITIONS)]
            send_now(producer, state)
            await asyncio.wait_for(asyncio.gather(*queued), 20)
            await asyncio.sleep(3)
            assert not held.done()  # its topic's batch still lingers
            send_now(producer, other)
            await asyncio.wait_for(held, 20)
        finally:
            await producer.stop()

    asyncio.run(run())
    assert len(asyncio.run(_read_all(kafka_broker, state, PARTITIONS))) == PARTITIONS
    assert len(asyncio.run(_read_all(kafka_broker, outputs, 50))) == 50

"""Producers against the real broker: consumed back equal, ordered per key, stable partitions."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from kafka.partitioner.default import murmur2

from cityops.ingest.exceptions import BrokerUnavailableError, ProducerClosedError
from cityops.ingest.producer import FeedProducer, producer_config
from cityops.ingest.simulate import Simulation

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def test_config_is_durable_and_tuned(settings):
    cfg = producer_config(settings)
    assert cfg["acks"] == "all" and cfg["enable_idempotence"] is True
    assert cfg["compression_type"] == "lz4"
    assert cfg["linger_ms"] > 0 and cfg["batch_size"] >= 65536
    assert cfg["max_in_flight_requests_per_connection"] <= 5


def test_simulated_feeds_round_trip(isolated_settings, kafka_broker, registry, vctx, consume):
    settings = isolated_settings
    start = datetime(2025, 10, 2, 19, tzinfo=TZ)
    sim = Simulation(registry, seed=21, start=start, end=start + timedelta(hours=3))
    topic = settings.topic("roundtrip")
    sent_order: dict[bytes, list[str]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    futures = []
    with FeedProducer(settings, client_id="it-roundtrip") as producer:
        for rec in sim.wire():
            futures.append((rec.key, producer.send(topic, rec.value, rec.key)))
            sent_order[rec.key].append(rec.event_id)
        producer.flush()
        for key, fut in futures:
            partitions[key].add(fut.get(timeout=30).partition)
        expected_partition = {k: producer.partition_for(topic, k) for k in sent_order}
    stats = producer.stats
    total = sum(len(v) for v in sent_order.values())
    assert total > 10_000
    assert stats.sent == stats.acked == total and stats.failed == 0
    records = consume(kafka_broker, topic, total)
    assert len(records) == total  # counts equal: nothing lost, nothing duplicated
    got_order: dict[bytes, list[str]] = defaultdict(list)
    got_partition: dict[bytes, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        ev = r.value.split(b'"event_id":"')[1].split(b'"')[0].decode()
        got_order[r.key].append(ev)
        got_partition[r.key].add(r.partition)
    assert got_order == sent_order  # per-key order kept
    for key, parts in got_partition.items():
        assert parts == partitions[key] == {expected_partition[key]}  # one key, one partition
        assert expected_partition[key] == (murmur2(key) & 0x7FFFFFFF) % 3
    assert len({p for parts in got_partition.values() for p in parts}) == 3
    # and every record consumed back is a valid event of its feed
    from cityops.core.contract import Rejection, decode_event

    feeds = {"fc": "footfall", "cp": "parking", "aq": "air"}
    for r in records[:3000]:
        feed = feeds.get(r.key.decode()[:2], "incidents")
        assert not isinstance(decode_event(feed, r.value, vctx), Rejection)


def test_rate_limited_producer_still_delivers_everything(isolated_settings, kafka_broker,
                                                         consume):
    topic = isolated_settings.topic("rate")
    with FeedProducer(isolated_settings, rate=2000, max_in_flight=64) as producer:
        for i in range(1500):
            producer.send(topic, b'{"n":%d}' % i, b"k%d" % (i % 7))
    assert producer.stats.acked == 1500 and producer.stats.failed == 0
    assert producer.stats.in_flight == 0
    assert len(consume(kafka_broker, topic, 1500)) == 1500


def test_errors_are_converted(isolated_settings, settings):
    producer = FeedProducer(isolated_settings)
    producer.close()
    with pytest.raises(ProducerClosedError):
        producer.send("t", b"x", b"k")
    from cityops.core.settings import load_settings

    nowhere = load_settings(data_dir=settings.data_dir, kafka_port=settings.kafka_port,
                            ingest_max_block_ms=2000, kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(BrokerUnavailableError, match="no Kafka broker"):
        FeedProducer(nowhere)

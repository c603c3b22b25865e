"""Stage state is read back from the real broker as the worker's restore needs it.

``streams.state_log.read_partitions`` replaces Faust's table recovery: the latest value per
key, tombstones applied, each partition on its own, and a tail read that carries on from an
earlier read (a read started at assignment, finished at first use). Restored through
``PartitionDedup``, dedup deltas decide replays and duplicates as before.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cityops.core.settings import Settings
from cityops.streams.partition_dedup import Delta, PartitionDedup, Verdict
from cityops.streams.state_log import read_partitions


def _topic(bootstrap: str, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 2, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()


def _send(prod: KafkaProducer, topic: str, partition: int, key: str,
          delta: Delta | None) -> None:
    value = None if delta is None else json.dumps(delta.to_state()).encode()
    prod.send(topic, key=json.dumps(key).encode(), value=value, partition=partition)


def live_deltas(live: dict[bytes, Delta]) -> list[Delta]:
    return list(live.values())


def _read(settings: Settings, topic: str, partitions: list[int], since: Any = None) -> Any:
    return read_partitions(settings, topic, partitions, since, decode=Delta.from_state)


def _steps(state: PartitionDedup, ids: list[tuple[int, str, float]]) -> Delta:
    for offset, event_id, ts in ids:
        state.judge(offset, event_id, ts)
    delta = state.take_delta()
    assert delta is not None
    return delta


def test_read_gives_the_latest_delta_per_key_without_tombstoned_ones_per_partition(
        kafka_broker: str, topic_name: str, settings: Settings) -> None:
    _topic(kafka_broker, topic_name)
    writer = PartitionDedup(3600, rollup_steps=1)  # one key per step
    first = _steps(writer, [(0, "a", 1000.0), (1, "b", 1001.0)])
    second = _steps(writer, [(2, "c", 1002.0), (3, "a", 1000.0)])  # offset 3: a duplicate
    other = _steps(PartitionDedup(3600, rollup_steps=1), [(0, "z", 1000.0)])
    prod = KafkaProducer(bootstrap_servers=kafka_broker)
    _send(prod, topic_name, 0, first.key(0), first)
    _send(prod, topic_name, 0, "0/999", first)
    _send(prod, topic_name, 0, "0/999", None)  # a delta deleted behind the horizon
    _send(prod, topic_name, 0, second.key(0), second)
    _send(prod, topic_name, 1, other.key(1), other)
    prod.flush()

    found = _read(settings, topic_name, [0, 1])
    assert set(found) == {0, 1}
    live0, end0 = found[0]
    assert end0 == 4 and found[1][1] == 1
    deltas = live_deltas(live0)
    assert sorted(d.lo for d in deltas) == [0, 2]

    restored = PartitionDedup(3600)
    restored.restore(deltas)
    assert restored.hw == 3
    assert restored.judge(1, "b", 1001.0) is Verdict.REPLAYED
    assert restored.judge(3, "a", 1000.0) is Verdict.DUPLICATE  # judged so before
    assert restored.judge(4, "c", 1002.0) is Verdict.DUPLICATE  # a new copy of c
    assert restored.judge(5, "d", 1003.0) is Verdict.NEW
    assert [d.lo for d in live_deltas(found[1][0])] == [0]


def test_a_tail_read_adds_what_was_written_after_an_earlier_read(
        kafka_broker: str, topic_name: str, settings: Settings) -> None:
    _topic(kafka_broker, topic_name)
    writer = PartitionDedup(3600, rollup_steps=1)  # one key per step
    first = _steps(writer, [(0, "a", 1000.0)])
    prod = KafkaProducer(bootstrap_servers=kafka_broker)
    _send(prod, topic_name, 0, first.key(0), first)
    prod.flush()
    early = _read(settings, topic_name, [0])
    assert early[0][1] == 1

    second = _steps(writer, [(1, "b", 1001.0)])
    _send(prod, topic_name, 0, second.key(0), second)
    _send(prod, topic_name, 0, first.key(0), None)  # the first delta deleted meanwhile
    prod.flush()
    tail = _read(settings, topic_name, [0], since=early)
    assert tail[0][1] == 3
    assert [d.lo for d in live_deltas(tail[0][0])] == [1]
    assert [d.lo for d in live_deltas(early[0][0])] == [0]  # the earlier read is kept
    whole = _read(settings, topic_name, [0])[0][0]
    assert {k: d.lo for k, d in whole.items()} == {k: d.lo for k, d in tail[0][0].items()}


def test_a_busy_log_created_before_its_settings_gets_them_and_keeps_compaction(
        kafka_broker: str, topic_name: str, settings: Settings) -> None:
    from kafka.admin import ConfigResource

    from cityops.streams.state_log import BUSY_LOG_CONFIG, set_topic_config

    _topic(kafka_broker, topic_name)  # compacted, with the broker's default segments
    set_topic_config(settings, topic_name, BUSY_LOG_CONFIG)
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        described = admin.describe_configs([ConfigResource("TOPIC", topic_name)])
    finally:
        admin.close()
    found = {k: v["value"] for k, v in described["topic"][topic_name].items()}
    assert found == {**BUSY_LOG_CONFIG, "cleanup.policy": "compact"}


def test_a_read_that_receives_nothing_while_records_are_due_fails_as_stalled(
        tmp_path_factory: pytest.TempPathFactory, topic_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker answers the end offsets, then stops answering (SIGSTOP) while most of the
    log is still unread: the read raises ``StateReadStalled`` once nothing has arrived for
    ``CITYOPS_WORKER_RECOVERY_STALL_S``, instead of waiting for ever (the worker then exits
    for a supervised restart). Its own broker, so the suite's keeps answering."""
    from ports import free_port_pair

    from cityops.core.settings import load_settings
    from cityops.deploy.kafka_local import LocalKafka
    from cityops.streams import state_log
    from cityops.streams.state_log import StateReadStalled

    own = load_settings(data_dir=tmp_path_factory.mktemp("stall-broker"),
                        kafka_port=free_port_pair(), kafka_bootstrap_servers="")
    broker = LocalKafka(own)
    broker.up()
    pid = broker.pid()
    assert pid is not None
    client = load_settings(kafka_bootstrap_servers=broker.bootstrap,
                           worker_recovery_stall_s=10)
    stopped_at: list[float] = []
    try:
        _topic(broker.bootstrap, topic_name)
        prod = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        filler = "x" * 1000
        for i in range(3000):  # about 3 MB, far more than one fetch below
            prod.send(topic_name, key=f"k{i}".encode(),
                      value=json.dumps({"i": i, "pad": filler}).encode(), partition=0)
        prod.flush()
        prod.close()
        # small fetches, so the read needs many of them after the broker stops
        monkeypatch.setattr(state_log, "FETCH_PARTITION_BYTES", 32 << 10)
        monkeypatch.setattr(state_log, "FETCH_BYTES", 64 << 10)

        def decode(value: dict[str, Any]) -> dict[str, Any]:
            if not stopped_at:  # the first record read: from now on the broker is silent
                os.kill(pid, signal.SIGSTOP)
                stopped_at.append(time.monotonic())
            return value

        stats: dict[str, int] = {}
        with ThreadPoolExecutor(1) as pool:  # a read that never gives up fails the test
            read = pool.submit(read_partitions, client, topic_name, [0], decode=decode,
                               stats=stats)
            try:
                with pytest.raises(StateReadStalled, match=r"nothing received for \d+ s"):
                    read.result(timeout=90)
            finally:
                os.kill(pid, signal.SIGCONT)  # a read still running then ends
        waited = time.monotonic() - stopped_at[0]
        assert 10 <= waited < 60, waited
        assert 0 < stats["read"] < 3000  # it had started, and records were still due
    finally:
        os.kill(pid, signal.SIGCONT)
        broker.down()


def test_a_snapshot_larger_than_the_broker_limit_is_written_and_read_back(
        kafka_broker: str, topic_name: str, settings: Settings) -> None:
    """A zone's snapshot grew past the broker's 2 MB message limit while a 1 M-event backlog
    was drained, and the worker failed the same step after every restart. State logs take
    records up to ``STATE_RECORD_MAX_BYTES``; a read returns such a record whole, though it
    is larger than the read's per-partition fetch size."""
    from cityops.streams.state_log import (
        FETCH_PARTITION_BYTES,
        LOG_CONFIG,
        STATE_RECORD_MAX_BYTES,
        set_topic_config,
    )

    _topic(kafka_broker, topic_name)
    set_topic_config(settings, topic_name, LOG_CONFIG)
    windows = {f"{1_700_000_000 + 60 * k}.0": {"acc": {"entries": k, "exits": k // 2},
                                                "revision": 0, "fired": True}
               for k in range(240_000)}
    body = json.dumps({"p": 1, "state": {"windows": windows}}).encode()
    assert FETCH_PARTITION_BYTES < len(body) < STATE_RECORD_MAX_BYTES
    assert len(body) > settings.kafka_max_batch_bytes  # refused by the broker's own limit
    prod = KafkaProducer(bootstrap_servers=kafka_broker, max_request_size=STATE_RECORD_MAX_BYTES)
    try:
        prod.send(topic_name, key=json.dumps("zone_a").encode(), value=body, partition=1).get(60)
        prod.send(topic_name, key=json.dumps("zone_b").encode(), value=b'{"p": 1}',
                  partition=1).get(60)
    finally:
        prod.close()
    found = read_partitions(settings, topic_name, [1])
    live, end = found[1]
    assert end == 2
    assert live[json.dumps("zone_a").encode()]["state"]["windows"] == windows
    assert live[json.dumps("zone_b").encode()] == {"p": 1}


def test_the_worker_producer_takes_state_records_up_to_the_state_log_limit(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    from cityops.streams.app import make_app
    from cityops.streams.state_log import STATE_RECORD_MAX_BYTES

    data = tmp_path_factory.mktemp("producer-limit")
    app = make_app(settings.model_copy(update={"data_dir": data}))
    assert app.conf.producer_max_request_size == max(settings.kafka_max_batch_bytes,
                                                     STATE_RECORD_MAX_BYTES)


def test_a_chain_of_changes_is_read_back_as_the_state_it_was_written_from(
        kafka_broker: str, topic_name: str, settings: Settings, registry: Any) -> None:
    """A footfall run whose zones each miss a counter (their windows stay open, as with
    several workers catching up) written as the aggregation step writes it, full snapshots
    and changes, with a restart halfway (a new chain); read from the broker as a restore reads
    it, every zone's state is the state the aggregator holds."""
    from datetime import UTC, datetime

    import orjson
    from simulated_clean import clean_events

    from cityops.streams.feed_aggregators import aggregator_for
    from cityops.streams.state_chain import fold, next_record
    from cityops.streams.state_log import StateLog, by_key

    step, emitted = 40, datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    _topic(kafka_broker, topic_name)
    prod = KafkaProducer(bootstrap_servers=kafka_broker, linger_ms=5)
    events = clean_events(registry, "footfall", hours=3, skip_source=True)
    half = (len(events) // 2 // step) * step
    agg = aggregator_for("footfall", settings, registry)
    snaps: dict[str, Any] = {}
    chains: dict[str, Any] = {}
    kinds = {"full": 0, "change": 0}

    def run(part: list[Any], hw0: int) -> int:
        hw = hw0
        for i in range(0, len(part), step):
            units = set()
            for ev in part[i:i + step]:
                unit = agg.unit(ev.unit(), 0)
                agg.add(unit, ev, emitted)
                units.add(unit)
            hw += 1
            for unit in sorted(units):
                snap = {"p": 0, "hw": {"0": hw}, "state": agg.to_state(unit)}
                key, body, chains[unit] = next_record(unit, chains.get(unit), snaps.get(unit),
                                                      snap, StateLog.encode)
                kinds["full" if key == unit else "change"] += 1
                prod.send(topic_name, key=orjson.dumps(key), value=body, partition=0)
                snaps[unit] = snap
        prod.flush()
        return hw

    hw = run(events[:half], 0)
    found = read_partitions(settings, topic_name, [0])
    snaps, chains = fold(by_key(found[0][0]))  # a restart: the next write starts a chain
    assert {u: s["state"] for u, s in snaps.items()} == {
        u: orjson.loads(StateLog.encode(agg.to_state(u))) for u in snaps}
    hw = run(events[half:], hw)
    restored, _ = fold(by_key(read_partitions(settings, topic_name, [0])[0][0]))
    assert set(restored) == set(snaps) and len(restored) >= 5
    for unit, snap in restored.items():
        assert snap["state"] == orjson.loads(StateLog.encode(agg.to_state(unit))), unit
        assert snap["hw"] == snaps[unit]["hw"]
    assert kinds["change"] > 3 * kinds["full"]

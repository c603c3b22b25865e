"""kafka-python's record unpacking through aiokafka's C reader (``streams.kafka_fetch``) yields
exactly what kafka-python's own yields, batch shape by batch shape, and fails the same way.

The inputs are record batches as a broker returns them in a fetch (the bytes of the Kafka
record format, built by the clients' own batch builders), unpacked by kafka-python's
``Fetcher.PartitionRecords`` with and without the patch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import crc32c
import kafka
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.structs import TopicPartition

from cityops.streams import kafka_fetch

TP = TopicPartition("clean.footfall", 2)
#: attributes bits of a v2 batch (Kafka's DefaultRecordBatch)
LOG_APPEND_TIME, CONTROL = 0x08, 0x20
RECORDS: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
    (b"jfb-01", b'{"entries": 3}', [("origin", b"raw.footfall:1:7"), ("enrich", b"{}")]),
    (None, b"no key", []),
    (b"tombstone", None, []),
    (b"", b"", [("empty", b""), ("none", None)]),
    (b"zone", b"x" * 100_000, [("\u533a\u57df", b"\xe8\xa7\xa3")]),  # 区域: a UTF-8 key
]


def _v2(base_offset: int, records: list[Any] = RECORDS, compression: int = 0,
        attributes: int = 0, max_ts: int | None = None) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=10_000_000)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_764_000_000_000 + i, key=key, value=value,
                       headers=headers)
    data = builder.build()
    struct.pack_into(">q", data, 0, base_offset)
    if attributes or max_ts is not None:  # bits the builder does not set: then a new CRC
        struct.pack_into(">h", data, 21, struct.unpack_from(">h", data, 21)[0] | attributes)
        if max_ts is not None:
            struct.pack_into(">q", data, 35, max_ts)
        struct.pack_into(">I", data, 17, crc32c.crc32c(bytes(data[21:])))
    return bytes(data)


def _v1(base_offset: int) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=10_000_000)
    for i, (key, value, _headers) in enumerate(RECORDS[:4]):
        builder.append(i, timestamp=1_764_000_000_000 + i, key=key, value=value)
    data = builder.build()
    struct.pack_into(">q", data, 0, base_offset + len(RECORDS[:4]) - 1)  # a v1 wrapper's
    return bytes(data)                                       # offset is its last record's


@pytest.fixture
def patched() -> Iterator[None]:
    was = kafka_fetch.installed()
    assert kafka_fetch.install()
    yield
    if not was:
        kafka_fetch.uninstall()


def _unpack(buffer: bytes, fetch_offset: int = 0, takes: list[int | None] | None = None,
            **kwargs: Any) -> list[Any]:
    """Each take's records and the partition's next fetch offset after it."""
    deser = kwargs.pop("deserializer", None)
    part = Fetcher.PartitionRecords(fetch_offset, TP, MemoryRecords(buffer), deser, deser,
                                    check_crcs=True, **kwargs)
    out: list[Any] = []
    for n in takes or [None]:
        taken = part.take(n) if part else []  # a drained partition's fetch is done
        out.append((taken, part.next_fetch_offset, part.records_read))
    return out


def _both(buffer: bytes, **kwargs: Any) -> tuple[list[Any], list[Any]]:
    kafka_fetch.uninstall()
    own = _unpack(buffer, **kwargs)
    assert kafka_fetch.install()
    return own, _unpack(buffer, **kwargs)


SHAPES = {
    "plain": _v2(0),
    "several batches, a compaction gap": _v2(0) + _v2(10) + _v2(15),
    "gzip": _v2(0, compression=1),
    "lz4": _v2(0, compression=3),
    "log append time": _v2(0, attributes=LOG_APPEND_TIME, max_ts=1_764_000_999_000),
    "a control batch between": _v2(0) + _v2(5, RECORDS[:1], attributes=CONTROL) + _v2(6),
    "a legacy v1 batch between": _v2(0) + _v1(5) + _v2(9),
    "an empty fetch": b"",
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_c_reader_yields_what_kafka_python_yields(patched: None, shape: str) -> None:
    own, fast = _both(SHAPES[shape])
    assert fast == own
    assert shape == "an empty fetch" or own[0][0]  # records were compared, not two nothings


@pytest.mark.parametrize("codec", [2, 4])
def test_snappy_and_zstd_batches_are_read_where_kafka_python_lacks_the_codec(
        patched: None, codec: int) -> None:
    """kafka-python needs python-snappy or zstandard for these (not installed: the clients
    here produce uncompressed or lz4/gzip batches) and raises; aiokafka's reader has them
    (cramjam), so the patched unpacking reads such a batch: the records of the same batch
    uncompressed."""
    compressed = _v2(0, compression=codec)
    kafka_fetch.uninstall()
    with pytest.raises(UnsupportedCodecError):
        _unpack(compressed)
    assert kafka_fetch.install()
    assert _unpack(compressed) == _unpack(_v2(0))


@pytest.mark.parametrize("shape", ["plain", "several batches, a compaction gap", "lz4",
                                   "a legacy v1 batch between"])
def test_partial_takes_move_the_next_fetch_offset_record_by_record(patched: None,
                                                                  shape: str) -> None:
    """``poll`` stops mid-batch at ``max_poll_records``: the position after it is
    ``next_fetch_offset``, so it must stand after the last record taken, not the batch."""
    own, fast = _both(SHAPES[shape], takes=[2, 1, 3, None])
    assert fast == own
    assert own[0][1] == own[0][0][-1].offset + 1


def test_a_fetch_from_mid_batch_skips_the_records_before_it(patched: None) -> None:
    own, fast = _both(_v2(0) + _v2(10, compression=3), fetch_offset=12)
    assert fast == own
    assert [r.offset for r in own[0][0]] == [12, 13, 14]


def test_deserializers_and_read_committed_are_left_to_kafka_python(patched: None) -> None:
    class Upper:
        def deserialize(self, topic: str, headers: Any, data: bytes | None) -> bytes | None:
            return None if data is None else data.upper()

    upper = Upper()
    buffer = _v2(0) + _v2(5)
    assert _both(buffer, deserializer=upper)[1] == _both(buffer, deserializer=upper)[0]
    committed = _both(buffer, isolation_level=IsolationLevel.READ_COMMITTED)
    assert committed[1] == committed[0]
    assert _unpack(buffer, deserializer=upper)[0][0][0].value == RECORDS[0][1].upper()


def test_a_corrupt_batch_fails_as_kafka_python_fails(patched: None) -> None:
    corrupt = bytearray(_v2(0))
    corrupt[-3] ^= 0xFF  # a flipped byte inside the last record
    messages = []
    for install in (False, True):
        if install:
            assert kafka_fetch.install()
        else:
            kafka_fetch.uninstall()
        with pytest.raises(CorruptRecordError) as err:
            _unpack(bytes(corrupt))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "failed crc check" in messages[0]


def test_the_pinned_kafka_python_is_the_one_patched() -> None:
    """An upgrade of kafka-python leaves its own unpacking in place (correct, slower) until
    ``kafka_fetch`` has been checked against the new version and ``PINNED`` moved."""
    assert kafka.__version__ == kafka_fetch.PINNED
    was = kafka_fetch.installed()
    try:
        kafka_fetch.uninstall()  # an earlier test's sink may have installed it
        own = Fetcher.PartitionRecords._unpack_records
        assert own.__module__ == "kafka.consumer.fetcher"
        assert kafka_fetch.apply(True)
        assert Fetcher.PartitionRecords._unpack_records is not own
        assert not kafka_fetch.apply(False)
        assert Fetcher.PartitionRecords._unpack_records is own
    finally:
        kafka_fetch.apply(was)

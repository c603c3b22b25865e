"""kafka-python's fetched record batches read by aiokafka's C reader.

kafka-python parses each record of a fetched batch in Python (``DefaultRecordBatch.__next__``:
varints, key, value and headers one slice at a time): about 7.5 µs of CPU per record
consumed, against 1.6 µs for librdkafka, which made the record parsing the largest single
cost of the warehouse sink after the warehouse itself. aiokafka (already installed under
Faust) reads the same v2 batches in C. ``install`` swaps kafka-python's
``Fetcher.PartitionRecords._unpack_records`` for a generator that reads each plain v2 batch
with that reader and yields the same ``ConsumerRecord``s: about 3 µs per record consumed.
Everything else is left to kafka-python's own code, unchanged:

* group membership, fetching, positions, commits and rebalances (the sink's guarantees rest
  on kafka-python rebalancing only inside ``poll``);
* a consumer with deserializers or ``read_committed`` (the whole partition's records);
* a legacy (v0/v1) batch (its own records, read as kafka-python reads them).

The batch CRC is checked by kafka-python's ``validate_crc`` as before, and
``next_fetch_offset`` moves record by record as before (``poll`` can stop in the middle of a
batch at ``max_poll_records``). Control batches are skipped as before. One difference:
``bytes_read`` (fetch metrics only) counts each batch's bytes rather than each record's.

The patched method is the pinned kafka-python's (``PINNED``); another version is left
unpatched (correct, only slower), and ``tests/unit/streams/test_kafka_fetch.py`` fails until
the generator has been checked against it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: the kafka-python version whose ``_unpack_records`` this module mirrors
PINNED = "3.0.12"

_original: Any = None
_refused = False  # a missing client or another version: said once, not at every consumer
_lock = threading.Lock()  # the sink's thread and state-log reads may install at once


def _header_size(headers: list[tuple[str, bytes | None]]) -> int:
    """``serialized_header_size`` as kafka-python counts it (-1 without headers): a plain
    loop, an ASCII key's length without encoding it (a generator and an encoding per key
    took 0.6 µs of every record the sink read, against 0.26)."""
    if not headers:
        return -1
    n = 0
    for k, v in headers:
        n += len(k) if k.isascii() else len(k.encode("utf-8"))
        if v is not None:
            n += len(v)
    return n


def installed() -> bool:
    """Whether kafka-python's consumers in this process read batches with the C reader."""
    return _original is not None


def apply(enabled: bool) -> bool:
    """``install`` or ``uninstall`` as ``CITYOPS_KAFKA_FAST_RECORDS`` says; returns
    ``installed()``. Called where the process makes its kafka-python consumers."""
    if enabled:
        return install()
    uninstall()
    return False


def install() -> bool:
    """Patch kafka-python's record unpacking (once per process); returns ``installed()``."""
    with _lock:
        return _install()


def _install() -> bool:
    global _original, _refused
    if _original is not None:
        return True
    if _refused:
        return False
    _refused = True
    try:
        import kafka
        from aiokafka.record.default_records import DefaultRecordBatch as CBatch
        from kafka.consumer import fetcher
    except ImportError as exc:  # either client missing: kafka-python's own path stays
        log.warning("kafka_fetch.not_installed", reason=str(exc))
        return False
    if kafka.__version__ != PINNED:
        log.warning("kafka_fetch.not_installed", reason="kafka-python version",
                    found=kafka.__version__, pinned=PINNED)
        return False
    if CBatch.__module__.endswith("default_records") and "_crecords" not in CBatch.__module__:
        log.info("kafka_fetch.not_installed", reason="aiokafka without its C extension")
        return False
    records_cls = fetcher.Fetcher.PartitionRecords
    original = records_cls._unpack_records
    errors = fetcher.Errors
    consumer_record = fetcher.ConsumerRecord
    read_committed = fetcher.IsolationLevel.READ_COMMITTED

    def _unpack_records(self: Any, tp: Any, records: Any, key_deserializer: Any,
                        value_deserializer: Any) -> Iterator[Any]:
        if (key_deserializer is not None or value_deserializer is not None
                or self.isolation_level == read_committed):
            yield from original(self, tp, records, key_deserializer, value_deserializer)
            return
        topic, partition = tp.topic, tp.partition
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise errors.CorruptRecordError(
                        f"Record batch for partition {self.topic_partition} at offset "
                        f"{batch.base_offset} failed crc check")
                if batch.magic != 2:
                    yield from _legacy(self, tp, batch)
                    batch = records.next_batch()
                    continue
                self.leader_epoch = epoch = batch.leader_epoch
                if batch.is_control_batch:
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                self.bytes_read += len(batch._buffer)
                for record in CBatch(batch._buffer):
                    key, value, headers = record.key, record.value, record.headers
                    offset = record.offset
                    self.records_read += 1
                    self.next_fetch_offset = offset + 1
                    yield consumer_record(
                        topic, partition, epoch, offset, record.timestamp,
                        record.timestamp_type, key, value, headers, None,
                        -1 if key is None else len(key), -1 if value is None else len(value),
                        _header_size(headers))
                batch = records.next_batch()
            else:
                if last_batch is not None and last_batch.magic == 2:
                    self.next_fetch_offset = last_batch.next_offset
                self.drain()
        except StopIteration:  # as kafka-python: never let it end the generator silently
            log.exception("kafka_fetch.stop_iteration")
            raise RuntimeError("StopIteration raised unpacking messageset") from None

    def _legacy(self: Any, tp: Any, batch: Any) -> Iterator[Any]:
        """A v0/v1 batch's records, as kafka-python's own loop yields them."""
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise errors.CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {record.offset} "
                    "failed crc check")
            key, value, headers = record.key, record.value, record.headers
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            yield consumer_record(
                tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp,
                record.timestamp_type, key, value, headers, record.checksum,
                -1 if key is None else len(key), -1 if value is None else len(value),
                _header_size(headers))

    records_cls._unpack_records = _unpack_records
    _original, _refused = original, False
    return True


def uninstall() -> None:
    """Put kafka-python's own record unpacking back (tests compare the two)."""
    global _original
    with _lock:
        if _original is None:
            return
        from kafka.consumer import fetcher

        fetcher.Fetcher.PartitionRecords._unpack_records = _original
        _original = None

"""Dead letters keep distinct warehouse ids: Kafka coordinates, else place plus content."""

from __future__ import annotations

from datetime import UTC, datetime

from cityops.core.deadletter import DeadLetter

AT = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def _dl(raw: bytes, **kw: object) -> DeadLetter:
    base = {"feed": "parking", "reason": "bad_json", "detail": "x", "received_at": AT,
            "source_topic": "intake:10.0.0.5", "stage": "intake"}
    return DeadLetter.from_bytes(raw, **{**base, **kw})


def test_kafka_records_are_identified_by_their_coordinates() -> None:
    a = _dl(b"{", source_topic="cityops.raw.parking", source_partition=2, source_offset=41,
            stage="stream")
    assert a.record_id() == "cityops.raw.parking:2:41"


def test_intake_requests_reusing_an_index_do_not_collide() -> None:
    first = _dl(b'{"event_id": 1', source_offset=0)
    second = _dl(b'{"event_id": 2', source_offset=0)
    assert first.record_id() != second.record_id()


def test_same_line_number_in_two_replayed_files_does_not_collide() -> None:
    a = _dl(b"not json a", source_topic="replay:data.csv", source_offset=7, stage="replay")
    b = _dl(b"not json b", source_topic="replay:data.csv", source_offset=7, stage="replay")
    assert a.record_id() != b.record_id()
    assert a.record_id() == _dl(b"not json a", source_topic="replay:data.csv",
                                source_offset=7, stage="replay").record_id()

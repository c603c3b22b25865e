"""Compact id memory of dedup: 64-bit hashes in event-time buckets, packed when cold."""

from __future__ import annotations

import pytest

from cityops.streams.seen_ids import SeenIds, id_hash


def test_id_hash_is_stable_and_64_bit() -> None:
    h = id_hash("fc_jfb_square_01:1796111910")
    assert h == id_hash("fc_jfb_square_01:1796111910") and 0 <= h < 2**64
    assert h != id_hash("fc_jfb_square_01:1796111911")


def test_membership_survives_freezing_and_late_inserts() -> None:
    ids = SeenIds(bucket_s=60)
    hashes = [id_hash(f"e{i}") for i in range(1000)]
    for i, h in enumerate(hashes):
        assert ids.add(h, 10.0 * i)
    assert not ids.add(hashes[5], 50.0)  # the same event again
    assert ids.freeze_before(9_000) > 0
    assert all((h, 10.0 * i) in ids for i, h in enumerate(hashes))
    assert (id_hash("other"), 50.0) not in ids
    late = id_hash("late")
    assert ids.add(late, 30.0)  # an insert into a packed bucket
    assert (late, 30.0) in ids and not ids.add(late, 30.0)
    ids.freeze_before(9_000)
    assert (late, 30.0) in ids and len(ids) == 1001


def test_a_bucket_worked_out_once_answers_as_the_event_time_does() -> None:
    """``holds`` / ``put`` with the bucket the caller worked out once (dedup's ``judge``)
    agree with ``in`` / ``add`` by event time, in hot and in packed buckets."""
    ids, twin = SeenIds(bucket_s=60), SeenIds(bucket_s=60)
    for i in range(500):
        h, ts = id_hash(f"e{i % 400}"), 7.0 * (i % 400)
        b = ids.bucket(ts)
        assert ids.holds(h, b) == ((h, ts) in twin) == (i >= 400)
        if not ids.holds(h, b):
            ids.put(h, b)
        twin.add(h, ts)
        if i == 200:
            ids.freeze_before(1_000)
            twin.freeze_before(1_000)
    assert len(ids) == len(twin) == 400 and ids.buckets() == twin.buckets()
    assert all(ids.packed(b) == twin.packed(b) for b in ids.buckets())


def test_buckets_behind_the_horizon_are_dropped_whole() -> None:
    ids = SeenIds(bucket_s=60)
    for i in range(600):
        ids.add(id_hash(f"e{i}"), float(i))
    assert ids.forget_before(300) == 300  # buckets 0–4 end at or before 300 s
    assert (id_hash("e299"), 299.0) not in ids and (id_hash("e300"), 300.0) in ids
    assert ids.buckets() == [5, 6, 7, 8, 9]


def test_packed_buckets_restore_exactly() -> None:
    ids = SeenIds(bucket_s=60)
    for i in range(200):
        ids.add(id_hash(f"e{i}"), float(i))
    ids.freeze_before(60)
    other = SeenIds(bucket_s=60)
    for b in ids.buckets():
        data = ids.packed(b)
        assert len(data) % 8 == 0
        other.load(b, data)
    assert all((id_hash(f"e{i}"), float(i)) in other for i in range(200))
    assert len(other) == 200


def test_bad_bucket() -> None:
    with pytest.raises(ValueError):
        SeenIds(bucket_s=0)

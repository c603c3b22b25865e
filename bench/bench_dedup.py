"""Dedup memory and restart recovery: bytes per remembered id, and changelog replay time.

Measures, for ``--ids`` ids shaped like the feeds' (``<sensor>:<epoch>``):

* bytes per id (``tracemalloc``) of a dict of id → event time (the store before compact
  ids, one changelog record per event) and of ``streams.seen_ids.SeenIds`` (64-bit hashes
  by event-time bucket) hot (sets) and packed;
* replay rates on the real broker (``make bench`` starts it): a topic of one small record
  per id (the old changelog) and a topic of the worker's own per-step deltas
  (``streams.partition_dedup.Delta``, JSON with base64 hashes, 500 ids each), each read back
  from the start by one consumer, the deltas restored through ``PartitionDedup.restore``;
  restore time after 24 h at 20,000 events/s is extrapolated from those measured rates.

Run: ``make bench`` or ``.venv/bin/python bench/bench_dedup.py [--ids 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityops.core.settings import load_settings  # noqa: E402
from cityops.streams.partition_dedup import Delta, PartitionDedup  # noqa: E402
from cityops.streams.seen_ids import SeenIds, id_hash  # noqa: E402

RATE = 20_000  # events/s of the drain goal
STEP_IDS = 500  # ids per delta: one validation step of CITYOPS_WORKER_BATCH_MAX events
DAY_S = 86_400
SENSORS = 500


def _ids(n: int) -> list[tuple[str, float]]:
    t0 = 1_796_000_000.0
    return [(f"fc_sensor_{i % SENSORS:03d}:{int(t0 + i / RATE * 1000)}-{i}", t0 + i / RATE)
            for i in range(n)]


def _bytes_per_id(build: object, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = build()  # type: ignore[operator]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


def memory(n: int) -> dict[str, float]:
    ids = _ids(n)

    def today() -> object:
        d: dict[str, float] = {}
        for eid, ts in ids:
            d[eid] = ts
        return d

    def hot() -> object:
        s = SeenIds(60)
        for eid, ts in ids:
            s.add(id_hash(eid), ts)
        return s

    def packed() -> object:
        s = SeenIds(60)
        for eid, ts in ids:
            s.add(id_hash(eid), ts)
        s.freeze_before(ids[-1][1] + 120)
        return s

    t = time.perf_counter()
    s = SeenIds(60)
    for eid, ts in ids:
        s.add(id_hash(eid), ts)
    add_us = (time.perf_counter() - t) / n * 1e6
    # hashes are made outside the measured block for the hot/packed stores' own bytes
    return {"dict_str_float_bytes_per_id": round(_bytes_per_id(today, n), 1),
            "seen_ids_hot_bytes_per_id": round(_bytes_per_id(hot, n), 1),
            "seen_ids_packed_bytes_per_id": round(_bytes_per_id(packed, n), 1),
            "seen_ids_hash_and_add_us": round(add_us, 2)}


def replay(bootstrap: str, n_small: int, n_packed_ids: int) -> dict[str, float]:
    """Produce two topics, then time one consumer reading each from the start."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    prefix = f"bench-dedup-{uuid.uuid4().hex[:8]}"
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                         batch_size=1 << 20, max_request_size=2 << 20)
    small = f"{prefix}.perid"
    for eid, ts in _ids(n_small):
        prod.send(small, key=eid.encode(), value=repr(ts).encode())
    packed = f"{prefix}.packed"
    state = PartitionDedup(DAY_S)
    for off, (eid, ts) in enumerate(_ids(n_packed_ids)):
        state.judge(off, eid, ts)
        if off % STEP_IDS == STEP_IDS - 1:
            delta = state.take_delta()
            assert delta is not None
            prod.send(packed, key=delta.key(0).encode(),
                      value=json.dumps(delta.to_state()).encode())
    prod.flush(300)
    prod.close()

    def read(topic: str, restore: bool) -> tuple[float, int]:
        c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                          max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(parts)
        c.seek_to_beginning()
        ends = c.end_offsets(parts)
        deltas: list[Delta] = []
        n = 0
        t = time.perf_counter()
        while any(c.position(tp) < ends[tp] for tp in parts):
            for recs in c.poll(timeout_ms=500).values():
                for r in recs:
                    if restore:
                        deltas.append(Delta.from_state(json.loads(r.value)))
                    n += 1
        if restore:
            PartitionDedup(DAY_S).restore(deltas)
        dt = time.perf_counter() - t
        c.close()
        return dt, n

    small_s, n1 = read(small, restore=False)
    packed_s, n2 = read(packed, restore=True)
    return {"per_id_records": n1, "per_id_replay_s": round(small_s, 2),
            "per_id_records_per_s": round(n1 / small_s),
            "packed_ids": n_packed_ids, "packed_messages": n2,
            "packed_replay_s": round(packed_s, 3),
            "packed_ids_per_s": round(n_packed_ids / packed_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--replay-small", type=int, default=300_000)
    ap.add_argument("--replay-packed", type=int, default=10_000_000)
    args = ap.parse_args()
    mem = memory(args.ids)
    out: dict[str, object] = {"ids": args.ids, **mem}
    settings = load_settings()
    try:
        rep = replay(settings.bootstrap_servers, args.replay_small, args.replay_packed)
    except Exception as exc:  # no broker: memory figures only, said so
        print(f"replay skipped: {type(exc).__name__}: {exc}")
        rep = {}
    out.update(rep)
    day_ids = RATE * DAY_S
    lateness = settings.stream_allowed_lateness_s
    print(f"{'store':<34}{'bytes/id':>10}{'24 h at 20k/s':>16}")
    for name, key in (("dict of str → float (old store)", "dict_str_float_bytes_per_id"),
                      ("SeenIds, hot sets", "seen_ids_hot_bytes_per_id"),
                      ("SeenIds, packed uint64", "seen_ids_packed_bytes_per_id")):
        b = float(mem[key])
        print(f"{name:<34}{b:>10.1f}{b * day_ids / 1e9:>13.1f} GB")
    if rep:
        per_id = day_ids / float(rep["per_id_records_per_s"])
        print(f"replay, one record per id: {rep['per_id_records_per_s']:,} records/s measured "
              f"→ 24 h at 20k/s ({day_ids / 1e9:.2f} G ids) ≈ {per_id:,.0f} s (extrapolated)")
        for horizon in (lateness + 60, lateness + 3600, DAY_S):  # + one bucket / an hour
            ids = RATE * horizon
            print(f"replay, per-step deltas: {rep['packed_ids_per_s']:,} ids/s measured → "
                  f"horizon {horizon:,.0f} s ({ids / 1e6:,.0f} M ids) ≈ "
                  f"{ids / float(rep['packed_ids_per_s']):,.1f} s (extrapolated)")
    print("BENCH dedup " + json.dumps(out))


if __name__ == "__main__":
    main()

"""Bad-input barrage from a real external client: kcat (Debian's package) produces straight to
the raw topics, then the warehouse is compared with what was sent: every good event stored
once, every bad record dead-lettered with its reason, nothing else.

kcat is librdkafka, not our producer: it proves the worker copes with what any third-party
client can put on a topic (NULL values, empty and huge messages, garbage bytes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streams_harness import WorkerProc, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

COUNTER, ZONE = "fc_jfb_square_01", "jfb_square"
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def _good(i: int, **over: Any) -> dict[str, Any]:
    ev = {"event_id": f"ok{i}", "source": COUNTER, "zone_id": ZONE, "entries": i % 9,
          "exits": i % 7, "interval_s": 30,
          "event_time": (T0 + timedelta(seconds=30 * i)).isoformat()}
    ev.update(over)
    return ev


def _j(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


def barrage() -> list[tuple[str, bytes, str | None]]:
    """(name, bytes, expected dead-letter reason or None for a good event)."""
    nested = b"[" * 5000 + b"]" * 5000
    good = [(f"good{i}", _j(_good(i)), None) for i in range(40)]
    bad = [
        ("garbage", bytes(range(256)) * 4, "bad_encoding"),
        ("truncated", _j(_good(100))[:-9], "bad_json"),
        ("not_an_object", b"[1, 2, 3]", "not_an_object"),
        ("wrong_type", _j(_good(101, entries="12")), "wrong_type"),
        ("nan", _j(_good(102)).replace(b'"exits": 4', b'"exits": NaN'), "non_finite_number"),
        ("overflow", _j(_good(103)).replace(b'"exits": 5', b'"exits": 1e400'),
         "non_finite_number"),
        ("bigint", _j(_good(104)).replace(b'"exits": 6', b'"exits": 123456789012345678901234'),
         "bad_number"),
        ("huge", _j(_good(105, event_id="h" * 1_500_000)), "oversized"),
        ("deep", nested, "bad_json"),
        ("invalid_utf8", _j(_good(106)).replace(b'"ok106"', b'"ok\xff\xfe106"'),
         "bad_encoding"),
        ("far_future", _j(_good(107, event_time="2099-01-01T00:00:00+08:00")), "future_event"),
        # valid but 30 days old (within the raw tables' TTL): stored, and late for windows
        ("ancient", _j(_good(108, event_time=(T0 - timedelta(days=30)).isoformat())), None),
        ("unknown_counter", _j(_good(109, source="fc_nowhere_99")), "unknown_counter"),
        ("unknown_zone", _j(_good(110, zone_id="atlantis")), "unknown_zone"),
        ("duplicate_key", _j(_good(111))[:-1] + b', "entries": 99999}', "duplicate_key"),
        ("naive_time", _j(_good(112, event_time="2026-01-01T00:00:00")), "naive_timestamp"),
        ("negative", _j(_good(113, entries=-5)), "negative_count"),
        ("duplicate", _j(_good(3)), "duplicate"),
        ("duplicate_again", _j(_good(7)), "duplicate"),
    ]
    return good + bad


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail("kcat is not installed: `apt-get install kcat` (Debian package)")
    return path


def test_kcat_barrage_is_judged_exactly(make_worker: Any, kafka_broker: str, kcat: str,
                                        tmp_path: Path) -> None:
    worker: WorkerProc = make_worker()
    items = barrage()
    files = []
    for n, (name, payload, _) in enumerate(items):
        f = tmp_path / f"{n:03d}-{name}"
        f.write_bytes(payload)
        files.append(str(f))
    topic = worker.topic("raw.footfall")
    # one kcat run: each file is one message; -Z sends the empty one as a NULL value
    proc = subprocess.run([kcat, "-P", "-b", kafka_broker, "-t", topic, "-k", COUNTER,
                           "-z", "lz4", "-Z", "-X", "message.max.bytes=4000000", *files],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    # a NULL value and an empty one (kcat line mode: `key:` then nothing; -Z makes it NULL)
    for null in (True, False):
        subprocess.run([kcat, "-P", "-b", kafka_broker, "-t", topic, "-K:",
                        *(["-Z"] if null else [])], input=f"{COUNTER}:\n".encode(),
                       check=True, timeout=60)
    items = [*items, ("null", b"", "bad_json"), ("empty", b"", "bad_json")]
    # and a few into the other raw topics
    for feed in ("parking", "air", "incidents"):
        g = tmp_path / f"garbage-{feed}"
        g.write_bytes(b"\x00\x01garbage{" + feed.encode())  # UTF-8, but not JSON
        subprocess.run([kcat, "-P", "-b", kafka_broker, "-t", worker.topic(f"raw.{feed}"),
                        str(g)], check=True, timeout=60)

    want_dead = Counter(r for _, _, r in items if r is not None) + Counter(bad_json=3)
    want_good = sum(1 for _, _, r in items if r is None)

    def counts() -> tuple[int, dict[str, int]]:
        stored = worker.scalar("SELECT count() FROM footfall_observed FINAL")
        dead = dict(worker.sql("SELECT reason, count() FROM dead_letters FINAL "
                               "GROUP BY reason"))
        return stored, {k: int(v) for k, v in dead.items()}

    seen: list[Any] = []

    def settled() -> bool:
        seen[:] = [counts()]
        return seen[0] == (want_good, dict(want_dead))

    try:
        wait_until(settled, timeout=120, every=1.0, what="warehouse to hold the barrage")
    except AssertionError:
        raise AssertionError(f"want {(want_good, dict(want_dead))}, have {seen}") from None
    # each dead letter keeps its bytes and its offset: offsets are exactly the bad ones
    offsets = sorted(int(o) for (o,) in worker.sql(
        f"SELECT source_offset FROM dead_letters FINAL WHERE source_topic = '{topic}'"))
    assert offsets == [n for n, (_, _, r) in enumerate(items) if r is not None]
    # the ancient one is stored and counted late, never silently folded into a window
    assert worker.scalar("SELECT count() FROM late_events FINAL") == 1
    # the oversized one keeps its head, its length and its digest (it could not be produced
    # whole to the dead-letter topic)
    [[detail]] = worker.sql("SELECT detail FROM dead_letters FINAL WHERE reason = 'oversized'")
    assert "first 65536 of 1500" in detail and "sha256" in detail
    assert worker.health()["status"] == "ok"

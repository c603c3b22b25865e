"""Reading, mapping and judging replay files (no Kafka: ``read_records`` sends nothing)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from cityops.ingest.exceptions import ReplayError
from cityops.ingest.replay import RecordMapper, field_kinds, parse_assignments, read_records
from cityops.ingest.simulate import Simulation

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 10, 2, 20, tzinfo=TZ)


def _events(registry, feed: str, minutes: int = 10) -> list:
    return list(Simulation(registry, seed=4, start=START, end=START + timedelta(minutes=minutes),
                           feeds=(feed,)).events())


def _read(path: Path, feed: str, vctx, **kw) -> list:
    mapper = RecordMapper(feed, kw.pop("mapping", None), kw.pop("constants", None),
                          kw.pop("naive_tz", None), kw.pop("rebase_to", None))
    return list(read_records(path, feed, mapper, vctx, **kw))


def test_jsonl_good_and_bad_lines(tmp_path, registry, vctx):
    good = [e.to_json() for e in _events(registry, "parking")]
    lines = [*good[:5], b"", b"{not json", b"[1,2]", b'{"event_id":"x"}',
             good[5].replace(b'"occupied":', b'"occupied":-'), b"\xff\xfe" + good[6],
             *good[7:]]
    path = tmp_path / "parking.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\n")
    items = _read(path, "parking", vctx)
    ok = [i for i in items if i.rejection is None]
    reasons = Counter(i.rejection.reason for i in items if i.rejection)
    assert len(ok) == len(good) - 2
    assert reasons == {"bad_json": 1, "not_an_object": 1, "missing_field": 1,
                       "negative_count": 1, "bad_encoding": 1}
    assert ok[0].value == good[0]  # complete records are sent byte for byte
    assert ok[0].key == orjson.loads(good[0])["source"].encode()
    bad_lines = sorted(i.line for i in items if i.rejection)
    assert bad_lines == [7, 8, 9, 10, 11]  # the blank line 6 counts, but is skipped


def test_huge_line_is_rejected_without_reading_it_whole(tmp_path, registry, vctx):
    good = [e.to_json() for e in _events(registry, "air", 3)]
    huge = b'{"event_id":"' + b"x" * 3_000_000 + b'"}'
    path = tmp_path / "air.jsonl"
    path.write_bytes(b"\n".join([good[0], huge, *good[1:]]) + b"\n")
    items = _read(path, "air", vctx, max_bytes=100_000)
    assert [i.rejection.reason for i in items if i.rejection] == ["oversized"]
    assert items[1].line == 2 and items[1].raw == b""
    assert sum(1 for i in items if i.rejection is None) == len(good)


def test_csv_with_column_mapping_constants_and_types(tmp_path, registry, vctx):
    rows = [{"sensor": e.source, "ts": e.event_time.isoformat(), "in": e.entries,
             "out": e.exits, "secs": e.interval_s, "dens": e.density_ppm2 or ""}
            for e in _events(registry, "footfall", 5) if e.zone_id == "jfb_square"]
    path = tmp_path / "counts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    items = _read(path, "footfall", vctx, mapping={
        "source": "sensor", "event_time": "ts", "entries": "in", "exits": "out",
        "interval_s": "secs", "density_ppm2": "dens"}, constants={"zone_id": "jfb_square"})
    assert all(i.rejection is None for i in items), [i.rejection for i in items]
    first = orjson.loads(items[0].value)
    assert first["entries"] == rows[0]["in"] and isinstance(first["entries"], int)
    assert first["event_id"] == f"{rows[0]['sensor']}:{int(START.timestamp())}"  # derived


def test_csv_missing_required_columns_fails_early(tmp_path, vctx):
    path = tmp_path / "bad.csv"
    path.write_text("carpark_id,event_time\ncp_wfc,2025-10-02T20:00:00+08:00\n")
    with pytest.raises(ReplayError, match="capacity, occupied"):
        _read(path, "parking", vctx)


def test_csv_in_gbk_needs_the_encoding(tmp_path, registry, vctx):
    ev = _events(registry, "incidents", 24 * 60)[0]
    row = {"zone_id": ev.zone_id, "event_time": ev.event_time.isoformat(),
           "incident_id": ev.incident_id, "incident_type": ev.incident_type.value,
           "severity": ev.severity.value, "status": ev.status.value,
           "description": "解放碑广场有人摔倒"}
    path = tmp_path / "incidents.csv"
    pd.DataFrame([row]).to_csv(path, index=False, encoding="gbk")
    wrong = _read(path, "incidents", vctx)
    assert [i.rejection.reason for i in wrong] == ["bad_encoding"]
    right = _read(path, "incidents", vctx, encoding="gbk")
    assert right[0].rejection is None, right[0].rejection
    assert orjson.loads(right[0].value)["description"] == "解放碑广场有人摔倒"


def test_parquet_with_naive_times_and_rebase(tmp_path, registry, vctx):
    evs = _events(registry, "parking", 5)
    frame = pd.DataFrame([{"carpark_id": e.carpark_id, "event_time":
                           e.event_time.astimezone(TZ).replace(tzinfo=None),
                           "capacity": e.capacity, "occupied": e.occupied,
                           "lat": e.position.lat, "lon": e.position.lon} for e in evs])
    path = tmp_path / "parking.parquet"
    frame.to_parquet(path)
    naive = _read(path, "parking", vctx)
    assert {i.rejection.reason for i in naive} == {"naive_timestamp"}
    target = datetime(2026, 11, 1, 9, tzinfo=TZ)
    items = _read(path, "parking", vctx, naive_tz=TZ, rebase_to=target)
    assert all(i.rejection is None for i in items), items[0].rejection
    assert items[0].event_time == target
    assert items[-1].event_time - items[0].event_time == evs[-1].event_time - evs[0].event_time
    assert orjson.loads(items[0].value)["position"] == {"lat": evs[0].position.lat,
                                                        "lon": evs[0].position.lon}


def test_bad_arguments():
    with pytest.raises(ReplayError, match="does not have"):
        RecordMapper("parking", {"nonsense": "x"})
    with pytest.raises(ReplayError, match="unknown feed"):
        RecordMapper("weather")
    assert parse_assignments(["a=b,c=d", "e = f"], "--map") == {"a": "b", "c": "d", "e": "f"}
    with pytest.raises(ReplayError):
        parse_assignments(["oops"], "--map")


def test_unknown_format_and_missing_file(tmp_path, vctx):
    path = tmp_path / "data.xml"
    path.write_text("<x/>")
    with pytest.raises(ReplayError, match="format"):
        _read(path, "air", vctx)
    with pytest.raises(ReplayError, match="no such file"):
        _read(tmp_path / "none.jsonl", "air", vctx)


def test_csv_huge_field_and_ragged_rows_reject_only_that_row(tmp_path, vctx):
    header = "carpark_id,event_time,capacity,occupied\n"
    good = "cp_wfc,2025-10-02T20:00:00+08:00,650,100\n"
    huge = "cp_wfc,2025-10-02T20:00:30+08:00,650," + "9" * 300_000 + "\n"
    ragged = "cp_wfc,2025-10-02T20:01:00+08:00,650\n"
    path = tmp_path / "p.csv"
    path.write_text(header + good + huge + ragged + good.replace("20:00:00", "20:02:00"))
    items = _read(path, "parking", vctx, max_bytes=100_000)
    assert [i.rejection.reason if i.rejection else "ok" for i in items] == [
        "ok", "oversized", "bad_format", "ok"]


def test_field_types_come_from_the_model_fields() -> None:
    parking = field_kinds("parking")
    assert parking == {"schema_version": int, "capacity": int, "occupied": int, "free": int}
    air = field_kinds("air")
    assert air["pm25_ugm3"] is float and air["averaging_s"] is int
    assert "station_id" not in air and "event_time" not in air
    assert field_kinds("incidents") == {"schema_version": int}  # enums stay text

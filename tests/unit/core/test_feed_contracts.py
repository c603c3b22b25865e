"""Feed contracts: valid events pass, and each kind of bad input is refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cityops.core.contract import REASONS, Rejection, decode_event
from cityops.core.feeds import (
    AirQualityObserved,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
    ValidationContext,
)
from cityops.core.geo import gcj02_to_wgs84

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T = "2026-11-27T19:30:00+08:00"

GOOD = {
    "footfall": {"event_id": "fc_jfb_square_01:1", "schema_version": 1,
                 "source": "fc_jfb_square_01", "event_time": T, "zone_id": "jfb_square",
                 "entries": 42, "exits": 17, "interval_s": 30},
    "parking": {"event_id": "cp_wfc:1", "source": "cp_wfc", "event_time": T,
                "carpark_id": "cp_wfc", "capacity": 650, "occupied": 600, "free": 50,
                "status": "almost_full"},
    "air": {"event_id": "aq:1", "source": "aq_jiefangbei", "event_time": T,
            "station_id": "aq_jiefangbei", "averaging_s": 3600, "pm25_ugm3": 48.0,
            "pm10_ugm3": 71.0, "o3_ugm3": 120.0, "no2_ugm3": 41.0, "so2_ugm3": 8.0,
            "co_mgm3": 0.9, "temperature_c": 14.5, "humidity_pct": 78},
    "incidents": {"event_id": "inc-7:0", "source": "cc_operator", "event_time": T,
                  "incident_id": "inc-7", "incident_type": "fall", "severity": "medium",
                  "zone_id": "hongyadong", "status": "reported",
                  "position": {"lat": 29.5622, "lon": 106.5787, "crs": "GCJ02"}},
}


@pytest.fixture
def ctx(registry) -> ValidationContext:
    return ValidationContext(registry=registry, now=NOW)


def _with(feed: str, **changes: object) -> bytes:
    data = dict(GOOD[feed])
    for k, v in changes.items():
        if v is _DROP:
            data.pop(k)
        else:
            data[k] = v
    return orjson.dumps(data)


_DROP = object()


@pytest.mark.parametrize("feed", sorted(GOOD))
def test_good_event_of_each_feed_validates(feed: str, ctx: ValidationContext) -> None:
    result = decode_event(feed, orjson.dumps(GOOD[feed]), ctx)
    assert not isinstance(result, Rejection), result
    assert result.event_id == GOOD[feed]["event_id"]
    assert result.event_time.utcoffset() == timedelta(hours=8)


BAD: list[tuple[str, bytes, str]] = [
    ("footfall", b'{"event_id": "x", ', "bad_json"),
    ("footfall", b"\xff\xfe\x00garbage", "bad_encoding"),
    ("footfall", b"[1, 2, 3]", "not_an_object"),
    ("footfall", b'"just a string"', "not_an_object"),
    ("footfall", _with("footfall", entries="42"), "wrong_type"),
    ("footfall", _with("footfall", entries=4.5), "wrong_type"),
    ("footfall", _with("footfall", entries=True), "wrong_type"),
    ("footfall", _with("footfall", zone_id=_DROP), "missing_field"),
    ("footfall", _with("footfall", event_id=_DROP), "missing_field"),
    ("footfall", _with("footfall", exits=-3), "negative_count"),
    ("footfall", _with("footfall", zone_id="chaotianmen_dock"), "unknown_zone"),
    ("footfall", _with("footfall", source="fc_ghost_99"), "unknown_counter"),
    ("footfall", _with("footfall", zone_id="hongyadong"), "zone_mismatch"),
    ("footfall", _with("footfall", event_time="2027-01-01T00:00:00+08:00"), "future_event"),
    ("footfall", _with("footfall", event_time="2026-11-27T19:30:00"), "naive_timestamp"),
    ("footfall", _with("footfall", event_time="yesterday evening"), "bad_timestamp"),
    ("footfall", _with("footfall", event_time=1764243000), "bad_timestamp"),
    ("footfall", _with("footfall", event_time="1764243000"), "bad_timestamp"),
    ("footfall", _with("footfall", dwell_s="40"), "wrong_type"),
    ("footfall", _with("footfall", interval_s=0), "out_of_range"),
    ("footfall", _with("footfall", density_ppm2=55.0), "out_of_range"),
    ("footfall", _with("footfall", schema_version=2), "unsupported_schema_version"),
    ("footfall", _with("footfall", colour="red"), "unexpected_field"),
    ("footfall", _with("footfall", event_id="bad id with spaces"), "bad_format"),
    ("parking", _with("parking", occupied=700, free=_DROP), "over_capacity"),
    ("parking", _with("parking", occupied=300, free=50), "inconsistent_counts"),
    ("parking", _with("parking", carpark_id="cp_nowhere"), "unknown_carpark"),
    ("parking", _with("parking", status="half_full"), "unknown_enum"),
    ("parking", _with("parking", capacity=0), "out_of_range"),
    ("parking", _with("parking", occupied=-1, free=_DROP), "negative_count"),
    ("air", _with("air", pm25_ugm3=25_000.0), "out_of_range"),
    ("air", _with("air", co_mgm3=-0.1), "out_of_range"),
    ("air", _with("air", humidity_pct=130), "out_of_range"),
    ("air", _with("air", station_id="aq_mars"), "unknown_station"),
    ("air", _with("air", pm25_ugm3=None, pm10_ugm3=None, o3_ugm3=None, no2_ugm3=None,
                  so2_ugm3=None, co_mgm3=None), "no_measurement"),
    ("air", _with("air", pm25_ugm3="high"), "wrong_type"),
    ("air", _with("air", pm25_ugm3="35"), "wrong_type"),
    ("air", _with("air", pm10_ugm3=True), "wrong_type"),
    ("air", _with("air", humidity_pct="78"), "wrong_type"),
    ("incidents", _with("incidents", status="burning"), "unknown_enum"),
    ("incidents", _with("incidents", incident_type="alien_landing"), "unknown_enum"),
    ("incidents", _with("incidents", severity=5), "unknown_enum"),
    ("incidents", _with("incidents", zone_id="nowhere"), "unknown_zone"),
    ("incidents", _with("incidents", position={"lat": 95.0, "lon": 106.5}), "out_of_range"),
    ("incidents", _with("incidents", position={"lat": 29.5, "lon": 106.5, "crs": "BD09"}),
     "unknown_enum"),
    ("weather", orjson.dumps(GOOD["footfall"]), "unknown_feed"),
]


@pytest.mark.parametrize(("feed", "raw", "reason"), BAD,
                         ids=[f"{f}-{r}-{i}" for i, (f, _, r) in enumerate(BAD)])
def test_bad_input_is_rejected_with_specific_reason(
    feed: str, raw: bytes, reason: str, ctx: ValidationContext
) -> None:
    result = decode_event(feed, raw, ctx)
    assert isinstance(result, Rejection), f"accepted: {result!r}"
    assert result.reason == reason, str(result)
    assert result.reason in REASONS
    assert "{" not in result.detail, "message template left unformatted"


def test_at_least_twenty_distinct_reasons_are_covered() -> None:
    assert len({r for _, _, r in BAD}) >= 20


def test_oversized_message_is_rejected_before_parsing(ctx: ValidationContext) -> None:
    big = _with("incidents", description="x" * 5000)
    result = decode_event("incidents", big, ctx, max_bytes=1024)
    assert isinstance(result, Rejection)
    assert result.reason == "oversized"


def test_clock_skew_within_tolerance_is_accepted(registry) -> None:
    ahead = (NOW + timedelta(seconds=240)).isoformat()
    raw = _with("footfall", event_time=ahead)
    ok = decode_event("footfall", raw, ValidationContext(registry=registry, now=NOW,
                                                         max_clock_skew_s=300))
    strict = decode_event("footfall", raw, ValidationContext(registry=registry, now=NOW,
                                                             max_clock_skew_s=60))
    assert isinstance(ok, FootfallObserved)
    assert isinstance(strict, Rejection) and strict.reason == "future_event"


def test_occupancy_tolerance_is_configurable(registry) -> None:
    raw = _with("parking", capacity=100, occupied=102, free=_DROP)
    loose = decode_event("parking", raw, ValidationContext(registry=registry, now=NOW,
                                                           occupancy_tolerance=0.02))
    tight = decode_event("parking", raw, ValidationContext(registry=registry, now=NOW,
                                                           occupancy_tolerance=0.0))
    assert isinstance(loose, ParkingObserved)
    assert isinstance(tight, Rejection) and tight.reason == "over_capacity"


def test_gcj02_position_is_stored_as_wgs84(ctx: ValidationContext) -> None:
    event = decode_event("incidents", orjson.dumps(GOOD["incidents"]), ctx)
    assert isinstance(event, IncidentReported)
    assert event.position is not None
    assert event.position.crs == "WGS84"
    lat, lon = gcj02_to_wgs84(29.5622, 106.5787)
    assert event.position.lat == pytest.approx(lat, abs=1e-6)
    assert event.position.lon == pytest.approx(lon, abs=1e-6)
    # the offset in Chongqing is a few hundred metres, not zero
    assert abs(event.position.lat - 29.5622) > 0.001


def test_json_round_trip_preserves_every_field(ctx: ValidationContext) -> None:
    for feed, model in (("footfall", FootfallObserved), ("parking", ParkingObserved),
                        ("air", AirQualityObserved), ("incidents", IncidentReported)):
        event = decode_event(feed, orjson.dumps(GOOD[feed]), ctx)
        assert isinstance(event, model)
        again = decode_event(feed, event.to_json(), ctx)
        assert again == event


def test_without_registry_only_self_contained_rules_apply() -> None:
    raw = _with("footfall", zone_id="some_other_city_zone", event_time=T)
    assert isinstance(decode_event("footfall", raw, ValidationContext(now=NOW)),
                      FootfallObserved)


def test_every_rejection_reason_is_in_the_feeds_doc() -> None:
    """Vendors read the reason codes from docs/feeds.md (`invalid` was missing)."""
    import re
    from pathlib import Path

    from cityops.core.contract import REASONS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "feeds.md").read_text("utf-8")
    table = doc.split("## Rejection reasons", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.M))
    rows |= set(re.findall(r" / `([a-z_]+)`", table))  # the unknown_* row names four
    assert set(REASONS) - rows == set()

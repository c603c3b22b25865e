"""A step publishes only the newest revision of each window it (re-)published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cityops.streams.records import AirQualityIndex, FootfallWindow, ParkingState, latest_revisions

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _window(start_min: int, revision: int, entries: int, window: str = "tumbling_1m",
            zone: str = "jfb_square") -> FootfallWindow:
    start = NOW + timedelta(minutes=start_min)
    return FootfallWindow(zone_id=zone, window=window, window_start=start,  # type: ignore[arg-type]
                          window_end=start + timedelta(minutes=1), entries=entries, exits=0,
                          events=revision + 1, net_presence=10.0, density_ppm2=0.001,
                          revision=revision, emitted_at=NOW)


def _parking(minute: int) -> ParkingState:
    return ParkingState(carpark_id="cp_wfc", event_time=NOW + timedelta(minutes=minute),
                        capacity=650, occupied=300, occupancy_rate=0.461538, trend_per_min=0,
                        emitted_at=NOW)


def test_only_the_newest_revision_of_each_window_is_kept_in_its_last_place() -> None:
    a0, b0, a1, a2 = _window(0, 0, 5), _window(1, 0, 7), _window(0, 1, 9), _window(0, 2, 12)
    assert latest_revisions([a0, b0, a1, a2]) == [b0, a2]


def test_windows_of_other_zones_sizes_and_record_types_are_not_merged() -> None:
    one = _window(0, 0, 5)
    hop = _window(0, 0, 5, window="hopping_5m")
    other_zone = _window(0, 0, 5, zone="hongyadong")
    aqi = AirQualityIndex(station_id="yz_jfb", averaging="1h", hour_start=NOW, samples=1,
                          revision=0, emitted_at=NOW)
    recs = [one, hop, other_zone, aqi]
    assert latest_revisions(recs) == recs


def test_records_without_a_revision_are_all_kept_even_when_identical() -> None:
    p = _parking(0)
    recs = [p, _window(0, 0, 1), p, _parking(1)]
    assert latest_revisions(recs) == recs
    assert latest_revisions([]) == []

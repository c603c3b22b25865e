"""GCJ-02 ↔ WGS-84: the inverse undoes the forward transform; outside China nothing moves."""

from __future__ import annotations

import pytest

from cityops.core.geo import gcj02_to_wgs84, haversine_m, wgs84_to_gcj02


@pytest.mark.parametrize(("lat", "lon"), [(29.5600, 106.5733), (39.9087, 116.3975),
                                          (22.5431, 114.0579), (29.5650, 106.5750)])
def test_inverse_round_trips_to_millimetres(lat: float, lon: float) -> None:
    g = wgs84_to_gcj02(lat, lon)
    w = gcj02_to_wgs84(*g)
    assert haversine_m(lat, lon, *w) < 0.01


def test_offset_in_chongqing_is_hundreds_of_metres() -> None:
    g = wgs84_to_gcj02(29.5600, 106.5733)
    assert 100 < haversine_m(29.5600, 106.5733, *g) < 1000


def test_outside_china_is_unchanged() -> None:
    assert wgs84_to_gcj02(51.5, -0.12) == (51.5, -0.12)
    assert gcj02_to_wgs84(35.68, 139.76) == (35.68, 139.76)

"""A vendor key's source scope covers the site a record reports on, not only its source."""
from pathlib import Path
from types import SimpleNamespace

from cityops.core.keys import Gate, KeyStore
from cityops.ingest.intake_auth import scope_violation, scoped_ids


def _rec(feed: str, source: str, **ids: str) -> SimpleNamespace:
    return SimpleNamespace(feed=feed, source=source, **ids)


def test_a_car_park_and_a_station_are_scoped_beside_the_source() -> None:
    assert scoped_ids(_rec("parking", "cp_deyi", carpark_id="cp_guotai")) == (
        "cp_deyi", "cp_guotai")
    assert scoped_ids(_rec("parking", "cp_deyi", carpark_id="cp_deyi")) == ("cp_deyi",)
    assert scoped_ids(_rec("air", "gw_1", station_id="aq_ring")) == ("gw_1", "aq_ring")
    assert scoped_ids(_rec("incidents", "desk_110", zone_id="jfb_square")) == ("desk_110",)


def test_a_key_for_one_car_park_cannot_report_another(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("acme", "intake", feeds=("parking",), sources=("cp_deyi",))
    principal = Gate(store, "intake", "127.0.0.1").principal(f"Bearer {token}")
    assert principal is not None
    ok = [("parking", scoped_ids(_rec("parking", "cp_deyi", carpark_id="cp_deyi")))]
    assert scope_violation(principal, ok) is None
    spoof = [("parking", scoped_ids(_rec("parking", "cp_deyi", carpark_id="cp_guotai")))]
    refused = scope_violation(principal, spoof)
    assert refused is not None and refused.body["scope"] == "source:cp_guotai"

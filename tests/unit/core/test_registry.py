"""Site registry: the packaged files load; a broken registry names file, entry and reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cityops.core.exceptions import RegistryError
from cityops.core.registry import load_registry
from cityops.core.settings import PACKAGED_REGISTRY


def test_packaged_yuzhong_registry_is_complete_and_plausible() -> None:
    reg = load_registry(PACKAGED_REGISTRY)
    assert reg.manifest.district.id == "yuzhong"
    assert "jfb_square" in reg.zones
    assert all(len(reg.counters_by_zone[z]) >= 1 for z in reg.zones)
    assert any(cp.ring_road for cp in reg.carparks.values())
    kinds = {s.kind for s in reg.stations.values()}
    assert kinds == {"national", "micro"}
    # plausible: Jiefangbei zones are thousands of m², car parks hundreds of spaces
    assert all(1_000 <= z.area_m2 <= 50_000 for z in reg.zones.values())
    assert all(100 <= c.capacity <= 5_000 for c in reg.carparks.values())


@pytest.fixture
def reg_copy(tmp_path: Path) -> Path:
    target = tmp_path / "reg"
    shutil.copytree(PACKAGED_REGISTRY, target)
    return target


def _edit(path: Path, section: str, index: int, **changes: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data[section][index].update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize(("fname", "section", "changes", "needle"), [
    ("zones.yaml", "zones", {"area_m2": -5}, "area_m2"),
    ("zones.yaml", "zones", {"lat": 39.9, "lon": 116.4}, "outside district bbox"),
    ("zones.yaml", "zones", {"density_warning_ppm2": 3, "density_critical_ppm2": 2},
     "below critical"),
    ("counters.yaml", "counters", {"zone_id": "atlantis"}, "unknown zone_id"),
    ("counters.yaml", "counters", {"cadence_s": 0}, "cadence_s"),
    ("carparks.yaml", "carparks", {"capacity": 0}, "capacity"),
    ("carparks.yaml", "carparks", {"neighbours": ["cp_unknown"]}, "bad neighbour"),
    ("stations.yaml", "stations", {"kind": "satellite"}, "kind"),
    ("zones.yaml", "zones", {"surprise": 1}, "surprise"),
])
def test_invalid_registry_names_file_entry_and_reason(
    reg_copy: Path, fname: str, section: str, changes: dict, needle: str
) -> None:
    _edit(reg_copy / fname, section, 0, **changes)
    with pytest.raises(RegistryError) as err:
        load_registry(reg_copy)
    assert needle in err.value.reason
    assert err.value.file in (fname, section)
    assert err.value.entry != ""


def test_duplicate_ids_are_refused(reg_copy: Path) -> None:
    path = reg_copy / "zones.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["zones"].append(dict(data["zones"][0]))
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryError, match="duplicate id"):
        load_registry(reg_copy)


def test_missing_and_unparseable_files_are_reported(reg_copy: Path) -> None:
    (reg_copy / "stations.yaml").unlink()
    with pytest.raises(RegistryError, match=r"stations\.yaml: -: file not found"):
        load_registry(reg_copy)
    (reg_copy / "stations.yaml").write_text("stations: [unclosed", encoding="utf-8")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(reg_copy)


def test_another_district_runs_on_its_own_registry(tmp_path: Path) -> None:
    d = tmp_path / "other"
    d.mkdir()
    (d / "registry.yaml").write_text(yaml.safe_dump({
        "registry_version": "1", "timezone": "Asia/Shanghai",
        "district": {"id": "shapingba", "name_zh": "沙坪坝区", "name_en": "Shapingba",
                     "city": "Chongqing"},
        "bbox": {"lat_min": 29.5, "lat_max": 29.7, "lon_min": 106.3, "lon_max": 106.5},
        "files": ["sites.yaml"],
    }, allow_unicode=True), encoding="utf-8")
    (d / "sites.yaml").write_text(yaml.safe_dump({
        "zones": [{"id": "ciqikou", "name_zh": "磁器口", "name_en": "Ciqikou",
                   "area_m2": 20000, "lat": 29.58, "lon": 106.45}],
        "counters": [{"id": "fc_ciqikou_1", "zone_id": "ciqikou"}],
    }, allow_unicode=True), encoding="utf-8")
    reg = load_registry(d)
    assert list(reg.zones) == ["ciqikou"]
    assert reg.site_ids("footfall") == {"fc_ciqikou_1"}


def test_packaged_counters_carry_their_orientation() -> None:
    reg = load_registry(PACKAGED_REGISTRY)
    assert all(c.towards in ("entry", "exit") and c.inbound in ("entry", "exit")
               for c in reg.counters.values())


def test_external_ids_map_to_registry_ids(reg_copy: Path) -> None:
    _edit(reg_copy / "stations.yaml", "stations", 0,
          external_ids=["urn:ngsi-ld:PointOfInterest:cq-001", "urn:ngsi-ld:Device:cq-001-a"])
    _edit(reg_copy / "carparks.yaml", "carparks", 0,
          external_ids=["urn:ngsi-ld:OffStreetParking:vendor-17"])
    reg = load_registry(reg_copy)
    station = next(iter(reg.stations))
    assert reg.external_ids["urn:ngsi-ld:Device:cq-001-a"] == ("stations", station)
    assert reg.external_ids["urn:ngsi-ld:OffStreetParking:vendor-17"] == (
        "carparks", next(iter(reg.carparks)))


@pytest.mark.parametrize(("fname", "section", "changes", "needle"), [
    ("counters.yaml", "counters", {"towards": "sideways"}, "towards"),
    ("counters.yaml", "counters", {"inbound": "in"}, "inbound"),
    ("stations.yaml", "stations", {"external_ids": [""]}, "external_ids"),
    ("stations.yaml", "stations", {"external_ids": "urn:ngsi-ld:x"}, "external_ids"),
])
def test_bad_mapping_fields_name_file_entry_and_reason(
    reg_copy: Path, fname: str, section: str, changes: dict, needle: str
) -> None:
    _edit(reg_copy / fname, section, 0, **changes)
    with pytest.raises(RegistryError) as err:
        load_registry(reg_copy)
    assert err.value.file == fname and needle in err.value.reason
    assert str(err.value).startswith(f"{fname}: {section}[")


def test_an_external_id_claimed_twice_is_refused_with_both_entries(reg_copy: Path) -> None:
    _edit(reg_copy / "stations.yaml", "stations", 0, external_ids=["urn:ngsi-ld:Device:dup"])
    _edit(reg_copy / "carparks.yaml", "carparks", 1, external_ids=["urn:ngsi-ld:Device:dup"])
    with pytest.raises(RegistryError) as err:
        load_registry(reg_copy)
    # carparks.yaml is read before stations.yaml (the manifest's order)
    cps = yaml.safe_load((reg_copy / "carparks.yaml").read_text(encoding="utf-8"))
    assert err.value.file == "stations.yaml"
    assert f"already maps to carparks[{cps['carparks'][1]['id']}]" in err.value.reason

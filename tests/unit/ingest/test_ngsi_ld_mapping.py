"""FIWARE NGSI-LD Smart Data Models → feed contracts."""

from __future__ import annotations

import orjson
import pytest

from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import ValidationContext
from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld import entity_to_event


def _judge(entity, registry, vctx):
    feed, event = entity_to_event(entity, registry)
    return feed, decode_event(feed, orjson.dumps(event), vctx)


def test_air_quality_observed_normalized(registry, vctx):
    entity = {
        "id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei",
        "type": "AirQualityObserved",
        "dateObserved": {"type": "Property",
                         "value": {"@type": "DateTime", "@value": "2025-10-02T10:00:00+08:00"}},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [106.57391, 29.559684]}},
        "pm25": {"type": "Property", "value": 38.0, "unitCode": "GQ"},
        "pm10": {"type": "Property", "value": 61},
        "no2": {"type": "Property", "value": 21.27, "unitCode": "61"},  # ppb
        "o3": {"type": "Property", "value": 0.05, "unitCode": "59"},  # ppm
        "co": {"type": "Property", "value": 900, "unitCode": "GQ"},  # µg/m³
        "temperature": {"type": "Property", "value": 24.5},
        "relativeHumidity": {"type": "Property", "value": 0.71},
        "@context": ["https://smartdatamodels.org/context.jsonld"],
    }
    feed, ev = _judge(entity, registry, vctx)
    assert feed == "air" and not isinstance(ev, Rejection), ev
    assert ev.station_id == ev.source == "aq_jiefangbei"
    assert ev.averaging_s == 3600  # national station: hourly
    assert ev.pm25_ugm3 == 38.0 and ev.pm10_ugm3 == 61.0
    assert ev.no2_ugm3 == pytest.approx(40.0, abs=0.1)  # 21.27 ppb × 46.0055 / 24.45
    assert ev.o3_ugm3 == pytest.approx(98.2, abs=0.2)  # 50 ppb of O3
    assert ev.co_mgm3 == pytest.approx(0.9)
    assert ev.humidity_pct == pytest.approx(71.0)
    assert (ev.position.lat, ev.position.lon) == (29.559684, 106.57391)
    assert ev.event_id == f"aq_jiefangbei:{int(ev.event_time.timestamp())}"


def test_air_quality_key_values_micro_station(registry, vctx):
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:aq_micro_square:2025-10-02T10:01",
              "type": "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved",
              "refDevice": "urn:ngsi-ld:Device:aq_micro_square",
              "dateObserved": "2025-10-02T02:01:00Z", "pm25": 41.5, "relativeHumidity": 0.8}
    feed, ev = _judge(entity, registry, vctx)
    assert feed == "air" and not isinstance(ev, Rejection), ev
    assert ev.station_id == "aq_micro_square" and ev.averaging_s == 60
    assert ev.humidity_pct == 80.0


def test_off_street_parking(registry, vctx):
    entity = {
        "id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
        "totalSpotNumber": {"type": "Property", "value": 650},
        "availableSpotNumber": {"type": "Property", "value": 12,
                                "observedAt": "2025-10-02T20:15:00+08:00"},
        "status": {"type": "Property", "value": ["almostFull"]},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [106.5769, 29.5605]}},
    }
    feed, ev = _judge(entity, registry, vctx)
    assert feed == "parking" and not isinstance(ev, Rejection), ev
    assert (ev.capacity, ev.occupied, ev.free) == (650, 638, 12)
    assert ev.status.value == "almost_full"
    # occupancy fraction only, capacity from the registry
    _, ev2 = _judge({"id": "urn:ngsi-ld:OffStreetParking:cp_deyi", "type": "OffStreetParking",
                     "occupancy": 0.5, "dateObserved": "2025-10-02T12:00:00Z"}, registry, vctx)
    assert (ev2.capacity, ev2.occupied) == (330, 165)


def test_crowd_flow_observed_directions(registry, vctx):
    base = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
            "dateObservedFrom": {"type": "Property", "value": {
                "@type": "DateTime", "@value": "2025-10-02T12:10:00Z"}},
            "dateObservedTo": {"type": "Property", "value": {
                "@type": "DateTime", "@value": "2025-10-02T12:15:00Z"}},
            "peopleCount": {"type": "Property", "value": 100}}
    feed, inbound = _judge({**base, "direction": {"type": "Property", "value": "inbound"}},
                           registry, vctx)
    assert feed == "footfall" and not isinstance(inbound, Rejection), inbound
    assert (inbound.entries, inbound.exits, inbound.interval_s) == (100, 0, 300)
    assert inbound.zone_id == "jfb_square"
    # direction is the walkway's usual direction, not the count's: on an outbound walkway
    # an undirected count leaves the zone (this counter's inbound travel enters it)
    _, outbound = _judge({**base, "direction": "outbound"}, registry, vctx)
    assert (outbound.entries, outbound.exits) == (0, 100)


def test_crowd_flow_towards_and_away_follow_the_counter_orientation(registry, vctx):
    entity = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
              "dateObserved": "2025-10-02T12:15:00Z", "direction": "inbound",
              "peopleCountTowards": 50, "peopleCountAway": 20, "peopleCount": 70}
    _, ev = _judge(entity, registry, vctx)
    assert not isinstance(ev, Rejection), ev
    # fc_jfb_square_01 has towards: entry; direction does not turn counts around
    assert (ev.entries, ev.exits) == (50, 20)
    assert ev.interval_s == 30  # an instant: the counter's cadence from the registry
    flipped = registry.counters["fc_jfb_square_01"].model_copy(update={"towards": "exit"})
    reg = registry.model_copy(update={"counters": {**registry.counters,
                                                   "fc_jfb_square_01": flipped}})
    _, ev2 = _judge(entity, reg, ValidationContext(registry=reg))
    assert (ev2.entries, ev2.exits) == (20, 50)


def test_crowd_flow_without_orientation_is_refused(registry):
    plain = registry.counters["fc_jfb_square_01"].model_copy(update={"towards": None,
                                                                     "inbound": None})
    reg = registry.model_copy(update={"counters": {**registry.counters,
                                                   "fc_jfb_square_01": plain}})
    base = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
            "dateObserved": "2025-10-02T12:15:00Z"}
    for extra in ({"peopleCountTowards": 5}, {"peopleCount": 5, "direction": "inbound"}):
        with pytest.raises(MappingError) as err:
            entity_to_event({**base, **extra}, reg)
        assert err.value.reason == "no_orientation" and "fc_jfb_square_01" in err.value.detail
    with pytest.raises(MappingError) as err:
        entity_to_event({**base, "peopleCount": 5}, registry)  # no direction at all
    assert err.value.reason == "undirected_count"


@pytest.mark.parametrize(("entity", "reason"), [
    ([1, 2], "not_an_object"),
    ({"id": "urn:ngsi-ld:Alert:x"}, "missing_field"),
    ({"id": "urn:ngsi-ld:Alert:x", "type": "Alert"}, "unknown_feed"),
    ({"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
      "pm25": 10}, "missing_field"),
    ({"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
      "dateObserved": "2025-10-02T10:00:00Z", "pm25": "high"}, "wrong_type"),
    ({"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
      "dateObserved": "yesterday", "pm25": 3}, "bad_timestamp"),
    ({"id": "urn:ngsi-ld:OffStreetParking:nowhere", "type": "OffStreetParking",
      "dateObserved": "2025-10-02T10:00:00Z", "availableSpotNumber": 3}, "unknown_site"),
    ({"id": "urn:ngsi-ld:CrowdFlowObserved:fc_unknown", "type": "CrowdFlowObserved",
      "dateObservedTo": "2025-10-02T10:00:00Z", "peopleCount": 3}, "unknown_site"),
    ({"id": "urn:ngsi-ld:AirQualityObserved:aq_elsewhere", "type": "AirQualityObserved",
      "dateObserved": "2025-10-02T10:00:00Z", "pm25": 3}, "unknown_site"),
    ({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
      "refDevice": "urn:ngsi-ld:Device:cp_deyi", "dateObserved": "2025-10-02T10:00:00Z",
      "availableSpotNumber": 3}, "id_conflict"),
    ({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
      "dateObserved": "2025-10-02T10:00:00Z", "availableSpotNumber": 3,
      "location": {"type": "Polygon", "coordinates": [[[106.57, 29.56], [106.70, 29.56],
                                                       [106.57, 29.57], [106.57, 29.56]]]}},
     "outside_district"),
    ({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
      "dateObserved": "2025-10-02T10:00:00Z", "availableSpotNumber": 3,
      "location": {"type": "Point", "coordinates": ["106.57", 29.56]}}, "bad_location"),
])
def test_unmappable_entities_say_why(registry, entity, reason):
    with pytest.raises(MappingError) as info:
        entity_to_event(entity, registry)
    assert info.value.reason == reason


def test_contract_still_judges_mapped_events(registry, vctx):
    # mapping succeeds, the contract refuses: over capacity
    _, ev = _judge({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
                    "dateObserved": "2025-10-02T10:00:00Z", "totalSpotNumber": 650,
                    "occupiedSpotNumber": 900}, registry, vctx)
    assert isinstance(ev, Rejection) and ev.reason == "over_capacity"


def test_numeric_unit_code_is_read_as_text_not_a_crash(registry, vctx):
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
              "dateObserved": "2025-10-02T10:00:00+08:00",
              "no2": {"type": "Property", "value": 21.27, "unitCode": 61}}  # ppb, as a number
    feed, ev = _judge(entity, registry, vctx)
    assert feed == "air" and not isinstance(ev, Rejection), ev
    assert ev.no2_ugm3 == pytest.approx(40.0, abs=0.1)


def test_observation_period_ending_before_it_starts_is_refused(registry):
    # dateObservedFrom has no offset, so it is UTC (10:00Z); To is 02:00:30Z: before it
    entity = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
              "dateObservedFrom": "2025-10-02T10:00:00",
              "dateObservedTo": "2025-10-02T10:00:30+08:00", "peopleCountTowards": 3}
    with pytest.raises(MappingError) as err:
        entity_to_event(entity, registry)
    assert err.value.reason == "bad_interval" and err.value.field == "dateObservedTo"


@pytest.mark.parametrize(("total", "ok"), [(650, True), (663, True), (637, True),
                                           (664, False), (414, False)])
def test_total_spot_number_is_cross_checked_against_the_registry(registry, total, ok):
    # cp_wfc has 650 spaces; the occupancy tolerance (2 %) allows 637–663
    from cityops.ingest.ngsi_ld import map_entity

    entity = {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
              "dateObserved": "2025-10-02T12:00:00Z", "totalSpotNumber": total,
              "availableSpotNumber": 12}
    ctx = ValidationContext(registry=registry)
    if ok:
        ev = map_entity(entity, ctx).event
        assert ev["capacity"] == 650  # the registry's figure is the one stored
        assert ev["occupied"] == total - 12
    else:
        with pytest.raises(MappingError) as err:
            map_entity(entity, ctx)
        assert err.value.reason == "capacity_mismatch"
        assert f"totalSpotNumber {total}" in err.value.detail and "650" in err.value.detail


@pytest.mark.parametrize(("status", "expected"), [
    ("open", "open"), ("spacesAvailable", "open"), ("almostEmpty", "open"),
    ("almostFull", "almost_full"), ("full", "full"), ("fullAtEntrance", "full"),
    ("closed", "closed"), ("closedAbnormal", "closed"), ("outOfService", "closed"),
    ("statusUnknown", "unknown"), ("noParkingInformationAvailable", "unknown"),
    (["spacesAvailable", "closedAbnormal"], "closed"),  # the most restrictive wins
])
def test_parking_and_datex_ii_statuses(registry, status, expected):
    from cityops.ingest.ngsi_ld import map_entity

    mapped = map_entity({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
                         "dateObserved": "2025-10-02T12:00:00Z", "availableSpotNumber": 12,
                         "status": {"type": "Property", "value": status}},
                        ValidationContext(registry=registry))
    assert mapped.event["status"] == expected and mapped.refused == ()


def test_an_unknown_parking_status_is_stored_as_unknown_and_said(registry):
    from cityops.ingest.ngsi_ld import map_entity

    mapped = map_entity({"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
                         "dateObserved": "2025-10-02T12:00:00Z", "availableSpotNumber": 12,
                         "status": "halfOpen"}, ValidationContext(registry=registry))
    assert mapped.event["status"] == "unknown"
    assert [(r.attribute, r.reason) for r in mapped.refused] == [("status", "unknown_status")]

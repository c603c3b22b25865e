"""FIWARE NGSI-LD Smart Data Models → feed contracts."""

from __future__ import annotations

import orjson
import pytest

from cityops.core.contract import Rejection, decode_event
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
              "dateObserved": "2025-10-02T02:01:00Z", "pm25": 41.5, "relativeHumidity": 80}
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
    _, outbound = _judge({**base, "direction": "outbound"}, registry, vctx)
    assert (outbound.entries, outbound.exits) == (0, 100)
    assert inbound.event_id != outbound.event_id  # both directions of one interval are kept


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
      "dateObserved": "2025-10-02T10:00:00Z", "availableSpotNumber": 3}, "missing_field"),
    ({"id": "urn:ngsi-ld:CrowdFlowObserved:fc_unknown", "type": "CrowdFlowObserved",
      "dateObservedTo": "2025-10-02T10:00:00Z", "peopleCount": 3}, "unknown_counter"),
])
def test_unmappable_entities_say_why(registry, entity, reason):
    with pytest.raises(MappingError) as info:
        entity_to_event(entity, registry)
    assert info.value.reason == reason


def test_contract_still_judges_mapped_events(registry, vctx):
    # mapping succeeds, the contract refuses: unknown station, over capacity
    _, ev = _judge({"id": "urn:ngsi-ld:AirQualityObserved:aq_elsewhere",
                    "type": "AirQualityObserved", "dateObserved": "2025-10-02T10:00:00Z",
                    "pm25": 3}, registry, vctx)
    assert isinstance(ev, Rejection) and ev.reason == "unknown_station"
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


def test_observation_period_without_offset_is_refused(registry):
    from cityops.ingest.ngsi_ld import MappingError, entity_to_event

    entity = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
              "refRoadSegment": "jfb_square",
              "dateObservedFrom": "2025-10-02T10:00:00",
              "dateObservedTo": "2025-10-02T10:00:30+08:00", "peopleCountTowards": 3}
    with pytest.raises(MappingError) as err:
        entity_to_event(entity, registry)
    assert err.value.reason == "naive_timestamp"

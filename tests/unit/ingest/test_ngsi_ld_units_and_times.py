"""Every unit code and every time form of the NGSI-LD mapping, on every property form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cityops.core.feeds import ValidationContext
from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld import map_entity
from cityops.ingest.ngsi_ld.times import parse_time

STATION = {"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
           "dateObserved": "2025-10-02T10:00:00Z"}


def _normalized(value, unit):
    return {"type": "Property", "value": value, **({"unitCode": unit} if unit else {})}


def _multi(value, unit):
    # a multi-attribute: a default instance with the unit, and a second dataset
    return [{**_normalized(value, unit)},
            {"type": "Property", "value": 9999, "unitCode": "GQ",
             "datasetId": "urn:ngsi-ld:Dataset:raw"}]


def _concise(value, unit):
    # NGSI-LD 1.6 concise: a Property without its "type"
    return {"value": value, **({"unitCode": unit} if unit else {})}


FORMS = {"normalized": _normalized, "multi-attribute": _multi, "concise": _concise}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("attribute", "value", "unit", "field", "expected"), [
    ("pm25", 35.0, "GQ", "pm25_ugm3", 35.0),
    ("pm25", 0.035, "GP", "pm25_ugm3", 35.0),  # the mg/m³ reading that was stored as 0.035
    ("pm10", 0.00000007, "GL", "pm10_ugm3", 70.0),  # g/L → µg/m³ (× 10⁹)
    ("co", 900, "GQ", "co_mgm3", 0.9),
    ("co", 1.2, "GP", "co_mgm3", 1.2),
    ("co", 1.0, "59", "co_mgm3", 1.146),  # 1 ppm × 28.010 / 24.45
    ("no2", 21.27, "61", "no2_ugm3", 40.02),  # ppb × 46.0055 / 24.45
    ("o3", 0.05, "59", "o3_ugm3", 98.16),  # 50 ppb of O3
    ("so2", 10, "61", "so2_ugm3", 26.2),
    ("temperature", 24.5, "CEL", "temperature_c", 24.5),
    ("temperature", 45, "FAH", "temperature_c", 7.22),  # was stored as 45 °C
    ("temperature", 300.15, "KEL", "temperature_c", 27.0),
    ("relativeHumidity", 0.71, "C62", "humidity_pct", 71.0),
    ("relativeHumidity", 0.8, "P1", "humidity_pct", 0.8),  # 0.8 % is 0.8 %, not 80 %
    ("relativeHumidity", 64, "P1", "humidity_pct", 64.0),
])
def test_unit_codes_are_converted_on_every_property_form(example_registry, form, attribute,
                                                         value, unit, field, expected):
    entity = {**STATION, "pm10": 20, attribute: FORMS[form](value, unit)}
    mapped = map_entity(entity, ValidationContext(registry=example_registry))
    assert mapped.refused == ()
    assert mapped.event[field] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("attribute", "value", "field", "expected"), [
    ("pm25", 35.0, "pm25_ugm3", 35.0),  # µg/m³ when no unitCode
    ("co", 500, "co_mgm3", 0.5),  # µg/m³ too: 0.5 mg/m³
    ("temperature", 12.2, "temperature_c", 12.2),  # CEL
    ("relativeHumidity", 0.54, "humidity_pct", 54.0),  # a 0–1 ratio
])
def test_key_values_use_the_model_default_units(registry, attribute, value, field, expected):
    mapped = map_entity({**STATION, "pm10": 20, attribute: value},
                        ValidationContext(registry=registry))
    assert mapped.event[field] == pytest.approx(expected)


@pytest.mark.parametrize(("attribute", "sent", "reason"), [
    ("pm25", {"type": "Property", "value": 3, "unitCode": "XYZ"}, "unknown_unit"),
    ("pm25", {"type": "Property", "value": 3, "unitCode": "59"}, "unknown_unit"),  # particles
    ("temperature", {"type": "Property", "value": 3, "unitCode": "GQ"}, "unknown_unit"),
    ("relativeHumidity", {"type": "Property", "value": 3, "unitCode": "CEL"}, "unknown_unit"),
    ("relativeHumidity", 80, "out_of_range"),  # no unitCode: a ratio, and 80 is not one
    ("CO", {"type": "Property", "value": 500, "unitCode": "GP"}, "out_of_range"),
    ("temperature", {"type": "Property", "value": 150, "unitCode": "FAH"}, "out_of_range"),
])
def test_an_unusable_measurement_is_refused_by_name_and_the_rest_kept(registry, attribute,
                                                                      sent, reason):
    mapped = map_entity({**STATION, "pm10": 20, attribute: sent},
                        ValidationContext(registry=registry))
    assert [(r.attribute, r.reason) for r in mapped.refused] == [(attribute, reason)]
    assert mapped.event["pm10_ugm3"] == 20


def test_an_entity_left_without_any_pollutant_is_refused_whole(registry):
    with pytest.raises(MappingError) as err:
        map_entity({**STATION, "co": {"type": "Property", "value": 500, "unitCode": "GP"}},
                   ValidationContext(registry=registry))
    assert err.value.reason == "out_of_range" and err.value.field == "co"


TZ8 = timezone(timedelta(hours=8))


@pytest.mark.parametrize(("sent", "end", "span"), [
    ("2025-10-02T10:00:00Z", datetime(2025, 10, 2, 10, tzinfo=UTC), None),
    ("2025-10-02T18:00:00+08:00", datetime(2025, 10, 2, 18, tzinfo=TZ8), None),
    ("2025-10-02T10:00:00.250Z", datetime(2025, 10, 2, 10, 0, 0, 250000, tzinfo=UTC), None),
    ("2025-10-02T10:00:00", datetime(2025, 10, 2, 10, tzinfo=UTC), None),  # UTC by the model
    ("2025-10-02T09:00:00/2025-10-02T10:00:00", datetime(2025, 10, 2, 10, tzinfo=UTC), 3600),
    ("2025-10-02T09:59:30Z/2025-10-02T10:00:00Z", datetime(2025, 10, 2, 10, tzinfo=UTC), 30),
    ({"@type": "DateTime", "@value": "2025-10-02T10:00:00Z"},
     datetime(2025, 10, 2, 10, tzinfo=UTC), None),
])
def test_time_forms(sent, end, span):
    observed = parse_time(sent, "dateObserved")
    assert observed.end == end and observed.end.tzinfo is not None
    assert observed.span_s == span


@pytest.mark.parametrize(("sent", "reason"), [
    ("yesterday", "bad_timestamp"), (1759399200, "bad_timestamp"), ("", "bad_timestamp"),
    ("2025-10-02T10:00:00Z/2025-10-02T09:00:00Z", "bad_interval"),
])
def test_bad_times_are_refused_with_the_attribute_named(sent, reason):
    with pytest.raises(MappingError) as err:
        parse_time(sent, "dateObserved")
    assert (err.value.reason, err.value.field) == (reason, "dateObserved")


CP = {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
      "availableSpotNumber": {"type": "Property", "value": 12,
                              "observedAt": "2025-10-02T12:00:30Z"},
      "occupiedSpotNumber": {"type": "Property", "value": 638,
                             "observedAt": "2025-10-02T12:00:10Z"}}


@pytest.mark.parametrize(("extra", "expected"), [
    ({"dateObserved": "2025-10-02T12:05:00Z", "observationDateTime": "2025-10-02T12:04:00Z"},
     "2025-10-02T12:05:00+00:00"),
    ({"observationDateTime": "2025-10-02T12:04:00Z", "modifiedAt": "2025-10-02T12:09:00Z"},
     "2025-10-02T12:04:00+00:00"),
    ({"modifiedAt": "2025-10-02T12:09:00Z"}, "2025-10-02T12:00:30+00:00"),  # latest observedAt
])
def test_time_fallbacks_in_their_documented_order(registry, extra, expected):
    mapped = map_entity({**CP, **extra}, ValidationContext(registry=registry))
    assert mapped.event["event_time"] == expected


def test_modified_at_then_date_modified_when_nothing_was_observed(registry):
    plain = {"id": CP["id"], "type": "OffStreetParking", "availableSpotNumber": 12}
    ctx = ValidationContext(registry=registry)
    both = map_entity({**plain, "modifiedAt": "2025-10-02T12:09:00Z",
                       "dateModified": "2025-10-02T12:08:00Z"}, ctx)
    assert both.event["event_time"] == "2025-10-02T12:09:00+00:00"
    only = map_entity({**plain, "dateModified": "2025-10-02T12:08:00Z"}, ctx)
    assert only.event["event_time"] == "2025-10-02T12:08:00+00:00"
    with pytest.raises(MappingError) as err:
        map_entity(plain, ctx)
    assert err.value.reason == "missing_field"


def test_crowd_flow_observed_at_fallback_and_interval(registry):
    entity = {"id": "urn:ngsi-ld:CrowdFlowObserved:fc_jfb_square_01", "type": "CrowdFlowObserved",
              "peopleCountTowards": {"type": "Property", "value": 7,
                                     "observedAt": "2025-10-02T12:15:00Z"},
              "peopleCountAway": {"type": "Property", "value": 3}}
    ctx = ValidationContext(registry=registry)
    ev = map_entity(entity, ctx).event
    assert ev["event_time"] == "2025-10-02T12:15:00+00:00" and ev["interval_s"] == 30
    ev = map_entity({**entity, "dateObserved": "2025-10-02T12:00:00Z/2025-10-02T12:15:00Z"},
                    ctx).event
    assert ev["interval_s"] == 900 and (ev["entries"], ev["exits"]) == (7, 3)

"""JSON-LD ``@context``: terms and full IRIs resolved offline from the bundled copy."""

from __future__ import annotations

import pytest

from cityops.core.feeds import ValidationContext
from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld import map_entity
from cityops.ingest.ngsi_ld.context import bundled, link_context

ENV = "https://smartdatamodels.org/dataModel.Environment/"
CORE = "https://uri.etsi.org/ngsi-ld/"


def test_bundled_context_is_our_own_term_list():
    ctx = bundled()
    assert ctx.terms["pm25"] == ENV + "pm25" and ctx.terms["location"] == CORE + "location"
    assert ctx.canonical[ENV + "co"] == "co"  # CO and co name one IRI; ours is co
    assert "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld" in ctx.serves


def test_expanded_attribute_names_are_read(registry):
    entity = {"@id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei",
              "@type": ENV + "AirQualityObserved",
              "https://smartdatamodels.org/dateObserved": {
                  "type": "Property", "value": "2025-10-02T10:00:00Z"},
              ENV + "pm25": {f"{CORE}hasValue": 0.038, f"{CORE}unitCode": "GP",
                             "type": f"{CORE}Property"},
              "https://smartdatamodels.org/dataModel.Weather/temperature": 21.0}
    mapped = map_entity(entity, ValidationContext(registry=registry))
    assert mapped.event["pm25_ugm3"] == 38.0  # the unitCode under its IRI was read too
    assert mapped.event["temperature_c"] == 21.0
    assert mapped.event["station_id"] == "aq_jiefangbei"


def test_inline_context_renames_terms(registry):
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei",
              "type": "AirQualityObserved", "dateObserved": "2025-10-02T10:00:00Z",
              "fineDust": 12.5, "pm25": 999,
              "@context": [{"sdm": "https://smartdatamodels.org/dataModel.Environment/",
                            "fineDust": "sdm:pm25", "pm25": "https://example.org/other"},
                           "https://smartdatamodels.org/context.jsonld"]}
    # the inline object is listed first, the Smart Data Models context after it overrides
    # pm25 back, so fineDust and pm25 clash: refused rather than one silently chosen
    with pytest.raises(MappingError) as err:
        map_entity(entity, ValidationContext(registry=registry))
    assert err.value.reason == "duplicate_attribute"
    entity["@context"] = entity["@context"][::-1]  # the inline object last: it wins
    mapped = map_entity(entity, ValidationContext(registry=registry))
    assert mapped.event["pm25_ugm3"] == 12.5


def test_link_header_context_applies_to_entities_without_one(registry):
    header = ('<https://smartdatamodels.org/context.jsonld>; '
              'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')
    url = link_context(header)
    assert url == "https://smartdatamodels.org/context.jsonld"
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
              "dateObserved": "2025-10-02T10:00:00Z", "NO2": 40}
    assert map_entity(entity, ValidationContext(registry=registry), url).event["no2_ugm3"] == 40
    assert link_context('<https://x.org/a>; rel="next"') is None


def test_unknown_remote_context_is_refused_not_fetched(registry):
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:aq_jiefangbei", "type": "AirQualityObserved",
              "dateObserved": "2025-10-02T10:00:00Z", "pm25": 3,
              "@context": "https://vendor.example/ctx.jsonld"}
    with pytest.raises(MappingError) as err:
        map_entity(entity, ValidationContext(registry=registry))
    assert err.value.reason == "unknown_context"
    assert "https://vendor.example/ctx.jsonld" in err.value.detail


def test_plain_object_values_are_left_alone(registry):
    # keyValues objects that are no NGSI-LD attribute: an address, an odd vendor structure
    entity = {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking",
              "dateObserved": "2025-10-02T10:00:00Z", "availableSpotNumber": 12,
              "address": {"type": "PostalAddress", "streetAddress": "民族路"},
              "vendorInfo": {"type": ["a", "b"], "value": 3}}
    mapped = map_entity(entity, ValidationContext(registry=registry))
    assert mapped.event["free"] == 12

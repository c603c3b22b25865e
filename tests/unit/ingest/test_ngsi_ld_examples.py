"""The Smart Data Models examples, normalized and keyValues, mapped and judged value by value.

Fixtures: ``tests/data/ngsi_ld`` (the examples' shape, location moved into the district);
their ids are mapped in the registry by ``example_registry``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import ValidationContext
from cityops.ingest.ngsi_ld import map_entity


@pytest.fixture
def ctx(example_registry):
    return ValidationContext(registry=example_registry)


def _judge(entity, ctx):
    mapped = map_entity(entity, ctx)
    event = decode_event(mapped.feed, orjson.dumps(mapped.event), ctx)
    assert not isinstance(event, Rejection), event
    return mapped, event


def test_air_quality_normalized_keeps_all_but_the_impossible_co(ngsi_ld_example, ctx):
    mapped, ev = _judge(ngsi_ld_example("air-quality-normalized"), ctx)
    # the station, through refPointOfInterest → external_ids of aq_jiefangbei
    assert mapped.feed == "air" and ev.station_id == ev.source == "aq_jiefangbei"
    # dateObserved "2016-03-15T11:00:00/2016-03-15T12:00:00": UTC, ends at 12:00, one hour
    assert ev.event_time == datetime(2016, 3, 15, 12, 0, tzinfo=UTC)
    assert ev.averaging_s == 3600
    assert ev.event_id == f"aq_jiefangbei:{int(ev.event_time.timestamp())}"
    # CO 500 GP = 500 mg/m³: refused on its own, named, with the reason
    assert ev.co_mgm3 is None
    assert [(r.attribute, r.reason) for r in mapped.refused] == [("CO", "out_of_range")]
    assert "500 mg/m³" in mapped.refused[0].detail and "200" in mapped.refused[0].detail
    # the rest, GQ = µg/m³ as sent; NO and NOx have no feed field
    assert (ev.so2_ugm3, ev.no2_ugm3) == (11.0, 69.0)
    assert ev.pm25_ugm3 is ev.pm10_ugm3 is ev.o3_ugm3 is None
    assert ev.temperature_c == 12.2  # no unitCode: the model's CEL
    assert ev.humidity_pct == 54.0  # 0.54, the model's 0–1 ratio
    assert (ev.position.lat, ev.position.lon) == (29.559684, 106.57391)


def test_air_quality_key_values(ngsi_ld_example, ctx):
    mapped, ev = _judge(ngsi_ld_example("air-quality-key-values"), ctx)
    assert ev.station_id == "aq_jiefangbei" and mapped.refused == ()
    # "2016-03-15T11:00:00" has no offset: UTC, as the model defines dateObserved
    assert ev.event_time == datetime(2016, 3, 15, 11, 0, tzinfo=UTC)
    assert ev.averaging_s == 3600  # an instant: the national station's hourly means
    # keyValues carry no unitCode: the model's default µg/m³, so co 500 µg/m³ = 0.5 mg/m³
    assert ev.co_mgm3 == 0.5
    assert (ev.so2_ugm3, ev.no2_ugm3) == (11.0, 69.0)
    assert (ev.temperature_c, ev.humidity_pct) == (12.2, 54.0)
    assert (ev.position.lat, ev.position.lon) == (29.559684, 106.57391)


@pytest.mark.parametrize("name", ["off-street-parking-normalized",
                                  "off-street-parking-key-values"])
def test_off_street_parking_examples(ngsi_ld_example, ctx, name):
    mapped, ev = _judge(ngsi_ld_example(name), ctx)
    assert mapped.feed == "parking" and mapped.refused == ()
    assert ev.carpark_id == "cp_example_trindade"  # entity id → external_ids
    # totalSpotNumber 414 = the registry's 414; occupiedSpotNumber 282; available 132
    assert (ev.capacity, ev.occupied, ev.free) == (414, 282, 132)
    assert ev.occupied + ev.free == ev.capacity
    assert ev.occupied / ev.capacity == pytest.approx(0.68, abs=0.005)  # the sent occupancy
    # observationDateTime comes before observedAt (2018-09-21T12:00:00Z) and modifiedAt
    assert ev.event_time == datetime(2021, 3, 11, 15, 51, 2, tzinfo=UTC)
    assert ev.status.value == "open"  # no status attribute: the contract's default
    assert (ev.position.lat, ev.position.lon) == (29.5598, 106.5735)


@pytest.mark.parametrize("name", ["crowd-flow-normalized", "crowd-flow-key-values"])
def test_crowd_flow_examples(ngsi_ld_example, ctx, name):
    mapped, ev = _judge(ngsi_ld_example(name), ctx)
    assert mapped.feed == "footfall" and ev.source == "fc_minzu_road_01"
    assert ev.zone_id == "minzu_road"
    # 11:10–11:15 (an interval dateObserved, or dateObservedFrom/To): five minutes
    assert ev.event_time == datetime(2018, 8, 7, 11, 15, tzinfo=UTC)
    assert ev.interval_s == 300
    # peopleCount 100 on an inbound walkway; this counter's inbound travel enters the zone
    assert (ev.entries, ev.exits) == (100, 0)
    # the LineString: every vertex inside the district, the position their mean
    assert ev.position.lat == pytest.approx((29.5614 + 29.5622 + 29.5620) / 3)
    assert ev.position.lon == pytest.approx((106.5758 + 106.5764 + 106.5766) / 3)


@pytest.mark.parametrize("name", ["air-quality-normalized", "air-quality-key-values",
                                  "off-street-parking-normalized", "crowd-flow-key-values"])
def test_examples_at_their_original_places_are_outside_the_district(ngsi_ld_example, ctx,
                                                                     name):
    from cityops.ingest.exceptions import MappingError

    entity = ngsi_ld_example(name)
    madrid = {"type": "Point", "coordinates": [-3.712247222222222, 40.423852777777775]}
    loc = entity["location"]
    if loc.get("type") == "GeoProperty":
        loc["value"] = madrid
    else:
        entity["location"] = madrid
    with pytest.raises(MappingError) as err:
        map_entity(entity, ctx)
    assert err.value.reason == "outside_district" and err.value.field == "location"
    assert "40.423852777777775,-3.712247222222222" in err.value.detail


def test_examples_without_a_mapping_name_the_ids_tried(ngsi_ld_example, vctx):
    from cityops.ingest.exceptions import MappingError

    with pytest.raises(MappingError) as err:
        map_entity(ngsi_ld_example("air-quality-normalized"), vctx)  # plain Yuzhong registry
    assert err.value.reason == "unknown_site"
    assert "urn:ngsi-ld:PointOfInterest:28079004-Pza.deEspanya" in err.value.detail
    assert "Madrid-AmbientObserved-28079004-2016-03-15T11:00:00" in err.value.detail

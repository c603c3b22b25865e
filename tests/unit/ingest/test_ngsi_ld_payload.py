"""Request bodies: one entity, an array, Orion-LD / Scorpio notifications."""

from __future__ import annotations

import pytest

from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld.payload import read_payload

ENTITY = {"id": "urn:ngsi-ld:OffStreetParking:cp_wfc", "type": "OffStreetParking"}
LINK = "https://smartdatamodels.org/context.jsonld"


def test_entity_and_array():
    assert read_payload(ENTITY, LINK).entities == [ENTITY]
    assert read_payload([ENTITY, ENTITY]).entities == [ENTITY, ENTITY]
    assert read_payload(ENTITY, LINK).context == LINK


@pytest.mark.parametrize("kind", ["Notification", "https://uri.etsi.org/ngsi-ld/Notification"])
def test_notification_is_unwrapped_with_its_context(kind):
    body = {"id": "urn:ngsi-ld:Notification:1", "type": kind,
            "subscriptionId": "urn:ngsi-ld:Subscription:s", "notifiedAt": "2025-10-02T12:00:00Z",
            "data": [ENTITY, ENTITY], "@context": [LINK]}
    payload = read_payload(body, None)
    assert payload.entities == [ENTITY, ENTITY]
    assert payload.subscription_id == "urn:ngsi-ld:Subscription:s"
    assert payload.context == [LINK]


def test_untyped_notification_and_link_context():
    payload = read_payload({"subscriptionId": "s", "data": [ENTITY]}, LINK)
    assert payload.entities == [ENTITY] and payload.context == LINK


@pytest.mark.parametrize(("body", "reason"), [
    ({"type": "Notification", "data": {"id": "x"}}, "bad_notification"),
    ("an entity", "not_an_object"), (42, "not_an_object"),
])
def test_bodies_of_no_known_shape(body, reason):
    with pytest.raises(MappingError) as err:
        read_payload(body)
    assert err.value.reason == reason

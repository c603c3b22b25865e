"""NGSI-LD request bodies → the entities they carry.

Accepted shapes: one entity object, a JSON array of entities (batch operations), and a
notification from a context broker: Orion-LD and Scorpio both send ``{"id":
"urn:ngsi-ld:Notification:…", "type": "Notification", "subscriptionId": …, "notifiedAt": …,
"data": [entities]}``; the entities of ``data`` are unwrapped and judged one by one. A
notification's own ``@context`` applies to the entities that carry none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cityops.ingest.exceptions import MappingError


@dataclass(frozen=True)
class Payload:
    """The entities of a body, and the notification's subscription when it was one."""

    entities: list[Any]
    context: Any = None
    subscription_id: str | None = None


def _is_notification(body: dict[str, Any]) -> bool:
    t = body.get("type", body.get("@type"))
    if isinstance(t, str):
        return t.rsplit("/", 1)[-1] == "Notification"
    # an untyped {"subscriptionId", "data": [...]}, as some brokers' relays send
    return "subscriptionId" in body and "data" in body


def read_payload(body: Any, link_context: str | None = None) -> Payload:
    """The entities in a parsed JSON body; ``MappingError`` for a body of no known shape."""
    if isinstance(body, dict) and _is_notification(body):
        data = body.get("data")
        if not isinstance(data, list):
            raise MappingError("bad_notification", "a Notification needs a data array of "
                               "entities", "data")
        sub = body.get("subscriptionId")
        return Payload(data, body.get("@context", link_context),
                       sub if isinstance(sub, str) else None)
    if isinstance(body, dict):
        return Payload([body], link_context)
    if isinstance(body, list):
        return Payload(body, link_context)
    raise MappingError("not_an_object", "expected an NGSI-LD entity, an array of entities or "
                       "a Notification")

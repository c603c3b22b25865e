"""FIWARE NGSI-LD → cityops feed events: Smart Data Models entities, notifications, answers.

A city already publishing FIWARE entities can post them to the HTTP intake unchanged, or
point a context broker's subscription at it. Modules, one job each:

- ``context``: JSON-LD ``@context`` → our attribute names, from a bundled offline copy;
- ``attributes``: one attribute in normalized, keyValues or multi-attribute form;
- ``units`` and ``times``: UN/CEFACT unit codes and observation-time forms;
- ``sites``: entity ids → registry ids, and the position checked against the district;
- ``mapping``: the three Smart Data Models → feed events;
- ``payload``: request bodies (entities, arrays, Orion-LD / Scorpio notifications);
- ``answers``: NGSI-LD status codes, ``BatchOperationResult`` and ProblemDetails.

HTTP requests themselves (reading, limits, authentication) stay in ``cityops.ingest.intake``.
"""

from cityops.ingest.exceptions import MappingError
from cityops.ingest.ngsi_ld.mapping import (
    ENTITY_FEEDS,
    Mapped,
    Refusal,
    entity_to_event,
    map_entity,
)

__all__ = ["ENTITY_FEEDS", "Mapped", "MappingError", "Refusal", "entity_to_event",
           "map_entity"]

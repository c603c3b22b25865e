"""docs/fiware.md never lies: its subscription payload points at a path the intake serves,
for the entity types it maps, with a context it resolves offline."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import orjson

from cityops.ingest.intake import NGSI_LD_ROUTES
from cityops.ingest.ngsi_ld import ENTITY_FEEDS
from cityops.ingest.ngsi_ld.context import bundled

DOC = (Path(__file__).resolve().parents[3] / "docs" / "fiware.md").read_text(encoding="utf-8")


def test_subscription_payload_is_ready_to_post():
    [block] = [b for b in re.findall(r"```json\n(.*?)```", DOC, flags=re.S)
               if '"Subscription"' in b]
    sub = orjson.loads(block)
    assert sub["type"] == "Subscription" and sub["id"].startswith("urn:ngsi-ld:Subscription:")
    assert {e["type"] for e in sub["entities"]} == set(ENTITY_FEEDS)
    endpoint = sub["notification"]["endpoint"]
    assert NGSI_LD_ROUTES[urlparse(endpoint["uri"]).path] == "notify"
    assert endpoint["accept"] in ("application/json", "application/ld+json")
    assert sub["@context"] in bundled().serves


def test_every_unit_code_in_the_doc_is_converted():
    from cityops.ingest.ngsi_ld import units

    table = DOC.split("## Units", 1)[1].split("\n## ", 1)[0]
    codes = set(re.findall(r"^\| `([A-Z0-9]+)` \|", table, flags=re.M))
    assert codes == {"GQ", "GP", "GL", "59", "61", "CEL", "FAH", "KEL", "C62", "P1"}
    for code in codes:
        assert units.unit_name(code) != code

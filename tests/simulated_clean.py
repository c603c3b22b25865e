"""The simulator's events as an aggregation step receives them (clean, decoded), for tests
of aggregation state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cityops.core.fast_contract import clean_context, decode_clean
from cityops.core.feeds import FEED_MODELS
from cityops.core.registry import Registry
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan

START = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
CTX = clean_context(300.0)


def clean_events(registry: Registry, feed: str, *, hours: int | None = None,
                 skip_source: bool = False) -> list[Any]:
    """``hours`` of the feed from ``START`` with duplicates, late and out-of-order events
    (malformed ones left out: they are never clean). ``skip_source``: each zone's first
    counter is left out, as if its partition had not been read yet, so the zone's windows
    stay open."""
    faults = FaultPlan(duplicates=0.02, late=0.03, out_of_order=0.05)
    out = []
    skipped: dict[str, str] = {}  # zone → its counter left out
    hours = hours or (72 if feed == "incidents" else 5)  # a few incidents an hour
    for rec in wire_records(registry, seed=5, start=START, end=START + timedelta(hours=hours),
                            feeds=[feed], faults=faults):
        try:
            model = FEED_MODELS[feed].model_validate_json(rec.value)
        except ValueError:
            continue
        ev = decode_clean(feed, model.to_json(), CTX)
        if skip_source:
            zone = getattr(ev, "zone_id", None)
            if zone is not None and skipped.setdefault(zone, ev.source) == ev.source:
                continue
        out.append(ev)
    return out

"""The sink's converter reads a clean record under the clock skew validation used.

Validation accepts an event up to ``CITYOPS_MAX_CLOCK_SKEW_S`` ahead of now. The sink read
clean records with the model's default (300 s), so with a larger setting it refused events
validation had passed: counted as unconvertible, their raw rows never stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError
from unit.core.test_feed_contracts import GOOD

from cityops.core.settings import load_settings
from cityops.warehouse.sink import default_converter


def _clean_incident(ahead_s: float) -> tuple[bytes, str]:
    when = (datetime.now(UTC) + timedelta(seconds=ahead_s)).isoformat()
    data = {k: v for k, v in GOOD["incidents"].items() if k != "position"}
    return orjson.dumps({**data, "event_time": when}), when


def test_a_clean_record_ahead_within_the_configured_skew_is_stored() -> None:
    settings = load_settings(max_clock_skew_s=900)
    clean, when = _clean_incident(600)
    table, row = default_converter(settings)(f"{settings.topic_prefix}.clean.incidents",
                                             clean)
    assert table == "incidents_reported"
    assert row["event_id"] == GOOD["incidents"]["event_id"]
    assert row["event_time"] == datetime.fromisoformat(when)


def test_a_clean_record_beyond_the_configured_skew_is_still_refused() -> None:
    settings = load_settings(max_clock_skew_s=900)
    clean, _ = _clean_incident(1_200)
    with pytest.raises(ValidationError, match="future_event"):
        default_converter(settings)(f"{settings.topic_prefix}.clean.incidents", clean)
